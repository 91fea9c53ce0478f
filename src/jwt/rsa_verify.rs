//! RSA signature verification (RSASSA-PKCS1-v1_5 and RSASSA-PSS, RFC 8017), purpose-built for the public-key
//! operation of a JWS check.
//!
//! Why not the `rsa` crate: its general big-number arithmetic costs ~850 µs per RS256 check inside Envoy's V8
//! wasm runtime. Here everything that depends on the key alone is computed once, when the key is parsed
//! (configuration time): the modulus as 32-bit limbs (wasm has a native 64-bit multiply but no 128-bit one, so
//! 32-bit limbs with 64-bit products are the natural size), the Montgomery constant `-n⁻¹ mod 2³²` and
//! `R² mod n`. A verification is then `s < n`, `sᵉ mod n` by Montgomery multiplication (18 products for
//! e = 65537, 3 for e = 3) and a comparison. The squarings go through the general product on purpose: a
//! separate squaring (cross products once, then a Montgomery reduction: 25% fewer limb products) was 15-25%
//! slower inside V8 (jwt suite, same run), its extra passes over memory costing more than the products saved.
//!
//! - PKCS#1 v1.5 (`RS*`): the whole encoded block `00 01 FF..FF 00 || DigestInfo || H(m)` is built from the
//!   expected hash and compared with the recovered block byte for byte; the padding is never parsed, which
//!   rules out the Bleichenbacher-style parsing mistakes (short padding, trailing garbage, lenient ASN.1).
//! - PSS (`PS*`): EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with MGF1 over the same hash and a salt as long as the
//!   hash, as JWS requires (RFC 7518 §3.5).
//!
//! Verification only handles public values, so nothing here needs to be constant-time; it does need to be
//! correct, and is tested against the `rsa` crate on random keys and signatures, and against every RSA vector
//! of the conformance suites.
//!
//! Memory: a key holds two vectors of at most [`MAX_LIMBS`] limbs; a verification uses fixed stack buffers
//! (a few KiB) plus one vector of the modulus length for the encoded message.

use sha2::digest::Digest;
use sha2::{Sha256, Sha384, Sha512};

/// Largest modulus accepted, in bits (the `rsa` crate's limit, kept for the same behaviour).
pub const MAX_BITS: usize = 4096;
/// Limbs of the largest modulus.
const MAX_LIMBS: usize = MAX_BITS / 32;

type Limbs = [u32; MAX_LIMBS];

/// The digest of a JWS RSA algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// The padding of a JWS RSA algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// RSASSA-PKCS1-v1_5 (`RS256`, `RS384`, `RS512`).
    Pkcs1v15,
    /// RSASSA-PSS with MGF1 and a salt as long as the hash (`PS256`, `PS384`, `PS512`).
    Pss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exponent {
    Three,
    F4,
}

/// An RSA public key prepared for verification.
#[derive(Clone)]
pub struct RsaKey {
    /// Modulus, little-endian 32-bit limbs, no zero top limb.
    n: Vec<u32>,
    /// `R² mod n` with `R = 2^(32 * n.len())`, little-endian limbs, `n.len()` of them.
    rr: Vec<u32>,
    /// `-n⁻¹ mod 2³²`.
    n0_inv: u32,
    e: Exponent,
    /// Bit length of the modulus.
    bits: usize,
}

impl PartialEq for RsaKey {
    /// The same public key: modulus and exponent (the rest is derived from them).
    fn eq(&self, other: &RsaKey) -> bool {
        self.n == other.n && self.e == other.e
    }
}

impl Eq for RsaKey {}

/// Why a modulus and exponent are not a key this module verifies with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    /// The exponent is neither 3 nor 65537.
    Exponent,
    /// The modulus is longer than [`MAX_BITS`].
    TooLarge,
    /// The modulus is even, or not larger than the exponent.
    Modulus,
}

