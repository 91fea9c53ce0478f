//! The two protobuf messages of `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`,
//! written and read by hand: a general protobuf crate would add more to the `.wasm` than these two
//! messages need (see `docs/config.md`, "Rate limit service", for the bytes this costs).
//!
//! Encoded: `RateLimitRequest { domain = 1, descriptors = 2, hits_addend = 3 }`, each
//! `RateLimitDescriptor { entries = 1 { key = 1, value = 2 }, hits_addend = 3 (UInt64Value) }`.
//! Decoded: `RateLimitResponse { overall_code = 1, statuses = 2, response_headers_to_add = 3,
//! request_headers_to_add = 4 }`, each `DescriptorStatus { code = 1, current_limit = 2 { requests_per_unit
//! = 1, unit = 2, name = 3 }, limit_remaining = 3, duration_until_reset = 4 }` and each `HeaderValue
//! { key = 1, value = 2, raw_value = 3 }`. Every other field (raw_body, dynamic_metadata, quota,
//! unknown ones) is skipped by its wire type, whatever its number.
//!
//! # Untrusted input
//! The response comes from the network. The decoder never panics and never indexes; it refuses a
//! message over [`MAX_RESPONSE_BYTES`], more than [`MAX_STATUSES`] statuses or [`MAX_HEADERS`]
//! headers (per list), a header name or value over [`MAX_HEADER_BYTES`], a truncated field, a
//! varint over 10 bytes, and the group wire types. Memory is bounded by the message size.

/// Largest response accepted (a real one is a few hundred bytes).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
/// Most descriptor statuses accepted in one response.
pub const MAX_STATUSES: usize = 64;
/// Most headers accepted in each of the two header lists.
pub const MAX_HEADERS: usize = 32;
/// Longest header name or value accepted from the service.
pub const MAX_HEADER_BYTES: usize = 4096;

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Code {
    #[default]
    Unknown,
    Ok,
    OverLimit,
}

impl Code {
    fn from_wire(value: u64) -> Code {
        match value {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        }
    }
}

/// `RateLimitResponse.RateLimit`: the limit the service applied to a descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CurrentLimit {
    pub requests_per_unit: u32,
    /// The unit in seconds (0 when unknown).
    pub unit_secs: u64,
    pub name: String,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescriptorStatus {
    pub code: Code,
    pub current_limit: Option<CurrentLimit>,
    pub limit_remaining: u32,
    /// `duration_until_reset` in milliseconds, if given.
    pub until_reset_ms: Option<u64>,
}

/// `RateLimitResponse`, the parts apiguard uses.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response {
    pub overall_code: Code,
    pub statuses: Vec<DescriptorStatus>,
    /// `response_headers_to_add`: (name, value) as bytes (`raw_value` when set, else `value`).
    pub response_headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// `request_headers_to_add`.
    pub request_headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Why a response could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    TooLarge,
    Truncated,
    BadVarint,
    BadWireType,
    TooMany,
}

/// One descriptor: its entries, and a `hits_addend` of its own (sent only when set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor<'a> {
    pub entries: Vec<(&'a str, std::borrow::Cow<'a, str>)>,
    pub hits_addend: Option<u64>,
}

/// Encodes a `RateLimitRequest`. `hits_addend` 0 is left out (the service then counts 1).
pub fn encode_request(domain: &str, descriptors: &[Descriptor<'_>], hits_addend: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_string(&mut out, 1, domain.as_bytes());
    for descriptor in descriptors {
        let mut d = Vec::with_capacity(48);
        for (key, value) in &descriptor.entries {
            let mut entry = Vec::with_capacity(key.len() + value.len() + 4);
            put_string(&mut entry, 1, key.as_bytes());
            put_string(&mut entry, 2, value.as_bytes());
            put_message(&mut d, 1, &entry);
        }
        if let Some(hits) = descriptor.hits_addend {
            // google.protobuf.UInt64Value { value = 1 }
            let mut wrapper = Vec::with_capacity(11);
            put_varint_field(&mut wrapper, 1, hits);
            put_message(&mut d, 3, &wrapper);
        }
        put_message(&mut out, 2, &d);
    }
    put_varint_field(&mut out, 3, u64::from(hits_addend));
    out
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_varint_field(out: &mut Vec<u8>, field: u32, value: u64) {
    if value != 0 {
        put_varint(out, u64::from(field) << 3);
        put_varint(out, value);
    }
}

/// A string field; proto3 leaves empty strings out, and so does this.
fn put_string(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    if !bytes.is_empty() {
        put_message(out, field, bytes);
    }
}

/// A length-delimited field, written even when empty (an element of a repeated message field).
fn put_message(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, (u64::from(field) << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// One field read from a message.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// Fixed 32/64-bit values: skipped.
    Fixed,
}

/// Reads the fields of one message, in order.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { rest: bytes }
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value: u64 = 0;
        for (i, byte) in self.rest.iter().enumerate().take(10) {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.rest = self.rest.get(i + 1..).unwrap_or_default();
                return Ok(value);
            }
        }
        Err(if self.rest.len() < 10 {
            DecodeError::Truncated
        } else {
            DecodeError::BadVarint
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let taken = self.rest.get(..n).ok_or(DecodeError::Truncated)?;
        self.rest = self.rest.get(n..).unwrap_or_default();
        Ok(taken)
    }

    /// The next (field number, value), or `None` at the end.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::Truncated)?;
                Value::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => return Err(DecodeError::BadWireType),
        };
        Ok(Some((tag >> 3, value)))
    }
}

