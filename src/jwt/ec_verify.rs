//! ECDSA signature verification on P-256 (`ES256`) and P-384 (`ES384`), purpose-built for the public-key
//! operation of a JWS check, the way `super::rsa_verify` does RSA.
//!
//! Why not the RustCrypto `p256`/`p384` crates: their constant-time arithmetic (complete addition formulas,
//! a 4-bit window table of the key built on every verification, constant-time table scans) costs ~740 µs per
//! ES256 check inside Envoy's V8, 13x BoringSSL's, and the two crates were ~175 KB of the .wasm. A verification
//! handles only public values (the key, the message, the signature), so nothing here is constant-time; it is
//! variable-time on purpose, and must only be correct.
//!
//! - Field arithmetic: 32-bit limbs (V8 on wasm32 has a native 64-bit multiply but no 128-bit one), schoolbook
//!   products (squares with the cross products once) and the special-form
//!   reduction of the NIST primes (FIPS 186-4 D.2: signed sums of the product's 32-bit words), no
//!   multiplication in the reduction. Scalars modulo `n`: Montgomery products (`super::rsa_verify::mont_mul`).
//!   Every value is fully reduced, so equal values are equal limbs.
//! - Points: Jacobian coordinates with the `a = -3` doubling (3M + 5S) and mixed Jacobian + affine addition
//!   (7M + 4S), whose exceptional cases (equal points, opposite points, the point at infinity) are handled
//!   explicitly: the signature is chosen by whoever sent the token.
//! - `u1·G + u2·Q` by an 8-tooth comb: both the generator and each key have a table of the 255 sums
//!   `Σ bᵢ·2^(d·i)·P` (`d` = bits / 8) in affine coordinates, so a verification is `d - 1` doublings and at most
//!   `2·d` mixed additions (P-256: 31 and 64), with no table built per verification. The key's table is
//!   computed when the key is parsed (configuration or JWKS fetch), the generator's once per VM.
//! - `s⁻¹ mod n` once, by the binary extended Euclidean algorithm; the final `x(R) mod n == r` check is done
//!   without a field inversion as `X == r·Z²` (and `X == (r + n)·Z²` when `r + n < p`).
//!
//! Strictness is the `p256`/`p384` crates' (`ecdsa` 0.16) exactly, and the tests compare both on random keys,
//! messages and signatures: the signature is `r || s`, each exactly the field size; `r` and `s` must be in
//! `[1, n - 1]`; high `s` is accepted (no low-s rule, as in BoringSSL); the hash is SHA-256 for P-256 and
//! SHA-384 for P-384, reduced modulo `n`; a key is a SEC1 point (uncompressed, compressed or compact) with
//! coordinates below `p` on the curve, not the point at infinity.
//!
//! Memory: a key holds its comb table, 255 affine points: 16,320 bytes for P-256, 24,480 bytes for P-384 (plus
//! the point itself). The generator's tables are the same sizes, once per VM, built on the first key of the
//! curve. A verification uses a few hundred bytes of stack and allocates nothing.

use std::sync::OnceLock;

use sha2::{Digest, Sha256, Sha384};

use super::rsa_verify::{add_in_place, be_into_limbs, less_than, mont_mul, sub_in_place};

/// Comb teeth: the table of a point has `2^TEETH - 1` entries.
const TEETH: usize = 8;
const TABLE: usize = (1 << TEETH) - 1;

/// A prime modulus prepared for Montgomery arithmetic, `R = 2^(32·L)`.
struct Modulus<const L: usize> {
    m: [u32; L],
    /// `-m⁻¹ mod 2³²`.
    inv: u32,
    /// `R² mod m`.
    rr: [u32; L],
    /// `R mod m`: 1 in Montgomery form.
    one: [u32; L],
    /// A special-form reduction of a `2·L`-limb product (the NIST primes, FIPS 186-4 D.2): values are then
    /// plain, not Montgomery form (`R = 1`: `rr` and `one` are 1).
    reduce: Option<Reduce<L>>,
}

/// A special-form reduction: `2·L` limbs in, the fully reduced value out.
type Reduce<const L: usize> = fn(&[u32]) -> [u32; L];

fn is_zero<const L: usize>(a: &[u32; L]) -> bool {
    a.iter().all(|&x| x == 0)
}

impl<const L: usize> Modulus<L> {
    fn mul(&self, a: &[u32; L], b: &[u32; L]) -> [u32; L] {
        let mut out = [0u32; L];
        if let Some(reduce) = self.reduce {
            let mut wide = [0u32; 2 * MAX_LIMBS];
            if let Some(wide) = wide.get_mut(..2 * L) {
                mul_wide(a, b, wide);
                return reduce(wide);
            }
        }
        mont_mul(&self.m, self.inv, a, b, &mut out);
        out
    }

    fn sqr(&self, a: &[u32; L]) -> [u32; L] {
        if let Some(reduce) = self.reduce {
            let mut wide = [0u32; 2 * MAX_LIMBS];
            if let Some(wide) = wide.get_mut(..2 * L) {
                square_wide(a, wide);
                return reduce(wide);
            }
        }
        self.mul(a, a)
    }

    fn add(&self, a: &[u32; L], b: &[u32; L]) -> [u32; L] {
        let mut out = *a;
        if add_in_place(&mut out, b) || !less_than(&out, &self.m) {
            sub_in_place(&mut out, &self.m);
        }
        out
    }

    fn sub(&self, a: &[u32; L], b: &[u32; L]) -> [u32; L] {
        let mut out = *a;
        if sub_in_place(&mut out, b) {
            add_in_place(&mut out, &self.m);
        }
        out
    }

    /// `a·R mod m` for `a < m`.
    fn to_mont(&self, a: &[u32; L]) -> [u32; L] {
        self.mul(a, &self.rr)
    }

