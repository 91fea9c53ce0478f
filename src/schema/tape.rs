//! A request body as a flat token tape: one pass over the bytes that checks the JSON syntax, the
//! nesting depth and duplicate member names, and records each value as a [`Tok`] that borrows
//! its text from the body. No tree is built, nothing is allocated per string or number: numbers
//! stay as the text they were written with (compared exactly by [`super::decimal`]), strings
//! without escapes are spans of the body, and only strings with escapes are unescaped, into one
//! shared buffer. The validator walks the tape by index.
//!
//! [`Tape::parse`] accepts exactly the documents `serde_json::from_slice` accepts (same grammar,
//! same whitespace, paired `\u` surrogates) that nest at most `max_depth` deep and repeat no
//! member name. It answers only yes or no: for any other body the caller runs the reference path
//! ([`super::validate::parse_body`]), which names the failure as before (line and column of a
//! syntax error, too deep, not UTF-8, duplicate key, in that order of precedence).
//!
//! # Memory
//! One token (12 bytes) per value and per member name: at most `body.len() + 1` tokens, plus the
//! unescaped text (at most the body's size). A tape is reused per worker; between requests it
//! keeps at most [`RETAIN_TOKENS`] tokens and [`RETAIN_TEXT`] bytes of capacity.

use std::hash::{Hash, Hasher};

pub(crate) const K_NULL: u8 = 0;
pub(crate) const K_FALSE: u8 = 1;
pub(crate) const K_TRUE: u8 = 2;
pub(crate) const K_NUM: u8 = 3;
pub(crate) const K_STR: u8 = 4;
pub(crate) const K_ARR: u8 = 5;
pub(crate) const K_OBJ: u8 = 6;

/// Capacity a reused tape keeps between requests (tokens, 12 bytes each).
pub const RETAIN_TOKENS: usize = 16 * 1024;
/// Capacity of unescaped text a reused tape keeps between requests (bytes).
pub const RETAIN_TEXT: usize = 16 * 1024;

/// Names per object compared one by one; larger objects' names are sorted when they close.
const DUP_LINEAR: usize = 16;

/// One value (or member name). Strings: `a..a+b` of the body, or of the unescaped text when
/// `esc`. Numbers: `a..a+b` of the body. Arrays and objects: `a` is the index of the token after
/// the container's last one, `b` the number of elements or members. A member is its name (a
/// string token) followed by its value's tokens.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tok {
    pub(crate) kind: u8,
    esc: bool,
    pub(crate) a: u32,
    pub(crate) b: u32,
}

/// The reusable buffers of a parse.
#[derive(Debug, Default)]
pub struct Tape {
    toks: Vec<Tok>,
    text: String,
    /// Open containers: (token index, where the open object's names start in `keys`).
    open: Vec<(u32, u32)>,
    /// Token indices of the names of every open object, innermost last.
    keys: Vec<u32>,
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\n' | b'\t' | b'\r')) {
        i += 1;
    }
    i
}

fn digits(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

/// The end of the JSON number starting at `i`, per RFC 8259.
fn number_end(b: &[u8], mut i: usize) -> Option<usize> {
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(b, i + 1),
        _ => return None,
    }
    if b.get(i) == Some(&b'.') {
        let j = digits(b, i + 1);
        if j == i + 1 {
            return None;
        }
        i = j;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let j = digits(b, i);
        if j == i {
            return None;
        }
        i = j;
    }
    Some(i)
}

/// The first offset at or after `i` holding `"`, `\\` or a control character (or the end), eight
/// bytes at a time while none of them is one.
fn string_stop(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(w) = b.get(i..i + 8).and_then(|c| <[u8; 8]>::try_from(c).ok()) {
        let x = u64::from_le_bytes(w);
        let quote = x ^ (ONES * u64::from(b'"'));
        let backslash = x ^ (ONES * u64::from(b'\\'));
        // A byte below 0x20, or one equal to 0 after the xor (the classic "has less than" test).
        let hit = (quote.wrapping_sub(ONES) & !quote)
            | (backslash.wrapping_sub(ONES) & !backslash)
            | (x.wrapping_sub(ONES * 0x20) & !x);
        if hit & HIGH != 0 {
            break;
        }
        i += 8;
    }
    while b
        .get(i)
        .is_some_and(|&c| c != b'"' && c != b'\\' && c >= 0x20)
    {
        i += 1;
    }
    i
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let mut n = 0;
    for k in at..at + 4 {
        n = n * 16 + char::from(*b.get(k)?).to_digit(16)?;
    }
    Some(n)
}

