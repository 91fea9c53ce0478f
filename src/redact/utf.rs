//! UTF-16 and UTF-32 bodies: detected by their byte order mark, or for JSON by the pattern of
//! zero bytes in the first four (RFC 8259 §8.1 requires UTF-8 between systems; RFC 4627 §3 gave
//! the patterns), transcoded to UTF-8 for the scanner, and the scanner's output transcoded back
//! to the body's own encoding, so that a rewritten body stays in its encoding.
//!
//! The UTF-8 side is WTF-8: a lone surrogate code unit travels as its three-byte form and comes
//! back as the same code unit, so UTF-16 is transcoded losslessly (an odd final byte is kept
//! aside and appended as it was); UTF-32 units above U+10FFFF travel in a private six-byte form
//! (lead byte 0xF8, never UTF-8, opaque to the detectors), so UTF-32 is lossless too. Streaming: the decoder keeps at most 3 bytes of an incomplete unit
//! and one pending high surrogate; the encoder at most 5 bytes of an incomplete sequence.

/// A non-UTF-8 Unicode encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Utf {
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
}

impl Utf {
    fn unit(self) -> usize {
        match self {
            Utf::Utf16Le | Utf::Utf16Be => 2,
            Utf::Utf32Le | Utf::Utf32Be => 4,
        }
    }
}

/// The encoding of a body from its first (up to four) bytes, and the length of its byte order
/// mark. Without a mark, the zero-byte patterns are only trusted for JSON (`json`), whose first
/// character is ASCII. A UTF-8 body (with or without its mark) is `None`.
pub fn sniff(head: &[u8], json: bool) -> Option<(Utf, usize)> {
    let b = |i: usize| head.get(i).copied();
    let nz = |i: usize| b(i).is_some_and(|x| x != 0);
    match (b(0), b(1), b(2), b(3)) {
        (Some(0), Some(0), Some(0xFE), Some(0xFF)) => Some((Utf::Utf32Be, 4)),
        (Some(0xFF), Some(0xFE), Some(0), Some(0)) => Some((Utf::Utf32Le, 4)),
        (Some(0xFE), Some(0xFF), ..) => Some((Utf::Utf16Be, 2)),
        (Some(0xFF), Some(0xFE), ..) => Some((Utf::Utf16Le, 2)),
        _ if !json => None,
        (Some(0), Some(0), Some(0), Some(_)) if nz(3) => Some((Utf::Utf32Be, 0)),
        (Some(_), Some(0), Some(0), Some(0)) if nz(0) => Some((Utf::Utf32Le, 0)),
        (Some(0), Some(_), ..) if nz(1) => Some((Utf::Utf16Be, 0)),
        (Some(_), Some(0), ..) if nz(0) => Some((Utf::Utf16Le, 0)),
        _ => None,
    }
}

/// Lead byte of the private six-byte form that carries a UTF-32 unit above U+10FFFF through the
/// scanner (never valid UTF-8; the five bytes after it hold 7 bits each, all non-ASCII).
const RAW_UNIT: u8 = 0xF8;

fn push_wtf8(cp: u32, out: &mut Vec<u8>) {
    // Surrogates included (WTF-8); values above U+10FFFF in the private six-byte form.
    let b = |v: u32| u8::try_from(v & 0xFF).unwrap_or(0);
    if cp > 0x10FFFF {
        out.push(RAW_UNIT);
        for shift in [28, 21, 14, 7, 0] {
            out.push(b(0x80 | ((cp >> shift) & 0x7F)));
        }
    } else if cp < 0x80 {
        out.push(b(cp));
    } else if cp < 0x800 {
        out.extend_from_slice(&[b(0xC0 | (cp >> 6)), b(0x80 | (cp & 0x3F))]);
    } else if cp < 0x10000 {
        out.extend_from_slice(&[
            b(0xE0 | (cp >> 12)),
            b(0x80 | ((cp >> 6) & 0x3F)),
            b(0x80 | (cp & 0x3F)),
        ]);
    } else {
        out.extend_from_slice(&[
            b(0xF0 | (cp >> 18)),
            b(0x80 | ((cp >> 12) & 0x3F)),
            b(0x80 | ((cp >> 6) & 0x3F)),
            b(0x80 | (cp & 0x3F)),
        ]);
    }
}

