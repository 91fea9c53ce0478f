//! What the JSON scanner remembers between bytes (and so between chunks): the stack of open
//! containers, the member name being read, and which values field rules force to be redacted.
//!
//! Member names are compared case-insensitively with the configured field names, as written
//! (escape sequences are not decoded: `pass\u0077ord` is not `password`), and only their first
//! [`MAX_KEY`] bytes are kept (a longer name matches no field). JSON pointers (RFC 6901) are
//! compared case-sensitively segment by segment; containers nested deeper than [`MAX_DEPTH`] are
//! tracked by count only, so pointers cannot reach them (field rules still apply there, by
//! inheritance from the nearest tracked container).

use super::Redaction;

/// Longest member name kept for matching.
pub(crate) const MAX_KEY: usize = 256;
/// Deepest nesting whose path is tracked.
pub(crate) const MAX_DEPTH: usize = 128;

/// One segment of a configured JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PointerSeg {
    pub text: Vec<u8>,
    pub index: Option<u64>,
}

/// Parses `/a/b~1c/0` into its segments; `None` unless it starts with `/`.
pub(crate) fn parse_pointer(p: &str) -> Option<Vec<PointerSeg>> {
    let rest = p.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|seg| {
                let text = seg.replace("~1", "/").replace("~0", "~");
                let index = if !text.is_empty()
                    && text.bytes().all(|b| b.is_ascii_digit())
                    && (text == "0" || !text.starts_with('0'))
                {
                    text.parse().ok()
                } else {
                    None
                };
                PointerSeg {
                    text: text.into_bytes(),
                    index,
                }
            })
            .collect(),
    )
}

#[derive(Debug, Clone)]
struct Frame {
    object: bool,
    /// In an object: the next string is a member name.
    expect_key: bool,
    /// Every scalar inside is redacted, with this class (inherited by nested containers).
    force: Option<u16>,
    /// The current member's name matched a field rule: its value is redacted with this class.
    member_class: Option<u16>,
    /// The current member's name (for pointers; empty when no pointers are configured).
    key: Vec<u8>,
    index: u64,
}

#[derive(Debug, Default)]
pub(crate) struct JsonCtx {
    frames: Vec<Frame>,
    /// Containers opened beyond `MAX_DEPTH`.
    untracked: u64,
    /// The member name being read (lower case, at most `MAX_KEY` bytes).
    key_lower: Vec<u8>,
    key_raw: Vec<u8>,
    /// Bytes of the member name read so far (kept or not).
    key_len: usize,
    key_overlong: bool,
}

impl JsonCtx {
    /// Whether the next string is a member name.
    pub(crate) fn expect_key(&self) -> bool {
        self.untracked == 0 && self.frames.last().is_some_and(|f| f.object && f.expect_key)
    }

    pub(crate) fn begin_key(&mut self) {
        self.key_lower.clear();
        self.key_raw.clear();
        self.key_len = 0;
        self.key_overlong = false;
        if let Some(f) = self.frames.last_mut() {
            f.expect_key = false;
        }
    }

    /// Appends bytes of the member name being read: lower-cased for field rules (`keep_lower`),
    /// as written for pointers (`keep_raw`). The length is counted either way.
    pub(crate) fn key_bytes(&mut self, bytes: &[u8], keep_lower: bool, keep_raw: bool) {
        if self.key_len + bytes.len() > MAX_KEY {
            self.key_overlong = true;
            return;
        }
        self.key_len += bytes.len();
        if keep_lower {
            self.key_lower
                .extend(bytes.iter().map(u8::to_ascii_lowercase));
        }
        if keep_raw {
            self.key_raw.extend_from_slice(bytes);
        }
    }

    /// The member name is complete: look it up in the field rules.
    pub(crate) fn end_key(&mut self, policy: &Redaction) {
        let class = if self.key_overlong {
            None
        } else {
            policy.field_class(&self.key_lower)
        };
        if let Some(f) = self.frames.last_mut() {
            f.member_class = class;
            f.key.clear();
            if !self.key_overlong {
                f.key.extend_from_slice(&self.key_raw);
            }
        }
    }

    /// The class that forces the value starting now to be redacted, if any.
    pub(crate) fn value_force(&self, policy: &Redaction) -> Option<u16> {
        let top = self.frames.last();
        if let Some(class) = top.and_then(|f| f.force) {
            return Some(class);
        }
        if self.untracked > 0 {
            return None;
        }
        if let Some(class) = top.filter(|f| f.object).and_then(|f| f.member_class) {
            return Some(class);
        }
        if policy.has_pointers() && self.path_matches(policy) {
            return Some(policy.pointer_class());
        }
        None
    }

    fn path_matches(&self, policy: &Redaction) -> bool {
        policy.pointers().iter().any(|p| {
            p.len() == self.frames.len()
                && p.iter().zip(&self.frames).all(|(seg, f)| {
                    if f.object {
                        seg.text == f.key
                    } else {
                        seg.index == Some(f.index)
                    }
                })
        })
    }

    pub(crate) fn open(&mut self, object: bool, force: Option<u16>) {
        if self.untracked > 0 || self.frames.len() >= MAX_DEPTH {
            self.untracked += 1;
            return;
        }
        self.frames.push(Frame {
            object,
            expect_key: object,
            force,
            member_class: None,
            key: Vec::new(),
            index: 0,
        });
    }

    pub(crate) fn close(&mut self) {
        if self.untracked > 0 {
            self.untracked -= 1;
        } else {
            self.frames.pop();
        }
    }

    pub(crate) fn comma(&mut self) {
        if self.untracked > 0 {
            return;
        }
        if let Some(f) = self.frames.last_mut() {
            if f.object {
                f.expect_key = true;
                f.member_class = None;
                f.key.clear();
            } else {
                f.index = f.index.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_segments_are_unescaped_and_numeric_ones_index_arrays() {
        let p = parse_pointer("/a~1b/0/m~0n/07").unwrap();
        assert_eq!(p[0].text, b"a/b");
        assert_eq!(p[1].index, Some(0));
        assert_eq!(p[2].text, b"m~n");
        assert_eq!(p[3].index, None);
        assert!(parse_pointer("a/b").is_none());
    }
}
