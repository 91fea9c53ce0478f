//! What replaces a match: a fixed token (`[REDACTED:card]`), the card with all but its last four
//! digits starred (`**** **** **** 1111`, separators kept, other classes fall back to the token),
//! or a keyed hash (`[REDACTED:email:5f0c1e2d3a4b6c7d]`: the first 8 bytes of
//! HMAC-SHA256(key, canonical value) in hex), so that equal values stay joinable across
//! responses without being recoverable by anyone who lacks the key.
//!
//! Every mask is printable ASCII without `"`, `\`, `&`, `=` or `%`: it is valid inside a JSON
//! string, a form value and XML text as it stands.

use sha2::{Digest, Sha256};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaskStyle {
    Token,
    Last4,
    Hash,
}

/// HMAC-SHA256 with the key absorbed once at configuration time (RFC 2104).
#[derive(Clone)]
pub(crate) struct HmacKey {
    inner: Sha256,
    outer: Sha256,
}

impl std::fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HmacKey(..)")
    }
}

impl HmacKey {
    pub(crate) fn new(key: &[u8]) -> HmacKey {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            for (slot, b) in block.iter_mut().zip(Sha256::digest(key).iter()) {
                *slot = *b;
            }
        } else {
            for (slot, b) in block.iter_mut().zip(key) {
                *slot = *b;
            }
        }
        let pad = |x: u8| -> Sha256 {
            let mut h = Sha256::new();
            let padded: Vec<u8> = block.iter().map(|b| b ^ x).collect();
            h.update(&padded);
            h
        };
        HmacKey {
            inner: pad(0x36),
            outer: pad(0x5c),
        }
    }

    pub(crate) fn start(&self) -> Sha256 {
        self.inner.clone()
    }

    pub(crate) fn finish(&self, inner: Sha256) -> [u8; 32] {
        let mut outer = self.outer.clone();
        outer.update(inner.finalize());
        outer.finalize().into()
    }

    pub(crate) fn mac(&self, data: &[u8]) -> [u8; 32] {
        let mut h = self.start();
        h.update(data);
        self.finish(h)
    }
}

/// How a class's values are canonicalised before hashing, so that `4111-1111-1111-1111` and
/// `4111111111111111` (or `A@B.COM` and `a@b.com`) hash alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Canon {
    /// Letters and digits only, upper case (cards, IBANs, SSNs, phone numbers).
    Alnum,
    /// ASCII lower case (emails).
    Lower,
    /// As written.
    Raw,
}

fn canonical(canon: Canon, value: &[u8]) -> Vec<u8> {
    match canon {
        Canon::Alnum => value
            .iter()
            .filter(|b| b.is_ascii_alphanumeric())
            .map(u8::to_ascii_uppercase)
            .collect(),
        Canon::Lower => value.iter().map(u8::to_ascii_lowercase).collect(),
        Canon::Raw => value.to_vec(),
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn push_token(out: &mut Vec<u8>, label: &str, mac: Option<&[u8; 32]>) {
    out.extend_from_slice(b"[REDACTED:");
    out.extend_from_slice(label.as_bytes());
    if let Some(mac) = mac {
        out.push(b':');
        for b in mac.iter().take(8) {
            out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
            out.push(HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0'));
        }
    }
    out.push(b']');
}

/// How one match is written.
pub(crate) struct MaskSpec<'a> {
    pub style: MaskStyle,
    pub key: Option<&'a HmacKey>,
    pub label: &'a str,
    pub canon: Canon,
    /// Card numbers may keep their last four digits.
    pub is_card: bool,
    /// Wrap the mask in quotes (a JSON number replaced by a string).
    pub quote: bool,
}

/// Appends the mask for `value` (the matched bytes) to `out`.
pub(crate) fn render(spec: &MaskSpec<'_>, value: &[u8], out: &mut Vec<u8>) {
    if spec.quote {
        out.push(b'"');
    }
    match (spec.style, spec.key) {
        // Only a card spelled in ASCII digits and separators keeps its shape: an escaped,
        // percent-encoded or Unicode spelling would keep encoded digits (and escapes) around
        // the stars, so it gets the token.
        (MaskStyle::Last4, _)
            if spec.is_card
                && value
                    .iter()
                    .all(|b| b.is_ascii_digit() || b" -./+".contains(b)) =>
        {
            let digits = value.iter().filter(|b| b.is_ascii_digit()).count();
            let mut seen = 0;
            for b in value {
                if b.is_ascii_digit() {
                    seen += 1;
                    out.push(if seen + 4 > digits { *b } else { b'*' });
                } else {
                    out.push(*b);
                }
            }
        }
        (MaskStyle::Hash, Some(key)) => {
            let mac = key.mac(&canonical(spec.canon, value));
            push_token(out, spec.label, Some(&mac));
        }
        _ => push_token(out, spec.label, None),
    }
    if spec.quote {
        out.push(b'"');
    }
}

/// Appends the mask for a value that was hashed incrementally while it was dropped
/// (a field-rule value or a private-key block, whatever its length).
pub(crate) fn render_streamed(spec: &MaskSpec<'_>, mac: Option<&[u8; 32]>, out: &mut Vec<u8>) {
    if spec.quote {
        out.push(b'"');
    }
    let mac = if spec.style == MaskStyle::Hash {
        mac
    } else {
        None
    };
    push_token(out, spec.label, mac);
    if spec.quote {
        out.push(b'"');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let key = HmacKey::new(b"Jefe");
        assert_eq!(
            hex(&key.mac(b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn hmac_with_a_key_longer_than_a_block_matches_rfc_4231_test_case_6() {
        let key = HmacKey::new(&[0xaa; 131]);
        assert_eq!(
            hex(&key.mac(b"Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    fn spec(style: MaskStyle, key: Option<&HmacKey>) -> MaskSpec<'_> {
        MaskSpec {
            style,
            key,
            label: "card",
            canon: Canon::Alnum,
            is_card: true,
            quote: false,
        }
    }

    #[test]
    fn last_four_of_an_encoded_spelling_is_the_token() {
        for raw in [
            &b"\\u0034111111111111111"[..],
            "４１１１１１１１１１１１１１１１".as_bytes(),
            b"4111%201111%201111%201111",
        ] {
            let mut out = Vec::new();
            render(&spec(MaskStyle::Last4, None), raw, &mut out);
            assert!(
                out.starts_with(b"[REDACTED"),
                "{}",
                String::from_utf8_lossy(&out)
            );
        }
    }

    #[test]
    fn last_four_keeps_separators_and_the_last_four_digits() {
        let mut out = Vec::new();
        render(
            &spec(MaskStyle::Last4, None),
            b"4111-1111-1111-1234",
            &mut out,
        );
        assert_eq!(out, b"****-****-****-1234");
    }

    #[test]
    fn equal_cards_written_differently_hash_alike() {
        let key = HmacKey::new(b"0123456789abcdef");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        render(
            &spec(MaskStyle::Hash, Some(&key)),
            b"4111 1111 1111 1111",
            &mut a,
        );
        render(
            &spec(MaskStyle::Hash, Some(&key)),
            b"4111111111111111",
            &mut b,
        );
        assert_eq!(a, b);
        assert!(a.starts_with(b"[REDACTED:card:"));
        assert_eq!(a.len(), "[REDACTED:card:]".len() + 16);
    }
}