impl RsaKey {
    /// A key from the big-endian modulus and public exponent (leading zero bytes allowed).
    pub fn new(n: &[u8], e: &[u8]) -> Result<RsaKey, KeyError> {
        let n = strip_zeros(n);
        let e = match strip_zeros(e) {
            [0x03] => Exponent::Three,
            [0x01, 0x00, 0x01] => Exponent::F4,
            _ => return Err(KeyError::Exponent),
        };
        let bits = bit_length(n);
        if bits > MAX_BITS {
            return Err(KeyError::TooLarge);
        }
        // Odd and larger than 65537 (also rules out an empty modulus).
        if bits <= 17 || n.last().is_none_or(|b| b & 1 == 0) {
            return Err(KeyError::Modulus);
        }
        let limbs = bits.div_ceil(32);
        let n = limbs_from_be(n, limbs);
        let n0 = *n.first().ok_or(KeyError::Modulus)?;
        let n0_inv = neg_inverse(n0);
        let rr = r_squared(&n);
        Ok(RsaKey {
            n,
            rr,
            n0_inv,
            e,
            bits,
        })
    }

    /// Length of the modulus (and of every signature) in bytes.
    pub fn size(&self) -> usize {
        self.bits.div_ceil(8)
    }

    /// Whether `signature` is a valid RSA signature of `message` with this hash and padding. A signature
    /// whose length is not the modulus length, or whose value is not below the modulus, is `false`.
    pub fn verify(&self, hash: Hash, padding: Padding, message: &[u8], signature: &[u8]) -> bool {
        let Some(em) = self.public_op(signature) else {
            return false;
        };
        match (padding, hash) {
            (Padding::Pkcs1v15, Hash::Sha256) => {
                pkcs1v15_matches(&em, SHA256_PREFIX, &Sha256::digest(message))
            }
            (Padding::Pkcs1v15, Hash::Sha384) => {
                pkcs1v15_matches(&em, SHA384_PREFIX, &Sha384::digest(message))
            }
            (Padding::Pkcs1v15, Hash::Sha512) => {
                pkcs1v15_matches(&em, SHA512_PREFIX, &Sha512::digest(message))
            }
            (Padding::Pss, Hash::Sha256) => {
                pss_matches::<Sha256>(em, self.bits, &Sha256::digest(message))
            }
            (Padding::Pss, Hash::Sha384) => {
                pss_matches::<Sha384>(em, self.bits, &Sha384::digest(message))
            }
            (Padding::Pss, Hash::Sha512) => {
                pss_matches::<Sha512>(em, self.bits, &Sha512::digest(message))
            }
        }
    }

    /// `sᵉ mod n` as `size()` big-endian bytes, or None when the signature is not `size()` bytes or `s ≥ n`.
    fn public_op(&self, signature: &[u8]) -> Option<Vec<u8>> {
        if signature.len() != self.size() {
            return None;
        }
        let len = self.n.len();
        let mut s: Limbs = [0; MAX_LIMBS];
        let s = s.get_mut(..len)?;
        be_into_limbs(signature, s);
        if !less_than(s, &self.n) {
            return None;
        }
        let mut a: Limbs = [0; MAX_LIMBS];
        let mut b: Limbs = [0; MAX_LIMBS];
        let a = a.get_mut(..len)?;
        let b = b.get_mut(..len)?;
        // a = s·R mod n (Montgomery form).
        self.mont_mul(s, &self.rr, a);
        match self.e {
            Exponent::Three => {
                // b = s²·R; a = s²·R · s · R⁻¹ = s³.
                self.mont_mul(a, a, b);
                self.mont_mul(b, s, a);
            }
            Exponent::F4 => {
                // 16 squarings: s^(2^16)·R, then one product with the plain s leaves Montgomery form.
                for _ in 0..8 {
                    self.mont_mul(a, a, b);
                    self.mont_mul(b, b, a);
                }
                self.mont_mul(a, s, b);
                a.copy_from_slice(b);
            }
        }
        Some(limbs_to_be(a, self.size()))
    }

    /// `out = a·b·R⁻¹ mod n`: [`mont_mul`] with this key's modulus.
    fn mont_mul(&self, a: &[u32], b: &[u32], out: &mut [u32]) {
        mont_mul(&self.n, self.n0_inv, a, b, out);
    }
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey")
            .field("bits", &self.bits)
            .field("e", &self.e)
            .finish_non_exhaustive()
    }
}

