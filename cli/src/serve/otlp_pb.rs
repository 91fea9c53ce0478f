//! OTLP/HTTP protobuf logs, decoded by hand into the OTLP JSON mapping so that one code path
//! reads both encodings. Only the messages and fields apiguard's events use are read
//! (`ExportLogsServiceRequest` → `ResourceLogs` → `Resource.attributes`, `ScopeLogs` →
//! `InstrumentationScope.name/version`, `LogRecord.body/attributes/event_name`, `KeyValue`,
//! `AnyValue` with all seven kinds, `ArrayValue`, `KeyValueList`); other fields are skipped by wire
//! type, as protobuf requires. Nesting is bounded ([`MAX_NESTING`]), every length is checked against
//! the bytes left: malformed input is an error, never a panic.

use serde_json::{json, Map, Value};

/// Deepest message nesting read (AnyValue inside AnyValue ...).
pub const MAX_NESTING: usize = 48;

struct Reader<'a> {
    buf: &'a [u8],
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..70).step_by(7) {
            let (&b, rest) = self.buf.split_first().ok_or("truncated varint")?;
            self.buf = rest;
            if shift == 63 && b > 1 {
                return Err("varint overflows 64 bits".into());
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("varint longer than 10 bytes".into())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.buf.len() {
            return Err("length past the end of the message".into());
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    /// The next (field number, value), or `None` at the end.
    fn next(&mut self) -> Result<Option<(u64, Field<'a>)>, String> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let field = tag >> 3;
        if field == 0 {
            return Err("field number 0".into());
        }
        let value = match tag & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Field::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
                Field::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        Ok(Some((field, value)))
    }
}

fn fields<'a>(
    buf: &'a [u8],
    mut each: impl FnMut(u64, Field<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut r = Reader { buf };
    while let Some((n, f)) = r.next()? {
        each(n, f)?;
    }
    Ok(())
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

fn push(m: &mut Map<String, Value>, name: &str, v: Value) {
    if let Value::Array(list) = m.entry(name).or_insert_with(|| Value::Array(Vec::new())) {
        list.push(v);
    }
}

fn any_value(b: &[u8], depth: usize) -> Result<Value, String> {
    if depth > MAX_NESTING {
        return Err(format!("nested deeper than {MAX_NESTING}"));
    }
    let mut out = json!({});
    fields(b, |n, f| {
        out = match (n, f) {
            (1, Field::Bytes(s)) => json!({"stringValue": text(s)?}),
            (2, Field::Varint(v)) => json!({"boolValue": v != 0}),
            // int64 travels as its two's complement in a varint.
            #[allow(clippy::cast_possible_wrap)]
            (3, Field::Varint(v)) => json!({"intValue": (v as i64).to_string()}),
            (4, Field::Fixed64(v)) => json!({"doubleValue": f64::from_bits(v)}),
            (5, Field::Bytes(s)) => {
                let mut values = Vec::new();
                fields(s, |n, f| {
                    if let (1, Field::Bytes(v)) = (n, f) {
                        values.push(any_value(v, depth + 1)?);
                    }
                    Ok(())
                })?;
                json!({"arrayValue": {"values": values}})
            }
            (6, Field::Bytes(s)) => json!({"kvlistValue": {"values": key_values(s, depth + 1)?}}),
            (7, Field::Bytes(_)) => json!({"bytesValue": ""}),
            _ => return Ok(()),
        };
        Ok(())
    })?;
    Ok(out)
}

fn key_value(b: &[u8], depth: usize) -> Result<Value, String> {
    let mut key = String::new();
    let mut value = json!({});
    fields(b, |n, f| {
        match (n, f) {
            (1, Field::Bytes(s)) => key = text(s)?,
            (2, Field::Bytes(s)) => value = any_value(s, depth + 1)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(json!({"key": key, "value": value}))
}

/// The repeated `KeyValue` (field 1) of a `KeyValueList` or `Resource`.
fn key_values(b: &[u8], depth: usize) -> Result<Vec<Value>, String> {
    let mut list = Vec::new();
    fields(b, |n, f| {
        if let (1, Field::Bytes(kv)) = (n, f) {
            list.push(key_value(kv, depth)?);
        }
        Ok(())
    })?;
    Ok(list)
}

fn log_record(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    fields(b, |n, f| {
        match (n, f) {
            (1, Field::Fixed64(t)) => {
                m.insert("timeUnixNano".into(), t.to_string().into());
            }
            (5, Field::Bytes(s)) => {
                m.insert("body".into(), any_value(s, 1)?);
            }
            (6, Field::Bytes(s)) => push(&mut m, "attributes", key_value(s, 1)?),
            (12, Field::Bytes(s)) => {
                // LogRecord.event_name: the same meaning as the `event.name` attribute.
                let name = text(s)?;
                push(
                    &mut m,
                    "attributes",
                    json!({"key": "event.name", "value": {"stringValue": name}}),
                );
            }
            _ => {}
        }
        Ok(())
    })?;
    Ok(Value::Object(m))
}

fn scope_logs(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    fields(b, |n, f| {
        match (n, f) {
            (1, Field::Bytes(s)) => {
                let mut scope = Map::new();
                fields(s, |n, f| {
                    match (n, f) {
                        (1, Field::Bytes(t)) => {
                            scope.insert("name".into(), text(t)?.into());
                        }
                        (2, Field::Bytes(t)) => {
                            scope.insert("version".into(), text(t)?.into());
                        }
                        _ => {}
                    }
                    Ok(())
                })?;
                m.insert("scope".into(), Value::Object(scope));
            }
            (2, Field::Bytes(s)) => push(&mut m, "logRecords", log_record(s)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(Value::Object(m))
}

fn resource_logs(b: &[u8]) -> Result<Value, String> {
    let mut m = Map::new();
    fields(b, |n, f| {
        match (n, f) {
            (1, Field::Bytes(s)) => {
                m.insert("resource".into(), json!({"attributes": key_values(s, 0)?}));
            }
            (2, Field::Bytes(s)) => push(&mut m, "scopeLogs", scope_logs(s)?),
            _ => {}
        }
        Ok(())
    })?;
    Ok(Value::Object(m))
}

/// An `ExportLogsServiceRequest` in protobuf, as its JSON mapping.
pub fn decode_logs_request(b: &[u8]) -> Result<Value, String> {
    let mut list = Vec::new();
    fields(b, |n, f| {
        if let (1, Field::Bytes(s)) = (n, f) {
            list.push(resource_logs(s)?);
        }
        Ok(())
    })?;
    Ok(json!({ "resourceLogs": list }))
}

/// Encoding, the other way: the test side of the round trip.
#[cfg(test)]
pub mod encode {
    use serde_json::Value;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn bytes(out: &mut Vec<u8>, field: u64, b: &[u8]) {
        varint(out, field << 3 | 2);
        varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }

    fn any(v: &Value) -> Vec<u8> {
        let mut o = Vec::new();
        if let Some(s) = v.get("stringValue").and_then(Value::as_str) {
            bytes(&mut o, 1, s.as_bytes());
        } else if let Some(b) = v.get("boolValue").and_then(Value::as_bool) {
            varint(&mut o, 2 << 3);
            varint(&mut o, u64::from(b));
        } else if let Some(i) = v.get("intValue") {
            let n = i
                .as_i64()
                .or_else(|| i.as_str().and_then(|s| s.parse().ok()))
                .unwrap_or(0);
            varint(&mut o, 3 << 3);
            #[allow(clippy::cast_sign_loss)]
            varint(&mut o, n as u64);
        } else if let Some(d) = v.get("doubleValue").and_then(Value::as_f64) {
            varint(&mut o, 4 << 3 | 1);
            o.extend_from_slice(&d.to_bits().to_le_bytes());
        } else if let Some(a) = v.pointer("/arrayValue/values").and_then(Value::as_array) {
            let mut inner = Vec::new();
            for item in a {
                bytes(&mut inner, 1, &any(item));
            }
            bytes(&mut o, 5, &inner);
        } else if let Some(kv) = v.pointer("/kvlistValue/values") {
            bytes(&mut o, 6, &key_values(kv));
        }
        o
    }

    fn key_values(list: &Value) -> Vec<u8> {
        let mut o = Vec::new();
        for kv in list.as_array().into_iter().flatten() {
            let mut e = Vec::new();
            bytes(
                &mut e,
                1,
                kv.get("key")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .as_bytes(),
            );
            bytes(&mut e, 2, &any(kv.get("value").unwrap_or(&Value::Null)));
            bytes(&mut o, 1, &e);
        }
        o
    }

    /// An OTLP JSON `ExportLogsServiceRequest` in protobuf.
    pub fn logs_request(doc: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        for rl in doc["resourceLogs"].as_array().into_iter().flatten() {
            let mut r = Vec::new();
            bytes(&mut r, 1, &key_values(&rl["resource"]["attributes"]));
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                let mut s = Vec::new();
                let mut scope = Vec::new();
                if let Some(n) = sl.pointer("/scope/name").and_then(Value::as_str) {
                    bytes(&mut scope, 1, n.as_bytes());
                }
                bytes(&mut s, 1, &scope);
                for rec in sl["logRecords"].as_array().into_iter().flatten() {
                    let mut l = Vec::new();
                    if let Some(t) = rec["timeUnixNano"]
                        .as_str()
                        .and_then(|t| t.parse::<u64>().ok())
                    {
                        varint(&mut l, 1 << 3 | 1);
                        l.extend_from_slice(&t.to_le_bytes());
                    }
                    if let Some(body) = rec.get("body") {
                        bytes(&mut l, 5, &any(body));
                    }
                    for kv in rec["attributes"].as_array().into_iter().flatten() {
                        let mut e = Vec::new();
                        bytes(&mut e, 1, kv["key"].as_str().unwrap_or("").as_bytes());
                        bytes(&mut e, 2, &any(&kv["value"]));
                        bytes(&mut l, 6, &e);
                    }
                    bytes(&mut s, 2, &l);
                }
                bytes(&mut r, 2, &s);
            }
            bytes(&mut out, 1, &r);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_malformed_input() {
        let doc = json!({"resourceLogs": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "apiguard"}}]},
            "scopeLogs": [{"scope": {"name": "apiguard.discovery"}, "logRecords": [
                {"timeUnixNano": "5", "body": {"kvlistValue": {"values": [
                    {"key": "n", "value": {"intValue": "-3"}},
                    {"key": "l", "value": {"arrayValue": {"values": [{"boolValue": true}, {"doubleValue": 1.5}]}}}]}},
                 "attributes": [{"key": "event.name", "value": {"stringValue": "x"}}]}]}]}]});
        let pb = encode::logs_request(&doc);
        assert_eq!(decode_logs_request(&pb).unwrap(), doc);
        // Every truncation of a valid message is an error or a shorter document, never a panic.
        for n in 0..pb.len() {
            let _ = decode_logs_request(&pb[..n]);
        }
        assert!(decode_logs_request(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode_logs_request(&[0x0b]).is_err());
        // Nesting past the bound is refused: AnyValue{arrayValue{values: AnyValue{...}}} 100 deep.
        let mut any: Vec<u8> = vec![0x10, 0x01];
        for _ in 0..100 {
            let mut arr = Vec::new();
            encode_len(&mut arr, 0x0a, &any);
            let mut outer = Vec::new();
            encode_len(&mut outer, 0x2a, &arr);
            any = outer;
        }
        let mut kv = Vec::new();
        encode_len(&mut kv, 0x12, &any);
        let mut attrs = Vec::new();
        encode_len(&mut attrs, 0x0a, &kv);
        let mut rl = Vec::new();
        encode_len(&mut rl, 0x0a, &attrs);
        let mut req = Vec::new();
        encode_len(&mut req, 0x0a, &rl);
        let e = decode_logs_request(&req).unwrap_err();
        assert!(e.contains("nested deeper"), "{e}");
    }

    fn encode_len(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
        out.push(tag);
        let mut n = b.len();
        while n >= 0x80 {
            out.push((n as u8) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(b);
    }
}
