//! One stable sort for the configuration compilers and other cold code.
//!
//! Every `sort_by` call with its own element type or closure is a separate copy of the standard library's
//! driftsort in the `.wasm` (~5 KB each). [`stable_sort_by`] sorts a list of indices instead, through a
//! non-generic function taking the comparison as `dyn`, so all its callers share one copy; the elements are then
//! moved into place. The result is exactly `slice::sort_by`'s (stable: equal elements keep their order). It costs
//! two allocations of `len` words and an indirect call per comparison, so it is for configuration time and
//! other cold paths. Lists on the request path whose length has a small fixed bound use [`small_sort_by`], an
//! insertion sort: a few hundred bytes per copy, no allocation, and for such lengths as fast as the standard
//! sort (which itself uses insertion sort below 20 elements).

use std::cmp::Ordering;

/// Sorts `v` stably by `cmp`, like `v.sort_by(cmp)`.
pub(crate) fn stable_sort_by<T>(v: &mut Vec<T>, mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.len() < 2 {
        return;
    }
    let order = {
        let items: &[T] = v;
        sorted_indices(
            items.len(),
            &mut |a, b| match (items.get(a), items.get(b)) {
                (Some(x), Some(y)) => cmp(x, y),
                _ => Ordering::Equal,
            },
        )
    };
    let mut slots: Vec<Option<T>> = v.drain(..).map(Some).collect();
    v.extend(
        order
            .iter()
            .filter_map(|&i| slots.get_mut(i).and_then(Option::take)),
    );
}

/// Sorts `strings` (configuration time), like `strings.sort()`.
pub(crate) fn sort_strings(strings: &mut Vec<String>) {
    stable_sort_by(strings, |a, b| a.cmp(b));
}

/// Sorts `v` stably by `cmp` with an insertion sort, like `v.sort_by(cmp)`. Quadratic: only for lists with a small
/// fixed bound on their length (each caller names it).
pub(crate) fn small_sort_by<T>(v: &mut [T], mut cmp: impl FnMut(&T, &T) -> Ordering) {
    for i in 1..v.len() {
        let mut j = i;
        while j > 0 {
            let (Some(a), Some(b)) = (v.get(j - 1), v.get(j)) else {
                break;
            };
            // Only a strictly greater predecessor moves: equal elements keep their order.
            if cmp(a, b) != Ordering::Greater {
                break;
            }
            v.swap(j - 1, j);
            j -= 1;
        }
    }
}

/// Sorts a short list of strings (at most a few dozen), like `strings.sort()`.
pub(crate) fn small_sort_strings(strings: &mut [String]) {
    small_sort_by(strings, |a, b| a.cmp(b));
}

/// The indices `0..len` in the order `cmp` sorts them (stable): a bottom-up merge sort, O(n log n), written out
/// here so that not even one copy of the standard library's sort is needed for it.
#[inline(never)]
fn sorted_indices(len: usize, cmp: &mut dyn FnMut(usize, usize) -> Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    let mut scratch: Vec<usize> = vec![0; len];
    let mut width: usize = 1;
    while width < len {
        let mut start = 0;
        while start < len {
            let mid = start.saturating_add(width).min(len);
            let end = start.saturating_add(width.saturating_mul(2)).min(len);
            if let (Some(left), Some(right), Some(out)) = (
                order.get(start..mid),
                order.get(mid..end),
                scratch.get_mut(start..end),
            ) {
                merge(left, right, out, cmp);
            }
            start = end;
        }
        std::mem::swap(&mut order, &mut scratch);
        width = width.saturating_mul(2);
    }
    order
}

/// Merges two sorted runs into `out`; on a tie the left run's element comes first (stability).
fn merge(
    left: &[usize],
    right: &[usize],
    out: &mut [usize],
    cmp: &mut dyn FnMut(usize, usize) -> Ordering,
) {
    let (mut l, mut r) = (left.iter().peekable(), right.iter().peekable());
    for slot in out.iter_mut() {
        let take_right = match (l.peek(), r.peek()) {
            (Some(&&a), Some(&&b)) => cmp(b, a) == Ordering::Less,
            (None, Some(_)) => true,
            _ => false,
        };
        if let Some(&next) = if take_right { r.next() } else { l.next() } {
            *slot = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_order_as_the_standard_stable_sort() {
        // Pairs sorted by their first member only: equal keys must keep their input order.
        let input: Vec<(u8, usize)> = (0..200usize)
            .map(|i| (((i * 7919) % 13) as u8, i))
            .collect();
        let mut ours = input.clone();
        stable_sort_by(&mut ours, |a, b| a.0.cmp(&b.0));
        let mut std_sorted = input;
        std_sorted.sort_by_key(|a| a.0);
        assert_eq!(ours, std_sorted);
        let mut strings = vec![
            "b".to_string(),
            "a".to_string(),
            "c".to_string(),
            "a".to_string(),
        ];
        stable_sort_by(&mut strings, |a, b| b.cmp(a));
        assert_eq!(strings, ["c", "b", "a", "a"]);
        let mut small = input_small();
        let mut std_small = small.clone();
        small_sort_by(&mut small, |a, b| a.0.cmp(&b.0));
        std_small.sort_by_key(|a| a.0);
        assert_eq!(small, std_small);
        let mut names: Vec<String> = ["q", "a", "m", "a", "z", ""].map(String::from).to_vec();
        let mut std_names = names.clone();
        small_sort_strings(&mut names);
        std_names.sort();
        assert_eq!(names, std_names);
        let mut config_names = std_names.clone();
        config_names.reverse();
        sort_strings(&mut config_names);
        assert_eq!(config_names, std_names);
        let mut empty: Vec<String> = Vec::new();
        stable_sort_by(&mut empty, |a, b| a.cmp(b));
        assert!(empty.is_empty());
        small_sort_strings(&mut empty);
        assert!(empty.is_empty());
    }

    fn input_small() -> Vec<(u8, usize)> {
        (0..40usize).map(|i| (((i * 31) % 5) as u8, i)).collect()
    }
}
