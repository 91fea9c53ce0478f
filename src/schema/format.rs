//! `format` assertions: `date-time`, `date` (RFC 3339), `email` (RFC 5321 mailbox, ASCII),
//! `uuid` (RFC 4122 textual form), `ipv4`, `ipv6` (RFC 2673 / 4291 text forms, no zone id) and
//! `uri` (RFC 3986 absolute URI). Hand-written, allocation-free checks: no extra crates.

use std::net::{Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    DateTime,
    Date,
    Email,
    Uuid,
    Ipv4,
    Ipv6,
    Uri,
    /// OpenAPI `int32` / `int64`: an integer within the signed range (other values pass).
    Int32,
    Int64,
    /// OpenAPI `byte`: base64 text.
    Byte,
    /// OpenAPI `float`, `double`, `binary`, `password`: defined by OpenAPI, no constraint to check.
    Annotation,
}

impl Format {
    pub const NAMES: &'static [&'static str] =
        &["date-time", "date", "email", "uuid", "ipv4", "ipv6", "uri"];

    pub fn from_name(name: &str) -> Option<Format> {
        Some(match name {
            "date-time" => Format::DateTime,
            "date" => Format::Date,
            "email" => Format::Email,
            "uuid" => Format::Uuid,
            "ipv4" => Format::Ipv4,
            "ipv6" => Format::Ipv6,
            "uri" => Format::Uri,
            _ => return None,
        })
    }

    /// The formats OpenAPI adds, accepted only inside OpenAPI documents.
    pub fn from_openapi_name(name: &str) -> Option<Format> {
        Some(match name {
            "int32" => Format::Int32,
            "int64" => Format::Int64,
            "byte" => Format::Byte,
            "float" | "double" | "binary" | "password" => Format::Annotation,
            other => return Format::from_name(other),
        })
    }

    /// Checks a number, given as the text it was written with (only `int32`/`int64` constrain
    /// numbers).
    pub fn number_ok(self, n: &str) -> bool {
        let (lo, hi) = match self {
            Format::Int32 => (-2_147_483_648.0, 2_147_483_648.0),
            Format::Int64 => (-9.223_372_036_854_776e18, 9.223_372_036_854_776e18),
            _ => return true,
        };
        if let Ok(i) = n.parse::<i64>() {
            return self != Format::Int32 || i32::try_from(i).is_ok();
        }
        if n.parse::<u64>().is_ok() {
            return false; // above i64::MAX
        }
        // A float: only integral values are constrained ("type" judges the rest).
        n.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .is_none_or(|f| f.fract() != 0.0 || (f >= lo && f < hi))
    }

    pub fn is_valid(self, s: &str) -> bool {
        match self {
            Format::DateTime => is_date_time(s),
            Format::Date => is_date(s.as_bytes()),
            Format::Email => is_email(s),
            Format::Uuid => is_uuid(s.as_bytes()),
            Format::Ipv4 => is_ipv4(s),
            Format::Ipv6 => is_ipv6(s),
            Format::Uri => is_uri(s),
            Format::Byte => is_base64(s.as_bytes()),
            Format::Int32 | Format::Int64 | Format::Annotation => true,
        }
    }
}

fn digits(b: &[u8], from: usize, n: usize) -> Option<u32> {
    let part = b.get(from..from + n)?;
    let mut v = 0u32;
    for &d in part {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(d - b'0');
    }
    Some(v)
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        _ => 0,
    }
}

/// `YYYY-MM-DD` with a real calendar day.
fn is_date(b: &[u8]) -> bool {
    b.len() == 10 && date_at(b).is_some()
}

fn date_at(b: &[u8]) -> Option<()> {
    let year = digits(b, 0, 4)?;
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    (b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month))
    .then_some(())
}

/// RFC 3339 `date-time`; a leap second (`:60`) only where the UTC time is 23:59.
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 20 || date_at(b).is_none() || !matches!(b.get(10), Some(b'T' | b't')) {
        return false;
    }
    let (Some(hour), Some(minute), Some(second)) =
        (digits(b, 11, 2), digits(b, 14, 2), digits(b, 17, 2))
    else {
        return false;
    };
    if b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
        || hour > 23
        || minute > 59
        || second > 60
    {
        return false;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    let offset_minutes: i32 = match b.get(i) {
        Some(b'Z' | b'z') if b.len() == i + 1 => 0,
        Some(sign @ (b'+' | b'-')) if b.len() == i + 6 => {
            let (Some(oh), Some(om)) = (digits(b, i + 1, 2), digits(b, i + 4, 2)) else {
                return false;
            };
            if b.get(i + 3) != Some(&b':') || oh > 23 || om > 59 {
                return false;
            }
            let m = (oh * 60 + om) as i32;
            if *sign == b'+' {
                m
            } else {
                -m
            }
        }
        _ => return false,
    };
    if second == 60 {
        let local = (hour * 60 + minute) as i32;
        let utc = (local - offset_minutes).rem_euclid(24 * 60);
        return utc == 23 * 60 + 59;
    }
    true
}

fn is_base64(b: &[u8]) -> bool {
    let body = b
        .strip_suffix(b"==")
        .or_else(|| b.strip_suffix(b"="))
        .unwrap_or(b);
    b.len().is_multiple_of(4)
        && body
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

fn is_uuid(b: &[u8]) -> bool {
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        })
}

fn is_ipv4(s: &str) -> bool {
    // std refuses leading zeros ("01.2.3.4") and anything but four decimal octets.
    s.parse::<Ipv4Addr>().is_ok()
}

