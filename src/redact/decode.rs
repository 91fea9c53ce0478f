//! The receiver's view of a candidate: decodes what the body's syntax defines and folds the
//! Unicode spellings users type onto ASCII, so that the detectors (which read ASCII) see a value
//! the way the receiver will, while a match still maps back to the original bytes.
//!
//! [`normalize`] reads raw bytes from a candidate position and writes one ASCII byte per decoded
//! character, recording for each the raw offset just after it. A detector's match length `n` on
//! the view is then `ends[n - 1]` raw bytes: the rewrite replaces exactly the bytes of the
//! original encoding that carry the value (whole escape sequences, whole UTF-8 characters).
//!
//! Decoded per body kind (see `docs/detectors.md`):
//! - JSON strings: `\uXXXX` (surrogate pairs joined), `\/`, `\\`, `\"`, `\b \f \n \r \t`.
//! - Form bodies: `%XX` (multi-byte UTF-8 spelled as `%E2%80%93` or mixed with raw bytes) and `+`.
//! - XML: `&#NNN;`, `&#xHH;`, `&amp; &lt; &gt; &quot; &apos; &nbsp;`.
//! - Everywhere: UTF-8 characters, folded as below; anything else becomes a non-word byte.
//!
//! Folding: decimal digits of any script (`０`-`９`, Arabic-Indic, Devanagari, ...) → `0`-`9`;
//! full-width ASCII (`Ａ`, `＠`, `．`) → ASCII; space-like characters (NBSP, U+2000-U+200A, narrow
//! NBSP, U+205F, ideographic space) → space; dashes (U+2010-U+2015, minus sign, small and
//! full-width hyphen-minus) → `-`; zero-width characters (U+200B-U+200D, U+2060, U+FEFF, soft
//! hyphen) are dropped (they join the bytes of their neighbours).

/// How the raw bytes spell characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enc {
    /// Inside a JSON string: stops at an unescaped `"`.
    Json,
    /// A form field: stops at `&` (and at `=` in names).
    Form,
    /// Plain text: stops at a line feed.
    Text,
    /// XML scanned as text, with character references: stops at a line feed.
    Xml,
}

/// Stand-in for a character with no ASCII meaning: not a word byte, not a separator.
pub(crate) const OPAQUE: u8 = 0x7f;

/// The decoded view of a candidate.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub bytes: Vec<u8>,
    /// `ends[k]`: raw offset (from the candidate) just after the character of `bytes[k]`.
    pub ends: Vec<usize>,
}

impl View {
    /// Raw length of the first `n` view bytes.
    pub fn raw_len(&self, n: usize) -> Option<usize> {
        n.checked_sub(1).and_then(|k| self.ends.get(k)).copied()
    }
}

/// Zero digits of the decimal digit blocks folded onto `0`-`9` (each block is ten code points).
const DIGIT_ZEROS: &[u32] = &[
    0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6, 0x0D66,
    0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80, 0x1A90,
    0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xAA50, 0xABF0, 0xFF10,
    0x104A0, 0x1D7CE, 0x1D7D8, 0x1D7E2, 0x1D7EC, 0x1D7F6,
];

/// The ASCII byte a character folds to; `Some(None)` for characters that vanish (zero-width);
/// `None` for characters with no ASCII meaning.
pub(crate) fn fold(c: char) -> Option<Option<u8>> {
    let u = u32::from(c);
    if u < 0x80 {
        return Some(u8::try_from(u).ok());
    }
    for &z in DIGIT_ZEROS {
        if (z..z + 10).contains(&u) {
            return Some(u8::try_from(u - z).ok().map(|d| b'0' + d));
        }
    }
    match u {
        0xFF01..=0xFF5E => Some(u8::try_from(u - 0xFEE0).ok()),
        0x00A0 | 0x1680 | 0x2000..=0x200A | 0x202F | 0x205F | 0x3000 => Some(Some(b' ')),
        0x2010..=0x2015 | 0x2212 | 0xFE58 | 0xFE63 => Some(Some(b'-')),
        0x200B..=0x200D | 0x2060 | 0xFEFF | 0x00AD => Some(None),
        _ => None,
    }
}