    /// `a·R⁻¹ mod m`: a Montgomery-form value back to its plain value.
    fn out_of_mont(&self, a: &[u32; L]) -> [u32; L] {
        let mut one = [0u32; L];
        if let Some(low) = one.first_mut() {
            *low = 1;
        }
        self.mul(a, &one)
    }

    /// `a^e` in Montgomery form (square and multiply, most significant bit first).
    fn pow(&self, a: &[u32; L], e: &[u32; L]) -> [u32; L] {
        let mut acc = self.one;
        for &limb in e.iter().rev() {
            for bit in (0..32).rev() {
                acc = self.sqr(&acc);
                if (limb >> bit) & 1 == 1 {
                    acc = self.mul(&acc, a);
                }
            }
        }
        acc
    }

    /// `a⁻¹` in Montgomery form by Fermat (`a^(m-2)`); configuration time only (table building). `a ≠ 0`.
    fn invert_fermat(&self, a: &[u32; L]) -> [u32; L] {
        let mut e = self.m;
        // m is odd and its lowest limb is above 2 for both curves' p.
        if let Some(low) = e.first_mut() {
            *low = low.wrapping_sub(2);
        }
        self.pow(a, &e)
    }

    /// `x / 2 mod m` for a plain `x < m`.
    fn half(&self, x: &mut [u32; L]) {
        let odd = x.first().is_some_and(|&low| low & 1 == 1);
        let carry = odd && add_in_place(x, &self.m);
        shift_right_one(x, carry);
    }

    /// `a⁻¹ mod m` of a plain `a` in `[1, m - 1]`, plain (binary extended Euclid, variable time; Guide to
    /// Elliptic Curve Cryptography, algorithm 2.22). None for `a = 0`.
    fn invert_vartime(&self, a: &[u32; L]) -> Option<[u32; L]> {
        let mut one = [0u32; L];
        if let Some(low) = one.first_mut() {
            *low = 1;
        }
        let (mut u, mut v) = (*a, self.m);
        let (mut x1, mut x2) = (one, [0u32; L]);
        if is_zero(&u) {
            return None;
        }
        // Every subtraction of two odd values is followed by at least one halving, and there are at most
        // 2·32·L halvings in all: the bound is never reached for a prime m.
        for _ in 0..(64 * L + 4) {
            if u == one {
                return Some(x1);
            }
            if v == one {
                return Some(x2);
            }
            while u.first().is_some_and(|&low| low & 1 == 0) {
                if is_zero(&u) {
                    return None;
                }
                shift_right_one(&mut u, false);
                self.half(&mut x1);
            }
            while v.first().is_some_and(|&low| low & 1 == 0) {
                if is_zero(&v) {
                    return None;
                }
                shift_right_one(&mut v, false);
                self.half(&mut x2);
            }
            if less_than(&u, &v) {
                sub_in_place(&mut v, &u);
                x2 = self.sub(&x2, &x1);
            } else {
                sub_in_place(&mut u, &v);
                x1 = self.sub(&x1, &x2);
            }
        }
        None
    }
}

/// Limbs of the largest field (P-384).
const MAX_LIMBS: usize = 12;

/// `out = a·b`, `2·L` limbs (operand scanning with 64-bit products).
fn mul_wide<const L: usize>(a: &[u32; L], b: &[u32; L], out: &mut [u32]) {
    out.fill(0);
    for (i, &ai) in a.iter().enumerate() {
        let Some(row) = out.get_mut(i..i + L + 1) else {
            return;
        };
        let Some((last, row)) = row.split_last_mut() else {
            return;
        };
        let ai = u64::from(ai);
        let mut c = 0u64;
        for (t, &bj) in row.iter_mut().zip(b) {
            let x = u64::from(*t) + ai * u64::from(bj) + c;
            *t = x as u32;
            c = x >> 32;
        }
        *last = c as u32;
    }
}

/// `t = a²`, `t` exactly `2·len(a)` limbs: the `len²/2` cross products aᵢ·aⱼ (i < j) once, doubled, plus the
/// squares on the diagonal.
fn square_wide(a: &[u32], t: &mut [u32]) {
    let len = a.len();
    t.fill(0);
    // Cross products aᵢ·aⱼ (i < j) at limb i + j; row i ends with its carry at limb i + len.
    for (i, &ai) in a.iter().enumerate() {
        let (Some(row), Some(rest)) = (t.get_mut(2 * i + 1..i + len + 1), a.get(i + 1..)) else {
            return;
        };
        let ai = u64::from(ai);
        let mut c = 0u64;
        let Some((last, row)) = row.split_last_mut() else {
            continue;
        };
        for (tk, &aj) in row.iter_mut().zip(rest) {
            let x = u64::from(*tk) + ai * u64::from(aj) + c;
            *tk = x as u32;
            c = x >> 32;
        }
        *last = c as u32;
    }
    // Doubled, plus the squares aᵢ² on the diagonal (limbs 2i, 2i + 1). The total a² < R² fits.
    let mut shifted = 0u32;
    let mut c = 0u64;
    for (pair, &ai) in t.chunks_exact_mut(2).zip(a) {
        let sq = u64::from(ai) * u64::from(ai);
        if let [lo, hi] = pair {
            let dlo = (*lo << 1) | shifted;
            let dhi = (*hi << 1) | (*lo >> 31);
            shifted = *hi >> 31;
            let x = u64::from(dlo) + (sq & 0xffff_ffff) + c;
            *lo = x as u32;
            let y = u64::from(dhi) + (sq >> 32) + (x >> 32);
            *hi = y as u32;
            c = y >> 32;
        }
    }
}

