//! Why a request body or its parameters are refused, and the RFC 9457 `application/problem+json`
//! body that says so. Nothing here ever carries a value taken from the request: only JSON pointers
//! (instance locations), keyword names, schema locations, counts and limits. Body text, parameter
//! values and header values may be secrets, and they stay out of replies and logs.

use serde_json::{json, Value};

/// One failed assertion: where in the instance, which keyword, where in the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the request body (`/items/0/id`), or `/path/<name>`, `/query/<name>`,
    /// `/header/<name>` for parameters. Object keys are part of a pointer by definition; values never are.
    pub pointer: String,
    /// The keyword that failed (`type`, `required`, `additionalProperties`, ...).
    pub keyword: &'static str,
    /// JSON pointer into the schema document (`#/properties/items/items/properties/id/type`).
    pub schema_location: String,
}

/// What a request check concluded when it refuses the request. Each maps to one status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// The body is longer than the policy's `max_body_bytes` (413).
    BodyTooLarge { limit: usize },
    /// The `content-type` is missing or not one the operation declares (415).
    UnsupportedMediaType,
    /// The operation requires a body and none came (400).
    MissingBody,
    /// The body is not JSON (400). `line`/`column` locate the error; the text is never quoted.
    InvalidJson { line: usize, column: usize },
    /// The body nests arrays/objects deeper than `max_depth` (400).
    TooDeep { limit: usize },
    /// An object of the body names the same member twice, compared after unescaping, at any depth
    /// (400). Parsers disagree on which one wins, so the body is not judged; the key is not quoted.
    DuplicateKey,
    /// The body is not valid UTF-8 (400). RFC 8259 §8.1: JSON exchanged between systems is UTF-8.
    InvalidUtf8,
    /// The body does not match its schema (400).
    SchemaViolation {
        violations: Vec<Violation>,
        /// More violations exist than were collected (`max_errors`).
        truncated: bool,
    },
    /// A path, query or header parameter is missing or does not match its declaration (400).
    InvalidParameters {
        violations: Vec<Violation>,
        truncated: bool,
    },
    /// No operation of the OpenAPI document has this path (404).
    UnknownPath,
    /// The path is declared but not with this method (405); `allow` lists the declared methods.
    MethodNotAllowed { allow: Vec<String> },
}

impl Rejection {
    /// The HTTP status the lead sends for this rejection.
    pub fn status(&self) -> u16 {
        match self {
            Rejection::BodyTooLarge { .. } => 413,
            Rejection::UnsupportedMediaType => 415,
            Rejection::MissingBody
            | Rejection::InvalidJson { .. }
            | Rejection::TooDeep { .. }
            | Rejection::DuplicateKey
            | Rejection::InvalidUtf8
            | Rejection::SchemaViolation { .. }
            | Rejection::InvalidParameters { .. } => 400,
            Rejection::UnknownPath => 404,
            Rejection::MethodNotAllowed { .. } => 405,
        }
    }

