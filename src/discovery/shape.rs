//! The observed shape of JSON bodies: member names and JSON types, never values, merged across
//! requests so that a collector can rebuild a schema. Rendered like JSON Schema:
//! `{"type": ["object"], "properties": {"id": {"type": ["integer"]}}}`.
//!
//! Bounds: objects deeper than `max_depth` keep only their types; a shape holds at most
//! `max_members` members and array item shapes in all (the rest is marked `truncated`); only the
//! first [`MAX_ARRAY_ITEMS`] elements of an array are read; member names that look like values
//! (ids, e-mails, UUIDs) become placeholders, and names longer than [`MAX_NAME_BYTES`] are `{long}`.

use super::template::placeholder;
use serde_json::{Map, Value};

pub const MAX_ARRAY_ITEMS: usize = 8;
pub const MAX_NAME_BYTES: usize = 64;

const NULL: u8 = 1;
const BOOLEAN: u8 = 2;
const INTEGER: u8 = 4;
const NUMBER: u8 = 8;
const STRING: u8 = 16;
const ARRAY: u8 = 32;
const OBJECT: u8 = 64;
const TYPE_NAMES: [(u8, &str); 7] = [
    (NULL, "null"),
    (BOOLEAN, "boolean"),
    (INTEGER, "integer"),
    (NUMBER, "number"),
    (STRING, "string"),
    (ARRAY, "array"),
    (OBJECT, "object"),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShapeLimits {
    pub max_depth: usize,
    pub max_members: usize,
}

impl Default for ShapeLimits {
    fn default() -> Self {
        ShapeLimits {
            max_depth: 4,
            max_members: 32,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    types: u8,
    /// Sorted by name.
    members: Vec<(String, Node)>,
    items: Option<Box<Node>>,
}

/// The merged shape of the bodies seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Shape {
    root: Node,
    /// Members and item shapes held (bounded by `max_members`).
    size: usize,
    truncated: bool,
}

impl Shape {
    pub fn of(value: &Value, limits: ShapeLimits) -> Shape {
        let mut shape = Shape::default();
        shape.add(value, limits);
        shape
    }

    /// Merges one more body into the shape.
    pub fn add(&mut self, value: &Value, limits: ShapeLimits) {
        let mut budget = Budget {
            used: self.size,
            limits,
            truncated: self.truncated,
        };
        add_value(&mut self.root, value, 0, &mut budget);
        self.size = budget.used;
        self.truncated = budget.truncated;
    }

    /// Merges another shape into this one.
    pub fn merge(&mut self, other: &Shape, limits: ShapeLimits) {
        let mut budget = Budget {
            used: self.size,
            limits,
            truncated: self.truncated || other.truncated,
        };
        merge_node(&mut self.root, &other.root, &mut budget);
        self.size = budget.used;
        self.truncated = budget.truncated;
    }

    /// Reads a shape back from its JSON rendering ([`Shape::to_json`]), within `limits`: what a
    /// collector needs to merge the shapes of many batches with [`Shape::merge`]. `None` when
    /// `value` is not a shape (a member without a `type` list, an unknown type name); members and
    /// depth past `limits` are cut and the shape marked truncated.
    pub fn from_json(value: &Value, limits: ShapeLimits) -> Option<Shape> {
        let mut budget = Budget {
            used: 0,
            limits,
            truncated: value.get("truncated").and_then(Value::as_bool) == Some(true),
        };
        let root = node_from_json(value, 0, &mut budget)?;
        Some(Shape {
            root,
            size: budget.used,
            truncated: budget.truncated,
        })
    }

    /// Heap bytes held (an estimate: allocator overhead not included).
    pub fn heap_bytes(&self) -> usize {
        node_heap_bytes(&self.root)
    }

    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    /// The data classes of member names that were values (typed placeholders), for the endpoint.
    pub fn data_classes(&self) -> Vec<&'static str> {
        let mut classes = Vec::new();
        node_classes(&self.root, &mut classes);
        classes
    }

    pub fn to_json(&self) -> Value {
        let mut v = node_json(&self.root);
        if self.truncated {
            if let Value::Object(map) = &mut v {
                map.insert("truncated".into(), Value::Bool(true));
            }
        }
        v
    }
}

struct Budget {
    used: usize,
    limits: ShapeLimits,
    truncated: bool,
}

impl Budget {
    fn take(&mut self) -> bool {
        if self.used >= self.limits.max_members {
            self.truncated = true;
            return false;
        }
        self.used += 1;
        true
    }
}

fn type_of(value: &Value) -> u8 {
    match value {
        Value::Null => NULL,
        Value::Bool(_) => BOOLEAN,
        Value::Number(n) if n.is_i64() || n.is_u64() => INTEGER,
        Value::Number(_) => NUMBER,
        Value::String(_) => STRING,
        Value::Array(_) => ARRAY,
        Value::Object(_) => OBJECT,
    }
}

fn member_name(name: &str) -> &str {
    if name.len() > MAX_NAME_BYTES {
        return "{long}";
    }
    // A name that is itself a sensitive value gets its typed placeholder first (`{card}`, not
    // `{id}`); then the shape placeholders (`{id}`, `{uuid}`, ...); then any other value-like name.
    let scrubbed = super::scrub::check(name);
    if let Some(s) = scrubbed.filter(|s| s.class.is_some()) {
        return s.placeholder;
    }
    if let Some(p) = placeholder(name) {
        return p;
    }
    if let Some(s) = scrubbed {
        return s.placeholder;
    }
    if name.chars().any(char::is_control) {
        return "{unprintable}";
    }
    name
}

/// The member `name`, added (within the budget) if new; allocates only when adding.
fn child<'n>(
    members: &'n mut Vec<(String, Node)>,
    name: &str,
    budget: &mut Budget,
) -> Option<&'n mut Node> {
    match members.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
        Ok(i) => members.get_mut(i).map(|(_, n)| n),
        Err(i) => {
            if !budget.take() {
                return None;
            }
            members.insert(i, (name.to_string(), Node::default()));
            members.get_mut(i).map(|(_, n)| n)
        }
    }
}