/// The value `Σ wᵢ·2^(32·i)` of signed word sums, with `p` subtracted or added until it is in `[0, p)`. Each
/// sum is a few words' worth (|wᵢ| < 2³⁶), so the carry out of the top is small and so is the loop.
fn settle<const L: usize>(w: &[i64; L], p: &[u32; L]) -> [u32; L] {
    let mut out = [0u32; L];
    let mut carry = 0i64;
    for (o, &x) in out.iter_mut().zip(w) {
        let v = x + carry;
        *o = v as u32;
        carry = v >> 32;
    }
    // out + carry·2^(32·L); p is just below 2^(32·L), so each step moves the carry by one.
    for _ in 0..64 {
        if carry > 0 {
            if sub_in_place(&mut out, p) {
                carry -= 1;
            }
        } else if carry < 0 {
            if add_in_place(&mut out, p) {
                carry += 1;
            }
        } else {
            break;
        }
    }
    while !less_than(&out, p) {
        sub_in_place(&mut out, p);
    }
    out
}

/// P-256 reduction of a 16-word product `c` (FIPS 186-4 D.2.3): `s1 + 2s2 + 2s3 + s4 + s5 - d1 - d2 - d3 - d4`,
/// word by word.
fn reduce_p256(c: &[u32]) -> [u32; 8] {
    let mut v = [0i64; 16];
    for (x, &y) in v.iter_mut().zip(c) {
        *x = i64::from(y);
    }
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15] = v;
    let w = [
        c0 + c8 + c9 - c11 - c12 - c13 - c14,
        c1 + c9 + c10 - c12 - c13 - c14 - c15,
        c2 + c10 + c11 - c13 - c14 - c15,
        c3 + 2 * c11 + 2 * c12 + c13 - c15 - c8 - c9,
        c4 + 2 * c12 + 2 * c13 + c14 - c9 - c10,
        c5 + 2 * c13 + 2 * c14 + c15 - c10 - c11,
        c6 + 3 * c14 + 2 * c15 + c13 - c8 - c9,
        c7 + 3 * c15 + c8 - c10 - c11 - c12 - c13,
    ];
    settle(&w, &P256.p.m)
}

/// P-384 reduction of a 24-word product `c` (FIPS 186-4 D.2.4): `t + 2s1 + s2 + s3 + s4 + s5 + s6 - d1 - d2 -
/// d3`, word by word.
fn reduce_p384(c: &[u32]) -> [u32; 12] {
    let mut v = [0i64; 24];
    for (x, &y) in v.iter_mut().zip(c) {
        *x = i64::from(y);
    }
    let [c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15, c16, c17, c18, c19, c20, c21, c22, c23] =
        v;
    let w = [
        c0 + c12 + c21 + c20 - c23,
        c1 + c13 + c22 + c23 - c12 - c20,
        c2 + c14 + c23 - c13 - c21,
        c3 + c15 + c12 + c20 + c21 - c14 - c22 - c23,
        c4 + 2 * c21 + c16 + c13 + c12 + c20 + c22 - c15 - 2 * c23,
        c5 + 2 * c22 + c17 + c14 + c13 + c21 + c23 - c16,
        c6 + 2 * c23 + c18 + c15 + c14 + c22 - c17,
        c7 + c19 + c16 + c15 + c23 - c18,
        c8 + c20 + c17 + c16 - c19,
        c9 + c21 + c18 + c17 - c20,
        c10 + c22 + c19 + c18 - c21,
        c11 + c23 + c20 + c19 - c22,
    ];
    settle(&w, &P384.p.m)
}

/// `x >>= 1`, with `top` shifted into the highest bit.
fn shift_right_one<const L: usize>(x: &mut [u32; L], top: bool) {
    let mut carry = u32::from(top);
    for limb in x.iter_mut().rev() {
        let next = *limb & 1;
        *limb = (*limb >> 1) | (carry << 31);
        carry = next;
    }
}

/// Exactly `4·L` big-endian bytes as limbs.
fn from_be<const L: usize>(bytes: &[u8]) -> Option<[u32; L]> {
    if bytes.len() != 4 * L {
        return None;
    }
    let mut out = [0u32; L];
    be_into_limbs(bytes, &mut out);
    Some(out)
}

/// An affine point (never the point at infinity).
#[derive(Clone, Copy, PartialEq, Eq)]
struct Affine<const L: usize> {
    x: [u32; L],
    y: [u32; L],
}

/// A Jacobian point `(X / Z², Y / Z³)`; `Z = 0` is the point at infinity.
#[derive(Clone, Copy)]
struct Jacobian<const L: usize> {
    x: [u32; L],
    y: [u32; L],
    z: [u32; L],
}

/// A short Weierstrass curve `y² = x³ - 3x + b` of prime order `n` over `p ≡ 3 mod 4`.
struct Curve<const L: usize> {
    p: Modulus<L>,
    n: Modulus<L>,
    /// `b`, in the field's representation (plain with the special reduction).
    b: [u32; L],
    /// The generator.
    g: Affine<L>,
    /// `(p + 1) / 4`: `a^((p+1)/4)` is a square root of a square `a`.
    sqrt_exp: [u32; L],
    /// `p - n`: `r + n` is still a field element when `r < p - n`.
    p_minus_n: [u32; L],
    /// The generator's comb table, built once per VM.
    g_table: OnceLock<Box<[Affine<L>]>>,
}

