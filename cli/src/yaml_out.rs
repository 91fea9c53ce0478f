//! Writing YAML (block style) from a JSON value, for `render`: strings are plain when they read back
//! as the same string (YAML 1.2 core schema, as `source.rs` reads), double-quoted with JSON escapes
//! otherwise, and multi-line strings are literal blocks (so an embedded JSON policy stays readable).

use serde_json::Value;

/// The value as a YAML document (no leading `---`), ending with a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => mapping(v, 0, &mut out),
        Value::Array(a) if !a.is_empty() => sequence(v, 0, &mut out),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(indent: usize) -> String {
    " ".repeat(indent)
}

fn is_block(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn mapping(v: &Value, indent: usize, out: &mut String) {
    let Value::Object(map) = v else { return };
    for (i, (k, child)) in map.iter().enumerate() {
        // The first member of a mapping inside a sequence item follows the `- ` on its line.
        if i > 0 || !out.ends_with("- ") {
            out.push_str(&pad(indent));
        }
        out.push_str(&string(k));
        out.push(':');
        value_after_key(child, indent, out);
    }
}

fn value_after_key(child: &Value, indent: usize, out: &mut String) {
    match child {
        Value::Object(_) if is_block(child) => {
            out.push('\n');
            mapping(child, indent + 2, out);
        }
        Value::Array(_) if is_block(child) => {
            out.push('\n');
            sequence(child, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent + 2));
            out.push('\n');
        }
    }
}

fn sequence(v: &Value, indent: usize, out: &mut String) {
    let Value::Array(items) = v else { return };
    for item in items {
        out.push_str(&pad(indent));
        out.push_str("- ");
        match item {
            Value::Object(_) if is_block(item) => mapping(item, indent + 2, out),
            Value::Array(_) if is_block(item) => {
                out.push('\n');
                sequence(item, indent + 2, out);
            }
            other => {
                out.push_str(&scalar(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if s.contains('\n') && literal_ok(s) => {
            let chomp = if s.ends_with('\n') { "|" } else { "|-" };
            let mut out = chomp.to_string();
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                out.push('\n');
                if !line.is_empty() {
                    out.push_str(&pad(indent));
                    out.push_str(line);
                }
            }
            out
        }
        Value::String(s) => string(s),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// A literal block keeps the text exactly when no line starts with a space on the first line,
/// there is no trailing whitespace, no tab or control character and at most one final newline.
fn literal_ok(s: &str) -> bool {
    !s.starts_with([' ', '\n'])
        && !s.ends_with("\n\n")
        && !s.chars().any(|c| c.is_control() && c != '\n')
        && s.split('\n').all(|l| !l.ends_with(' '))
}

fn string(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/' || c == '.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./@-:|".contains(c))
        && !s.contains(": ")
        && !s.ends_with(':')
        && crate::source::plain_scalar(s).ok() == Some(Value::String(s.to_string()));
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse_yaml;

    #[test]
    fn round_trips_through_the_reader() {
        let v: Value = serde_json::from_str(
            r#"{"a": [1, {"b": "x: y", "c": [], "d": {}}, [true, null]], "e": "line1\n  line2\n",
                "f": "007", "g": "true", "h": "", "i": "outbound|443||idp.example.com", "j": 2.50,
                "k": "{\n  \"x\": 1\n}", "l": " lead", "@type": "t", "m": [[1, 2], {"n": {"o": 1}}]}"#,
        )
        .unwrap();
        let text = to_yaml(&v);
        let back = &parse_yaml(&text).unwrap().documents[0].value;
        assert_eq!(back, &v, "{text}");
    }
}
