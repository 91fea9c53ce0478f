//! The counters whose names do not depend on the configuration, as an enum: the core counts by
//! index (`StreamHost::count`), and the host resolves every counter to its metric id once per VM
//! (`host::metrics`), so a request never looks a counter up by name. In Envoy each appears as
//! `<name>_<counter>` (`docs/metrics.md`).

use crate::pipeline::Event;

/// A counter the core or the host adds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Counter {
    Requests,
    UnreadableRequest,
    LogSuppressed,
    BodyUnreadable,
    BodyUnwritable,
    RedactionTrailersReset,
    NoRuleMatch,
    Denied,
    ReportOnlyDenied,
    JwtAllowed,
    JwtDenied,
    JwtMissing,
    JwtTooLarge,
    JwtMalformed,
    JwtExpired,
    JwtNotYetValid,
    JwtLifetime,
    JwtUnknownIssuer,
    JwtAudienceNotAllowed,
    JwtSignatureInvalid,
    JwtNoMatchingKey,
    JwtKeysUnavailable,
    JwtCacheHit,
    JwtCacheMiss,
    JwksFetchOk,
    JwksFetchFailed,
    ApiKeyAllowed,
    ApiKeyMissing,
    ApiKeyInvalid,
    AuthzAllowed,
    AuthzDenied,
    SchemaValidated,
    SchemaUndeclared,
    SchemaRejectedBodyTooLarge,
    SchemaRejectedUnsupportedMediaType,
    SchemaRejectedMissingBody,
    SchemaRejectedInvalidJson,
    SchemaRejectedTooDeep,
    SchemaRejectedSchemaViolation,
    SchemaRejectedInvalidParameters,
    SchemaRejectedUnknownPath,
    SchemaRejectedMethodNotAllowed,
    SchemaRejectedDuplicateKey,
    SchemaRejectedInvalidUtf8,
    PathAmbiguous,
    PathMatrixParameters,
    MethodOverride,
    RedactionBodiesChanged,
    RedactionHeadersChanged,
    RedactionUnscanned,
    RedactionBlocked,
    RedactionTooLarge,
    DiscoveryObservations,
    DiscoverySampledOut,
    DiscoveryOverflowed,
    DiscoveryBatchesBuilt,
    DiscoveryBatchesSent,
    DiscoveryAttemptsFailed,
    DiscoveryBatchesDropped,
    DiscoveryBatchesRejected,
    DiscoveryRecordsRejected,
}

impl Counter {
    /// Every counter, in declaration order (`ALL[c as usize] == c`).
    pub const ALL: [Counter; 61] = [
        Counter::Requests,
        Counter::UnreadableRequest,
        Counter::LogSuppressed,
        Counter::BodyUnreadable,
        Counter::BodyUnwritable,
        Counter::RedactionTrailersReset,
        Counter::NoRuleMatch,
        Counter::Denied,
        Counter::ReportOnlyDenied,
        Counter::JwtAllowed,
        Counter::JwtDenied,
        Counter::JwtMissing,
        Counter::JwtTooLarge,
        Counter::JwtMalformed,
        Counter::JwtExpired,
        Counter::JwtNotYetValid,
        Counter::JwtLifetime,
        Counter::JwtUnknownIssuer,
        Counter::JwtAudienceNotAllowed,
        Counter::JwtSignatureInvalid,
        Counter::JwtNoMatchingKey,
        Counter::JwtKeysUnavailable,
        Counter::JwtCacheHit,
        Counter::JwtCacheMiss,
        Counter::JwksFetchOk,
        Counter::JwksFetchFailed,
        Counter::ApiKeyAllowed,
        Counter::ApiKeyMissing,
        Counter::ApiKeyInvalid,
        Counter::AuthzAllowed,
        Counter::AuthzDenied,
        Counter::SchemaValidated,
        Counter::SchemaUndeclared,
        Counter::SchemaRejectedBodyTooLarge,
        Counter::SchemaRejectedUnsupportedMediaType,
        Counter::SchemaRejectedMissingBody,
        Counter::SchemaRejectedInvalidJson,
        Counter::SchemaRejectedTooDeep,
        Counter::SchemaRejectedSchemaViolation,
        Counter::SchemaRejectedInvalidParameters,
        Counter::SchemaRejectedUnknownPath,
        Counter::SchemaRejectedMethodNotAllowed,
        Counter::SchemaRejectedDuplicateKey,
        Counter::SchemaRejectedInvalidUtf8,
        Counter::PathAmbiguous,
        Counter::PathMatrixParameters,
        Counter::MethodOverride,
        Counter::RedactionBodiesChanged,
        Counter::RedactionHeadersChanged,
        Counter::RedactionUnscanned,
        Counter::RedactionBlocked,
        Counter::RedactionTooLarge,
        Counter::DiscoveryObservations,
        Counter::DiscoverySampledOut,
        Counter::DiscoveryOverflowed,
        Counter::DiscoveryBatchesBuilt,
        Counter::DiscoveryBatchesSent,
        Counter::DiscoveryAttemptsFailed,
        Counter::DiscoveryBatchesDropped,
        Counter::DiscoveryBatchesRejected,
        Counter::DiscoveryRecordsRejected,
    ];