static P256: Curve<8> = Curve {
    p: Modulus {
        m: [
            0xffffffff, 0xffffffff, 0xffffffff, 0x00000000, 0x00000000, 0x00000000, 0x00000001,
            0xffffffff,
        ],
        inv: 0x00000001,
        rr: [1, 0, 0, 0, 0, 0, 0, 0],
        one: [1, 0, 0, 0, 0, 0, 0, 0],
        reduce: Some(reduce_p256),
    },
    n: Modulus {
        m: [
            0xfc632551, 0xf3b9cac2, 0xa7179e84, 0xbce6faad, 0xffffffff, 0xffffffff, 0x00000000,
            0xffffffff,
        ],
        inv: 0xee00bc4f,
        rr: [
            0xbe79eea2, 0x83244c95, 0x49bd6fa6, 0x4699799c, 0x2b6bec59, 0x2845b239, 0xf3d95620,
            0x66e12d94,
        ],
        one: [
            0x039cdaaf, 0x0c46353d, 0x58e8617b, 0x43190552, 0x00000000, 0x00000000, 0xffffffff,
            0x00000000,
        ],
        reduce: None,
    },
    b: [
        0x27d2604b, 0x3bce3c3e, 0xcc53b0f6, 0x651d06b0, 0x769886bc, 0xb3ebbd55, 0xaa3a93e7,
        0x5ac635d8,
    ],
    g: Affine {
        x: [
            0xd898c296, 0xf4a13945, 0x2deb33a0, 0x77037d81, 0x63a440f2, 0xf8bce6e5, 0xe12c4247,
            0x6b17d1f2,
        ],
        y: [
            0x37bf51f5, 0xcbb64068, 0x6b315ece, 0x2bce3357, 0x7c0f9e16, 0x8ee7eb4a, 0xfe1a7f9b,
            0x4fe342e2,
        ],
    },
    sqrt_exp: [
        0x00000000, 0x00000000, 0x40000000, 0x00000000, 0x00000000, 0x40000000, 0xc0000000,
        0x3fffffff,
    ],
    p_minus_n: [
        0x039cdaae, 0x0c46353d, 0x58e8617b, 0x43190553, 0x00000000, 0x00000000, 0x00000000,
        0x00000000,
    ],
    g_table: OnceLock::new(),
};

static P384: Curve<12> = Curve {
    p: Modulus {
        m: [
            0xffffffff, 0x00000000, 0x00000000, 0xffffffff, 0xfffffffe, 0xffffffff, 0xffffffff,
            0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
        ],
        inv: 0x00000001,
        rr: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        one: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        reduce: Some(reduce_p384),
    },
    n: Modulus {
        m: [
            0xccc52973, 0xecec196a, 0x48b0a77a, 0x581a0db2, 0xf4372ddf, 0xc7634d81, 0xffffffff,
            0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
        ],
        inv: 0xe88fdc45,
        rr: [
            0x19b409a9, 0x2d319b24, 0xdf1aa419, 0xff3d81e5, 0xfcb82947, 0xbc3e483a, 0x4aab1cc5,
            0xd40d4917, 0x28266895, 0x3fb05b7a, 0x2b39bf21, 0x0c84ee01,
        ],
        one: [
            0x333ad68d, 0x1313e695, 0xb74f5885, 0xa7e5f24d, 0x0bc8d220, 0x389cb27e, 0x00000000,
            0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
        ],
        reduce: None,
    },
    b: [
        0xd3ec2aef, 0x2a85c8ed, 0x8a2ed19d, 0xc656398d, 0x5013875a, 0x0314088f, 0xfe814112,
        0x181d9c6e, 0xe3f82d19, 0x988e056b, 0xe23ee7e4, 0xb3312fa7,
    ],
    g: Affine {
        x: [
            0x72760ab7, 0x3a545e38, 0xbf55296c, 0x5502f25d, 0x82542a38, 0x59f741e0, 0x8ba79b98,
            0x6e1d3b62, 0xf320ad74, 0x8eb1c71e, 0xbe8b0537, 0xaa87ca22,
        ],
        y: [
            0x90ea0e5f, 0x7a431d7c, 0x1d7e819d, 0x0a60b1ce, 0xb5f0b8c0, 0xe9da3113, 0x289a147c,
            0xf8f41dbd, 0x9292dc29, 0x5d9e98bf, 0x96262c6f, 0x3617de4a,
        ],
    },
    sqrt_exp: [
        0x40000000, 0x00000000, 0xc0000000, 0xbfffffff, 0xffffffff, 0xffffffff, 0xffffffff,
        0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x3fffffff,
    ],
    p_minus_n: [
        0x333ad68c, 0x1313e696, 0xb74f5885, 0xa7e5f24c, 0x0bc8d21f, 0x389cb27e, 0x00000000,
        0x00000000, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
    ],
    g_table: OnceLock::new(),
};

impl<const L: usize> Curve<L> {
    fn infinity(&self) -> Jacobian<L> {
        Jacobian {
            x: self.p.one,
            y: self.p.one,
            z: [0; L],
        }
    }

    /// `2·P` (dbl-2001-b, `a = -3`).
    fn double(&self, pt: &Jacobian<L>) -> Jacobian<L> {
        let f = &self.p;
        if is_zero(&pt.z) {
            return *pt;
        }
        let delta = f.sqr(&pt.z);
        let gamma = f.sqr(&pt.y);
        let beta = f.mul(&pt.x, &gamma);
        let t = f.mul(&f.sub(&pt.x, &delta), &f.add(&pt.x, &delta));
        let alpha = f.add(&f.add(&t, &t), &t);
        let beta2 = f.add(&beta, &beta);
        let beta4 = f.add(&beta2, &beta2);
        let beta8 = f.add(&beta4, &beta4);
        let x = f.sub(&f.sqr(&alpha), &beta8);
        let yz = f.add(&pt.y, &pt.z);
        let z = f.sub(&f.sub(&f.sqr(&yz), &gamma), &delta);
        let gamma2 = f.sqr(&gamma);
        let g2 = f.add(&gamma2, &gamma2);
        let g4 = f.add(&g2, &g2);
        let g8 = f.add(&g4, &g4);
        let y = f.sub(&f.mul(&alpha, &f.sub(&beta4, &x)), &g8);
        Jacobian { x, y, z }
    }