    /// A short stable name for metrics and logs (`schema_rejected_<reason>`).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::BodyTooLarge { .. } => "body_too_large",
            Rejection::UnsupportedMediaType => "unsupported_media_type",
            Rejection::MissingBody => "missing_body",
            Rejection::InvalidJson { .. } => "invalid_json",
            Rejection::TooDeep { .. } => "too_deep",
            Rejection::DuplicateKey => "duplicate_key",
            Rejection::InvalidUtf8 => "invalid_utf8",
            Rejection::SchemaViolation { .. } => "schema_violation",
            Rejection::InvalidParameters { .. } => "invalid_parameters",
            Rejection::UnknownPath => "unknown_path",
            Rejection::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Rejection::BodyTooLarge { .. } => "Request body too large",
            Rejection::UnsupportedMediaType => "Unsupported media type",
            Rejection::MissingBody => "Request body required",
            Rejection::InvalidJson { .. } => "Request body is not valid JSON",
            Rejection::TooDeep { .. } => "Request body nests too deeply",
            Rejection::DuplicateKey => "Request body repeats an object key",
            Rejection::InvalidUtf8 => "Request body is not valid UTF-8",
            Rejection::SchemaViolation { .. } => "Request body does not match the schema",
            Rejection::InvalidParameters { .. } => {
                "Request parameters do not match the API description"
            }
            Rejection::UnknownPath => "Not found",
            Rejection::MethodNotAllowed { .. } => "Method not allowed",
        }
    }

    fn detail(&self) -> String {
        match self {
            Rejection::BodyTooLarge { limit } => {
                format!("The request body is longer than {limit} bytes.")
            }
            Rejection::UnsupportedMediaType => {
                "The content-type is missing or not accepted by this operation.".into()
            }
            Rejection::MissingBody => "This operation requires a request body.".into(),
            Rejection::InvalidJson { line, column } => {
                format!("JSON syntax error at line {line}, column {column}.")
            }
            Rejection::TooDeep { limit } => {
                format!("Arrays and objects nest deeper than {limit} levels.")
            }
            Rejection::DuplicateKey => {
                "An object names the same member more than once (compared after unescaping).".into()
            }
            Rejection::InvalidUtf8 => "The body is not valid UTF-8.".into(),
            Rejection::SchemaViolation {
                violations,
                truncated,
            }
            | Rejection::InvalidParameters {
                violations,
                truncated,
            } => {
                let more = if *truncated { " (list truncated)" } else { "" };
                format!("{} violation(s){more}; see errors.", violations.len())
            }
            Rejection::UnknownPath => "No operation is declared for this path.".into(),
            Rejection::MethodNotAllowed { .. } => {
                "This path does not declare this method; see the Allow header.".into()
            }
        }
    }

    /// The RFC 9457 problem document (`type` is `about:blank`, so `title` is the status's meaning).
    pub fn problem(&self) -> Value {
        let mut doc = json!({
            "type": "about:blank",
            "title": self.title(),
            "status": self.status(),
            "detail": self.detail(),
        });
        if let (
            Rejection::SchemaViolation { violations, .. }
            | Rejection::InvalidParameters { violations, .. },
            Some(map),
        ) = (self, doc.as_object_mut())
        {
            let errors: Vec<Value> = violations
                .iter()
                .map(|v| json!({"pointer": v.pointer, "keyword": v.keyword}))
                .collect();
            map.insert("errors".into(), Value::Array(errors));
        }
        doc
    }

    /// The problem document serialized, for a reply body with `content-type: application/problem+json`.
    pub fn problem_body(&self) -> String {
        self.problem().to_string()
    }

    /// Extra response headers: `allow` for a 405.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("content-type", PROBLEM_CONTENT_TYPE.to_string())];
        if let Rejection::MethodNotAllowed { allow } = self {
            headers.push(("allow", allow.join(", ")));
        }
        headers
    }
}

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_violation_problem_lists_pointers_and_keywords_only() {
        let r = Rejection::SchemaViolation {
            violations: vec![Violation {
                pointer: "/items/0/id".into(),
                keyword: "type",
                schema_location: "#/properties/items/items/properties/id/type".into(),
            }],
            truncated: false,
        };
        let p = r.problem();
        assert_eq!(p["status"], 400);
        assert_eq!(p["type"], "about:blank");
        assert_eq!(p["title"], "Request body does not match the schema");
        assert_eq!(
            p["errors"],
            json!([{"pointer": "/items/0/id", "keyword": "type"}])
        );
        assert_eq!(r.headers()[0].1, "application/problem+json");
    }

    #[test]
    fn method_not_allowed_carries_an_allow_header() {
        let r = Rejection::MethodNotAllowed {
            allow: vec!["GET".into(), "PUT".into()],
        };
        assert_eq!(r.status(), 405);
        assert!(r.headers().contains(&("allow", "GET, PUT".to_string())));
    }

    #[test]
    fn every_rejection_has_a_status_and_a_reason() {
        for r in [
            Rejection::BodyTooLarge { limit: 10 },
            Rejection::UnsupportedMediaType,
            Rejection::MissingBody,
            Rejection::InvalidJson { line: 1, column: 2 },
            Rejection::TooDeep { limit: 3 },
            Rejection::DuplicateKey,
            Rejection::InvalidUtf8,
            Rejection::UnknownPath,
        ] {
            assert!(r.status() >= 400);
            assert!(!r.reason().is_empty());
            assert!(r.problem_body().contains("about:blank"));
        }
    }
}
