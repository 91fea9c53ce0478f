//! The hand-written `RateLimitRequest` encoder and `RateLimitResponse` decoder
//! (`src/ratelimit/service/proto.rs`) against prost and the Envoy protos of the `envoy-types` crate:
//! what apiguard sends, prost reads as the same request; what prost writes (with every field the
//! service may set, including those apiguard skips), apiguard reads as the same response.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests: a failed step fails the test loudly"
)]

use apiguard::ratelimit::service::proto::{self, Code, Descriptor};
use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    rate_limit::Unit, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::{Duration, Struct, UInt64Value};
use prost::Message;
use std::borrow::Cow;

/// One descriptor: its entries and its own `hits_addend`.
type Desc = (Vec<(String, String)>, Option<u64>);

/// A small deterministic generator (no dependency, same cases every run).
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn text(&mut self) -> String {
        const PIECES: [&str; 8] = ["", "a", "policy", "ü", "per_user", "x-y", "\u{1F600}", "0"];
        (0..self.below(4))
            .map(|_| PIECES[self.below(8) as usize])
            .collect()
    }
}

#[test]
fn prost_reads_every_encoded_request_as_sent() {
    let mut g = Gen(7);
    for case in 0..2000 {
        let domain = g.text();
        let descriptors: Vec<Desc> = (0..g.below(4))
            .map(|_| {
                let entries = (0..g.below(4)).map(|_| (g.text(), g.text())).collect();
                let hits = (g.below(3) == 0).then(|| g.next() * 1000);
                (entries, hits)
            })
            .collect();
        let hits = u32::try_from(g.below(5)).unwrap();
        let ours: Vec<Descriptor<'_>> = descriptors
            .iter()
            .map(|(entries, hits)| Descriptor {
                entries: entries
                    .iter()
                    .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str())))
                    .collect(),
                hits_addend: *hits,
            })
            .collect();
        let bytes = proto::encode_request(&domain, &ours, hits);
        let got = RateLimitRequest::decode(bytes.as_slice()).unwrap();
        let want = RateLimitRequest {
            domain: domain.clone(),
            hits_addend: hits,
            descriptors: descriptors
                .iter()
                .map(|(entries, h)| RateLimitDescriptor {
                    entries: entries
                        .iter()
                        .map(|(k, v)| {
                            envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry {
                                key: k.clone(),
                                value: v.clone(),
                            }
                        })
                        .collect(),
                    hits_addend: h.map(|value| UInt64Value { value }),
                    ..RateLimitDescriptor::default()
                })
                .collect(),
        };
        assert_eq!(got, want, "case {case}");
        // Byte for byte what prost writes: the same canonical encoding.
        assert_eq!(bytes, want.encode_to_vec(), "case {case}");
    }
}

fn header(g: &mut Gen) -> HeaderValue {
    HeaderValue {
        key: ["x-a", "x-rls", "retry-after", ""][g.below(4) as usize].to_string(),
        value: g.text(),
        raw_value: if g.below(3) == 0 {
            g.text().into_bytes()
        } else {
            Vec::new()
        },
    }
}

#[test]
fn every_response_prost_writes_reads_back_the_same() {
    let mut g = Gen(11);
    let units = [
        (Unit::Unknown, 0),
        (Unit::Second, 1),
        (Unit::Minute, 60),
        (Unit::Hour, 3600),
        (Unit::Day, 86_400),
        (Unit::Week, 604_800),
        (Unit::Month, 2_592_000),
        (Unit::Year, 31_536_000),
    ];
    for case in 0..2000 {
        let statuses: Vec<DescriptorStatus> = (0..g.below(4))
            .map(|_| {
                let unit = units[g.below(8) as usize].0;
                DescriptorStatus {
                    code: i32::try_from(g.below(3)).unwrap(),
                    current_limit: (g.below(2) == 0).then(|| RateLimit {
                        name: g.text(),
                        requests_per_unit: u32::try_from(g.next() & 0xffff).unwrap(),
                        unit: unit as i32,
                    }),
                    limit_remaining: u32::try_from(g.below(1000)).unwrap(),
                    duration_until_reset: (g.below(2) == 0).then(|| Duration {
                        seconds: i64::try_from(g.below(100_000)).unwrap() - 10,
                        nanos: i32::try_from(g.below(1_000_000_000)).unwrap(),
                    }),
                    ..DescriptorStatus::default()
                }
            })
            .collect();
        let message = RateLimitResponse {
            overall_code: i32::try_from(g.below(3)).unwrap(),
            statuses: statuses.clone(),
            response_headers_to_add: (0..g.below(3)).map(|_| header(&mut g)).collect(),
            request_headers_to_add: (0..g.below(3)).map(|_| header(&mut g)).collect(),
            raw_body: g.text().into_bytes(),
            dynamic_metadata: (g.below(2) == 0).then(Struct::default),
            ..RateLimitResponse::default()
        };
        let r = proto::decode_response(&message.encode_to_vec()).unwrap();
        let code = |c: i32| match c {
            1 => Code::Ok,
            2 => Code::OverLimit,
            _ => Code::Unknown,
        };
        assert_eq!(r.overall_code, code(message.overall_code), "case {case}");
        assert_eq!(r.statuses.len(), statuses.len());
        for (got, want) in r.statuses.iter().zip(&statuses) {
            assert_eq!(got.code, code(want.code));
            assert_eq!(got.limit_remaining, want.limit_remaining);
            match (&got.current_limit, &want.current_limit) {
                (Some(g), Some(w)) => {
                    assert_eq!(g.requests_per_unit, w.requests_per_unit);
                    assert_eq!(g.name, w.name);
                    let secs = units.iter().find(|(u, _)| *u as i32 == w.unit).unwrap().1;
                    assert_eq!(g.unit_secs, secs);
                }
                (None, None) => {}
                other => panic!("case {case}: {other:?}"),
            }
            let want_ms = want.duration_until_reset.map(|d| {
                let ns = i128::from(d.seconds) * 1_000_000_000 + i128::from(d.nanos);
                u64::try_from(((ns + 999_999) / 1_000_000).max(0)).unwrap()
            });
            assert_eq!(got.until_reset_ms, want_ms, "case {case}");
        }
        let headers = |list: &[HeaderValue]| -> Vec<(Vec<u8>, Vec<u8>)> {
            list.iter()
                .map(|h| {
                    let value = if h.raw_value.is_empty() {
                        h.value.clone().into_bytes()
                    } else {
                        h.raw_value.clone()
                    };
                    (h.key.clone().into_bytes(), value)
                })
                .collect()
        };
        assert_eq!(
            r.response_headers,
            headers(&message.response_headers_to_add)
        );
        assert_eq!(r.request_headers, headers(&message.request_headers_to_add));
    }
}