fn hex(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

fn hex4(w: &[u8], at: usize) -> Option<u32> {
    let mut v = 0u32;
    for k in 0..4 {
        v = v * 16 + hex(*w.get(at + k)?)?;
    }
    Some(v)
}

/// One UTF-8 character from raw bytes.
fn utf8_char(w: &[u8]) -> Option<(char, usize)> {
    let b0 = *w.first()?;
    let n = match b0 {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let s = std::str::from_utf8(w.get(..n)?).ok()?;
    s.chars().next().map(|c| (c, n))
}

/// A percent-encoded byte (`%41`) at the start of `w`.
fn pct(w: &[u8]) -> Option<u8> {
    if w.first() != Some(&b'%') {
        return None;
    }
    let v = hex(*w.get(1)?)? * 16 + hex(*w.get(2)?)?;
    u8::try_from(v).ok()
}

/// One character of a form field: `%XX` sequences (UTF-8 across several of them), `+` as space.
fn form_char(w: &[u8]) -> Option<(char, usize)> {
    let first = *w.first()?;
    if first == b'+' {
        return Some((' ', 1));
    }
    if first != b'%' {
        return utf8_char(w);
    }
    let b0 = pct(w)?;
    let n = match b0 {
        0x00..=0x7F => return Some((char::from(b0), 3)),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return None,
    };
    let mut bytes = [b0, 0, 0, 0];
    let mut raw = 3;
    for slot in bytes.iter_mut().take(n).skip(1) {
        let rest = w.get(raw..)?;
        if let Some(b) = pct(rest) {
            *slot = b;
            raw += 3;
        } else {
            *slot = *rest.first()?;
            raw += 1;
        }
    }
    let s = std::str::from_utf8(bytes.get(..n)?).ok()?;
    s.chars().next().map(|c| (c, raw))
}

/// One character inside a JSON string.
fn json_char(w: &[u8]) -> Option<(char, usize)> {
    if w.first() != Some(&b'\\') {
        return utf8_char(w);
    }
    let e = *w.get(1)?;
    let c = match e {
        b'u' => {
            let hi = hex4(w, 2)?;
            if (0xD800..0xDC00).contains(&hi) {
                if w.get(6) == Some(&b'\\') && w.get(7) == Some(&b'u') {
                    let lo = hex4(w, 8)?;
                    if (0xDC00..0xE000).contains(&lo) {
                        let cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                        return char::from_u32(cp).map(|c| (c, 12));
                    }
                }
                return Some(('\u{FFFD}', 6));
            }
            return Some((char::from_u32(hi).unwrap_or('\u{FFFD}'), 6));
        }
        b'n' => '\n',
        b't' => '\t',
        b'r' => '\r',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        other => char::from(other),
    };
    Some((c, 2))
}

/// One character of XML text: a character reference or a predefined entity, else UTF-8.
fn xml_char(w: &[u8]) -> Option<(char, usize)> {
    if w.first() != Some(&b'&') {
        return utf8_char(w);
    }
    let semi = w.iter().take(12).position(|b| *b == b';')?;
    let name = w.get(1..semi)?;
    let c = match name {
        b"amp" => '&',
        b"lt" => '<',
        b"gt" => '>',
        b"quot" => '"',
        b"apos" => '\'',
        b"nbsp" => '\u{A0}',
        [b'#', b'x' | b'X', h @ ..] => {
            let mut v = 0u32;
            for b in h {
                v = v.checked_mul(16)?.checked_add(hex(*b)?)?;
            }
            char::from_u32(v)?
        }
        [b'#', d @ ..] => {
            let mut v = 0u32;
            for b in d {
                v = v
                    .checked_mul(10)?
                    .checked_add(char::from(*b).to_digit(10)?)?;
            }
            char::from_u32(v)?
        }
        _ => return None,
    };
    Some((c, semi + 1))
}

/// One character at the start of `w` as the receiver reads it, and its raw length. `None` at a
/// byte that ends the unit (`"` in JSON, `&` in forms, line feed in text) or the end of `w`.
pub(crate) fn next_char(w: &[u8], enc: Enc) -> Option<(char, usize)> {
    let b = *w.first()?;
    match enc {
        Enc::Json => {
            if b == b'"' {
                return None;
            }
            json_char(w).or(Some(('\u{FFFD}', 1)))
        }
        Enc::Form => {
            if b == b'&' {
                return None;
            }
            form_char(w).or(Some(('\u{FFFD}', 1)))
        }
        Enc::Text | Enc::Xml => {
            if b == b'\n' {
                return None;
            }
            let c = if enc == Enc::Xml { xml_char(w) } else { None };
            c.or_else(|| utf8_char(w)).or(Some(('\u{FFFD}', 1)))
        }
    }
}

/// The folded byte of the first character at `w` (`None` when it vanishes or ends the unit) and
/// its raw length.
pub(crate) fn first_folded(w: &[u8], enc: Enc) -> Option<(Option<u8>, usize)> {
    let (c, n) = next_char(w, enc)?;
    Some((fold(c).unwrap_or(Some(OPAQUE)), n))
}

// Probe classes (bits) for `needs_view`.
const P_GO: u8 = 1; // digits and separators: the spelling goes on
const P_LETTER: u8 = 2; // letters: go on when letters may follow
const P_ANY: u8 = 4; // non-ASCII: always needs the view
const P_JSON: u8 = 8; // `\`
const P_FORM: u8 = 16; // `%`, `+`
const P_XML: u8 = 32; // `&`

#[allow(clippy::indexing_slicing)] // const evaluation: 256 slots, byte indices
const fn probe_table() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        t[b] = if c >= 0x80 {
            P_ANY
        } else if c.is_ascii_digit() {
            P_GO
        } else if c.is_ascii_alphabetic() {
            P_LETTER
        } else {
            match c {
                b' ' | b'-' | b'.' | b'/' | b'(' | b')' => P_GO,
                b'+' => P_GO | P_FORM,
                b'%' => P_FORM,
                b'\\' => P_JSON,
                b'&' => P_XML,
                _ => 0,
            }
        };
        b += 1;
    }
    t
}

