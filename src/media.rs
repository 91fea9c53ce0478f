//! Media types as `content-type` carries them, read the same way by schema enforcement and by
//! discovery (which never import each other).

/// `type/subtype` of a `content-type` value: parameters dropped, trimmed, lower-cased.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// The value of a `content-type` parameter (`action` in SOAP 1.2), unquoted.
pub fn param<'a>(content_type: &'a str, name: &str) -> Option<&'a str> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"'))
    })
}

/// `application/json` and `application/*+json` (an [`essence`]): the bodies schema enforcement
/// parses as JSON.
pub fn is_json(essence: &str) -> bool {
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// [`is_json`], or any other type with the `+json` suffix: discovery only looks, so it casts the
/// wider net.
pub fn is_json_like(essence: &str) -> bool {
    essence == "application/json" || essence.ends_with("+json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn essence_param_and_json() {
        assert_eq!(
            essence(" Application/JSON ; charset=utf-8"),
            "application/json"
        );
        assert_eq!(
            param("application/soap+xml; Action=\"urn:x\"", "action"),
            Some("urn:x")
        );
        assert!(is_json("application/problem+json"));
        assert!(!is_json("text/x+json"));
        assert!(is_json_like("text/x+json"));
        assert!(!is_json_like("text/plain"));
    }
}