/// `out = a·b·R⁻¹ mod n` (coarsely integrated operand scanning) with `R = 2^(32·len)` and `n0_inv = -n⁻¹ mod
/// 2³²`, for `a, b < n`; the result is fully reduced (`< n`). All slices have the modulus' limb count. Also the
/// field and scalar product of the ECDSA verifier (`super::ec_verify`).
pub(super) fn mont_mul(n: &[u32], n0_inv: u32, a: &[u32], b: &[u32], out: &mut [u32]) {
    let (Some((&a0, a_rest)), Some((&n0, n_rest))) = (a.split_first(), n.split_first()) else {
        return;
    };
    let a0 = u64::from(a0);
    let n0 = u64::from(n0);
    out.fill(0);
    // The running total is `out` (low limbs) plus `top` (one more limb, 0 or 1): it stays below 2n.
    let mut top: u64 = 0;
    for &bi in b {
        let bi = u64::from(bi);
        let Some((t0, t_rest)) = out.split_first_mut() else {
            return;
        };
        // First limb: choose m so that the lowest limb of t + a·bᵢ + m·n is zero, then shift down a limb.
        let x = u64::from(*t0) + a0 * bi;
        let m = u64::from((x as u32).wrapping_mul(n0_inv));
        let y = (x & 0xffff_ffff) + m * n0;
        let mut c1 = x >> 32;
        let mut c2 = y >> 32;
        let mut prev = t0;
        for ((tj, &aj), &nj) in t_rest.iter_mut().zip(a_rest).zip(n_rest) {
            // Neither sum can overflow: (2³²-1)² + 2·(2³²-1) = 2⁶⁴-1.
            let x = u64::from(*tj) + u64::from(aj) * bi + c1;
            let y = (x & 0xffff_ffff) + u64::from(nj) * m + c2;
            *prev = y as u32;
            c1 = x >> 32;
            c2 = y >> 32;
            prev = tj;
        }
        let sum = top + c1 + c2;
        *prev = sum as u32;
        top = sum >> 32;
    }
    if top != 0 || !less_than(out, n) {
        sub_in_place(out, n);
    }
}

// DigestInfo prefixes (RFC 8017 §9.2, note 1): SEQUENCE { AlgorithmIdentifier { OID, NULL }, OCTET STRING }.
const SHA256_PREFIX: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
const SHA384_PREFIX: &[u8] = &[
    0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05,
    0x00, 0x04, 0x30,
];
const SHA512_PREFIX: &[u8] = &[
    0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03, 0x05,
    0x00, 0x04, 0x40,
];

/// Whether `em` is exactly `00 01 FF..FF 00 || prefix || hash` (at least 8 bytes of FF, RFC 8017 §9.2).
fn pkcs1v15_matches(em: &[u8], prefix: &[u8], hash: &[u8]) -> bool {
    let t_len = prefix.len() + hash.len();
    let Some(ps_len) = em.len().checked_sub(t_len + 3) else {
        return false;
    };
    if ps_len < 8 {
        return false;
    }
    let expected = [0x00u8, 0x01]
        .iter()
        .chain(std::iter::repeat_n(&0xffu8, ps_len))
        .chain(std::iter::once(&0x00u8))
        .chain(prefix)
        .chain(hash);
    em.iter().eq(expected)
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2) with MGF1(`D`) and a salt of the hash length; `em` is the recovered
/// message representative as modulus-length bytes, `mod_bits` the modulus' bit length.
fn pss_matches<D: Digest>(mut em: Vec<u8>, mod_bits: usize, m_hash: &[u8]) -> bool {
    let h_len = <D as Digest>::output_size();
    let s_len = h_len;
    let em_bits = mod_bits - 1;
    let em_len = em_bits.div_ceil(8);
    // I2OSP(m, emLen) (§8.1.2 step 2c): when emLen is one byte shorter than the modulus, that byte must be 0.
    let skip = em.len() - em_len;
    if em
        .get(..skip)
        .is_none_or(|lead| lead.iter().any(|&b| b != 0))
    {
        return false;
    }
    let Some(em) = em.get_mut(skip..) else {
        return false;
    };
    if m_hash.len() != h_len || em_len < h_len + s_len + 2 {
        return false;
    }
    let Some((last, body)) = em.split_last_mut() else {
        return false;
    };
    if *last != 0xbc {
        return false;
    }
    let (db, h) = body.split_at_mut(em_len - h_len - 1);
    let unused_bits = 8 * em_len - em_bits;
    let top_mask = 0xffu8 >> unused_bits;
    match db.first() {
        Some(&first) if first & !top_mask == 0 => {}
        _ => return false,
    }
    mgf1_xor::<D>(db, h);
    if let Some(first) = db.first_mut() {
        *first &= top_mask;
    }
    let zeros = em_len - h_len - s_len - 2;
    let (padding, rest) = db.split_at(zeros);
    if padding.iter().any(|&b| b != 0) {
        return false;
    }
    let Some((&one, salt)) = rest.split_first() else {
        return false;
    };
    if one != 0x01 || salt.len() != s_len {
        return false;
    }
    let h2 = D::new()
        .chain_update([0u8; 8])
        .chain_update(m_hash)
        .chain_update(salt)
        .finalize();
    h2[..] == *h
}

