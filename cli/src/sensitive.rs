//! Field names that look like sensitive data (card numbers, SSNs, passwords, tokens, e-mail
//! addresses), for `check` (a route with such fields and no redaction) and `lint` (such fields in
//! responses). Names only: values are the filter's detectors' business (`apiguard::redact`).

/// The data class a member name suggests, if any. Compared on the name lower-cased with `_`, `-`
/// and `.` removed, so `card_number`, `cardNumber` and `Card-Number` are one name.
pub fn class_of(name: &str) -> Option<&'static str> {
    let n: String = name
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    // (class, words the name may contain, words that must be the whole name or its end)
    const CLASSES: &[(&str, &[&str], &[&str])] = &[
        (
            "card",
            &["card", "creditcard", "ccnumber"],
            &["pan", "cvv", "cvc"],
        ),
        ("ssn", &["socialsecurity", "nationalid", "taxid"], &["ssn"]),
        (
            "password",
            &["password", "passwd", "passphrase"],
            &["pwd", "pin"],
        ),
        (
            "token",
            &[
                "token",
                "secret",
                "apikey",
                "accesskey",
                "privatekey",
                "credential",
                "sessionid",
            ],
            &[],
        ),
        ("email", &["email"], &["mail"]),
    ];
    for (class, contains, ends) in CLASSES {
        if contains.iter().any(|w| n.contains(w))
            || ends
                .iter()
                .any(|w| n == *w || (w.len() > 2 && n.ends_with(w) && *w != "pin"))
        {
            return Some(class);
        }
    }
    None
}

/// Every sensitive-looking property name inside a JSON Schema (or OpenAPI document), with the JSON
/// pointer of the property and its class. `$ref`s are not followed (the caller walks the whole
/// document).
pub fn properties(
    value: &serde_json::Value,
    pointer: &str,
    out: &mut Vec<(String, String, &'static str)>,
) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let child = format!("{pointer}/{}", crate::source::escape_token(k));
                if let ("properties", serde_json::Value::Object(props)) = (k.as_str(), v) {
                    for name in props.keys() {
                        if let Some(class) = class_of(name) {
                            out.push((
                                format!("{child}/{}", crate::source::escape_token(name)),
                                name.clone(),
                                class,
                            ));
                        }
                    }
                }
                properties(v, &child, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                properties(v, &format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::class_of;

    #[test]
    fn names_and_classes() {
        assert_eq!(class_of("cardNumber"), Some("card"));
        assert_eq!(class_of("refresh_token"), Some("token"));
        assert_eq!(class_of("Email"), Some("email"));
        assert_eq!(class_of("password"), Some("password"));
        assert_eq!(class_of("customer_ssn"), Some("ssn"));
        assert_eq!(class_of("company"), None);
        assert_eq!(class_of("spinner"), None);
        assert_eq!(class_of("name"), None);
        assert_eq!(class_of("status"), None);
    }
}