fn len32(n: usize) -> Option<u32> {
    u32::try_from(n).ok()
}

impl Tape {
    /// Tokenizes `body` (already known to be UTF-8). False when `serde_json` would refuse it, when
    /// it nests deeper than `max_depth`, or when an object repeats a member name (after unescaping).
    pub fn parse(&mut self, body: &str, max_depth: usize) -> bool {
        self.toks.clear();
        self.text.clear();
        self.open.clear();
        self.keys.clear();
        let ok = self.parse_inner(body.as_bytes(), max_depth).is_some();
        self.open.clear();
        self.keys.clear();
        ok
    }

    /// Lets go of capacity above the retained bounds (called after each use of a reused tape).
    pub fn trim(&mut self) {
        if self.toks.capacity() > RETAIN_TOKENS {
            self.toks = Vec::new();
        }
        if self.text.capacity() > RETAIN_TEXT {
            self.text = String::new();
        }
    }

    /// The parsed document; `body` must be the text given to [`Tape::parse`].
    pub fn doc<'t>(&'t self, body: &'t str) -> Doc<'t> {
        Doc {
            toks: &self.toks,
            body,
            text: &self.text,
        }
    }

    fn push(&mut self, kind: u8, a: usize, b: usize) -> Option<()> {
        self.toks.push(Tok {
            kind,
            esc: false,
            a: len32(a)?,
            b: len32(b)?,
        });
        Some(())
    }

