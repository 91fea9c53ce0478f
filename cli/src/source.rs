//! Documents as they are read from files, with the source position of every value.
//!
//! JSON is parsed by `serde_json`, exactly as the filter parses its configuration (the bytes given to
//! `Policy::from_json` are the file's bytes); a second, position-only pass records where each value
//! starts. YAML (1.2 core schema, via `saphyr-parser` events with spans) is converted into the same
//! `serde_json::Value`, so a YAML policy is compiled as the JSON it converts to. Positions are kept
//! by JSON pointer: a member's position is its key's, an array item's is its value's.

use saphyr_parser::{Event, Parser, ScalarStyle, Span};
use serde_json::{Map, Number, Value};
use std::collections::HashMap;

/// 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// A document could not be read: what and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub message: String,
    pub pos: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    /// By extension; otherwise a document that starts with `{` or `[` is JSON and anything else YAML.
    pub fn guess(path: &str, text: &str) -> Format {
        let lower = path.to_ascii_lowercase();
        if lower.ends_with(".json") {
            Format::Json
        } else if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Format::Yaml
        } else if text.trim_start().starts_with(['{', '[']) {
            Format::Json
        } else {
            Format::Yaml
        }
    }
}

/// One document and where its values are.
#[derive(Debug, Clone)]
pub struct Document {
    pub value: Value,
    positions: HashMap<String, Pos>,
    /// Members written twice in one JSON object (pointer, position of the later one): the filter
    /// (serde_json) keeps the last. YAML refuses duplicates outright, as YAML requires.
    pub duplicates: Vec<(String, Pos)>,
}

impl Document {
    /// The position of the value at `pointer`, or of its nearest ancestor that has one (a member that
    /// is missing is reported at the object that should hold it).
    pub fn position(&self, pointer: &str) -> Option<Pos> {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return Some(*pos);
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return None,
            }
        }
    }

    /// The part of this document at `pointer`, as a document of its own (positions kept).
    pub fn sub(&self, pointer: &str) -> Option<Document> {
        let value = self.value.pointer(pointer)?.clone();
        let positions = self
            .positions
            .iter()
            .filter_map(|(p, pos)| {
                let rest = p.strip_prefix(pointer)?;
                (rest.is_empty() || rest.starts_with('/')).then(|| (rest.to_string(), *pos))
            })
            .collect();
        let duplicates = self
            .duplicates
            .iter()
            .filter_map(|(p, pos)| Some((p.strip_prefix(pointer)?.to_string(), *pos)))
            .filter(|(p, _)| p.starts_with('/'))
            .collect();
        Some(Document {
            value,
            positions,
            duplicates,
        })
    }

    /// Moves every position, for a document embedded in another file's string.
    pub fn shift(&mut self, f: impl Fn(Pos) -> Pos) {
        for pos in self.positions.values_mut() {
            *pos = f(*pos);
        }
        for (_, pos) in &mut self.duplicates {
            *pos = f(*pos);
        }
    }
}

/// Escapes one reference token of a JSON pointer (RFC 6901).
pub fn escape_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// Parses JSON with `serde_json` and records positions.
pub fn parse_json(text: &str) -> Result<Document, SyntaxError> {
    let value: Value = serde_json::from_str(text).map_err(|e| SyntaxError {
        message: format!("not valid JSON: {e}"),
        pos: Pos {
            line: e.line().max(1),
            column: e.column().max(1),
        },
    })?;
    let mut scan = JsonScan {
        s: text.as_bytes(),
        i: 0,
        pos: Pos { line: 1, column: 1 },
        out: HashMap::new(),
        duplicates: Vec::new(),
        depth: 0,
    };
    scan.value(String::new(), true);
    Ok(Document {
        value,
        positions: scan.out,
        duplicates: scan.duplicates,
    })
}

/// Position-only walk over text that `serde_json` already accepted.
struct JsonScan<'a> {
    s: &'a [u8],
    i: usize,
    pos: Pos,
    out: HashMap<String, Pos>,
    duplicates: Vec<(String, Pos)>,
    depth: usize,
}