const PROBE: [u8; 256] = probe_table();

/// Whether the bytes at a candidate need the decoded view: an escape, a percent sign, a `+` in
/// a form, a reference in XML, or a non-ASCII byte before the candidate's plain ASCII spelling
/// ends (at most `probe` bytes; the probe stops at the first ASCII byte that no detector grammar
/// continues with: anything but digits and `-./()+` and space, and letters unless `letters`).
pub(crate) fn needs_view(w: &[u8], enc: Enc, probe: usize, letters: bool) -> bool {
    let trigger = P_ANY
        | match enc {
            Enc::Json => P_JSON,
            Enc::Form => P_FORM,
            Enc::Xml => P_XML,
            Enc::Text => 0,
        };
    let go = if letters { P_GO | P_LETTER } else { P_GO };
    for &b in w.iter().take(probe) {
        let c = PROBE.get(usize::from(b)).copied().unwrap_or(0);
        if c & trigger != 0 {
            return true;
        }
        if c & go == 0 {
            return false;
        }
    }
    false
}

/// Whether any byte of `w` is encoded or not ASCII (a full scan, for short regions).
pub(crate) fn has_encoded(w: &[u8], enc: Enc) -> bool {
    w.iter().any(|&b| {
        b >= 0x80
            || matches!(
                (enc, b),
                (Enc::Json, b'\\') | (Enc::Form, b'%' | b'+') | (Enc::Xml, b'&')
            )
    })
}

/// Fills `view` with at most `max` folded bytes decoded from `w`.
pub(crate) fn normalize(w: &[u8], enc: Enc, max: usize, view: &mut View) {
    view.bytes.clear();
    view.ends.clear();
    let mut pos = 0;
    while view.bytes.len() < max {
        let Some((c, n)) = next_char(w.get(pos..).unwrap_or(&[]), enc) else {
            break;
        };
        pos += n;
        match fold(c) {
            Some(Some(b)) => {
                view.bytes.push(b);
                view.ends.push(pos);
            }
            Some(None) => {
                // Zero-width: the previous character's raw span grows over it.
                if let Some(last) = view.ends.last_mut() {
                    *last = pos;
                } else {
                    // Leading zero-width characters belong to nothing: keep an opaque byte.
                    view.bytes.push(OPAQUE);
                    view.ends.push(pos);
                }
            }
            None => {
                view.bytes.push(OPAQUE);
                view.ends.push(pos);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(w: &[u8], enc: Enc) -> (String, Vec<usize>) {
        let mut v = View::default();
        normalize(w, enc, 64, &mut v);
        (String::from_utf8(v.bytes).unwrap(), v.ends)
    }

    #[test]
    fn json_escapes_and_surrogate_pairs_decode_to_their_characters() {
        let (s, ends) = view(br#"\u0034111\/\ud83d\ude00x""#, Enc::Json);
        assert_eq!(s, "4111/\u{7f}x");
        assert_eq!(ends, vec![6, 7, 8, 9, 11, 23, 24]);
    }

    #[test]
    fn form_percent_encoding_and_plus_decode_including_multibyte_utf8() {
        let (s, _) = view(b"%34111+1111%201111%E2%80%931111&x", Enc::Form);
        assert_eq!(s, "4111 1111 1111-1111");
    }

    #[test]
    fn xml_references_decode() {
        let (s, _) = view(b"&#52;111&#x20;1111&nbsp;x&amp;y", Enc::Xml);
        assert_eq!(s, "4111 1111 x&y");
    }

    #[test]
    fn unicode_digits_spaces_and_dashes_fold_to_ascii() {
        let (s, _) = view(
            "４１１１\u{a0}١١١١\u{2009}1111\u{2013}1111".as_bytes(),
            Enc::Text,
        );
        assert_eq!(s, "4111 1111 1111-1111");
    }

    #[test]
    fn zero_width_characters_vanish_into_their_neighbour() {
        let (s, ends) = view("41\u{200b}11".as_bytes(), Enc::Text);
        assert_eq!(s, "4111");
        assert_eq!(ends, vec![1, 5, 6, 7]);
    }

    #[test]
    fn each_unit_stops_at_its_terminator() {
        assert_eq!(view(b"12\"34", Enc::Json).0, "12");
        assert_eq!(view(b"12&34", Enc::Form).0, "12");
        assert_eq!(view(b"12\n34", Enc::Text).0, "12");
    }
}