    /// The string whose opening quote is at `i`; returns the offset after its closing quote.
    fn string(&mut self, b: &[u8], i: usize) -> Option<usize> {
        let start = i + 1;
        let mut j = string_stop(b, start);
        match *b.get(j)? {
            b'"' => {
                self.push(K_STR, start, j - start)?;
                return Some(j + 1);
            }
            b'\\' => {}
            _ => return None,
        }
        // Escapes: unescape into the shared text.
        let from = self.text.len();
        self.text
            .push_str(std::str::from_utf8(b.get(start..j)?).ok()?);
        loop {
            let c = *b.get(j)?;
            j += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = *b.get(j)?;
                    j += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = hex4(b, j)?;
                            j += 4;
                            let cp = match hi {
                                0xD800..=0xDBFF => {
                                    if b.get(j..j + 2) != Some(b"\\u") {
                                        return None;
                                    }
                                    let lo = hex4(b, j + 2)?;
                                    if !(0xDC00..=0xDFFF).contains(&lo) {
                                        return None;
                                    }
                                    j += 6;
                                    0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                                }
                                0xDC00..=0xDFFF => return None,
                                cp => cp,
                            };
                            char::from_u32(cp)?
                        }
                        _ => return None,
                    };
                    self.text.push(ch);
                }
                c if c < 0x20 => return None,
                _ => {
                    // Copy the run up to the next quote or escape (the body is UTF-8).
                    let run = j - 1;
                    let mut k = j;
                    while b
                        .get(k)
                        .is_some_and(|&x| x != b'"' && x != b'\\' && x >= 0x20)
                    {
                        k += 1;
                    }
                    self.text
                        .push_str(std::str::from_utf8(b.get(run..k)?).ok()?);
                    j = k;
                }
            }
        }
        self.toks.push(Tok {
            kind: K_STR,
            esc: true,
            a: len32(from)?,
            b: len32(self.text.len() - from)?,
        });
        Some(j)
    }

    fn key_bytes<'s>(&'s self, body: &'s [u8], k: u32) -> &'s [u8] {
        match self.toks.get(k as usize) {
            Some(t) => {
                let src = if t.esc { self.text.as_bytes() } else { body };
                src.get(t.a as usize..(t.a as usize + t.b as usize))
                    .unwrap_or(&[])
            }
            None => &[],
        }
    }

    /// A member name was just pushed (the last token) in the innermost open object.
    fn new_key(&mut self, body: &[u8]) -> Option<()> {
        let k = len32(self.toks.len().checked_sub(1)?)?;
        let start = self.open.last()?.1 as usize;
        let earlier = self.keys.get(start..).unwrap_or(&[]);
        if earlier.len() < DUP_LINEAR {
            let name = self.key_bytes(body, k);
            if earlier.iter().any(|&e| self.key_bytes(body, e) == name) {
                return None;
            }
        }
        self.keys.push(k);
        Some(())
    }

    /// An object closes: a large one's names are sorted (the shared sort: O(n log n) whatever the
    /// names) and neighbours compared.
    fn close_object(&mut self, body: &[u8], start: usize) -> Option<()> {
        if self.keys.len().saturating_sub(start) <= DUP_LINEAR {
            self.keys.truncate(start);
        } else {
            let mut names = self.keys.split_off(start);
            crate::sorting::stable_sort_by(&mut names, |&a, &b| {
                self.key_bytes(body, a).cmp(self.key_bytes(body, b))
            });
            let dup = names.windows(2).any(|w| match w {
                [a, b] => self.key_bytes(body, *a) == self.key_bytes(body, *b),
                _ => false,
            });
            if dup {
                return None;
            }
        }
        Some(())
    }

    fn parse_inner(&mut self, b: &[u8], max_depth: usize) -> Option<()> {
        let mut i = ws(b, 0);
        'value: loop {
            // A value starts at `i`.
            match *b.get(i)? {
                c @ (b'{' | b'[') => {
                    if self.open.len() >= max_depth {
                        return None;
                    }
                    let at = len32(self.toks.len())?;
                    let kind = if c == b'{' { K_OBJ } else { K_ARR };
                    self.push(kind, 0, 0)?;
                    self.open.push((at, len32(self.keys.len())?));
                    i = ws(b, i + 1);
                    let close = if c == b'{' { b'}' } else { b']' };
                    if b.get(i) == Some(&close) {
                        i += 1;
                        self.close(b, at as usize)?;
                    } else {
                        if c == b'{' {
                            i = self.member_name(b, i)?;
                        }
                        continue 'value;
                    }
                }
                b'"' => i = self.string(b, i)?,
                b't' | b'f' | b'n' => {
                    let (word, kind): (&[u8], u8) = match b.get(i) {
                        Some(b't') => (b"true", K_TRUE),
                        Some(b'f') => (b"false", K_FALSE),
                        _ => (b"null", K_NULL),
                    };
                    if b.get(i..i + word.len()) != Some(word) {
                        return None;
                    }
                    self.push(kind, 0, 0)?;
                    i += word.len();
                }
                _ => {
                    let end = number_end(b, i)?;
                    self.push(K_NUM, i, end - i)?;
                    i = end;
                }
            }
            // After a value: count it in its container, then a comma or the container's end.
            loop {
                i = ws(b, i);
                let Some(&(at, _)) = self.open.last() else {
                    return (i == b.len()).then_some(());
                };
                let tok = self.toks.get_mut(at as usize)?;
                tok.b += 1;
                let is_obj = tok.kind == K_OBJ;
                match (*b.get(i)?, is_obj) {
                    (b',', _) => {
                        i = ws(b, i + 1);
                        if is_obj {
                            i = self.member_name(b, i)?;
                        }
                        continue 'value;
                    }
                    (b'}', true) | (b']', false) => {
                        i += 1;
                        self.close(b, at as usize)?;
                    }
                    _ => return None,
                }
            }
        }
    }

    /// A member name at `i` (after whitespace), the colon and the whitespace before the value.
    fn member_name(&mut self, b: &[u8], i: usize) -> Option<usize> {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let i = self.string(b, i)?;
        self.new_key(b)?;
        let i = ws(b, i);
        if b.get(i) != Some(&b':') {
            return None;
        }
        Some(ws(b, i + 1))
    }

    /// The innermost container (at token `at`) ends here.
    fn close(&mut self, b: &[u8], at: usize) -> Option<()> {
        let (_, keys_from) = self.open.pop()?;
        let end = len32(self.toks.len())?;
        let tok = self.toks.get_mut(at)?;
        tok.a = end;
        if tok.kind == K_OBJ {
            self.close_object(b, keys_from as usize)?;
        }
        Some(())
    }
}