    /// `P + Q` for an affine `Q` (madd-2007-bl), every case: `P` at infinity, `P = Q`, `P = -Q`.
    fn add_affine(&self, pt: &Jacobian<L>, q: &Affine<L>) -> Jacobian<L> {
        let f = &self.p;
        if is_zero(&pt.z) {
            return Jacobian {
                x: q.x,
                y: q.y,
                z: f.one,
            };
        }
        let z1z1 = f.sqr(&pt.z);
        let u2 = f.mul(&q.x, &z1z1);
        let s2 = f.mul(&q.y, &f.mul(&pt.z, &z1z1));
        let h = f.sub(&u2, &pt.x);
        let s = f.sub(&s2, &pt.y);
        if is_zero(&h) {
            return if is_zero(&s) {
                self.double(pt)
            } else {
                self.infinity()
            };
        }
        let r = f.add(&s, &s);
        let hh = f.sqr(&h);
        let hh2 = f.add(&hh, &hh);
        let i = f.add(&hh2, &hh2);
        let j = f.mul(&h, &i);
        let v = f.mul(&pt.x, &i);
        let x = f.sub(&f.sub(&f.sqr(&r), &j), &f.add(&v, &v));
        let y1j = f.mul(&pt.y, &j);
        let y = f.sub(&f.mul(&r, &f.sub(&v, &x)), &f.add(&y1j, &y1j));
        let zh = f.add(&pt.z, &h);
        let z = f.sub(&f.sub(&f.sqr(&zh), &z1z1), &hh);
        Jacobian { x, y, z }
    }

    /// The affine form of a finite point (Fermat inversion: configuration time only).
    fn to_affine(&self, pt: &Jacobian<L>) -> Option<Affine<L>> {
        if is_zero(&pt.z) {
            return None;
        }
        let f = &self.p;
        let zi = f.invert_fermat(&pt.z);
        let zi2 = f.sqr(&zi);
        Some(Affine {
            x: f.mul(&pt.x, &zi2),
            y: f.mul(&pt.y, &f.mul(&zi2, &zi)),
        })
    }

    /// Bits of a scalar per comb row.
    const ROW: usize = 32 * L / TEETH;

    /// The comb table of `P`: entry `k - 1` is `Σ bᵢ·2^(ROW·i)·P` over the bits `bᵢ` of `k` (1 ≤ k ≤ 255).
    /// None only if a sum were the point at infinity, which cannot happen for a point of prime order `n`
    /// (every multiplier is below `2^(ROW·7 + 1) < n`).
    fn comb_table(&self, pt: &Affine<L>) -> Option<Box<[Affine<L>]>> {
        let f = &self.p;
        let mut bases = [*pt; TEETH];
        let mut prev = *pt;
        for base in bases.iter_mut().skip(1) {
            let mut acc = Jacobian {
                x: prev.x,
                y: prev.y,
                z: f.one,
            };
            for _ in 0..Self::ROW {
                acc = self.double(&acc);
            }
            prev = self.to_affine(&acc)?;
            *base = prev;
        }
        // Every entry is an earlier entry (its index without the top bit) plus one base point.
        let mut jac: Vec<Jacobian<L>> = Vec::with_capacity(TABLE + 1);
        jac.push(self.infinity());
        for k in 1..=TABLE {
            let top = (usize::BITS - 1 - k.leading_zeros()) as usize;
            let low = k & !(1 << top);
            let sum = self.add_affine(jac.get(low)?, bases.get(top)?);
            if is_zero(&sum.z) {
                return None;
            }
            jac.push(sum);
        }
        // One inversion for all of them (Montgomery's trick): prefix products of the Z coordinates.
        let entries = jac.get(1..)?;
        let mut prefix: Vec<[u32; L]> = Vec::with_capacity(TABLE);
        let mut acc = f.one;
        for pt in entries {
            acc = f.mul(&acc, &pt.z);
            prefix.push(acc);
        }
        let mut inv = f.invert_fermat(&acc);
        let mut out = vec![
            Affine {
                x: [0; L],
                y: [0; L]
            };
            TABLE
        ];
        for (k, (pt, slot)) in entries.iter().zip(out.iter_mut()).enumerate().rev() {
            // inv = (z_0 ⋯ z_k)⁻¹ here.
            let zi = match k.checked_sub(1).and_then(|before| prefix.get(before)) {
                Some(before) => f.mul(&inv, before),
                None => inv,
            };
            inv = f.mul(&inv, &pt.z);
            let zi2 = f.sqr(&zi);
            *slot = Affine {
                x: f.mul(&pt.x, &zi2),
                y: f.mul(&pt.y, &f.mul(&zi2, &zi)),
            };
        }
        Some(out.into_boxed_slice())
    }

    fn generator_table(&self) -> &[Affine<L>] {
        self.g_table
            .get_or_init(|| self.comb_table(&self.g).unwrap_or_default())
    }

    /// `x³ - 3x + b`.
    fn rhs(&self, x: &[u32; L]) -> [u32; L] {
        let f = &self.p;
        let x3 = f.mul(&f.sqr(x), x);
        let three_x = f.add(&f.add(x, x), x);
        f.add(&f.sub(&x3, &three_x), &self.b)
    }