fn is_ipv6(s: &str) -> bool {
    s.parse::<Ipv6Addr>().is_ok()
}

fn is_atext(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&c)
}

fn is_hostname(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        })
}

/// RFC 5321 mailbox: dot-atom or quoted local part; host name or address literal.
fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return false;
    };
    let local_ok = if let Some(quoted) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        let mut escaped = false;
        quoted.bytes().all(|c| {
            if escaped {
                escaped = false;
                (32..127).contains(&c)
            } else if c == b'\\' {
                escaped = true;
                true
            } else {
                (32..127).contains(&c) && c != b'"'
            }
        }) && !escaped
    } else {
        !local.is_empty()
            && local
                .split('.')
                .all(|part| !part.is_empty() && part.bytes().all(is_atext))
    };
    if !local_ok || local.len() > 64 {
        return false;
    }
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return match literal.strip_prefix("IPv6:") {
            Some(v6) => is_ipv6(v6),
            None => is_ipv4(literal),
        };
    }
    is_hostname(domain)
}

fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~".contains(&c)
}

fn is_sub_delim(c: u8) -> bool {
    b"!$&'()*+,;=".contains(&c)
}

/// Every byte is allowed by `ok` or starts a well-formed `%XX`.
fn chars_ok(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            if !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
            {
                return false;
            }
            i += 3;
        } else if ok(c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn is_pchar(c: u8) -> bool {
    is_unreserved(c) || is_sub_delim(c) || c == b':' || c == b'@'
}

/// RFC 3986 `URI` (absolute, with a scheme; a fragment is allowed).
fn is_uri(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once(':') else {
        return false;
    };
    let sb = scheme.as_bytes();
    if !sb.first().is_some_and(u8::is_ascii_alphabetic)
        || !sb
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(c))
    {
        return false;
    }
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (hier, query) = rest.split_once('?').unwrap_or((rest, ""));
    let query_ok = |c: u8| is_pchar(c) || c == b'/' || c == b'?';
    if !chars_ok(query, query_ok) || !chars_ok(fragment, query_ok) {
        return false;
    }
    let path = if let Some(after) = hier.strip_prefix("//") {
        let end = after.find('/').unwrap_or(after.len());
        let (authority, path) = after.split_at(end);
        if !is_authority(authority) {
            return false;
        }
        path
    } else {
        hier
    };
    chars_ok(path, |c| is_pchar(c) || c == b'/')
}

fn is_authority(a: &str) -> bool {
    let (userinfo, hostport) = match a.rsplit_once('@') {
        Some((u, h)) => (u, h),
        None => ("", a),
    };
    if !chars_ok(userinfo, |c| {
        is_unreserved(c) || is_sub_delim(c) || c == b':'
    }) {
        return false;
    }
    let (host_ok, port) = if let Some(inner) = hostport.strip_prefix('[') {
        let Some((literal, after)) = inner.split_once(']') else {
            return false;
        };
        let ok = if let Some(future) = literal.strip_prefix(['v', 'V']) {
            future.split_once('.').is_some_and(|(ver, rest)| {
                !ver.is_empty()
                    && ver.bytes().all(|c| c.is_ascii_hexdigit())
                    && !rest.is_empty()
                    && rest
                        .bytes()
                        .all(|c| is_unreserved(c) || is_sub_delim(c) || c == b':')
            })
        } else {
            is_ipv6(literal)
        };
        match after {
            "" => (ok, ""),
            p => match p.strip_prefix(':') {
                Some(port) => (ok, port),
                None => return false,
            },
        }
    } else {
        let (host, port) = hostport.split_once(':').unwrap_or((hostport, ""));
        (
            chars_ok(host, |c| is_unreserved(c) || is_sub_delim(c)),
            port,
        )
    };
    host_ok && port.bytes().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_time_accepts_rfc_3339_and_leap_seconds_only_at_utc_23_59() {
        assert!(Format::DateTime.is_valid("1963-06-19T08:30:06.283185Z"));
        assert!(Format::DateTime.is_valid("1998-12-31T15:59:60.123-08:00"));
        assert!(!Format::DateTime.is_valid("1998-12-31T22:59:60Z"));
        assert!(!Format::DateTime.is_valid("1990-02-31T15:59:59Z"));
        assert!(!Format::DateTime.is_valid("1985-04-12T23:20:50+01"));
    }

    #[test]
    fn date_checks_the_calendar() {
        assert!(Format::Date.is_valid("2020-02-29"));
        assert!(!Format::Date.is_valid("2100-02-29"));
        assert!(!Format::Date.is_valid("2020-1-01"));
    }

    #[test]
    fn email_uuid_ip_and_uri_checks() {
        assert!(Format::Email.is_valid("joe.bloggs@example.com"));
        assert!(Format::Email.is_valid("\"joe bloggs\"@example.com"));
        assert!(!Format::Email.is_valid("te..st@example.com"));
        assert!(Format::Uuid.is_valid("2eb8aa08-AA98-11ea-B4Aa-73B441D16380"));
        assert!(!Format::Uuid.is_valid("2eb8aa08aa9811eab4aa73b441d16380"));
        assert!(Format::Ipv4.is_valid("192.168.0.1"));
        assert!(!Format::Ipv4.is_valid("192.168.0.01"));
        assert!(Format::Ipv6.is_valid("::1"));
        assert!(!Format::Ipv6.is_valid("fe80::1%eth0"));
        assert!(Format::Uri.is_valid("http://foo.bar/?baz=qux#quux"));
        assert!(!Format::Uri.is_valid("/abc"));
        assert!(!Format::Uri.is_valid("http://example.com/%6G"));
    }
}