/// The values of a schema's `enum` or `const`, kept as a document (an array of them) and compared
/// with instances by [`Doc::equal`].
#[derive(Debug, Default)]
pub(crate) struct Consts {
    text: String,
    tape: Tape,
}

impl Consts {
    pub(crate) fn new(values: &[serde_json::Value]) -> Consts {
        let mut c = Consts {
            text: serde_json::Value::Array(values.to_vec()).to_string(),
            tape: Tape::default(),
        };
        // A serialized value always tokenizes; if not, nothing equals the empty document.
        if !c.tape.parse(&c.text, usize::MAX) {
            c.text.clear();
        }
        c
    }

    /// Whether one of the values equals value `v` of `doc`.
    pub(crate) fn contain(&self, doc: &Doc<'_>, v: usize) -> bool {
        let own = self.tape.doc(&self.text);
        own.elements(0).any(|e| own.equal(e, doc, v))
    }
}

/// A parsed document: tokens plus the texts they point into. Values are token indices; the root
/// is 0.
#[derive(Clone, Copy)]
pub struct Doc<'t> {
    toks: &'t [Tok],
    body: &'t str,
    text: &'t str,
}

impl<'t> Doc<'t> {
    pub(crate) fn tok(&self, i: usize) -> Tok {
        self.toks.get(i).copied().unwrap_or_default()
    }

    pub(crate) fn kind(&self, i: usize) -> u8 {
        self.tok(i).kind
    }

    /// The text of a string (unescaped) or of a number (as written); empty for other values.
    pub(crate) fn text(&self, i: usize) -> &'t str {
        let t = self.tok(i);
        if t.kind != K_STR && t.kind != K_NUM {
            return "";
        }
        let src = if t.esc { self.text } else { self.body };
        src.get(t.a as usize..(t.a as usize + t.b as usize))
            .unwrap_or("")
    }

    pub(crate) fn str(&self, i: usize) -> Option<&'t str> {
        (self.kind(i) == K_STR).then(|| self.text(i))
    }

    pub(crate) fn num(&self, i: usize) -> Option<&'t str> {
        (self.kind(i) == K_NUM).then(|| self.text(i))
    }

    /// Elements of an array or members of an object.
    pub(crate) fn len(&self, i: usize) -> usize {
        self.tok(i).b as usize
    }

    /// The index after value `i` and everything inside it.
    pub(crate) fn skip(&self, i: usize) -> usize {
        let t = self.tok(i);
        if t.kind == K_ARR || t.kind == K_OBJ {
            (t.a as usize).max(i + 1)
        } else {
            i + 1
        }
    }

    /// The elements of array `i` (none for other values).
    pub(crate) fn elements(&self, i: usize) -> Children<'t> {
        Children {
            doc: *self,
            next: i + 1,
            left: if self.kind(i) == K_ARR {
                self.len(i)
            } else {
                0
            },
        }
    }

    /// The members of object `i` as (name index, value index), in document order.
    pub(crate) fn members(&self, i: usize) -> Members<'t> {
        Members {
            doc: *self,
            next: i + 1,
            left: if self.kind(i) == K_OBJ {
                self.len(i)
            } else {
                0
            },
        }
    }

    /// The value of member `name` of object `i`.
    pub(crate) fn get(&self, i: usize, name: &str) -> Option<usize> {
        self.members(i)
            .find(|&(k, _)| self.text(k) == name)
            .map(|(_, v)| v)
    }

    /// JSON equality as JSON Schema defines it: `1` equals `1.0`; member order is irrelevant.
    pub(crate) fn equal(&self, a: usize, other: &Doc<'_>, b: usize) -> bool {
        let (ka, kb) = (self.kind(a), other.kind(b));
        if ka != kb {
            return false;
        }
        match ka {
            K_NUM => {
                super::decimal::Decimal::parse(self.text(a))
                    == super::decimal::Decimal::parse(other.text(b))
            }
            K_STR => self.text(a) == other.text(b),
            K_ARR => {
                self.len(a) == other.len(b)
                    && self
                        .elements(a)
                        .zip(other.elements(b))
                        .all(|(x, y)| self.equal(x, other, y))
            }
            K_OBJ => {
                self.len(a) == other.len(b)
                    && self.members(a).all(|(k, v)| {
                        other
                            .get(b, self.text(k))
                            .is_some_and(|w| self.equal(v, other, w))
                    })
            }
            _ => true,
        }
    }

    /// A hash consistent with [`Doc::equal`] (not generic: one copy).
    pub(crate) fn hash(&self, i: usize) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let k = self.kind(i);
        h.write_u8(k);
        match k {
            K_NUM => super::decimal::Decimal::parse(self.text(i)).hash(&mut h),
            K_STR => h.write(self.text(i).as_bytes()),
            K_ARR => {
                for e in self.elements(i) {
                    h.write_u64(self.hash(e));
                }
            }
            K_OBJ => {
                // Order-independent: a sum over the members.
                let mut sum = 0u64;
                for (name, v) in self.members(i) {
                    sum = sum.wrapping_add(self.hash(name).rotate_left(7) ^ self.hash(v));
                }
                h.write_u64(sum);
            }
            _ => {}
        }
        h.finish()
    }
}