/// UTF-16/32 → WTF-8, chunk by chunk.
#[derive(Debug)]
pub struct Decoder {
    utf: Utf,
    carry: Vec<u8>,
    pending_hi: Option<u32>,
}

impl Decoder {
    pub fn new(utf: Utf) -> Decoder {
        Decoder {
            utf,
            carry: Vec::new(),
            pending_hi: None,
        }
    }

    fn unit_value(&self, u: &[u8]) -> u32 {
        let v = |i: usize| u32::from(u.get(i).copied().unwrap_or(0));
        match self.utf {
            Utf::Utf16Le => v(0) | v(1) << 8,
            Utf::Utf16Be => v(0) << 8 | v(1),
            Utf::Utf32Le => v(0) | v(1) << 8 | v(2) << 16 | v(3) << 24,
            Utf::Utf32Be => v(0) << 24 | v(1) << 16 | v(2) << 8 | v(3),
        }
    }

    fn unit(&mut self, v: u32, out: &mut Vec<u8>) {
        let is_utf16 = self.utf.unit() == 2;
        if is_utf16 && (0xD800..0xDC00).contains(&v) {
            if let Some(hi) = self.pending_hi.replace(v) {
                push_wtf8(hi, out);
            }
            return;
        }
        if is_utf16 && (0xDC00..0xE000).contains(&v) {
            if let Some(hi) = self.pending_hi.take() {
                push_wtf8(0x10000 + ((hi - 0xD800) << 10) + (v - 0xDC00), out);
                return;
            }
        }
        if let Some(hi) = self.pending_hi.take() {
            push_wtf8(hi, out);
        }
        push_wtf8(v, out);
    }

    /// Decodes `input`; with `end`, flushes a pending surrogate and returns the bytes of an
    /// incomplete final unit (to be appended as they were).
    pub fn push(&mut self, input: &[u8], end: bool, out: &mut Vec<u8>) -> Vec<u8> {
        let n = self.utf.unit();
        let mut rest = input;
        if !self.carry.is_empty() {
            let need = n - self.carry.len();
            let take = need.min(rest.len());
            self.carry
                .extend_from_slice(rest.get(..take).unwrap_or(&[]));
            rest = rest.get(take..).unwrap_or(&[]);
            if self.carry.len() == n {
                let carry = std::mem::take(&mut self.carry);
                let v = self.unit_value(&carry);
                self.unit(v, out);
            }
        }
        let mut chunks = rest.chunks_exact(n);
        for u in &mut chunks {
            let v = self.unit_value(u);
            self.unit(v, out);
        }
        self.carry.extend_from_slice(chunks.remainder());
        if end {
            if let Some(hi) = self.pending_hi.take() {
                push_wtf8(hi, out);
            }
            return std::mem::take(&mut self.carry);
        }
        Vec::new()
    }
}

/// WTF-8 → UTF-16/32 (with the byte order mark first when the body had one), chunk by chunk.
#[derive(Debug)]
pub struct Encoder {
    utf: Utf,
    bom: bool,
    carry: Vec<u8>,
}

impl Encoder {
    pub fn new(utf: Utf, bom: bool) -> Encoder {
        Encoder {
            utf,
            bom,
            carry: Vec::new(),
        }
    }

    fn emit(&self, v: u32, out: &mut Vec<u8>) {
        let b = |s: u32| u8::try_from((v >> s) & 0xFF).unwrap_or(0);
        match self.utf {
            Utf::Utf16Le | Utf::Utf16Be if v >= 0x10000 => {
                let hi = 0xD800 + ((v - 0x10000) >> 10);
                let lo = 0xDC00 + ((v - 0x10000) & 0x3FF);
                self.emit(hi, out);
                self.emit(lo, out);
            }
            Utf::Utf16Le => out.extend_from_slice(&[b(0), b(8)]),
            Utf::Utf16Be => out.extend_from_slice(&[b(8), b(0)]),
            Utf::Utf32Le => out.extend_from_slice(&[b(0), b(8), b(16), b(24)]),
            Utf::Utf32Be => out.extend_from_slice(&[b(24), b(16), b(8), b(0)]),
        }
    }