    /// A SEC1-encoded point (`04 || x || y`, `02`/`03 || x`, or the compact `05 || x`), with coordinates
    /// below `p`, on the curve; the encoding of the point at infinity is refused.
    fn point_from_sec1(&self, bytes: &[u8]) -> Option<Affine<L>> {
        let f = &self.p;
        let size = 4 * L;
        let (&tag, rest) = bytes.split_first()?;
        let coordinate = |raw: &[u8]| -> Option<[u32; L]> {
            let v = from_be::<L>(raw)?;
            less_than(&v, &f.m).then(|| f.to_mont(&v))
        };
        match tag {
            0x04 if rest.len() == 2 * size => {
                let (x, y) = rest.split_at(size);
                let (x, y) = (coordinate(x)?, coordinate(y)?);
                (f.sqr(&y) == self.rhs(&x)).then_some(Affine { x, y })
            }
            0x02 | 0x03 | 0x05 if rest.len() == size => {
                let x = coordinate(rest)?;
                let alpha = self.rhs(&x);
                let beta = f.pow(&alpha, &self.sqrt_exp);
                if f.sqr(&beta) != alpha {
                    return None;
                }
                let neg = f.sub(&[0; L], &beta);
                let (plain, plain_neg) = (f.out_of_mont(&beta), f.out_of_mont(&neg));
                let y = match tag {
                    // Compressed: the root with the parity the tag names.
                    0x02 | 0x03 => {
                        let odd = plain.first().is_some_and(|&low| low & 1 == 1);
                        if odd == (tag == 0x03) {
                            beta
                        } else {
                            neg
                        }
                    }
                    // Compact (RFC draft-jivsov-ecc-compact): the smaller root.
                    _ => {
                        if less_than(&plain_neg, &plain) {
                            neg
                        } else {
                            beta
                        }
                    }
                };
                Some(Affine { x, y })
            }
            _ => None,
        }
    }

    fn key(&self, sec1: &[u8]) -> Option<EcKey<L>> {
        let point = self.point_from_sec1(sec1)?;
        let table = self.comb_table(&point)?;
        // The generator's table is built with the first key, not on the first request.
        self.generator_table();
        Some(EcKey { point, table })
    }

    /// The comb index of column `col`: bit `ROW·i + col` of `k` as bit `i`.
    fn comb_index(k: &[u32; L], col: usize) -> usize {
        let mut index = 0;
        for row in 0..TEETH {
            let pos = Self::ROW * row + col;
            let bit = k.get(pos / 32).map_or(0, |&limb| (limb >> (pos % 32)) & 1);
            index |= (bit as usize) << row;
        }
        index
    }

    /// ECDSA verification of `digest` (exactly the field size) with the key's comb table.
    fn verify(&self, table: &[Affine<L>], digest: &[u8], signature: &[u8]) -> bool {
        let n = &self.n;
        let f = &self.p;
        let size = 4 * L;
        if signature.len() != 2 * size {
            return false;
        }
        let (r, s) = signature.split_at(size);
        let (Some(r), Some(s), Some(mut z)) =
            (from_be::<L>(r), from_be::<L>(s), from_be::<L>(digest))
        else {
            return false;
        };
        if is_zero(&r) || is_zero(&s) || !less_than(&r, &n.m) || !less_than(&s, &n.m) {
            return false;
        }
        // The hash is as long as n (both curves), and n > 2^(bits - 1): one subtraction reduces it.
        if !less_than(&z, &n.m) {
            sub_in_place(&mut z, &n.m);
        }
        let Some(w) = n.invert_vartime(&s) else {
            return false;
        };
        // u = x·w: (x · wR) · R⁻¹.
        let w = n.to_mont(&w);
        let u1 = n.mul(&z, &w);
        let u2 = n.mul(&r, &w);
        let g_table = self.generator_table();
        let mut acc = self.infinity();
        for col in (0..Self::ROW).rev() {
            acc = self.double(&acc);
            for (k, table) in [(&u1, g_table), (&u2, table)] {
                let index = Self::comb_index(k, col);
                if index != 0 {
                    let Some(pt) = table.get(index - 1) else {
                        return false;
                    };
                    acc = self.add_affine(&acc, pt);
                }
            }
        }
        if is_zero(&acc.z) {
            return false;
        }
        // x(R) mod n == r, with x(R) = X / Z²: X == r·Z², or X == (r + n)·Z² when r + n is below p.
        let zz = f.sqr(&acc.z);
        if f.mul(&f.to_mont(&r), &zz) == acc.x {
            return true;
        }
        if less_than(&r, &self.p_minus_n) {
            let mut rn = r;
            add_in_place(&mut rn, &n.m);
            return f.mul(&f.to_mont(&rn), &zz) == acc.x;
        }
        false
    }
}

/// An ECDSA public key with its comb table ([`P256Key`], [`P384Key`]).
#[derive(Clone)]
pub struct EcKey<const L: usize> {
    point: Affine<L>,
    table: Box<[Affine<L>]>,
}

impl<const L: usize> PartialEq for EcKey<L> {
    /// The same public point (the table is derived from it).
    fn eq(&self, other: &EcKey<L>) -> bool {
        self.point == other.point
    }
}

impl<const L: usize> Eq for EcKey<L> {}

/// A P-256 key (`ES256`).
pub type P256Key = EcKey<8>;
/// A P-384 key (`ES384`).
pub type P384Key = EcKey<12>;

impl EcKey<8> {
    /// A key from a SEC1 point encoding; None when it is not a point of P-256.
    pub fn p256_from_sec1(sec1: &[u8]) -> Option<P256Key> {
        P256.key(sec1)
    }

    /// Whether `signature` (`r || s`, 64 bytes) is a valid ES256 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        P256.verify(&self.table, &Sha256::digest(message), signature)
    }
}

impl EcKey<12> {
    /// A key from a SEC1 point encoding; None when it is not a point of P-384.
    pub fn p384_from_sec1(sec1: &[u8]) -> Option<P384Key> {
        P384.key(sec1)
    }

    /// Whether `signature` (`r || s`, 96 bytes) is a valid ES384 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        P384.verify(&self.table, &Sha384::digest(message), signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
    use p256::ecdsa::signature::{Signer, Verifier};
    use rand_core::{OsRng, RngCore};