impl JsonScan<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn bump(&mut self) {
        if let Some(b) = self.peek() {
            self.i += 1;
            if b == b'\n' {
                self.pos.line += 1;
                self.pos.column = 1;
            } else if b & 0xC0 != 0x80 {
                self.pos.column += 1;
            }
        }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.bump();
        }
    }

    fn string(&mut self) -> String {
        let start = self.i;
        self.bump();
        while let Some(b) = self.peek() {
            self.bump();
            match b {
                b'\\' => self.bump(),
                b'"' => break,
                _ => {}
            }
        }
        let raw = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("\"\"");
        serde_json::from_str::<String>(raw).unwrap_or_default()
    }

    fn value(&mut self, pointer: String, record: bool) {
        self.ws();
        if record {
            self.out.insert(pointer.clone(), self.pos);
        }
        self.depth += 1;
        if self.depth > 512 {
            return;
        }
        match self.peek() {
            Some(b'{') => {
                self.bump();
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b'"') => {
                            let at = self.pos;
                            let key = self.string();
                            let child = format!("{pointer}/{}", escape_token(&key));
                            if self.out.insert(child.clone(), at).is_some() {
                                self.duplicates.push((child.clone(), at));
                            }
                            self.ws();
                            self.bump(); // ':'
                            self.value(child, false);
                        }
                        Some(b',') => self.bump(),
                        Some(b'}') | None => {
                            self.bump();
                            break;
                        }
                        Some(_) => self.bump(),
                    }
                }
            }
            Some(b'[') => {
                self.bump();
                let mut index = 0usize;
                loop {
                    self.ws();
                    match self.peek() {
                        Some(b']') | None => {
                            self.bump();
                            break;
                        }
                        Some(b',') => self.bump(),
                        Some(_) => {
                            self.value(format!("{pointer}/{index}"), true);
                            index += 1;
                        }
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            _ => {
                while let Some(b) = self.peek() {
                    if matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r') {
                        break;
                    }
                    self.bump();
                }
            }
        }
        self.depth -= 1;
    }
}

/// A YAML scalar as the text it was written with, kept for block scalars that embed JSON.
#[derive(Debug, Clone)]
pub struct BlockScalar {
    /// Where the scalar's content starts (the line after `|` for block scalars).
    pub content_line: usize,
    /// Indentation of the content, in characters.
    pub indent: usize,
}

/// A YAML stream: every document in it, and where the literal block scalars are (by JSON pointer
/// within their document).
#[derive(Debug, Clone)]
pub struct YamlStream {
    pub documents: Vec<Document>,
    pub blocks: Vec<HashMap<String, BlockScalar>>,
}

/// Parses a YAML stream (several `---` documents allowed) into JSON values.
pub fn parse_yaml(text: &str) -> Result<YamlStream, SyntaxError> {
    let mut b = YamlBuilder {
        text_lines: text.lines().collect(),
        ..YamlBuilder::default()
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| SyntaxError {
            message: format!("not valid YAML: {}", e.info()),
            pos: Pos {
                line: e.marker().line().max(1),
                column: e.marker().col() + 1,
            },
        })?;
        b.event(event, span)?;
    }
    Ok(YamlStream {
        documents: b.documents,
        blocks: b.blocks,
    })
}

/// Most values one YAML document may expand to (aliases count every value they repeat): a
/// "billion laughs" document is refused instead of filling memory.
pub const MAX_VALUES: usize = 1_000_000;
/// Deepest nesting of a YAML document, as serde_json's limit for JSON (the filter's reader).
pub const MAX_DEPTH: usize = 128;

enum Frame {
    Seq {
        items: Vec<Value>,
        pointer: String,
        anchor: usize,
        at: Pos,
        /// `values` when the node started.
        start: usize,
    },
    Map {
        map: Map<String, Value>,
        pointer: String,
        anchor: usize,
        at: Pos,
        start: usize,
        /// Keys written in this mapping (merged ones are not), to refuse duplicates.
        written: Vec<String>,
        /// The key read, waiting for its value (and whether it is the merge key `<<`).
        key: Option<(String, bool)>,
    },
}

#[derive(Default)]
struct YamlBuilder<'t> {
    text_lines: Vec<&'t str>,
    stack: Vec<Frame>,
    /// Anchored values and how many values each counts (an alias repeats them all).
    anchors: HashMap<usize, (Value, usize)>,
    /// Values in the current document, aliases expanded: bounded by [`MAX_VALUES`].
    values: usize,
    positions: HashMap<String, Pos>,
    block_scalars: HashMap<String, BlockScalar>,
    documents: Vec<Document>,
    blocks: Vec<HashMap<String, BlockScalar>>,
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line().max(1),
        column: span.start.col() + 1,
    }
}