/// Decodes a `RateLimitResponse`.
pub fn decode_response(bytes: &[u8]) -> Result<Response, DecodeError> {
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(DecodeError::TooLarge);
    }
    let mut response = Response::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Varint(code)) => response.overall_code = Code::from_wire(code),
            (2, Value::Bytes(b)) => {
                if response.statuses.len() >= MAX_STATUSES {
                    return Err(DecodeError::TooMany);
                }
                response.statuses.push(decode_status(b)?);
            }
            (3, Value::Bytes(b)) => push_header(&mut response.response_headers, b)?,
            (4, Value::Bytes(b)) => push_header(&mut response.request_headers, b)?,
            _ => {}
        }
    }
    Ok(response)
}

fn decode_status(bytes: &[u8]) -> Result<DescriptorStatus, DecodeError> {
    let mut status = DescriptorStatus::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Varint(code)) => status.code = Code::from_wire(code),
            (2, Value::Bytes(b)) => status.current_limit = Some(decode_limit(b)?),
            (3, Value::Varint(n)) => status.limit_remaining = n as u32,
            (4, Value::Bytes(b)) => status.until_reset_ms = Some(decode_duration_ms(b)?),
            _ => {}
        }
    }
    Ok(status)
}

fn decode_limit(bytes: &[u8]) -> Result<CurrentLimit, DecodeError> {
    let mut limit = CurrentLimit::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Varint(n)) => limit.requests_per_unit = n as u32,
            (2, Value::Varint(unit)) => {
                limit.unit_secs = match unit {
                    1 => 1,
                    2 => 60,
                    3 => 3600,
                    4 => 86_400,
                    7 => 7 * 86_400,
                    5 => 30 * 86_400,
                    6 => 365 * 86_400,
                    _ => 0,
                }
            }
            (3, Value::Bytes(b)) if b.len() <= MAX_HEADER_BYTES => {
                limit.name = String::from_utf8_lossy(b).into_owned();
            }
            _ => {}
        }
    }
    Ok(limit)
}

/// `google.protobuf.Duration` in milliseconds, rounded up; negative durations count as 0.
fn decode_duration_ms(bytes: &[u8]) -> Result<u64, DecodeError> {
    let (mut secs, mut nanos) = (0i64, 0i64);
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            // int64 and int32 are two's complement varints.
            (1, Value::Varint(n)) => secs = n as i64,
            (2, Value::Varint(n)) => nanos = i64::from(n as i32),
            _ => {}
        }
    }
    // Proto3 durations carry one sign in both fields; anything not positive is "now".
    if secs < 0 || (secs == 0 && nanos <= 0) {
        return Ok(0);
    }
    let whole = u64::try_from(secs).unwrap_or(u64::MAX).saturating_mul(1000);
    let part = u64::try_from(nanos.max(0)).unwrap_or(0).div_ceil(1_000_000);
    Ok(whole.saturating_add(part))
}

