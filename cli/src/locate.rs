//! From the JSON path the filter names in a refusal (`rules[2].match`, `jwt_providers.corp.issuer`,
//! `schemas.pets.openapi/paths/~1pets/get`) to a JSON pointer into the document, so that the
//! source position of the value can be looked up.
//!
//! The filter's paths join member names with `.`, and a name may itself hold a `.` (a provider
//! called `idp.example`): each step takes the longest member name of the actual object that fits.

use crate::source::escape_token;
use serde_json::Value;

/// The JSON pointer of the value a filter path names. Members that do not exist (a required member
/// that is missing) are kept, so the position lookup falls back to the object that should hold them.
pub fn pointer_of(path: &str, root: &Value) -> String {
    if path == "$" || path.is_empty() {
        return String::new();
    }
    let mut pointer = String::new();
    let mut current = Some(root);
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let Some(end) = after.find(']') else { break };
            let index = &after[..end];
            pointer.push('/');
            pointer.push_str(index);
            current = match (current, index.parse::<usize>()) {
                (Some(Value::Array(items)), Ok(i)) => items.get(i),
                _ => None,
            };
            rest = &after[end + 1..];
            continue;
        }
        if rest.starts_with('/') {
            // A JSON pointer into a document the section embeds (a schema compile error).
            pointer.push_str(rest);
            break;
        }
        if !pointer.is_empty() {
            rest = rest.strip_prefix('.').unwrap_or(rest);
        }
        let name = match current {
            Some(Value::Object(map)) => map
                .keys()
                .filter(|k| {
                    rest.strip_prefix(k.as_str())
                        .is_some_and(|after| after.is_empty() || after.starts_with(['.', '[', '/']))
                })
                .max_by_key(|k| k.len())
                .cloned(),
            _ => None,
        };
        let name = name.unwrap_or_else(|| {
            let end = rest.find(['.', '[', '/']).unwrap_or(rest.len());
            rest[..end].to_string()
        });
        current = current.and_then(|v| v.get(&name));
        pointer.push('/');
        pointer.push_str(&escape_token(&name));
        rest = &rest[name.len()..];
    }
    pointer
}

/// A pointer written the filter's way (`a.b[0]`), for messages about values found by pointer.
pub fn path_of(pointer: &str) -> String {
    if pointer.is_empty() {
        return "$".into();
    }
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dotted_names_indices_and_embedded_pointers() {
        let doc = json!({"jwt_providers": {"idp.example": {"issuer": 1}, "idp": {}},
                         "rules": [{"match": {}}], "schemas": {"p": {"openapi": {}}}});
        assert_eq!(
            pointer_of("jwt_providers.idp.example.issuer", &doc),
            "/jwt_providers/idp.example/issuer"
        );
        assert_eq!(
            pointer_of("rules[0].match.prefix", &doc),
            "/rules/0/match/prefix"
        );
        assert_eq!(
            pointer_of("schemas.p.openapi/paths/~1pets", &doc),
            "/schemas/p/openapi/paths/~1pets"
        );
        assert_eq!(pointer_of("$", &doc), "");
        assert_eq!(pointer_of("nope.x", &doc), "/nope/x");
    }

    #[test]
    fn pointers_back_to_paths() {
        assert_eq!(path_of("/rules/0/match"), "rules[0].match");
        assert_eq!(path_of(""), "$");
    }
}