    /// The metric name after the `<name>_` prefix.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::Requests => "requests",
            Counter::UnreadableRequest => "unreadable_request",
            Counter::LogSuppressed => "log_suppressed",
            Counter::BodyUnreadable => "body_unreadable",
            Counter::BodyUnwritable => "body_unwritable",
            Counter::RedactionTrailersReset => "redaction_trailers_reset",
            Counter::NoRuleMatch => "no_rule_match",
            Counter::Denied => "denied",
            Counter::ReportOnlyDenied => "report_only_denied",
            Counter::JwtAllowed => "jwt_allowed",
            Counter::JwtDenied => "jwt_denied",
            Counter::JwtMissing => "jwt_missing",
            Counter::JwtTooLarge => "jwt_too_large",
            Counter::JwtMalformed => "jwt_malformed",
            Counter::JwtExpired => "jwt_expired",
            Counter::JwtNotYetValid => "jwt_not_yet_valid",
            Counter::JwtLifetime => "jwt_lifetime",
            Counter::JwtUnknownIssuer => "jwt_unknown_issuer",
            Counter::JwtAudienceNotAllowed => "jwt_audience_not_allowed",
            Counter::JwtSignatureInvalid => "jwt_signature_invalid",
            Counter::JwtNoMatchingKey => "jwt_no_matching_key",
            Counter::JwtKeysUnavailable => "jwt_keys_unavailable",
            Counter::JwtCacheHit => "jwt_cache_hit",
            Counter::JwtCacheMiss => "jwt_cache_miss",
            Counter::JwksFetchOk => "jwks_fetch_ok",
            Counter::JwksFetchFailed => "jwks_fetch_failed",
            Counter::ApiKeyAllowed => "api_key_allowed",
            Counter::ApiKeyMissing => "api_key_missing",
            Counter::ApiKeyInvalid => "api_key_invalid",
            Counter::AuthzAllowed => "authz_allowed",
            Counter::AuthzDenied => "authz_denied",
            Counter::SchemaValidated => "schema_validated",
            Counter::SchemaUndeclared => "schema_undeclared",
            Counter::SchemaRejectedBodyTooLarge => "schema_rejected_body_too_large",
            Counter::SchemaRejectedUnsupportedMediaType => "schema_rejected_unsupported_media_type",
            Counter::SchemaRejectedMissingBody => "schema_rejected_missing_body",
            Counter::SchemaRejectedInvalidJson => "schema_rejected_invalid_json",
            Counter::SchemaRejectedTooDeep => "schema_rejected_too_deep",
            Counter::SchemaRejectedSchemaViolation => "schema_rejected_schema_violation",
            Counter::SchemaRejectedInvalidParameters => "schema_rejected_invalid_parameters",
            Counter::SchemaRejectedUnknownPath => "schema_rejected_unknown_path",
            Counter::SchemaRejectedMethodNotAllowed => "schema_rejected_method_not_allowed",
            Counter::SchemaRejectedDuplicateKey => "schema_rejected_duplicate_key",
            Counter::SchemaRejectedInvalidUtf8 => "schema_rejected_invalid_utf8",
            Counter::PathAmbiguous => "path_ambiguous",
            Counter::PathMatrixParameters => "path_matrix_parameters",
            Counter::MethodOverride => "method_override",
            Counter::RedactionBodiesChanged => "redaction_bodies_changed",
            Counter::RedactionHeadersChanged => "redaction_headers_changed",
            Counter::RedactionUnscanned => "redaction_unscanned",
            Counter::RedactionBlocked => "redaction_blocked",
            Counter::RedactionTooLarge => "redaction_too_large",
            Counter::DiscoveryObservations => "discovery_observations",
            Counter::DiscoverySampledOut => "discovery_sampled_out",
            Counter::DiscoveryOverflowed => "discovery_overflowed",
            Counter::DiscoveryBatchesBuilt => "discovery_batches_built",
            Counter::DiscoveryBatchesSent => "discovery_batches_sent",
            Counter::DiscoveryAttemptsFailed => "discovery_attempts_failed",
            Counter::DiscoveryBatchesDropped => "discovery_batches_dropped",
            Counter::DiscoveryBatchesRejected => "discovery_batches_rejected",
            Counter::DiscoveryRecordsRejected => "discovery_records_rejected",
        }
    }

    /// The counter called `name` (after the prefix), if it is one of these.
    pub fn from_name(name: &str) -> Option<Counter> {
        Counter::ALL.iter().copied().find(|c| c.name() == name)
    }

    /// The counter called `prefix` + `suffix` (e.g. `jwt_` and a status's metric name), without
    /// building the name.
    pub fn from_parts(prefix: &str, suffix: &str) -> Option<Counter> {
        Counter::ALL
            .iter()
            .copied()
            .find(|c| c.name().strip_prefix(prefix) == Some(suffix))
    }

    /// The counters an event of the pipeline adds one to: a JWT denial counts as `jwt_denied` and
    /// as its reason. Rate-limit events have per-policy counters (`host::metrics`); `UnknownKid`
    /// counts nothing.
    pub fn of_event(event: &Event) -> [Option<Counter>; 2] {
        let one = |c: Counter| [Some(c), None];
        match event {
            Event::JwtAllowed => one(Counter::JwtAllowed),
            Event::JwtDenied(status) => [
                Some(Counter::JwtDenied),
                Counter::from_parts("jwt_", status.metric_name()),
            ],
            Event::CacheHit => one(Counter::JwtCacheHit),
            Event::CacheMiss => one(Counter::JwtCacheMiss),
            Event::NoRuleMatch => one(Counter::NoRuleMatch),
            Event::ReportOnlyDenied => one(Counter::ReportOnlyDenied),
            Event::ApiKeyAllowed => one(Counter::ApiKeyAllowed),
            Event::ApiKeyDenied(failure) => [Counter::from_name(failure.metric_name()), None],
            Event::AuthzAllowed => one(Counter::AuthzAllowed),
            Event::AuthzDenied => one(Counter::AuthzDenied),
            Event::SchemaValidated => one(Counter::SchemaValidated),
            Event::SchemaUndeclared => one(Counter::SchemaUndeclared),
            Event::SchemaRejected(reason) => {
                [Counter::from_parts("schema_rejected_", reason), None]
            }
            Event::PathAmbiguous => one(Counter::PathAmbiguous),
            Event::PathMatrixParameters => one(Counter::PathMatrixParameters),
            Event::MethodOverride => one(Counter::MethodOverride),
            Event::UnknownKid { .. } | Event::RateLimit(..) => [None, None],
        }
    }

    /// Its position in [`Counter::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_sits_at_its_own_index_and_round_trips_by_name() {
        for (i, counter) in Counter::ALL.iter().enumerate() {
            assert_eq!(counter.index(), i);
            assert_eq!(Counter::from_name(counter.name()), Some(*counter));
        }
        let mut names: Vec<&str> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
        assert_eq!(
            Counter::from_parts("jwt_", "expired"),
            Some(Counter::JwtExpired)
        );
        assert_eq!(Counter::from_parts("jwt_", "ok"), None);
    }

    #[test]
    fn a_denied_token_counts_as_denied_and_as_its_reason() {
        use crate::jwt::Status;
        assert_eq!(
            Counter::of_event(&Event::JwtDenied(Status::JwtExpired)),
            [Some(Counter::JwtDenied), Some(Counter::JwtExpired)]
        );
        assert_eq!(
            Counter::of_event(&Event::SchemaRejected("too_deep")),
            [Some(Counter::SchemaRejectedTooDeep), None]
        );
        assert_eq!(
            Counter::of_event(&Event::ApiKeyDenied(crate::apikey::ApiKeyFailure::Invalid)),
            [Some(Counter::ApiKeyInvalid), None]
        );
    }
}