fn add_value(node: &mut Node, value: &Value, depth: usize, budget: &mut Budget) {
    node.types |= type_of(value);
    if depth >= budget.limits.max_depth {
        if matches!(value, Value::Object(m) if !m.is_empty())
            || matches!(value, Value::Array(a) if !a.is_empty())
        {
            budget.truncated = true;
        }
        return;
    }
    match value {
        Value::Object(map) => add_object(node, map, depth, budget),
        Value::Array(items) => {
            for item in items.iter().take(MAX_ARRAY_ITEMS) {
                if node.items.is_none() {
                    if !budget.take() {
                        return;
                    }
                    node.items = Some(Box::default());
                }
                if let Some(items_node) = node.items.as_deref_mut() {
                    add_value(items_node, item, depth + 1, budget);
                }
            }
        }
        _ => {}
    }
}

fn add_object(node: &mut Node, map: &Map<String, Value>, depth: usize, budget: &mut Budget) {
    for (name, member) in map {
        if let Some(target) = child(&mut node.members, member_name(name), budget) {
            add_value(target, member, depth + 1, budget);
        }
    }
}

fn merge_node(into: &mut Node, from: &Node, budget: &mut Budget) {
    into.types |= from.types;
    for (name, member) in &from.members {
        if let Some(target) = child(&mut into.members, name, budget) {
            merge_node(target, member, budget);
        }
    }
    if let Some(items) = &from.items {
        if into.items.is_none() {
            if !budget.take() {
                return;
            }
            into.items = Some(Box::default());
        }
        if let Some(target) = into.items.as_deref_mut() {
            merge_node(target, items, budget);
        }
    }
}

fn node_heap_bytes(node: &Node) -> usize {
    node.members.capacity() * std::mem::size_of::<(String, Node)>()
        + node
            .members
            .iter()
            .map(|(name, n)| name.capacity() + node_heap_bytes(n))
            .sum::<usize>()
        + node
            .items
            .as_deref()
            .map_or(0, |n| std::mem::size_of::<Node>() + node_heap_bytes(n))
}

