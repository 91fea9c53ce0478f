//! Scanning raw JSON text without parsing it (trailing commas in key documents, duplicate member
//! names in JWS headers and payloads): the one place that knows how a string literal ends.

/// The index of the `"` that closes the JSON string whose opening `"` is at `open`, stepping over
/// escapes (`\"` does not close it); `None` when the text ends first.
pub fn string_end(bytes: &[u8], open: usize) -> Option<usize> {
    let mut i = open.checked_add(1)?;
    loop {
        match bytes.get(i)? {
            b'\\' => i = i.checked_add(2)?,
            b'"' => return Some(i),
            _ => i += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::string_end;

    #[test]
    fn a_string_ends_at_its_unescaped_quote() {
        assert_eq!(string_end(br#""ab""#, 0), Some(3));
        assert_eq!(string_end(br#"x "a\"b" y"#, 2), Some(7));
        assert_eq!(string_end(br#""a\\"b"#, 0), Some(4));
        assert_eq!(string_end(br#""abc"#, 0), None);
        assert_eq!(string_end(br#""abc\"#, 0), None);
    }
}
