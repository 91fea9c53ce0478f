//! The built-in detectors: pure functions over a window of bytes that start at a candidate
//! position and return the length of a validated match, or `None`.
//!
//! Each detector is given at most the scan window (see [`super::scan`]) and reads nothing beyond
//! it; `before` holds the few bytes before the candidate (never past the start of the current
//! string, line or form value, nor before the end of the previous match). Validation, not just
//! shape: cards pass Luhn and an issuer range with that brand's lengths, IBANs pass the country
//! length table and mod-97, SSNs pass the SSA rules, JWT headers decode to JSON with `alg`.

/// Word bytes: a match must not start or end next to one (token boundaries).
#[inline]
pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[inline]
fn at(w: &[u8], i: usize) -> Option<u8> {
    w.get(i).copied()
}

#[inline]
fn is_digit_at(w: &[u8], i: usize) -> bool {
    at(w, i).is_some_and(|b| b.is_ascii_digit())
}

/// Number of consecutive ASCII digits from `from`, counting at most `max + 1`.
fn run_digits(w: &[u8], from: usize, max: usize) -> usize {
    w.get(from..)
        .unwrap_or(&[])
        .iter()
        .take(max + 1)
        .take_while(|b| b.is_ascii_digit())
        .count()
}

/// True when the bytes before the candidate end with a digit joined by `-`, `.` or `/`:
/// the candidate is then the tail of a longer token (`12-4111…`, `2024.078-05-1123`).
fn joined_before(before: &[u8]) -> bool {
    match before {
        [.., d, s] => d.is_ascii_digit() && matches!(s, b'-' | b'.' | b'/'),
        _ => false,
    }
}

/// The byte after a match must end the token: not a word byte, and not `-`, `.` or `/`
/// followed by a digit (a longer number such as `4111…1111-01` or a decimal).
fn end_ok(w: &[u8], end: usize) -> bool {
    match at(w, end) {
        None => true,
        Some(b) if is_word(b) => false,
        Some(b'-' | b'.' | b'/') => !is_digit_at(w, end + 1),
        Some(_) => true,
    }
}

fn is_space_sep(b: u8, form: bool) -> bool {
    b == b' ' || (form && b == b'+')
}

// ---------------------------------------------------------------------------------------------
// Payment cards
// ---------------------------------------------------------------------------------------------

/// Card brands by issuer identification number range (used for validation and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Brand {
    Visa,
    Mastercard,
    Amex,
    Discover,
    Jcb,
    Diners,
    UnionPay,
    Maestro,
    Dankort,
    Mir,
    Verve,
    RuPay,
    Troy,
    Uatp,
}

fn prefix(d: &[u8], n: usize) -> u32 {
    d.iter()
        .take(n)
        .fold(0u32, |acc, b| acc * 10 + u32::from(b.wrapping_sub(b'0')))
}

/// The brand whose issuer range contains these digits and whose lengths include their count.
pub(crate) fn card_brand(d: &[u8]) -> Option<Brand> {
    let len = d.len();
    let (p1, p2, p3, p4, p6) = (
        prefix(d, 1),
        prefix(d, 2),
        prefix(d, 3),
        prefix(d, 4),
        prefix(d, 6),
    );
    let brand = if p1 == 4 {
        (Brand::Visa, matches!(len, 13 | 16 | 19))
    } else if (51..=55).contains(&p2) || (2221..=2720).contains(&p4) {
        (Brand::Mastercard, len == 16)
    } else if p2 == 34 || p2 == 37 {
        (Brand::Amex, len == 15)
    } else if (2200..=2204).contains(&p4) {
        (Brand::Mir, (16..=19).contains(&len))
    } else if (650002..=650027).contains(&p6) {
        (Brand::Verve, matches!(len, 16 | 18 | 19))
    } else if p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 {
        (Brand::Discover, (16..=19).contains(&len))
    } else if p2 == 62 || (8100..=8171).contains(&p4) {
        (Brand::UnionPay, (16..=19).contains(&len))
    } else if (3528..=3589).contains(&p4) {
        (Brand::Jcb, (16..=19).contains(&len))
    } else if (300..=305).contains(&p3) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39 {
        (Brand::Diners, (14..=19).contains(&len))
    } else if p4 == 5019 {
        (Brand::Dankort, len == 16)
    } else if (506099..=506198).contains(&p6) {
        (Brand::Verve, matches!(len, 16 | 18 | 19))
    } else if p2 == 50 || (56..=58).contains(&p2) || p2 == 63 || p2 == 67 || p4 == 6304 {
        (Brand::Maestro, (13..=19).contains(&len))
    } else if p2 == 60 || p3 == 508 || p2 == 81 || p2 == 82 || p3 == 353 || p3 == 356 {
        (Brand::RuPay, len == 16)
    } else if p4 == 9792 {
        (Brand::Troy, len == 16)
    } else if p1 == 1 {
        (Brand::Uatp, len == 15)
    } else {
        return None;
    };
    brand.1.then_some(brand.0)
}