/// `db ^= MGF1(seed)` over the whole of `db`.
fn mgf1_xor<D: Digest>(db: &mut [u8], seed: &[u8]) {
    let h_len = <D as Digest>::output_size();
    for (counter, chunk) in db.chunks_mut(h_len).enumerate() {
        let mask = D::new()
            .chain_update(seed)
            .chain_update((counter as u32).to_be_bytes())
            .finalize();
        for (byte, m) in chunk.iter_mut().zip(mask.iter()) {
            *byte ^= m;
        }
    }
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default()
}

/// Bit length of a big-endian number without leading zero bytes.
fn bit_length(be: &[u8]) -> usize {
    match be.first() {
        None => 0,
        Some(&top) => (be.len() - 1) * 8 + (8 - top.leading_zeros() as usize),
    }
}

/// A big-endian number as exactly `limbs` little-endian limbs (it must fit).
fn limbs_from_be(be: &[u8], limbs: usize) -> Vec<u32> {
    let mut out = vec![0u32; limbs];
    be_into_limbs(be, &mut out);
    out
}

/// Writes big-endian `be` into little-endian limbs `out` (zero-filled above; bytes beyond `out` dropped).
pub(super) fn be_into_limbs(be: &[u8], out: &mut [u32]) {
    out.fill(0);
    for (limb, chunk) in out.iter_mut().zip(be.rchunks(4)) {
        *limb = chunk
            .iter()
            .fold(0u32, |acc, &byte| (acc << 8) | u32::from(byte));
    }
}

/// The low `size` bytes of little-endian limbs, big-endian.
fn limbs_to_be(limbs: &[u32], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(limbs.len() * 4);
    for limb in limbs.iter().rev() {
        out.extend_from_slice(&limb.to_be_bytes());
    }
    let excess = out.len().saturating_sub(size);
    out.split_off(excess)
}

/// `a < b` for equal-length little-endian limbs.
pub(super) fn less_than(a: &[u32], b: &[u32]) -> bool {
    for (x, y) in a.iter().rev().zip(b.iter().rev()) {
        if x != y {
            return x < y;
        }
    }
    false
}

/// `a -= b` modulo `2^(32·len)`; true when it borrowed (`a < b`).
pub(super) fn sub_in_place(a: &mut [u32], b: &[u32]) -> bool {
    let mut borrow = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let d = u64::from(*x)
            .wrapping_sub(u64::from(y))
            .wrapping_sub(borrow);
        *x = d as u32;
        borrow = (d >> 63) & 1;
    }
    borrow != 0
}

/// `a += b` modulo `2^(32·len)`; true when it carried out.
pub(super) fn add_in_place(a: &mut [u32], b: &[u32]) -> bool {
    let mut carry = 0u64;
    for (x, &y) in a.iter_mut().zip(b) {
        let s = u64::from(*x) + u64::from(y) + carry;
        *x = s as u32;
        carry = s >> 32;
    }
    carry != 0
}