impl YamlBuilder<'_> {
    /// The pointer of the node about to be read, or `None` when it is a mapping key.
    fn next_pointer(&self) -> Option<String> {
        match self.stack.last() {
            None => Some(String::new()),
            Some(Frame::Seq { items, pointer, .. }) => Some(format!("{pointer}/{}", items.len())),
            Some(Frame::Map {
                key: Some((k, _)),
                pointer,
                ..
            }) => Some(format!("{pointer}/{}", escape_token(k))),
            Some(Frame::Map { key: None, .. }) => None,
        }
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), SyntaxError> {
        let at = pos_of(&span);
        let error = |message: &str| SyntaxError {
            message: message.to_string(),
            pos: at,
        };
        match event {
            Event::DocumentStart(_) => {
                self.positions.clear();
                self.block_scalars.clear();
                self.anchors.clear();
                self.values = 0;
            }
            Event::Scalar(text, style, anchor, tag) => {
                let Some(pointer) = self.next_pointer() else {
                    // A mapping key: its text, whatever it looks like (`200:` is the key "200").
                    let merge = style == ScalarStyle::Plain && text == "<<";
                    let k = text.to_string();
                    if let Some(Frame::Map {
                        pointer,
                        key,
                        written,
                        ..
                    }) = self.stack.last_mut()
                    {
                        if !merge {
                            if written.contains(&k) {
                                return Err(error(&format!(
                                    "duplicate key `{k}` (YAML requires unique keys; a JSON reader would silently keep the last)"
                                )));
                            }
                            written.push(k.clone());
                        }
                        let child = format!("{pointer}/{}", escape_token(&k));
                        self.positions.insert(child, at);
                        *key = Some((k, merge));
                    }
                    return Ok(());
                };
                if !self.positions.contains_key(&pointer) {
                    self.positions.insert(pointer.clone(), at);
                }
                self.count(1, at)?;
                let forced_string = tag.as_ref().is_some_and(|t| t.suffix == "str");
                let value = if style == ScalarStyle::Plain && !forced_string {
                    plain_scalar(&text).map_err(|m| error(&m))?
                } else {
                    Value::String(text.to_string())
                };
                if matches!(style, ScalarStyle::Literal | ScalarStyle::Folded) {
                    // The span starts at the indicator (`|`) or, depending on the parser, at
                    // the content itself.
                    let indicator = self
                        .text_lines
                        .get(at.line - 1)
                        .and_then(|l| l.chars().nth(at.column - 1))
                        .is_some_and(|c| c == '|' || c == '>');
                    let content_line = if indicator { at.line + 1 } else { at.line };
                    let indent = self
                        .text_lines
                        .get(content_line - 1)
                        .map(|l| l.len() - l.trim_start_matches(' ').len())
                        .unwrap_or(0);
                    self.block_scalars.insert(
                        pointer,
                        BlockScalar {
                            content_line,
                            indent,
                        },
                    );
                }
                self.complete(value, anchor, at, 1)?;
            }
            Event::Alias(id) => {
                let Some((value, count)) = self.anchors.get(&id).cloned() else {
                    return Err(error("alias to an unknown anchor"));
                };
                self.count(count, at)?;
                match self.next_pointer() {
                    Some(p) => {
                        self.positions.entry(p).or_insert(at);
                    }
                    None => return Err(error("an alias as a mapping key is not supported")),
                }
                self.complete(value, 0, at, count)?;
            }
            Event::SequenceStart(anchor, _) => {
                let Some(pointer) = self.next_pointer() else {
                    return Err(error("a sequence as a mapping key is not supported"));
                };
                self.positions.entry(pointer.clone()).or_insert(at);
                self.enter(at)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    pointer,
                    anchor,
                    at,
                    start: self.values - 1,
                });
            }
            Event::MappingStart(anchor, _) => {
                let Some(pointer) = self.next_pointer() else {
                    return Err(error("a mapping as a mapping key is not supported"));
                };
                self.positions.entry(pointer.clone()).or_insert(at);
                self.enter(at)?;
                self.stack.push(Frame::Map {
                    map: Map::new(),
                    pointer,
                    anchor,
                    at,
                    start: self.values - 1,
                    written: Vec::new(),
                    key: None,
                });
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq {
                    items,
                    anchor,
                    at,
                    start,
                    ..
                }) = self.stack.pop()
                {
                    let count = self.values - start;
                    self.complete(Value::Array(items), anchor, at, count)?;
                }
            }
            Event::MappingEnd => {
                if let Some(Frame::Map {
                    map,
                    anchor,
                    at,
                    start,
                    ..
                }) = self.stack.pop()
                {
                    let count = self.values - start;
                    self.complete(Value::Object(map), anchor, at, count)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `n` more values in the document.
    fn count(&mut self, n: usize, at: Pos) -> Result<(), SyntaxError> {
        self.values = self.values.saturating_add(n);
        if self.values > MAX_VALUES {
            return Err(SyntaxError {
                message: format!("the document expands to more than {MAX_VALUES} values (aliases count every value they repeat)"),
                pos: at,
            });
        }
        Ok(())
    }

    /// A sequence or mapping starts: one more value, one level deeper.
    fn enter(&mut self, at: Pos) -> Result<(), SyntaxError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(SyntaxError {
                message: format!("nested deeper than {MAX_DEPTH} levels"),
                pos: at,
            });
        }
        self.count(1, at)
    }

    /// A node is whole: remember its anchor and hand it to its parent (or end the document).
    fn complete(
        &mut self,
        value: Value,
        anchor: usize,
        at: Pos,
        count: usize,
    ) -> Result<(), SyntaxError> {
        if anchor != 0 {
            self.anchors.insert(anchor, (value.clone(), count));
        }
        match self.stack.last_mut() {
            None => {
                self.documents.push(Document {
                    value,
                    positions: std::mem::take(&mut self.positions),
                    duplicates: Vec::new(),
                });
                self.blocks.push(std::mem::take(&mut self.block_scalars));
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => match key.take() {
                Some((_, true)) => {
                    // `<<: *base` or `<<: [*a, *b]`: members not already present.
                    let sources = match value {
                        Value::Array(items) => items,
                        other => vec![other],
                    };
                    for source in sources {
                        let Value::Object(source) = source else {
                            return Err(SyntaxError {
                                message: "a merge key (<<) takes a mapping or a list of mappings"
                                    .into(),
                                pos: at,
                            });
                        };
                        for (k, v) in source {
                            map.entry(k).or_insert(v);
                        }
                    }
                }
                Some((k, false)) => {
                    map.insert(k, value);
                }
                None => {
                    return Err(SyntaxError {
                        message: "only scalars can be mapping keys".into(),
                        pos: at,
                    })
                }
            },
        }
        Ok(())
    }
}