    fn random_bytes(len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        OsRng.fill_bytes(&mut bytes);
        bytes
    }

    fn be<const L: usize>(limbs: &[u32; L]) -> Vec<u8> {
        limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect()
    }

    /// Signature variants of a valid `r || s` (size bytes each): the crate's verdict must be ours.
    fn variants(sig: &[u8], n: &[u8]) -> Vec<Vec<u8>> {
        let size = sig.len() / 2;
        let mut out = vec![sig.to_vec()];
        for at in [0, size - 1, size, 2 * size - 1] {
            let mut bad = sig.to_vec();
            bad[at] ^= 0x01;
            out.push(bad);
        }
        // High s: n - s.
        let s = &sig[size..];
        let mut high = vec![0u8; size];
        let mut borrow = 0i16;
        for i in (0..size).rev() {
            let d = i16::from(n[i]) - i16::from(s[i]) - borrow;
            high[i] = d.rem_euclid(256) as u8;
            borrow = i16::from(d < 0);
        }
        out.push([&sig[..size], &high[..]].concat());
        // r or s zero, equal to n, all ones; swapped.
        let zero = vec![0u8; size];
        let ones = vec![0xffu8; size];
        for edge in [&zero, &n.to_vec(), &ones] {
            out.push([&edge[..], &sig[size..]].concat());
            out.push([&sig[..size], &edge[..]].concat());
        }
        out.push([&sig[size..], &sig[..size]].concat());
        // Wrong lengths.
        out.push(sig[1..].to_vec());
        out.push([sig, &[0u8][..]].concat());
        out.push(Vec::new());
        out
    }

    #[test]
    fn p256_agrees_with_the_p256_crate_on_random_keys_messages_and_signatures() {
        let n = be(&P256.n.m);
        for round in 0..24 {
            let signing = p256::ecdsa::SigningKey::random(&mut OsRng);
            let verifying = signing.verifying_key();
            let point = verifying.to_encoded_point(false);
            let key = P256Key::p256_from_sec1(point.as_bytes()).expect("key");
            let compressed = verifying.to_encoded_point(true);
            assert!(
                P256Key::p256_from_sec1(compressed.as_bytes()).expect("compressed") == key,
                "compressed and uncompressed are the same key"
            );
            let message = random_bytes(round * 7);
            let sig: p256::ecdsa::Signature = signing.sign(&message);
            let sig = sig.to_bytes().to_vec();
            assert!(key.verify(&message, &sig), "round {round}");
            assert!(!key.verify(b"another message", &sig));
            for variant in variants(&sig, &n) {
                let theirs = p256::ecdsa::Signature::from_slice(&variant)
                    .is_ok_and(|s| verifying.verify(&message, &s).is_ok());
                assert_eq!(key.verify(&message, &variant), theirs, "round {round}");
            }
            // Random digests, including ones above n (reduced modulo n).
            for digest in [random_bytes(32), vec![0xff; 32], n.clone(), vec![0; 32]] {
                let Ok(sig) =
                    PrehashSigner::<p256::ecdsa::Signature>::sign_prehash(&signing, &digest)
                else {
                    continue;
                };
                let sig = sig.to_bytes().to_vec();
                let theirs = verifying
                    .verify_prehash(
                        &digest,
                        &p256::ecdsa::Signature::from_slice(&sig).expect("sig"),
                    )
                    .is_ok();
                assert!(theirs);
                assert!(
                    P256.verify(&key.table, &digest, &sig),
                    "digest {digest:02x?}"
                );
            }
            // Random r || s: not a signature for either.
            let random = random_bytes(64);
            let theirs = p256::ecdsa::Signature::from_slice(&random)
                .is_ok_and(|s| verifying.verify(&message, &s).is_ok());
            assert!(!theirs);
            assert!(!key.verify(&message, &random));
        }
    }

    #[test]
    fn p384_agrees_with_the_p384_crate_on_random_keys_messages_and_signatures() {
        use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
        use p384::ecdsa::signature::{Signer, Verifier};
        let n = be(&P384.n.m);
        for round in 0..12 {
            let signing = p384::ecdsa::SigningKey::random(&mut OsRng);
            let verifying = signing.verifying_key();
            let point = verifying.to_encoded_point(false);
            let key = P384Key::p384_from_sec1(point.as_bytes()).expect("key");
            let compressed = verifying.to_encoded_point(true);
            assert!(P384Key::p384_from_sec1(compressed.as_bytes()).expect("compressed") == key);
            let message = random_bytes(round * 11);
            let sig: p384::ecdsa::Signature = signing.sign(&message);
            let sig = sig.to_bytes().to_vec();
            assert!(key.verify(&message, &sig), "round {round}");
            assert!(!key.verify(b"another message", &sig));
            for variant in variants(&sig, &n) {
                let theirs = p384::ecdsa::Signature::from_slice(&variant)
                    .is_ok_and(|s| verifying.verify(&message, &s).is_ok());
                assert_eq!(key.verify(&message, &variant), theirs, "round {round}");
            }
            for digest in [random_bytes(48), vec![0xff; 48], n.clone()] {
                let Ok(sig) =
                    PrehashSigner::<p384::ecdsa::Signature>::sign_prehash(&signing, &digest)
                else {
                    continue;
                };
                let sig = sig.to_bytes().to_vec();
                let theirs = verifying
                    .verify_prehash(
                        &digest,
                        &p384::ecdsa::Signature::from_slice(&sig).expect("sig"),
                    )
                    .is_ok();
                assert!(theirs);
                assert!(P384.verify(&key.table, &digest, &sig));
            }
        }
    }