/// `-n0⁻¹ mod 2³²` for odd `n0` (Newton's iteration, each step doubling the correct low bits).
fn neg_inverse(n0: u32) -> u32 {
    let mut inv: u32 = 1;
    for _ in 0..5 {
        inv = inv.wrapping_mul(2u32.wrapping_sub(n0.wrapping_mul(inv)));
    }
    inv.wrapping_neg()
}

/// `R² mod n` for `R = 2^(32·len)`, by doubling 1 modulo n `2·32·len` times (configuration time only).
fn r_squared(n: &[u32]) -> Vec<u32> {
    let mut x = vec![0u32; n.len()];
    if let Some(first) = x.first_mut() {
        *first = 1;
    }
    for _ in 0..2 * 32 * n.len() {
        // x = 2x mod n; x < n, so 2x < 2n and one subtraction suffices.
        let mut carry = 0u32;
        for limb in x.iter_mut() {
            let next = *limb >> 31;
            *limb = (*limb << 1) | carry;
            carry = next;
        }
        if carry != 0 || !less_than(&x, n) {
            sub_in_place(&mut x, n);
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::{SigningKey as Pkcs1SigningKey, VerifyingKey as Pkcs1VerifyingKey};
    use rsa::pss::{BlindedSigningKey, VerifyingKey as PssVerifyingKey};
    use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer, Verifier};
    use rsa::traits::PublicKeyParts;
    use rsa::{BigUint, RsaPrivateKey};

    fn key_of(private: &RsaPrivateKey) -> RsaKey {
        RsaKey::new(&private.n().to_bytes_be(), &private.e().to_bytes_be()).expect("key")
    }

    /// Test keys, generated once per test binary (key generation dominates these tests' time): 2048 and
    /// 3072-bit moduli, a modulus one bit past a byte (PSS then drops a leading byte), e = 3 and e = 65537.
    fn keys() -> &'static [(usize, u64, RsaPrivateKey)] {
        static KEYS: std::sync::OnceLock<Vec<(usize, u64, RsaPrivateKey)>> =
            std::sync::OnceLock::new();
        KEYS.get_or_init(|| {
            let mut rng = rand_core::OsRng;
            [(2048, 65537u64), (2049, 3), (3071, 65537), (2048, 3)]
                .into_iter()
                .map(|(bits, e)| {
                    let key = RsaPrivateKey::new_with_exp(&mut rng, bits, &BigUint::from(e))
                        .expect("keygen");
                    (bits, e, key)
                })
                .collect()
        })
    }

    fn private(bits: usize, e: u64) -> RsaPrivateKey {
        keys()
            .iter()
            .find(|(b, x, _)| *b == bits && *x == e)
            .map(|(_, _, key)| key.clone())
            .expect("a test key of that size")
    }

    #[test]
    fn the_montgomery_constant_inverts_the_lowest_limb() {
        for n0 in [1u32, 3, 0xffff_ffff, 0x8000_0001, 0x1234_5677] {
            assert_eq!(n0.wrapping_mul(neg_inverse(n0)), u32::MAX, "{n0:#x}");
        }
    }

    #[test]
    fn the_public_operation_matches_modular_exponentiation() {
        let mut rng = rand_core::OsRng;
        for &(bits, e, _) in keys() {
            let private = private(bits, e);
            let key = key_of(&private);
            assert_eq!(key.bits, private.n().bits());
            for _ in 0..4 {
                let mut bytes = vec![0u8; key.size()];
                rand_core::RngCore::fill_bytes(&mut rng, &mut bytes);
                let s = BigUint::from_bytes_be(&bytes) % private.n();
                let sig = {
                    let raw = s.to_bytes_be();
                    let mut padded = vec![0u8; key.size() - raw.len()];
                    padded.extend_from_slice(&raw);
                    padded
                };
                let want = s.modpow(private.e(), private.n());
                let got = key.public_op(&sig).expect("s < n");
                assert_eq!(BigUint::from_bytes_be(&got), want, "{bits} bits, e={e}");
                assert_eq!(got.len(), key.size());
            }
        }
    }

    #[test]
    fn signatures_made_by_the_rsa_crate_verify_and_altered_ones_do_not() {
        let mut rng = rand_core::OsRng;
        for &(bits, e, _) in keys() {
            let private = private(bits, e);
            let key = key_of(&private);
            for round in 0..3 {
                let message = format!("header.payload-{bits}-{e}-{round}");
                let message = message.as_bytes();
                let sigs: Vec<(Hash, Padding, Vec<u8>)> = vec![
                    (
                        Hash::Sha256,
                        Padding::Pkcs1v15,
                        Pkcs1SigningKey::<Sha256>::new(private.clone())
                            .sign(message)
                            .to_vec(),
                    ),
                    (
                        Hash::Sha384,
                        Padding::Pkcs1v15,
                        Pkcs1SigningKey::<Sha384>::new(private.clone())
                            .sign(message)
                            .to_vec(),
                    ),
                    (
                        Hash::Sha512,
                        Padding::Pkcs1v15,
                        Pkcs1SigningKey::<Sha512>::new(private.clone())
                            .sign(message)
                            .to_vec(),
                    ),
                    (
                        Hash::Sha256,
                        Padding::Pss,
                        BlindedSigningKey::<Sha256>::new(private.clone())
                            .sign_with_rng(&mut rng, message)
                            .to_vec(),
                    ),
                    (
                        Hash::Sha384,
                        Padding::Pss,
                        BlindedSigningKey::<Sha384>::new(private.clone())
                            .sign_with_rng(&mut rng, message)
                            .to_vec(),
                    ),
                    (
                        Hash::Sha512,
                        Padding::Pss,
                        BlindedSigningKey::<Sha512>::new(private.clone())
                            .sign_with_rng(&mut rng, message)
                            .to_vec(),
                    ),
                ];
                for (hash, padding, sig) in &sigs {
                    let (hash, padding) = (*hash, *padding);
                    let what = format!("{bits} bits e={e} {hash:?} {padding:?}");
                    assert!(key.verify(hash, padding, message, sig), "{what}");
                    // Another message, another hash, the other padding.
                    assert!(!key.verify(hash, padding, b"other", sig), "{what}");
                    for other in [Hash::Sha256, Hash::Sha384, Hash::Sha512] {
                        if other != hash {
                            assert!(!key.verify(other, padding, message, sig), "{what}");
                        }
                    }
                    let other_padding = match padding {
                        Padding::Pss => Padding::Pkcs1v15,
                        Padding::Pkcs1v15 => Padding::Pss,
                    };
                    assert!(!key.verify(hash, other_padding, message, sig), "{what}");
                    // Any flipped bit.
                    for at in [0, sig.len() / 2, sig.len() - 1] {
                        let mut bad = sig.clone();
                        bad[at] ^= 0x01;
                        assert!(!key.verify(hash, padding, message, &bad), "{what}");
                    }
                    // Truncated, extended, empty.
                    assert!(!key.verify(hash, padding, message, &sig[1..]), "{what}");
                    assert!(
                        !key.verify(hash, padding, message, &sig[..sig.len() - 1]),
                        "{what}"
                    );
                    let mut longer = vec![0u8];
                    longer.extend_from_slice(sig);
                    assert!(!key.verify(hash, padding, message, &longer), "{what}");
                    assert!(!key.verify(hash, padding, message, &[]), "{what}");
                }
            }
        }
    }

    #[test]
    fn the_rsa_crate_accepts_what_this_module_accepts() {
        // Cross-check in the other direction: our verdicts agree with the rsa crate on valid signatures.
        let private = private(2048, 65537);
        let key = key_of(&private);
        let public = private.to_public_key();
        let message = b"cross-check";
        let sig = Pkcs1SigningKey::<Sha256>::new(private.clone()).sign(message);
        assert!(Pkcs1VerifyingKey::<Sha256>::new(public.clone())
            .verify(message, &sig)
            .is_ok());
        assert!(key.verify(Hash::Sha256, Padding::Pkcs1v15, message, &sig.to_vec()));
        let mut rng = rand_core::OsRng;
        let sig = BlindedSigningKey::<Sha256>::new(private).sign_with_rng(&mut rng, message);
        assert!(PssVerifyingKey::<Sha256>::new(public)
            .verify(message, &sig)
            .is_ok());
        assert!(key.verify(Hash::Sha256, Padding::Pss, message, &sig.to_vec()));
    }

    #[test]
    fn signature_values_not_below_the_modulus_are_refused() {
        let private = private(2048, 65537);
        let key = key_of(&private);
        let n = private.n().to_bytes_be();
        assert!(key.public_op(&n).is_none(), "s = n");
        assert!(key.public_op(&[0xff; 256]).is_none(), "s > n");
        let n_minus_1 = (private.n() - 1u32).to_bytes_be();
        assert!(key.public_op(&n_minus_1).is_some(), "s = n - 1");
        assert!(key.public_op(&[0; 256]).is_some(), "s = 0");
        // s + n, reduced by the rsa crate, is a different byte string: the unreduced form must not verify.
        let message = b"m";
        let sig = Pkcs1SigningKey::<Sha256>::new(private.clone()).sign(message);
        let plus_n = (BigUint::from_bytes_be(&sig.to_vec()) + private.n()).to_bytes_be();
        if plus_n.len() == 256 {
            assert!(!key.verify(Hash::Sha256, Padding::Pkcs1v15, message, &plus_n));
        }
    }

    #[test]
    fn a_pkcs1_block_with_any_other_layout_is_refused() {
        let hash = Sha256::digest(b"m");
        let good: Vec<u8> = [0x00, 0x01]
            .into_iter()
            .chain(std::iter::repeat_n(0xff, 256 - 3 - 19 - 32))
            .chain([0x00])
            .chain(SHA256_PREFIX.iter().copied())
            .chain(hash.iter().copied())
            .collect();
        assert!(pkcs1v15_matches(&good, SHA256_PREFIX, &hash));
        for at in 0..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            assert!(!pkcs1v15_matches(&bad, SHA256_PREFIX, &hash), "byte {at}");
        }
        // Too short for 8 bytes of padding.
        let short: Vec<u8> = [0x00, 0x01]
            .into_iter()
            .chain(std::iter::repeat_n(0xff, 7))
            .chain([0x00])
            .chain(SHA256_PREFIX.iter().copied())
            .chain(hash.iter().copied())
            .collect();
        assert!(!pkcs1v15_matches(&short, SHA256_PREFIX, &hash));
        assert!(!pkcs1v15_matches(&[], SHA256_PREFIX, &hash));
    }

    #[test]
    fn keys_with_other_exponents_or_unusable_moduli_are_refused() {
        let n = [0xc5u8; 256];
        assert_eq!(RsaKey::new(&n, &[1, 0, 1]).map(|k| k.bits), Ok(2048));
        assert_eq!(
            RsaKey::new(&n, &[0, 0, 3]).map(|k| k.bits),
            Ok(2048),
            "leading zeros"
        );
        assert_eq!(RsaKey::new(&n, &[1, 0, 3]).err(), Some(KeyError::Exponent));
        assert_eq!(RsaKey::new(&n, &[5]).err(), Some(KeyError::Exponent));
        assert_eq!(RsaKey::new(&n, &[]).err(), Some(KeyError::Exponent));
        let mut even = n;
        even[255] = 0xc4;
        assert_eq!(RsaKey::new(&even, &[3]).err(), Some(KeyError::Modulus));
        assert_eq!(RsaKey::new(&[], &[3]).err(), Some(KeyError::Modulus));
        assert_eq!(RsaKey::new(&[0, 0], &[3]).err(), Some(KeyError::Modulus));
        assert_eq!(
            RsaKey::new(&[0xff; 513], &[3]).err(),
            Some(KeyError::TooLarge)
        );
        assert!(RsaKey::new(&[0xff; 512], &[3]).is_ok(), "4096 bits");
    }

    #[test]
    fn r_squared_is_correct() {
        let private = private(2048, 65537);
        let key = key_of(&private);
        let r = BigUint::from(1u32) << (32 * key.n.len());
        let want = (&r * &r) % private.n();
        let got: Vec<u8> = limbs_to_be(&key.rr, key.size());
        assert_eq!(BigUint::from_bytes_be(&got), want);
    }
}
