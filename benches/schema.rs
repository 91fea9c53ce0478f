//! Validation throughput: apiguard's compiled validator side by side with the `jsonschema` crate,
//! on 1 KB and 64 KB bodies of Petstore `Pet` arrays and of a nested order document, against the
//! same draft 2020-12 schema with format assertions on (the `is_valid` fast path a proxy takes for
//! valid bodies).
//!
//! Two comparisons, each starting from the same input on both sides:
//! - from the body bytes (what a request costs; the ratio the targets name): apiguard's
//!   `validate_bytes` (size cap, one pass into its token tape with the depth and duplicate-key
//!   checks, then the walk) against `jsonschema+parse` (`serde_json::from_slice` into a `Value`,
//!   then `is_valid`). apiguard checks more (depth, duplicate keys); jsonschema builds a tree.
//! - walk only: apiguard on an already tokenized tape against jsonschema on an already parsed
//!   `Value`.
//!
//! serde_json is built with `arbitrary_precision` in this workspace (apiguard needs it), so the
//! `Value` jsonschema parses keeps each number's text, for both columns that use it.
//!
//! Run: `cargo bench --bench schema`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "benchmark code: a panic aborts the run"
)]

use apiguard::schema::tape::Tape;
use apiguard::schema::{Draft, Limits, Options, Schema};
use serde_json::{json, Value};
use std::hint::black_box;
use std::time::{Duration, Instant};

const ROUNDS: usize = 7;
const ROUND_TIME: Duration = Duration::from_millis(150);

fn pet_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "array",
        "items": {"$ref": "#/$defs/Pet"},
        "$defs": {
            "Category": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
            "Tag": {"type": "object", "properties": {"id": {"type": "integer"}, "name": {"type": "string"}}},
            "Pet": {
                "type": "object",
                "required": ["name", "photoUrls"],
                "properties": {
                    "id": {"type": "integer"},
                    "name": {"type": "string"},
                    "category": {"$ref": "#/$defs/Category"},
                    "photoUrls": {"type": "array", "items": {"type": "string"}},
                    "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}},
                    "status": {"type": "string", "enum": ["available", "pending", "sold"]}
                }
            }
        }
    })
}

fn pet(i: usize) -> Value {
    let status = ["available", "pending", "sold"][i % 3];
    json!({
        "id": i, "name": format!("doggie-{i}"), "category": {"id": 1, "name": "Dogs"},
        "photoUrls": [format!("https://img.example.com/{i}.png")],
        "tags": [{"id": 1, "name": "good"}, {"id": 2, "name": "boy"}],
        "status": status
    })
}

fn order_schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["id", "customer", "lines", "created", "status"],
        "additionalProperties": false,
        "properties": {
            "id": {"type": "string", "format": "uuid"},
            "created": {"type": "string", "format": "date-time"},
            "status": {"enum": ["new", "paid", "shipped"]},
            "customer": {
                "type": "object", "required": ["name", "email", "address"], "additionalProperties": false,
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 100},
                    "email": {"type": "string", "format": "email"},
                    "address": {"$ref": "#/$defs/address"}
                }
            },
            "lines": {"type": "array", "minItems": 1, "maxItems": 10000, "items": {"$ref": "#/$defs/line"}},
            "notes": {"type": ["string", "null"], "maxLength": 1000}
        },
        "$defs": {
            "address": {
                "type": "object", "required": ["street", "city", "zip", "country"],
                "properties": {
                    "street": {"type": "string"}, "city": {"type": "string"},
                    "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                    "country": {"type": "string", "minLength": 2, "maxLength": 2}
                }
            },
            "line": {
                "type": "object", "required": ["sku", "qty", "price"], "additionalProperties": false,
                "properties": {
                    "sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
                    "qty": {"type": "integer", "minimum": 1, "maximum": 1000},
                    "price": {"type": "number", "exclusiveMinimum": 0},
                    "options": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
                    "gift": {"type": "object", "properties": {"wrap": {"type": "boolean"}, "message": {"type": "string", "maxLength": 200}}}
                }
            }
        }
    })
}