fn push_header(list: &mut Vec<(Vec<u8>, Vec<u8>)>, bytes: &[u8]) -> Result<(), DecodeError> {
    if list.len() >= MAX_HEADERS {
        return Err(DecodeError::TooMany);
    }
    let (mut key, mut value, mut raw): (&[u8], &[u8], Option<&[u8]>) = (&[], &[], None);
    let mut fields = Fields::new(bytes);
    while let Some((number, v)) = fields.next_field()? {
        match (number, v) {
            (1, Value::Bytes(b)) => key = b,
            (2, Value::Bytes(b)) => value = b,
            (3, Value::Bytes(b)) => raw = Some(b),
            _ => {}
        }
    }
    let value = raw.unwrap_or(value);
    if key.len() > MAX_HEADER_BYTES || value.len() > MAX_HEADER_BYTES {
        return Err(DecodeError::TooLarge);
    }
    list.push((key.to_vec(), value.to_vec()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn request_bytes_match_the_protobuf_encoding() {
        let d = Descriptor {
            entries: vec![("k", Cow::Borrowed("v"))],
            hits_addend: None,
        };
        let bytes = encode_request("d", &[d], 2);
        // domain "d"; descriptor { entry { key "k", value "v" } }; hits_addend 2
        assert_eq!(
            bytes,
            [10, 1, b'd', 18, 8, 10, 6, 10, 1, b'k', 18, 1, b'v', 24, 2]
        );
    }

    #[test]
    fn a_response_with_statuses_and_headers_is_read() {
        // overall_code OVER_LIMIT; status { code OVER_LIMIT, current_limit { 5 per MINUTE, name "n" },
        // remaining 0, until_reset 1.5s }; response header x-a: b; request header x-c: raw "d"
        let mut duration = vec![8, 1, 16];
        put_varint(&mut duration, 500_000_000);
        let mut status = vec![8, 2, 18, 7, 8, 5, 16, 2, 26, 1, b'n', 24, 0, 34];
        status.push(duration.len() as u8);
        status.extend(duration);
        let mut msg = vec![8, 2, 18, status.len() as u8];
        msg.extend_from_slice(&status);
        msg.extend_from_slice(&[26, 8, 10, 3, b'x', b'-', b'a', 18, 1, b'b']);
        msg.extend_from_slice(&[34, 8, 10, 3, b'x', b'-', b'c', 26, 1, b'd']);
        let r = decode_response(&msg).unwrap();
        assert_eq!(r.overall_code, Code::OverLimit);
        assert_eq!(r.statuses.len(), 1);
        let s = &r.statuses[0];
        assert_eq!(s.code, Code::OverLimit);
        assert_eq!(
            s.current_limit,
            Some(CurrentLimit {
                requests_per_unit: 5,
                unit_secs: 60,
                name: "n".into()
            })
        );
        assert_eq!(s.until_reset_ms, Some(1500));
        assert_eq!(r.response_headers, vec![(b"x-a".to_vec(), b"b".to_vec())]);
        assert_eq!(r.request_headers, vec![(b"x-c".to_vec(), b"d".to_vec())]);
    }

    #[test]
    fn unknown_fields_of_every_wire_type_are_skipped() {
        // field 9 fixed64, field 10 fixed32, field 11 varint, field 12 bytes, then overall_code OK
        let mut msg = vec![
            0x49, 1, 2, 3, 4, 5, 6, 7, 8, 0x55, 1, 2, 3, 4, 0x58, 0x96, 1,
        ];
        msg.extend_from_slice(&[0x62, 2, 0, 0, 8, 1]);
        assert_eq!(decode_response(&msg).unwrap().overall_code, Code::Ok);
    }

    #[test]
    fn truncated_and_malformed_messages_are_refused() {
        assert_eq!(decode_response(&[8]), Err(DecodeError::Truncated));
        assert_eq!(decode_response(&[18, 5, 8]), Err(DecodeError::Truncated));
        assert_eq!(decode_response(&[0x0b]), Err(DecodeError::BadWireType));
        assert_eq!(
            decode_response(&[8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]),
            Err(DecodeError::BadVarint)
        );
        assert_eq!(
            decode_response(&vec![0u8; MAX_RESPONSE_BYTES + 1]),
            Err(DecodeError::TooLarge)
        );
        let many: Vec<u8> = std::iter::repeat_n([18u8, 0], MAX_STATUSES + 1)
            .flatten()
            .collect();
        assert_eq!(decode_response(&many), Err(DecodeError::TooMany));
    }

    #[test]
    fn an_empty_response_is_unknown() {
        assert_eq!(decode_response(&[]).unwrap().overall_code, Code::Unknown);
    }
}