    /// Encodes `input`; with `end`, an incomplete final sequence becomes U+FFFD.
    pub fn push(&mut self, input: &[u8], end: bool, out: &mut Vec<u8>) {
        if std::mem::take(&mut self.bom) {
            self.emit(0xFEFF, out);
        }
        let mut data = std::mem::take(&mut self.carry);
        data.extend_from_slice(input);
        let mut i = 0;
        while let Some(&b0) = data.get(i) {
            let n = match b0 {
                0x00..=0x7F => 1,
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                0xF0..=0xF7 => 4,
                RAW_UNIT => 6,
                _ => {
                    self.emit(0xFFFD, out);
                    i += 1;
                    continue;
                }
            };
            let Some(seq) = data.get(i..i + n) else {
                break;
            };
            let mut v = if n == 1 {
                u32::from(b0)
            } else if n == 6 {
                0
            } else {
                u32::from(b0) & (0x7F >> n)
            };
            for &c in seq.iter().skip(1) {
                v = if n == 6 {
                    v << 7 | (u32::from(c) & 0x7F)
                } else {
                    v << 6 | (u32::from(c) & 0x3F)
                };
            }
            self.emit(v, out);
            i += n;
        }
        let rest = data.get(i..).unwrap_or(&[]).to_vec();
        if end {
            if !rest.is_empty() {
                self.emit(0xFFFD, out);
            }
        } else {
            self.carry = rest;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utf16le(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    #[test]
    fn boms_and_json_zero_patterns_name_the_encoding() {
        assert_eq!(sniff(b"\xff\xfe{\x00", false), Some((Utf::Utf16Le, 2)));
        assert_eq!(sniff(b"\xfe\xff\x00{", false), Some((Utf::Utf16Be, 2)));
        assert_eq!(sniff(b"\x00\x00\xfe\xff", false), Some((Utf::Utf32Be, 4)));
        assert_eq!(sniff(b"{\x00\"\x00", true), Some((Utf::Utf16Le, 0)));
        assert_eq!(sniff(b"\x00{\x00\"", true), Some((Utf::Utf16Be, 0)));
        assert_eq!(sniff(b"{\x00\x00\x00", true), Some((Utf::Utf32Le, 0)));
        assert_eq!(sniff(b"{\x00\"\x00", false), None);
        assert_eq!(sniff(b"{\"a\"", true), None);
        assert_eq!(sniff(b"\xef\xbb\xbf{", true), None);
    }

    #[test]
    fn utf16_round_trips_losslessly_for_any_chunking_even_with_lone_surrogates() {
        let mut body = utf16le("{\"a\":\"x😀é\"}");
        body.extend_from_slice(&[0x00, 0xD8, 0x41, 0x00, 0x00, 0xDC, 0x7B]); // lone hi, 'A', lone lo, odd byte
        for cut in 0..=body.len() {
            let mut dec = Decoder::new(Utf::Utf16Le);
            let mut mid = Vec::new();
            dec.push(&body[..cut], false, &mut mid);
            let tail = dec.push(&body[cut..], true, &mut mid);
            let mut enc = Encoder::new(Utf::Utf16Le, false);
            let mut back = Vec::new();
            let k = cut.min(mid.len());
            enc.push(&mid[..k], false, &mut back);
            enc.push(&mid[k..], true, &mut back);
            back.extend_from_slice(&tail);
            assert_eq!(back, body, "cut {cut}");
        }
    }

    #[test]
    fn utf32_units_beyond_unicode_round_trip() {
        let body = [
            0u8, 0, 0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, b'{', 0, 0, 0xD8, 0,
        ];
        let mut dec = Decoder::new(Utf::Utf32Be);
        let mut mid = Vec::new();
        let tail = dec.push(&body[4..], true, &mut mid);
        let mut enc = Encoder::new(Utf::Utf32Be, true);
        let mut back = Vec::new();
        enc.push(&mid, true, &mut back);
        back.extend_from_slice(&tail);
        assert_eq!(back, body);
    }

    #[test]
    fn the_byte_order_mark_is_written_back_first() {
        let mut enc = Encoder::new(Utf::Utf16Be, true);
        let mut out = Vec::new();
        enc.push(b"{}", true, &mut out);
        assert_eq!(out, b"\xfe\xff\x00{\x00}");
    }
}