fn order(lines: usize) -> Value {
    let lines: Vec<Value> = (0..lines)
        .map(|i| json!({"sku": format!("ABC-{:04}", i % 10000), "qty": 1 + i % 5, "price": 9.99 + i as f64,
                        "options": ["red", "xl"], "gift": {"wrap": i % 2 == 0, "message": "hi"}}))
        .collect();
    json!({
        "id": "2eb8aa08-aa98-11ea-b4aa-73b441d16380", "created": "2024-05-01T12:30:00Z", "status": "paid",
        "customer": {"name": "Ada", "email": "ada@example.com",
                     "address": {"street": "1 Main St", "city": "Springfield", "zip": "12345", "country": "US"}},
        "lines": lines, "notes": null
    })
}

/// Grows the document until its JSON text reaches `target` bytes.
fn sized(target: usize, make: impl Fn(usize) -> Value) -> (Value, Vec<u8>) {
    let mut n = 1;
    loop {
        let v = make(n);
        let bytes = serde_json::to_vec(&v).unwrap();
        if bytes.len() >= target {
            return (v, bytes);
        }
        n += 1;
    }
}

/// Median per-document time over `ROUNDS` rounds.
fn measure(mut f: impl FnMut() -> bool) -> Duration {
    assert!(f(), "the benchmark document must be valid");
    let mut per_doc = Vec::new();
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let mut n = 0u32;
        while start.elapsed() < ROUND_TIME {
            for _ in 0..16 {
                black_box(f());
            }
            n += 16;
        }
        per_doc.push(start.elapsed() / n);
    }
    per_doc.sort();
    per_doc[ROUNDS / 2]
}

fn mbs(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64() / 1e6
}

fn main() {
    type Case = (&'static str, Value, usize, Box<dyn Fn(usize) -> Value>);
    let cases: Vec<Case> = vec![
        (
            "petstore Pet[]",
            pet_schema(),
            1024,
            Box::new(|n| Value::Array((0..n).map(pet).collect())),
        ),
        (
            "petstore Pet[]",
            pet_schema(),
            64 * 1024,
            Box::new(|n| Value::Array((0..n).map(pet).collect())),
        ),
        ("nested order", order_schema(), 1024, Box::new(order)),
        ("nested order", order_schema(), 64 * 1024, Box::new(order)),
    ];
    println!(
        "{:<16} {:>7} | {:>15} {:>9} | {:>17} {:>9} | {:>7} || {:>12} {:>14} | {:>7}",
        "document",
        "bytes",
        "apiguard µs",
        "MB/s",
        "jsonschema+parse",
        "MB/s",
        "ratio",
        "apiguard walk",
        "jsonschema walk",
        "ratio"
    );
    for (name, schema, target, make) in cases {
        let (doc, bytes) = sized(target, make);
        let mut options = Options::new(Draft::Draft2020);
        options.formats = true;
        let ours = Schema::compile(&schema, options).unwrap();
        let theirs = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let limits = Limits {
            max_body_bytes: 1 << 20,
            max_depth: 32,
            max_errors: 10,
        };
        let text = std::str::from_utf8(&bytes).unwrap();
        let mut tape = Tape::default();
        assert!(tape.parse(text, 32));
        let tokens = tape.doc(text);
        let ap = measure(|| ours.validate_bytes(black_box(&bytes), &limits).is_ok());
        let jp = measure(|| {
            let value: Value = serde_json::from_slice(black_box(&bytes)).unwrap();
            theirs.is_valid(&value)
        });
        let a = measure(|| ours.is_valid_doc(black_box(tokens)));
        let j = measure(|| theirs.is_valid(black_box(&doc)));
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:<16} {:>7} | {:>15.2} {:>9.1} | {:>17.2} {:>9.1} | {:>6.2}x || {:>12.2} {:>14.2} | {:>6.2}x",
            name,
            bytes.len(),
            us(ap),
            mbs(bytes.len(), ap),
            us(jp),
            mbs(bytes.len(), jp),
            jp.as_secs_f64() / ap.as_secs_f64(),
            us(a),
            us(j),
            j.as_secs_f64() / a.as_secs_f64(),
        );
    }
    println!("ratio = jsonschema time / apiguard time, same input on both sides (above 1: apiguard is faster)");
    println!("left: from the body bytes (apiguard validate_bytes vs serde_json::from_slice + jsonschema is_valid);");
    println!(
        "right: walk only (apiguard on its token tape vs jsonschema on a parsed serde_json::Value)"
    );
}
