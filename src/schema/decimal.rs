//! Exact decimal comparison of JSON numbers on their text, as written.
//!
//! serde_json is built with `arbitrary_precision`, so a parsed [`serde_json::Number`] keeps the
//! text of the document (`0.99999999999999999`, `4.111111111111111e15`, `1e400`). The numeric
//! keywords (`minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`, `const`,
//! `enum`, `type: integer`, `uniqueItems`) compare that text exactly instead of a rounded `f64`:
//! `0.99999999999999999` is below `minimum: 1`, `10.0000000000000001` is above `maximum: 10`, and
//! `1e400` is above any finite bound.
//!
//! A [`Decimal`] is `sign × 0.d₁d₂…dₙ × 10^exp` with no leading or trailing zero digit (zero has no
//! digits). Its size is the number's significant digits: bounded by the body size.

use std::cmp::Ordering;

/// Exponents are clamped here: a document cannot write enough digits to reach it.
const EXP_CLAMP: i64 = 1 << 40;

/// `Decimal::default()` is zero.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Decimal {
    negative: bool,
    /// Significant digits as ASCII values 0-9 (no leading or trailing zero).
    digits: Vec<u8>,
    exp: i64,
}

impl Decimal {
    /// Reads a JSON number text (`-12.5e+3`). `None` if it is not one.
    pub fn parse(text: &str) -> Option<Decimal> {
        let b = text.as_bytes();
        let mut i = 0;
        let negative = b.first() == Some(&b'-');
        if negative {
            i += 1;
        }
        let mut digits = Vec::new();
        // Position of the decimal point relative to the first written digit.
        let mut int_len: i64 = 0;
        let mut any = false;
        while let Some(&c) = b.get(i) {
            if !c.is_ascii_digit() {
                break;
            }
            any = true;
            digits.push(c - b'0');
            int_len += 1;
            i += 1;
        }
        if !any {
            return None;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            let mut frac = false;
            while let Some(&c) = b.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                frac = true;
                digits.push(c - b'0');
                i += 1;
            }
            if !frac {
                return None;
            }
        }
        let mut exp: i64 = 0;
        if matches!(b.get(i), Some(b'e' | b'E')) {
            i += 1;
            let neg_exp = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            let mut e_any = false;
            while let Some(&c) = b.get(i) {
                if !c.is_ascii_digit() {
                    break;
                }
                e_any = true;
                exp = (exp * 10 + i64::from(c - b'0')).min(EXP_CLAMP);
                i += 1;
            }
            if !e_any {
                return None;
            }
            if neg_exp {
                exp = -exp;
            }
        }
        if i != b.len() {
            return None;
        }
        let lead = digits.iter().take_while(|&&d| d == 0).count();
        let trail = digits.iter().rev().take_while(|&&d| d == 0).count();
        if lead == digits.len() {
            return Some(Decimal {
                negative: false,
                digits: Vec::new(),
                exp: 0,
            });
        }
        let sig: Vec<u8> = digits
            .get(lead..digits.len() - trail)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        Some(Decimal {
            negative,
            digits: sig,
            exp: (int_len - lead as i64 + exp).clamp(-EXP_CLAMP, EXP_CLAMP),
        })
    }

    /// The decimal of a finite `f64` (its shortest round-trip text).
    pub fn from_f64(f: f64) -> Option<Decimal> {
        if !f.is_finite() {
            return None;
        }
        Decimal::parse(&format!("{f:e}"))
    }

    /// The nearest `f64`, if finite.
    pub fn to_f64(&self) -> Option<f64> {
        let mut s = String::with_capacity(self.digits.len() + 24);
        if self.negative {
            s.push('-');
        }
        s.push_str("0.");
        if self.digits.is_empty() {
            s.push('0');
        }
        s.extend(self.digits.iter().map(|&d| char::from(b'0' + d)));
        s.push_str(&format!("e{}", self.exp));
        s.parse::<f64>().ok().filter(|f| f.is_finite())
    }

    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// True when the value is a whole number (`2`, `2.0`, `2e3`, not `2.5` or `1e-3`).
    pub fn is_integer(&self) -> bool {
        self.is_zero() || self.exp >= self.digits.len() as i64
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            _ => {}
        }
        // Both normalised with a non-zero first digit: the exponent decides, then the digits
        // (a strict prefix is smaller: the other has more non-zero digits after it).
        self.exp
            .cmp(&other.exp)
            .then_with(|| self.digits.cmp(&other.digits))
    }

    /// The value as an `i64` when it is a whole number within 18 digits.
    pub fn as_small_int(&self) -> Option<i64> {
        if !self.is_integer() || self.exp > 18 {
            return None;
        }
        let mut n: i64 = 0;
        for k in 0..self.exp {
            let d = self.digits.get(k as usize).copied().unwrap_or(0);
            n = n * 10 + i64::from(d);
        }
        Some(if self.negative { -n } else { n })
    }

    /// The ASCII digits of a non-negative integer with at most `max` digits (`1.5e3` → `1500`).
    pub fn integer_digits(&self, max: usize) -> Option<Vec<u8>> {
        if self.negative || self.is_zero() || !self.is_integer() {
            return None;
        }
        let len = usize::try_from(self.exp).ok().filter(|n| *n <= max)?;
        let mut out: Vec<u8> = self.digits.iter().map(|d| b'0' + d).collect();
        out.resize(len, b'0');
        Some(out)
    }

    /// `self` is an integer multiple of `m` (`m > 0`). Exact when `m` has at most 19 significant
    /// digits; `None` (undecided) beyond that.
    pub fn is_multiple_of(&self, m: &Decimal) -> Option<bool> {
        if self.is_zero() {
            return Some(true);
        }
        if m.is_zero() {
            return None;
        }
        // self = X·10^a, m = M·10^b with X, M integers without trailing zeros.
        let a = self.exp - self.digits.len() as i64;
        let b = m.exp - m.digits.len() as i64;
        let mut big_m: u64 = 0;
        for &d in &m.digits {
            big_m = big_m.checked_mul(10)?.checked_add(u64::from(d))?;
        }
        let k = a - b;
        if k < 0 {
            // M·10^j divides X only if 10 divides X, and X ends in a non-zero digit.
            return Some(false);
        }
        let modulus = u128::from(big_m);
        let mut r: u128 = 0;
        for &d in &self.digits {
            r = (r * 10 + u128::from(d)) % modulus;
        }
        // r · 10^k mod M, by squaring (k may be large).
        let mut base: u128 = 10 % modulus;
        let mut e = k;
        let mut acc: u128 = 1 % modulus;
        while e > 0 {
            if e & 1 == 1 {
                acc = acc * base % modulus;
            }
            base = base * base % modulus;
            e >>= 1;
        }
        Some((r * acc).is_multiple_of(modulus))
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        let neg_a = self.negative && !self.is_zero();
        let neg_b = other.negative && !other.is_zero();
        match (neg_a, neg_b) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

/// The decimal of a JSON number as written in its document.
pub fn of(n: &serde_json::Number) -> Option<Decimal> {
    Decimal::parse(n.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn equal_values_written_differently_compare_equal() {
        assert_eq!(d("1"), d("1.0"));
        assert_eq!(d("1"), d("0.1e1"));
        assert_eq!(d("-0"), d("0.000"));
        assert_eq!(d("4111111111111111"), d("4.111111111111111e15"));
        assert_eq!(d("1500"), d("1.5E+3"));
    }

    #[test]
    fn digits_beyond_f64_precision_still_order_numbers() {
        assert!(d("0.99999999999999999") < d("1"));
        assert!(d("10.0000000000000001") > d("10"));
        assert!(d("1e400") > d("1.7976931348623157e308"));
        assert!(d("-1e400") < d("-5"));
        assert!(d("12") < d("123"));
        assert!(d("0.12") < d("0.123"));
        assert!(d("-0.12") > d("-0.123"));
    }

    #[test]
    fn integers_are_whole_numbers_however_written() {
        assert!(d("2.0").is_integer());
        assert!(d("2e3").is_integer());
        assert!(d("1.5e1").is_integer());
        assert!(!d("1.0000000000000001").is_integer());
        assert!(!d("1e-3").is_integer());
        assert!(d("1e400").is_integer());
    }

    #[test]
    fn whole_numbers_of_at_most_18_digits_are_small_ints() {
        assert_eq!(d("1.5e3").as_small_int(), Some(1500));
        assert_eq!(d("-0.0").as_small_int(), Some(0));
        assert_eq!(d("-12").as_small_int(), Some(-12));
        assert_eq!(
            d("999999999999999999").as_small_int(),
            Some(999_999_999_999_999_999)
        );
        assert_eq!(d("1e18").as_small_int(), None);
        assert_eq!(d("1.5").as_small_int(), None);
    }

    #[test]
    fn multiple_of_is_exact_on_decimals() {
        assert_eq!(d("0.3").is_multiple_of(&d("0.1")), Some(true));
        assert_eq!(d("19.99").is_multiple_of(&d("0.01")), Some(true));
        assert_eq!(d("0.0075").is_multiple_of(&d("0.0001")), Some(true));
        assert_eq!(d("1e308").is_multiple_of(&d("0.123456789")), Some(false));
        assert_eq!(d("1e400").is_multiple_of(&d("2")), Some(true));
        assert_eq!(
            d("10.0000000000000001").is_multiple_of(&d("1")),
            Some(false)
        );
        assert_eq!(d("7").is_multiple_of(&d("2")), Some(false));
    }

    #[test]
    fn text_that_is_not_a_json_number_is_refused() {
        for bad in ["", "-", "1.", ".5", "1e", "1e+", "01x", "NaN", "inf"] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
    }
}