pub(crate) fn luhn(d: &[u8]) -> bool {
    let mut sum = 0u32;
    for (k, b) in d.iter().rev().enumerate() {
        let mut v = u32::from(b.wrapping_sub(b'0'));
        if k % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// 13 to 19 digits that pass Luhn and fall in a brand's range with one of its lengths.
pub(crate) fn card_digits_valid(d: &[u8]) -> bool {
    (13..=19).contains(&d.len()) && luhn(d) && card_brand(d).is_some()
}

/// Separator characters between card digit groups: space (NBSP and the other space-like
/// characters fold to it), `-`, `.`, `/` (and `+`, a space, in form bodies).
fn is_card_sep(b: u8, form: bool) -> bool {
    matches!(b, b'-' | b'.' | b'/') || is_space_sep(b, form)
}

/// Length of the separator run at `pos` (one to three separator characters) when a digit
/// follows, and whether it is made of spaces only.
fn card_sep_run(w: &[u8], pos: usize, form: bool) -> Option<(usize, bool)> {
    let mut n = 0;
    let mut spaces = true;
    while n < 3 && at(w, pos + n).is_some_and(|b| is_card_sep(b, form)) {
        spaces &= at(w, pos + n).is_some_and(|b| is_space_sep(b, form));
        n += 1;
    }
    (n > 0 && is_digit_at(w, pos + n)).then_some((n, spaces))
}

/// True when the word glued to a number joins it the way hostile spellings do: it holds `_` or
/// a lower-case letter outside `a`-`f` (`x4111…`, `id_4111…_x`, `card4111…`). Upper-case codes
/// (`INV4111…`, `…1111X`: invoice, order and SKU identifiers) and hexadecimal words (`ab4111…`,
/// `…1111cafe`: hashes) are not glued cards.
pub(crate) fn glue_ok(word: &[u8]) -> bool {
    word.iter()
        .any(|b| *b == b'_' || (b.is_ascii_lowercase() && !b.is_ascii_hexdigit()))
}

/// True when the bytes before the candidate end with a whole group of four digits and a
/// separator run: the candidate is a group in the middle of a longer grouped run (`… 1234 5678 …`).
fn mid_group_run(before: &[u8]) -> bool {
    let seps = before
        .iter()
        .rev()
        .take(3)
        .take_while(|b| is_card_sep(**b, true))
        .count();
    let head = before.get(..before.len() - seps).unwrap_or(&[]);
    let digits = head.iter().rev().take_while(|b| b.is_ascii_digit()).count();
    seps > 0 && digits == 4
}

/// The end of a card: not a digit, not `-`, `.` or `/` followed by a digit (a longer number or
/// a decimal); a letter or `_` only when the glued word is not hexadecimal (see [`glue_ok`]).
fn card_end_ok(w: &[u8], end: usize) -> bool {
    match at(w, end) {
        None => true,
        Some(b) if b.is_ascii_digit() => false,
        Some(b) if is_word(b) => {
            let tail = w.get(end..).unwrap_or(&[]);
            let n = tail.iter().take(32).take_while(|b| is_word(**b)).count();
            glue_ok(tail.get(..n).unwrap_or(&[]))
        }
        Some(b'-' | b'.' | b'/') => !is_digit_at(w, end + 1),
        Some(_) => true,
    }
}

/// A payment card number at the start of `w` (grammar in `docs/detectors.md`): 13 to 19 digits
/// in groups of any size separated by one to three of space, `-`, `.`, `/` (mixed separators
/// allowed), passing Luhn and an issuer range with that brand's lengths. When more digits follow
/// behind a space, the longest valid prefix at a group boundary is the card; behind `-`, `.` or
/// `/` that prefix is part of one longer number.
pub(crate) fn card(w: &[u8], before: &[u8], form: bool) -> Option<usize> {
    let g1 = run_digits(w, 0, 19);
    if g1 < 13 && card_sep_run(w, g1, form).is_none() {
        return None; // a short number on its own: the common case, decided here
    }
    if joined_before(before) || mid_group_run(before) {
        return None;
    }
    let mut digits = [0u8; 19];
    let mut nd = 0usize;
    // (digits so far, end offset, the separator after it is spaces only) per group.
    let mut groups: [(usize, usize, bool); 19] = [(0, 0, true); 19];
    let mut n = 0usize;
    let mut pos = 0usize;
    let mut more = false;
    while n < groups.len() {
        let g = run_digits(w, pos, 19);
        if g == 0 {
            break;
        }
        if nd + g > 19 {
            more = true;
            break;
        }
        for (slot, b) in digits
            .iter_mut()
            .skip(nd)
            .zip(w.get(pos..pos + g).unwrap_or(&[]))
        {
            *slot = *b;
        }
        nd += g;
        pos += g;
        let sep = card_sep_run(w, pos, form);
        if let Some(slot) = groups.get_mut(n) {
            *slot = (nd, pos, sep.is_none_or(|s| s.1));
        }
        n += 1;
        match sep {
            Some((len, _)) => pos += len,
            None => break,
        }
    }
    if n == groups.len() && is_digit_at(w, pos) {
        more = true;
    }
    for k in (1..=n).rev() {
        let (total, end, spaced) = *groups.get(k - 1)?;
        if !(13..=19).contains(&total) {
            continue;
        }
        let continues = k < n || more;
        if continues {
            if !spaced {
                continue;
            }
        } else if !card_end_ok(w, end) {
            continue;
        }
        if card_digits_valid(digits.get(..total)?) {
            return Some(end);
        }
    }
    None
}

/// A JSON number token that is a card: digits only (no sign, fraction or exponent).
pub(crate) fn card_number_token(w: &[u8]) -> Option<usize> {
    let n = run_digits(w, 0, 19);
    if !(13..=19).contains(&n) {
        return None;
    }
    match at(w, n) {
        Some(b'.' | b'e' | b'E' | b'0'..=b'9') => None,
        _ => card_digits_valid(w.get(..n)?).then_some(n),
    }
}

/// A JSON number written with a fraction or an exponent whose value is a 13-19 digit card
/// (`4.111111111111111e15`, `4111111111111111.0`): the receiver's parser reads the card.
pub(crate) fn card_number_decimal(w: &[u8]) -> Option<usize> {
    let n = w
        .iter()
        .take(64)
        .take_while(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        .count();
    let token = w.get(..n)?;
    // Cheap refusals first (most numbers): no exponent and fewer than 13 integer digits.
    if !token.iter().any(|b| matches!(b, b'e' | b'E')) && run_digits(token, 0, 13) < 13 {
        return None;
    }
    let text = std::str::from_utf8(token).ok()?;
    let digits = crate::schema::decimal::Decimal::parse(text)?.integer_digits(19)?;
    card_digits_valid(&digits).then_some(n)
}

// ---------------------------------------------------------------------------------------------
// IBAN
// ---------------------------------------------------------------------------------------------

/// IBAN lengths per country (SWIFT IBAN registry, release 99 and the 2024-2025 additions).
const IBAN_LENGTHS: &[(&[u8; 2], u8)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HN", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

pub(crate) fn iban_length(country: [u8; 2]) -> Option<usize> {
    IBAN_LENGTHS
        .iter()
        .find(|(c, _)| **c == country)
        .map(|(_, n)| usize::from(*n))
}

/// ISO 13616 check: move the first four characters to the end, letters as 10..35, mod 97 == 1.
pub(crate) fn iban_mod97(chars: &[u8]) -> bool {
    let (head, tail) = chars.split_at(chars.len().min(4));
    let mut r = 0u32;
    for b in tail.iter().chain(head) {
        r = match b {
            b'0'..=b'9' => (r * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (r * 100 + u32::from(b - b'A') + 10) % 97,
            _ => return false,
        };
    }
    r == 1
}

/// An IBAN at the start of `w`, compact or with one space every four characters; letters
/// must be upper case (the electronic form).
pub(crate) fn iban(w: &[u8], form: bool) -> Option<usize> {
    let c0 = at(w, 0)?;
    let c1 = at(w, 1)?;
    if !(c0.is_ascii_uppercase()
        && c1.is_ascii_uppercase()
        && is_digit_at(w, 2)
        && is_digit_at(w, 3))
    {
        return None;
    }
    let len = iban_length([c0, c1])?;
    let mut chars = [0u8; 34];
    for (k, slot) in chars.iter_mut().take(4).enumerate() {
        *slot = at(w, k)?;
    }
    let spaced = at(w, 4).is_some_and(|b| is_space_sep(b, form));
    let mut pos = 4;
    for k in 4..len {
        if spaced && k % 4 == 0 {
            if !at(w, pos).is_some_and(|b| is_space_sep(b, form)) {
                return None;
            }
            pos += 1;
        }
        let b = at(w, pos)?;
        if !(b.is_ascii_uppercase() || b.is_ascii_digit()) {
            return None;
        }
        *chars.get_mut(k)? = b;
        pos += 1;
    }
    if at(w, pos).is_some_and(is_word) {
        return None;
    }
    iban_mod97(chars.get(..len)?).then_some(pos)
}

// ---------------------------------------------------------------------------------------------
// US SSN
// ---------------------------------------------------------------------------------------------

/// Numbers published in advertising or examples, refused by the SSA.
const KNOWN_INVALID_SSN: &[&[u8; 9]] = &[b"078051120", b"219099999", b"123456789"];

pub(crate) fn ssn_digits_valid(d: &[u8; 9]) -> bool {
    let area = prefix(d, 3);
    let group = prefix(d.get(3..).unwrap_or(&[]), 2);
    let serial = prefix(d.get(5..).unwrap_or(&[]), 4);
    area != 0
        && area != 666
        && area < 900
        && group != 0
        && serial != 0
        && !d.iter().all(|b| Some(b) == d.first())
        && !KNOWN_INVALID_SSN.contains(&d)
}

/// `AAA-GG-SSSS` with one consistent separator: `-`, space or `.` (`+` in form bodies).
/// Bare nine-digit runs are not SSNs (see the Presidio conformance notes).
pub(crate) fn ssn(w: &[u8], before: &[u8], form: bool) -> Option<usize> {
    if joined_before(before) {
        return None;
    }
    let sep = at(w, 3)?;
    if !(matches!(sep, b'-' | b'.') || is_space_sep(sep, form)) || at(w, 6) != Some(sep) {
        return None;
    }
    let mut d = [0u8; 9];
    for (slot, pos) in d.iter_mut().zip([0, 1, 2, 4, 5, 7, 8, 9, 10]) {
        let b = at(w, pos)?;
        if !b.is_ascii_digit() {
            return None;
        }
        *slot = b;
    }
    // `078 05 1123 45` is one longer number; `078 05 1123 4111111111111111` is two tokens.
    let next_group = run_digits(w, 12, 4);
    if !end_ok(w, 11) || (at(w, 11) == Some(sep) && (1..=4).contains(&next_group)) {
        return None;
    }
    ssn_digits_valid(&d).then_some(11)
}

// ---------------------------------------------------------------------------------------------
// Phone numbers
// ---------------------------------------------------------------------------------------------

/// E.164 written with its `+`: a country code not starting with 0, 8 to 15 digits in all,
/// optionally grouped by single spaces, dashes or dots, with at most one `(…)` group.
pub(crate) fn phone_plus(w: &[u8]) -> Option<usize> {
    if !matches!(at(w, 1), Some(b'1'..=b'9')) {
        return None;
    }
    let mut pos = 1;
    let mut digits = 0;
    let mut end = 1;
    let mut parens = 0;
    // Where the number stood at the last space, in case the next group is another number.
    let mut at_space: Option<(usize, usize)> = None;
    loop {
        match at(w, pos) {
            Some(b'0'..=b'9') => {
                digits += 1;
                if digits > 15 {
                    return match at_space {
                        Some((e, n)) if n >= 8 => Some(e),
                        _ => None,
                    };
                }
                pos += 1;
                end = pos;
            }
            Some(sep @ (b' ' | b'-' | b'.'))
                if end == pos && matches!(at(w, pos + 1), Some(b'0'..=b'9' | b'(')) =>
            {
                if sep == b' ' {
                    at_space = Some((end, digits));
                }
                pos += 1;
            }
            Some(b'(') if parens == 0 && digits > 0 => {
                let inner = run_digits(w, pos + 1, 4);
                if !(1..=4).contains(&inner) || at(w, pos + 1 + inner) != Some(b')') {
                    break;
                }
                parens += 1;
                digits += inner;
                pos += inner + 2;
                end = pos;
                if at(w, pos) == Some(b' ') && is_digit_at(w, pos + 1) {
                    pos += 1;
                }
            }
            _ => break,
        }
    }
    if (8..=15).contains(&digits) && end_ok(w, end) {
        return Some(end);
    }
    // The last group belonged to something else (`+1 415 555 2671 550e8400…`).
    match at_space {
        Some((e, n)) if n >= 8 => Some(e),
        _ => None,
    }
}

/// National forms: North American `(AAA) EEE-NNNN`, `AAA-EEE-NNNN`, `AAA.EEE.NNNN`,
/// `AAA EEE NNNN` (optionally after `1` and the same separator; area and exchange codes start
/// with 2-9), and trunk-prefixed numbers such as `020 7946 0958` or `06 12 34 56 78`
/// (a leading 0, 10 or 11 digits in 2 or more groups with one consistent separator).
pub(crate) fn phone_national(w: &[u8], before: &[u8]) -> Option<usize> {
    if joined_before(before) {
        return None;
    }
    let end = nanp(w).or_else(|| trunk_prefixed(w))?;
    end_ok(w, end).then_some(end)
}

fn nanp(w: &[u8]) -> Option<usize> {
    let lead2_9 = |i: usize| matches!(at(w, i), Some(b'2'..=b'9'));
    let digits_at = |i: usize, n: usize| run_digits(w, i, n) == n;
    if at(w, 0) == Some(b'(') {
        if !(lead2_9(1) && digits_at(1, 3) && at(w, 4) == Some(b')')) {
            return None;
        }
        let mut pos = 5;
        if at(w, pos) == Some(b' ') {
            pos += 1;
        }
        if !(lead2_9(pos) && digits_at(pos, 3)) {
            return None;
        }
        pos += 3;
        if matches!(at(w, pos), Some(b'-' | b'.' | b' ')) {
            pos += 1;
        }
        return digits_at(pos, 4).then_some(pos + 4);
    }
    let start = if at(w, 0) == Some(b'1') && !is_digit_at(w, 1) {
        2
    } else {
        0
    };
    let sep = at(w, start + 3)?;
    if !matches!(sep, b'-' | b'.' | b' ') || (start == 2 && at(w, 1) != Some(sep)) {
        return None;
    }
    let ok = lead2_9(start)
        && digits_at(start, 3)
        && lead2_9(start + 4)
        && digits_at(start + 4, 3)
        && at(w, start + 7) == Some(sep)
        && digits_at(start + 8, 4);
    if !ok || (at(w, start + 12) == Some(sep) && is_digit_at(w, start + 13)) {
        return None;
    }
    Some(start + 12)
}

fn trunk_prefixed(w: &[u8]) -> Option<usize> {
    if at(w, 0) != Some(b'0') || !matches!(at(w, 1), Some(b'1'..=b'9')) {
        return None;
    }
    let g1 = run_digits(w, 0, 5);
    if !(2..=5).contains(&g1) {
        return None;
    }
    let sep = at(w, g1)?;
    if !matches!(sep, b' ' | b'-' | b'.') {
        return None;
    }
    let mut total = g1;
    let mut pos = g1;
    let mut groups = 1;
    while at(w, pos) == Some(sep) && is_digit_at(w, pos + 1) {
        let g = run_digits(w, pos + 1, 8);
        if !(2..=8).contains(&g) {
            return None;
        }
        total += g;
        groups += 1;
        pos += 1 + g;
        if total > 11 {
            return None;
        }
    }
    (groups >= 2 && (10..=11).contains(&total)).then_some(pos)
}

// ---------------------------------------------------------------------------------------------
// Email
// ---------------------------------------------------------------------------------------------

fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// Longest local part (RFC 5321: 64 octets).
pub(crate) const MAX_LOCAL: usize = 64;

/// Length of the local part that ends `before` (the bytes just before `@`), or `None`.
/// `before` holds at most `MAX_LOCAL + 1` bytes so that an overlong run can be refused.
pub(crate) fn email_local(before: &[u8]) -> Option<usize> {
    let run = before.iter().rev().take_while(|b| is_local(**b)).count();
    if run > MAX_LOCAL || run == 0 {
        return None;
    }
    let local = before.get(before.len() - run..)?;
    // Leading dots and symbols belong to the text around, not to the address.
    let skip = local
        .iter()
        .take_while(|b| !b.is_ascii_alphanumeric())
        .count();
    let local = local.get(skip..)?;
    if local.is_empty() || local.last() == Some(&b'.') || local.windows(2).any(|p| p == b"..") {
        return None;
    }
    Some(local.len())
}

/// Length of the domain at the start of `w` (just after `@`): two or more labels of
/// `[A-Za-z0-9-]` (1-63 each, no leading or trailing dash), 253 bytes at most, and an
/// alphabetic top-level label of two or more letters (or an `xn--` label).
pub(crate) fn email_domain(w: &[u8]) -> Option<usize> {
    let mut pos = 0;
    let mut labels = 0;
    let mut last = (0, 0);
    loop {
        let len = w
            .get(pos..)?
            .iter()
            .take(64)
            .take_while(|b| b.is_ascii_alphanumeric() || **b == b'-')
            .count();
        let label = w.get(pos..pos + len)?;
        if !(1..=63).contains(&len) || label.first() == Some(&b'-') || label.last() == Some(&b'-') {
            break;
        }
        labels += 1;
        last = (pos, pos + len);
        pos += len;
        if at(w, pos) == Some(b'.') && at(w, pos + 1).is_some_and(|b| b.is_ascii_alphanumeric()) {
            pos += 1;
        } else {
            break;
        }
    }
    let end = last.1;
    let tld = w.get(last.0..last.1)?;
    let tld_ok = (tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic))
        || (tld.len() > 4
            && tld
                .get(..4)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"xn--")));
    let next_ok = match at(w, end) {
        None => true,
        Some(b) => !(is_word(b) || b == b'-' || b == b'@'),
    };
    (labels >= 2 && end <= 253 && tld_ok && next_ok).then_some(end)
}

// ---------------------------------------------------------------------------------------------
// JWT
// ---------------------------------------------------------------------------------------------

/// Longest JWT (or five-segment JWE) recognised; longer ones are not matched.
pub(crate) const MAX_JWT: usize = 8192;
const MAX_JWT_HEADER: usize = 1024;

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Three (JWS) or five (JWE) base64url segments whose first decodes to a JSON object with a
/// string `alg`. The header must start with `eyJ` (`{"`).
pub(crate) fn jwt(w: &[u8]) -> Option<usize> {
    if !w.starts_with(b"eyJ") {
        return None;
    }
    let seg = |from: usize| -> usize {
        w.get(from..)
            .unwrap_or(&[])
            .iter()
            .take(MAX_JWT + 1)
            .take_while(|b| is_b64url(**b))
            .count()
    };
    let header = seg(0);
    if header > MAX_JWT_HEADER || at(w, header) != Some(b'.') {
        return None;
    }
    let payload = seg(header + 1);
    let sig_start = header + 1 + payload + 1;
    if payload == 0 || at(w, sig_start - 1) != Some(b'.') {
        return None;
    }
    let mut end = sig_start + seg(sig_start);
    if at(w, end) == Some(b'.') && at(w, end + 1).is_some_and(is_b64url) {
        // A JWE has five segments; anything else joined by dots is not a token.
        let fourth = end + 1 + seg(end + 1);
        if at(w, fourth) != Some(b'.') {
            return None;
        }
        end = fourth + 1 + seg(fourth + 1);
        if at(w, end) == Some(b'.') && at(w, end + 1).is_some_and(is_b64url) {
            return None;
        }
    }
    if end > MAX_JWT {
        return None;
    }
    header_has_alg(w.get(..header)?).then_some(end)
}

fn header_has_alg(seg: &[u8]) -> bool {
    use base64ct::{Base64UrlUnpadded, Encoding};
    let mut buf = [0u8; MAX_JWT_HEADER];
    let Ok(json) = Base64UrlUnpadded::decode(seg, &mut buf) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(map)) => map.get("alg").is_some_and(|a| a.is_string()),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

/// Which secret a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Secret {
    AwsKey,
    Github,
    Gitlab,
    Slack,
    Stripe,
}

const MAX_TOKEN: usize = 255;

fn body_len(w: &[u8], from: usize, ok: impl Fn(u8) -> bool) -> usize {
    w.get(from..)
        .unwrap_or(&[])
        .iter()
        .take(MAX_TOKEN + 1)
        .take_while(|b| ok(**b))
        .count()
}

/// A token `prefix` + body of `min..=max` bytes from `ok`, not followed by a word byte or `-`.
fn token(w: &[u8], prefix: usize, min: usize, ok: impl Fn(u8) -> bool) -> Option<usize> {
    let n = body_len(w, prefix, ok);
    let end = prefix + n;
    let next_ok = !at(w, end).is_some_and(|b| is_word(b) || b == b'-');
    ((min..=MAX_TOKEN).contains(&n) && next_ok).then_some(end)
}

/// AWS access key ids (`AKIA`, `ASIA`, `ABIA`, `ACCA`, `A3T?` + 16), GitHub (`ghp_`, `gho_`,
/// `ghu_`, `ghs_`, `ghr_` + 36 or more, `github_pat_` + 22 or more), GitLab (`glpat-` + 20 or
/// more), Slack (`xoxb-`, `xoxa-`, `xoxp-`, `xoxr-`, `xoxs-` + 10 or more), Stripe (`sk_live_`,
/// `rk_live_`, `sk_test_`, `rk_test_` + 10 or more). Bodies are capped at 255 bytes.
pub(crate) fn secret(w: &[u8]) -> Option<(usize, Secret)> {
    let alnum = |b: u8| b.is_ascii_alphanumeric();
    match at(w, 0)? {
        b'A' => {
            let p = w.get(..4)?;
            let known = matches!(p, b"AKIA" | b"ASIA" | b"ABIA" | b"ACCA")
                || (p.starts_with(b"A3T") && p.get(3).is_some_and(|b| alnum(*b)));
            if !known {
                return None;
            }
            let upper = |b: u8| b.is_ascii_uppercase() || b.is_ascii_digit();
            let n = body_len(w, 4, upper);
            (n == 16 && !at(w, 20).is_some_and(is_word)).then_some((20, Secret::AwsKey))
        }
        b'g' => {
            if w.starts_with(b"github_pat_") {
                token(w, 11, 22, |b| alnum(b) || b == b'_').map(|e| (e, Secret::Github))
            } else if w.starts_with(b"glpat-") {
                token(w, 6, 20, is_b64url).map(|e| (e, Secret::Gitlab))
            } else if w.len() > 4
                && w.starts_with(b"gh")
                && matches!(at(w, 2), Some(b'p' | b'o' | b'u' | b's' | b'r'))
                && at(w, 3) == Some(b'_')
            {
                token(w, 4, 36, alnum).map(|e| (e, Secret::Github))
            } else {
                None
            }
        }
        b'x' => {
            if w.starts_with(b"xox")
                && matches!(at(w, 3), Some(b'b' | b'a' | b'p' | b'r' | b's'))
                && at(w, 4) == Some(b'-')
            {
                token(w, 5, 10, |b| alnum(b) || b == b'-').map(|e| (e, Secret::Slack))
            } else {
                None
            }
        }
        b's' | b'r' => {
            let p = w.get(..8)?;
            if matches!(p, b"sk_live_" | b"rk_live_" | b"sk_test_" | b"rk_test_") {
                token(w, 8, 10, alnum).map(|e| (e, Secret::Stripe))
            } else {
                None
            }
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// PEM private keys
// ---------------------------------------------------------------------------------------------

/// Longest PEM label line looked at (`-----BEGIN ENCRYPTED PRIVATE KEY-----` is 37 bytes).
const MAX_PEM_LINE: usize = 80;

/// `-----BEGIN <label>-----` where the label is `[A-Z0-9 ]` and contains `PRIVATE KEY`;
/// returns the length of that line.
pub(crate) fn pem_begin(w: &[u8]) -> Option<usize> {
    pem_line(w, b"-----BEGIN ")
}

/// `-----END <label>-----` with a private-key label; returns the length of that line.
pub(crate) fn pem_end(w: &[u8]) -> Option<usize> {
    pem_line(w, b"-----END ")
}

fn pem_line(w: &[u8], head: &[u8]) -> Option<usize> {
    if !w.starts_with(head) {
        return None;
    }
    let rest = w.get(head.len()..)?;
    let label_len = rest
        .iter()
        .take(MAX_PEM_LINE)
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b' ')
        .count();
    let label = rest.get(..label_len)?;
    let tail = rest.get(label_len..)?;
    let ok = tail.starts_with(b"-----") && label.windows(11).any(|p| p == b"PRIVATE KEY");
    ok.then_some(head.len() + label_len + 5)
}