fn node_classes(node: &Node, classes: &mut Vec<&'static str>) {
    for (name, child) in &node.members {
        if let Some(class) = super::scrub::class_of_placeholder(name) {
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
        node_classes(child, classes);
    }
    if let Some(items) = &node.items {
        node_classes(items, classes);
    }
}

fn node_from_json(value: &Value, depth: usize, budget: &mut Budget) -> Option<Node> {
    let mut node = Node::default();
    for t in value.get("type")?.as_array()? {
        let name = t.as_str()?;
        let (bit, _) = TYPE_NAMES.iter().find(|(_, n)| *n == name)?;
        node.types |= bit;
    }
    if depth >= budget.limits.max_depth {
        if value.get("properties").is_some() || value.get("items").is_some() {
            budget.truncated = true;
        }
        return Some(node);
    }
    if let Some(props) = value.get("properties") {
        for (name, member) in props.as_object()? {
            let child = node_from_json(member, depth + 1, budget)?;
            if !budget.take() {
                break;
            }
            node.members.push((member_name(name).to_string(), child));
        }
        crate::sorting::stable_sort_by(&mut node.members, |a, b| a.0.cmp(&b.0));
        node.members.dedup_by(|a, b| a.0 == b.0);
    }
    if let Some(items) = value.get("items") {
        let child = node_from_json(items, depth + 1, budget)?;
        if budget.take() {
            node.items = Some(Box::new(child));
        }
    }
    Some(node)
}

fn node_json(node: &Node) -> Value {
    let mut map = Map::new();
    let types: Vec<Value> = TYPE_NAMES
        .iter()
        .filter(|(bit, _)| node.types & bit != 0)
        .map(|(_, name)| Value::String((*name).into()))
        .collect();
    map.insert("type".into(), Value::Array(types));
    if !node.members.is_empty() {
        // Inserts rather than `collect()`: a map collected from an iterator is sorted first, and every such
        // collect is its own copy of the standard library's sort in the .wasm (crate::sorting).
        let mut props = Map::new();
        for (name, n) in &node.members {
            props.insert(name.clone(), node_json(n));
        }
        map.insert("properties".into(), Value::Object(props));
    }
    if let Some(items) = &node.items {
        map.insert("items".into(), node_json(items));
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_shape_reads_back_from_its_json_and_merges() {
        let limits = ShapeLimits::default();
        let a = Shape::of(&json!({"id": 1, "tags": [{"n": "x"}]}), limits);
        let back = Shape::from_json(&a.to_json(), limits).unwrap();
        assert_eq!(back.to_json(), a.to_json());
        let mut merged = back;
        merged.merge(
            &Shape::of(&json!({"id": "7", "extra": null}), limits),
            limits,
        );
        assert_eq!(
            merged.to_json(),
            json!({"type": ["object"], "properties": {
                "extra": {"type": ["null"]},
                "id": {"type": ["integer", "string"]},
                "tags": {"type": ["array"], "items": {"type": ["object"], "properties": {"n": {"type": ["string"]}}}}}})
        );
        assert!(Shape::from_json(&json!({"type": ["bogus"]}), limits).is_none());
        assert!(Shape::from_json(&json!({"properties": {}}), limits).is_none());
        let tight = ShapeLimits {
            max_depth: 4,
            max_members: 1,
        };
        let cut = Shape::from_json(
            &json!({"type": ["object"], "properties": {
            "a": {"type": ["string"]}, "b": {"type": ["string"]}}}),
            tight,
        )
        .unwrap();
        assert!(cut.is_truncated());
        assert_eq!(cut.to_json()["properties"].as_object().unwrap().len(), 1);
    }

    #[test]
    fn names_and_types_are_kept_and_values_are_not() {
        let body = json!({"id": 7, "name": "Jane Secret", "price": 1.5, "tags": ["a"], "owner": null,
                          "ok": true, "address": {"city": "Paris"}});
        let shape = Shape::of(&body, ShapeLimits::default());
        let text = shape.to_json().to_string();
        assert!(!text.contains("Jane") && !text.contains("Paris") && !text.contains("1.5"));
        assert_eq!(
            shape.to_json(),
            json!({"type": ["object"], "properties": {
                "address": {"type": ["object"], "properties": {"city": {"type": ["string"]}}},
                "id": {"type": ["integer"]},
                "name": {"type": ["string"]},
                "ok": {"type": ["boolean"]},
                "owner": {"type": ["null"]},
                "price": {"type": ["number"]},
                "tags": {"type": ["array"], "items": {"type": ["string"]}}
            }})
        );
    }

    #[test]
    fn shapes_merge_types_and_members() {
        let limits = ShapeLimits::default();
        let mut a = Shape::of(&json!({"id": 1}), limits);
        a.merge(
            &Shape::of(&json!({"id": "x", "extra": [1, 2.5]}), limits),
            limits,
        );
        assert_eq!(
            a.to_json(),
            json!({"type": ["object"], "properties": {
                "extra": {"type": ["array"], "items": {"type": ["integer", "number"]}},
                "id": {"type": ["integer", "string"]}
            }})
        );
    }

    #[test]
    fn value_like_member_names_become_placeholders() {
        let body = json!({"12345": {"a": 1}, "jane@example.com": 1, "3fa85f64-5717-4562-b3fc-2c963f66afa6": 2});
        let text = Shape::of(&body, ShapeLimits::default())
            .to_json()
            .to_string();
        assert!(text.contains("{id}") && text.contains("{email}") && text.contains("{uuid}"));
        assert!(!text.contains("jane") && !text.contains("12345"));
    }

    #[test]
    fn depth_and_member_count_are_bounded() {
        let limits = ShapeLimits {
            max_depth: 2,
            max_members: 5,
        };
        let deep = json!({"a": {"b": {"c": {"d": 1}}}});
        let shape = Shape::of(&deep, limits);
        assert!(shape.is_truncated());
        assert_eq!(
            shape.to_json(),
            json!({"type": ["object"], "truncated": true, "properties": {
                "a": {"type": ["object"], "properties": {"b": {"type": ["object"]}}}}})
        );
        let mut wide = Map::new();
        for i in 0..1000 {
            wide.insert(format!("member_{i}x"), json!(i));
        }
        let mut shape = Shape::of(&Value::Object(wide.clone()), limits);
        shape.merge(&Shape::of(&Value::Object(wide), limits), limits);
        let props = shape.to_json()["properties"].as_object().unwrap().len();
        assert_eq!(props, 5);
        assert!(shape.is_truncated());
    }
}