pub(crate) struct Children<'t> {
    doc: Doc<'t>,
    next: usize,
    left: usize,
}

impl Iterator for Children<'_> {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let i = self.next;
        self.next = self.doc.skip(i);
        Some(i)
    }
}

pub(crate) struct Members<'t> {
    doc: Doc<'t>,
    next: usize,
    left: usize,
}

impl Iterator for Members<'_> {
    type Item = (usize, usize);
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let k = self.next;
        self.next = self.doc.skip(k + 1);
        Some((k, k + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_stops_at_its_first_quote_backslash_or_control_byte() {
        for stop in [b'"', b'\\', 0x00, 0x1f] {
            for at in 0..20 {
                let mut body = b"abcdefgh\xc3\xa9ijklmnop\x7fqrstuvwx".to_vec();
                body[at] = stop;
                assert_eq!(string_stop(&body, 0), at, "{stop} at {at}");
                assert_eq!(string_stop(&body, at), at);
            }
        }
        let clean = "ab \u{e9}\u{1f600} ~\u{7f} 0123456789";
        assert_eq!(string_stop(clean.as_bytes(), 0), clean.len());
    }

    #[test]
    fn tokens_record_lengths_spans_and_unescaped_text() {
        let body = r#" {"a": [1, "x\ty", {}], "b\u0020c": -2.5e3} "#;
        let mut tape = Tape::default();
        assert!(tape.parse(body, 4));
        let doc = tape.doc(body);
        assert_eq!(doc.kind(0), K_OBJ);
        assert_eq!(doc.len(0), 2);
        let a = doc.get(0, "a").unwrap();
        assert_eq!(doc.len(a), 3);
        let items: Vec<usize> = doc.elements(a).collect();
        assert_eq!(doc.num(items[0]), Some("1"));
        assert_eq!(doc.str(items[1]), Some("x\ty"));
        assert_eq!(doc.len(items[2]), 0);
        assert_eq!(doc.num(doc.get(0, "b c").unwrap()), Some("-2.5e3"));
        assert_eq!(doc.skip(0), tape.toks.len());
        assert!(!tape.parse(body, 1), "deeper than 1");
        assert!(!tape.parse(r#"{"a":1,"\u0061":2}"#, 4), "a repeated key");
    }
}