/// A plain scalar under the YAML 1.2 core schema: null, booleans, integers (decimal, `0o`, `0x`),
/// floats; anything else is a string. Numbers keep their decimal text (the filter compares schema
/// bounds as decimals); `.inf` and `.nan` have no JSON form and are refused.
pub fn plain_scalar(text: &str) -> Result<Value, String> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Value::Null),
        "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    let lower = text.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    if unsigned == ".inf" || lower == ".nan" {
        return Err(format!(
            "{text} has no JSON form; quote it to make it a string"
        ));
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(n) = u64::from_str_radix(oct, 8) {
            return Ok(Value::Number(n.into()));
        }
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(n) = u64::from_str_radix(hex, 16) {
            return Ok(Value::Number(n.into()));
        }
    }
    if let Some(number) = decimal(text) {
        return Ok(Value::Number(number));
    }
    Ok(Value::String(text.to_string()))
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` as a JSON number, written the JSON way.
fn decimal(text: &str) -> Option<Number> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'-' => ("-", &text[1..]),
        b'+' => ("", &text[1..]),
        _ => ("", text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int)
        || !frac.is_none_or(digits)
        || (int.is_empty() && frac.is_none_or(str::is_empty))
    {
        return None;
    }
    let exponent = match exponent {
        Some(e) => {
            let body = e.trim_start_matches(['+', '-']);
            if body.is_empty() || !digits(body) || e.len() - body.len() > 1 {
                return None;
            }
            Some(e)
        }
        None => None,
    };
    let int = int.trim_start_matches('0');
    let mut json = format!("{sign}{}", if int.is_empty() { "0" } else { int });
    if let Some(f) = frac.filter(|f| !f.is_empty()) {
        json.push('.');
        json.push_str(f);
    }
    if let Some(e) = exponent {
        json.push('e');
        json.push_str(e);
    }
    serde_json::from_str::<Number>(&json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_positions_by_pointer() {
        let doc = parse_json("{\n  \"a\": [1,\n   {\"b/c\": true}],\n  \"é\": \"x\"\n}").unwrap();
        assert_eq!(doc.position("").unwrap(), Pos { line: 1, column: 1 });
        assert_eq!(doc.position("/a").unwrap(), Pos { line: 2, column: 3 });
        assert_eq!(doc.position("/a/1").unwrap(), Pos { line: 3, column: 4 });
        assert_eq!(
            doc.position("/a/1/b~1c").unwrap(),
            Pos { line: 3, column: 5 }
        );
        assert_eq!(doc.position("/é").unwrap(), Pos { line: 4, column: 3 });
        // A missing member is reported at its nearest ancestor.
        assert_eq!(
            doc.position("/a/1/nope").unwrap(),
            Pos { line: 3, column: 4 }
        );
    }

    #[test]
    fn yaml_core_schema_and_positions() {
        let text = "a: 1\nb: [x, 'y', 2.50, .5, +7, 0x1f, ~, true, \"true\"]\n200: {c: 1e3}\nbase: &b {k: 1}\nm:\n  <<: *b\n  j: 2\n";
        let stream = parse_yaml(text).unwrap();
        let doc = &stream.documents[0];
        let expected: Value = serde_json::from_str(
            r#"{"a": 1, "b": ["x", "y", 2.50, 0.5, 7, 31, null, true, "true"], "200": {"c": 1e3},
                "base": {"k": 1}, "m": {"k": 1, "j": 2}}"#,
        )
        .unwrap();
        assert_eq!(doc.value, expected);
        assert_eq!(doc.value["b"][2].to_string(), "2.50");
        assert_eq!(doc.position("/b/1").unwrap(), Pos { line: 2, column: 8 });
        assert_eq!(doc.position("/200/c").unwrap(), Pos { line: 3, column: 7 });
        assert_eq!(doc.position("/m/j").unwrap(), Pos { line: 7, column: 3 });
    }

    #[test]
    fn yaml_errors_have_positions_and_inf_is_refused() {
        let e = parse_yaml("a: [1,\nb").unwrap_err();
        assert!(e.pos.line >= 1);
        let e = parse_yaml("x: .inf\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 1, column: 4 });
    }

    #[test]
    fn alias_bombs_and_deep_nesting_are_refused() {
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = format!("*a{}", i - 1);
            bomb.push_str(&format!("a{i}: &a{i} [{}]\n", vec![prev; 10].join(", ")));
        }
        let e = parse_yaml(&bomb).unwrap_err();
        assert!(e.message.contains("expands to more than"), "{e:?}");
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        let e = parse_yaml(&deep).unwrap_err();
        assert!(e.message.contains("nested deeper than 128"), "{e:?}");
        // Within the limits, aliases work.
        assert!(parse_yaml("a: &x [1, 2]\nb: [*x, *x]\n").is_ok());
    }

    #[test]
    fn duplicate_keys() {
        let e = parse_yaml("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.pos, Pos { line: 3, column: 1 });
        assert!(e.message.contains("duplicate key `a`"));
        // A merged key may be overridden.
        assert!(parse_yaml("base: &b {a: 1}\nm: {<<: *b, a: 2}\n").is_ok());
        let doc = parse_json("{\"a\": {\"x\": 1,\n \"x\": 2}}").unwrap();
        assert_eq!(
            doc.duplicates,
            vec![("/a/x".to_string(), Pos { line: 2, column: 2 })]
        );
        assert_eq!(doc.value["a"]["x"], 2);
    }

    #[test]
    fn several_documents_and_block_scalars() {
        let stream = parse_yaml("a: 1\n---\nv: |\n    {\"x\": 1}\n").unwrap();
        assert_eq!(stream.documents.len(), 2);
        let block = &stream.blocks[1]["/v"];
        assert_eq!((block.content_line, block.indent), (4, 4));
    }
}
