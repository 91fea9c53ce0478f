//! A response apiguard sends itself. Features build theirs from this type; [`crate::refusal`] picks
//! which one a refusal gets.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
    /// Headers whose names come from outside the filter (a rate limit service's
    /// `response_headers_to_add`), sent after `headers`.
    pub extra_headers: Vec<(String, String)>,
}

impl Reply {
    /// The status alone: what `strip_failure_response` sends instead of a body and its headers.
    pub fn status_only(status: u16) -> Reply {
        Reply {
            extra_headers: Vec::new(),
            status,
            body: String::new(),
            headers: Vec::new(),
        }
    }
}