    #[test]
    fn points_are_decoded_as_the_crates_decode_them() {
        let signing = p256::ecdsa::SigningKey::random(&mut OsRng);
        let point = signing.verifying_key().to_encoded_point(false);
        let bytes = point.as_bytes().to_vec();
        let crate_ok = |b: &[u8]| p256::ecdsa::VerifyingKey::from_sec1_bytes(b).is_ok();
        let ours_ok = |b: &[u8]| P256Key::p256_from_sec1(b).is_some();
        let mut cases: Vec<Vec<u8>> = vec![bytes.clone(), vec![0x00], vec![], vec![0x04]];
        let mut off_curve = bytes.clone();
        off_curve[64] ^= 1;
        cases.push(off_curve);
        // x = p (not a field element), y = p.
        let p = be(&P256.p.m);
        cases.push([&[0x04][..], &p, &bytes[33..]].concat());
        cases.push([&[0x04][..], &bytes[1..33], &p].concat());
        // Compressed, both parities; compact; wrong lengths; hybrid tags.
        for tag in [0x02u8, 0x03, 0x05, 0x06, 0x07, 0x01] {
            cases.push([&[tag][..], &bytes[1..33]].concat());
            cases.push([&[tag][..], &bytes[1..]].concat());
        }
        // An x with no point (about half of all x): try a few.
        for i in 0..8u8 {
            let mut x = bytes[1..33].to_vec();
            x[31] = x[31].wrapping_add(i);
            cases.push([&[0x02][..], &x].concat());
            cases.push([&[0x05][..], &x].concat());
        }
        cases.push([&[0x02][..], &p].concat());
        for case in &cases {
            assert_eq!(ours_ok(case), crate_ok(case), "{case:02x?}");
            if let (Some(ours), Ok(theirs)) = (
                P256Key::p256_from_sec1(case),
                p256::ecdsa::VerifyingKey::from_sec1_bytes(case),
            ) {
                let uncompressed = theirs.to_encoded_point(false);
                let same = P256Key::p256_from_sec1(uncompressed.as_bytes()).expect("point");
                assert!(same == ours, "{case:02x?} decodes to the crate's point");
            }
        }
        let point = p384::ecdsa::SigningKey::random(&mut OsRng)
            .verifying_key()
            .to_encoded_point(true);
        let compact = [&[0x05][..], &point.as_bytes()[1..]].concat();
        let theirs = p384::ecdsa::VerifyingKey::from_sec1_bytes(&compact).expect("compact");
        let ours = P384Key::p384_from_sec1(&compact).expect("compact");
        let want =
            P384Key::p384_from_sec1(theirs.to_encoded_point(false).as_bytes()).expect("point");
        assert!(ours == want);
    }

    fn big<const L: usize>(limbs: &[u32; L]) -> rsa::BigUint {
        rsa::BigUint::from_bytes_be(&be(limbs))
    }

    fn field_products_match_big_integers<const L: usize>(curve: &Curve<L>) {
        let p = big(&curve.p.m);
        let mut p_minus_1 = curve.p.m;
        p_minus_1[0] -= 1;
        let mut values: Vec<[u32; L]> = vec![[0; L], curve.p.one, p_minus_1, [0xffff_ffff; L]];
        values[3] = p_minus_1;
        for _ in 0..200 {
            let mut a = [0u32; L];
            be_into_limbs(&random_bytes(4 * L), &mut a);
            if !less_than(&a, &curve.p.m) {
                sub_in_place(&mut a, &curve.p.m);
            }
            // Sparse values too: few nonzero limbs stress the signed word sums.
            let mut sparse = [0u32; L];
            let pick = (a[0] as usize) % L;
            sparse[pick] = a[1];
            values.push(a);
            values.push(sparse);
        }
        for (i, a) in values.iter().enumerate() {
            let b = &values[(i * 7 + 3) % values.len()];
            let want = (big(a) * big(b)) % &p;
            assert_eq!(big(&curve.p.mul(a, b)), want, "{a:08x?} * {b:08x?}");
            assert_eq!(big(&curve.p.sqr(a)), (big(a) * big(a)) % &p);
        }
    }

    #[test]
    fn field_products_are_exact() {
        field_products_match_big_integers(&P256);
        field_products_match_big_integers(&P384);
    }

    #[test]
    fn the_scalar_inverse_is_an_inverse() {
        for _ in 0..32 {
            let mut a: [u32; 8] = [0; 8];
            be_into_limbs(&random_bytes(32), &mut a);
            if !less_than(&a, &P256.n.m) {
                sub_in_place(&mut a, &P256.n.m);
            }
            let inv = P256.n.invert_vartime(&a).expect("inverse");
            let prod = P256.n.mul(&P256.n.to_mont(&a), &inv);
            let mut one = [0u32; 8];
            one[0] = 1;
            assert_eq!(prod, one);
        }
        assert!(P256.n.invert_vartime(&[0; 8]).is_none());
    }

    #[test]
    fn exceptional_additions_give_the_right_points() {
        let c = &P256;
        let g = Jacobian {
            x: c.g.x,
            y: c.g.y,
            z: c.p.one,
        };
        // G + G is 2G; 2G + (-G)... through the affine G and -G.
        let two_g = c.add_affine(&g, &c.g);
        let doubled = c.double(&g);
        assert_eq!(
            c.to_affine(&two_g).map(|p| p.x),
            c.to_affine(&doubled).map(|p| p.x)
        );
        let neg_g = Affine {
            x: c.g.x,
            y: c.p.sub(&[0; 8], &c.g.y),
        };
        assert!(is_zero(&c.add_affine(&g, &neg_g).z), "G + -G is infinity");
        let back = c.add_affine(&c.infinity(), &c.g);
        assert_eq!(c.to_affine(&back).map(|p| p.x), Some(c.g.x));
    }
}
