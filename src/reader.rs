//! A JSON reader that knows where it is: every value carries its JSON path, every object reader
//! refuses members it was not asked about, and every error names the path that is wrong.

use serde_json::{Map, Value};
use std::time::Duration;

/// A refused configuration: the JSON path of the offending value and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path from the document root, e.g. `jwt_providers.example.issuer` or `rules[2].match`;
    /// `$` for the root itself.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "invalid configuration at {}: {}",
            self.path, self.message
        )
    }
}

impl std::error::Error for ConfigError {}

pub type Result<T> = std::result::Result<T, ConfigError>;

static NULL: Value = Value::Null;

/// One value of the document and the path that leads to it.
#[derive(Debug, Clone)]
pub struct Node<'a> {
    pub value: &'a Value,
    path: String,
}

impl<'a> Node<'a> {
    pub fn root(value: &'a Value) -> Node<'a> {
        Node {
            value,
            path: String::new(),
        }
    }

    /// The full JSON path of this value (`$` for the document itself).
    pub fn path(&self) -> &str {
        if self.path.is_empty() {
            "$"
        } else {
            &self.path
        }
    }

    fn member(&self, name: &str, value: &'a Value) -> Node<'a> {
        let path = if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.path)
        };
        Node { value, path }
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: self.path().to_string(),
            message: message.into(),
        }
    }

    fn type_error(&self, expected: &str) -> ConfigError {
        self.error(format!(
            "expected {expected}, found {}",
            kind_of(self.value)
        ))
    }

    /// An object whose members must all be among `fields`: an unknown member (a typo) is refused
    /// before anything else is checked, so that it is the error the operator sees.
    pub fn object(&self, fields: &[&str]) -> Result<Object<'a>> {
        let Value::Object(map) = self.value else {
            return Err(self.type_error("an object"));
        };
        if let Some((unknown, value)) = map.iter().find(|(k, _)| !fields.contains(&k.as_str())) {
            return Err(self.member(unknown, value).error(format!(
                "unknown field; expected one of: {}",
                fields.join(", ")
            )));
        }
        Ok(Object {
            map,
            node: self.clone(),
        })
    }

    /// The members of an object keyed by operator-chosen names (such as provider names).
    pub fn entries(&self) -> Result<Vec<(&'a str, Node<'a>)>> {
        let Value::Object(map) = self.value else {
            return Err(self.type_error("an object"));
        };
        Ok(map
            .iter()
            .map(|(k, value)| (k.as_str(), self.member(k, value)))
            .collect())
    }

    pub fn str(&self) -> Result<&'a str> {
        self.value
            .as_str()
            .ok_or_else(|| self.type_error("a string"))
    }

    pub fn non_empty_str(&self) -> Result<&'a str> {
        let s = self.str()?;
        if s.is_empty() {
            return Err(self.error("must not be empty"));
        }
        Ok(s)
    }

    /// An HTTP header name ([`crate::http_names::is_token`]), lower-cased as headers are looked up.
    pub fn header_name(&self) -> Result<String> {
        let name = self.non_empty_str()?;
        if !crate::http_names::is_token(name) {
            return Err(self.error(format!("{name:?} is not a valid HTTP header name")));
        }
        Ok(name.to_ascii_lowercase())
    }

    pub fn bool(&self) -> Result<bool> {
        self.value
            .as_bool()
            .ok_or_else(|| self.type_error("true or false"))
    }

    pub fn u64(&self) -> Result<u64> {
        self.value
            .as_u64()
            .ok_or_else(|| self.type_error("a non-negative integer"))
    }

    pub fn usize_in(&self, min: usize, max: usize) -> Result<usize> {
        let n = self.u64()?;
        usize::try_from(n)
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| self.error(format!("must be between {min} and {max}, got {n}")))
    }

    pub fn duration(&self) -> Result<Duration> {
        crate::time::parse_duration(self.str()?).map_err(|m| self.error(m))
    }

    /// An `http://` or `https://` URI split into authority (host and port) and path (`/` when absent).
    pub fn http_uri(&self) -> Result<(String, String)> {
        let uri = self.non_empty_str()?;
        let rest = uri
            .strip_prefix("http://")
            .or_else(|| uri.strip_prefix("https://"))
            .ok_or_else(|| self.error("expected an http:// or https:// URI"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(rest), rest.get(i..).unwrap_or("/")),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(self.error("the URI has no host"));
        }
        Ok((authority.to_string(), path.to_string()))
    }

    /// The elements of an array, each with its own path.
    pub fn array(&self) -> Result<Vec<Node<'a>>> {
        match self.value {
            Value::Array(items) => Ok(items
                .iter()
                .enumerate()
                .map(|(i, value)| Node {
                    value,
                    path: format!("{}[{i}]", self.path()),
                })
                .collect()),
            _ => Err(self.type_error("an array")),
        }
    }

    /// An array of non-empty strings.
    pub fn string_list(&self) -> Result<Vec<String>> {
        self.array()?
            .iter()
            .map(|item| item.non_empty_str().map(str::to_string))
            .collect()
    }

    /// One of the given words.
    pub fn one_of<T: Copy>(&self, choices: &[(&str, T)]) -> Result<T> {
        let s = self.str()?;
        choices
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                let names: Vec<String> = choices.iter().map(|(n, _)| format!("{n:?}")).collect();
                self.error(format!("expected one of {}, got {s:?}", names.join(", ")))
            })
    }
}

/// An object being read, its members already checked against the known fields.
pub struct Object<'a> {
    map: &'a Map<String, Value>,
    node: Node<'a>,
}

impl<'a> Object<'a> {
    /// An optional member; `null` counts as absent.
    pub fn get(&self, name: &str) -> Option<Node<'a>> {
        match self.map.get(name) {
            None | Some(Value::Null) => None,
            Some(value) => Some(self.node.member(name, value)),
        }
    }

    /// A member that must be present.
    pub fn require(&self, name: &str) -> Result<Node<'a>> {
        self.get(name)
            .ok_or_else(|| self.node.member(name, &NULL).error("is required"))
    }

    /// An optional boolean member, `default` when absent.
    pub fn bool_or(&self, name: &str, default: bool) -> Result<bool> {
        Ok(self
            .get(name)
            .map(|n| n.bool())
            .transpose()?
            .unwrap_or(default))
    }

    /// An optional member naming one of `choices`, `default` when absent.
    pub fn one_of_or<T: Copy>(&self, name: &str, choices: &[(&str, T)], default: T) -> Result<T> {
        Ok(self
            .get(name)
            .map(|n| n.one_of(choices))
            .transpose()?
            .unwrap_or(default))
    }

    /// The object's own path, for errors about the object as a whole.
    pub fn node(&self) -> &Node<'a> {
        &self.node
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
