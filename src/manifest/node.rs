//! The parsed form of a manifest document: a JSON-shaped tree whose strings borrow from the
//! text wherever the parser allows (no escapes to undo), with maps as vectors in document
//! order. Loading a manifest is allocation-bound; compared with `serde_json::Value` (an owned
//! string per key and value, an index map per object) this tree allocates a handful of vectors
//! per entry, and the signature check, the entry extraction and the canonical bytes all read
//! it in place.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, PartialEq)]
pub enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Seq(Vec<Node<'a>>),
    /// Fields in document order, keys unique (the parser refuses duplicates).
    Map(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// A mapping's field.
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Map(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Cow<'a, str>, Node<'a>)]> {
        match self {
            Node::Map(fields) => Some(fields),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node<'a>]> {
        match self {
            Node::Seq(items) => Some(items),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null)
    }

    /// The same JSON kind names serde uses in its messages, for "must be a ..." errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Number(n) if n.is_f64() => "a floating point number",
            Node::Number(_) => "an integer",
            Node::Str(_) => "a string",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// An owned copy, for the parts of a document that outlive its text (entry metadata).
    pub fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::Str(s) => Value::String(s.to_string()),
            Node::Seq(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Map(fields) => Value::Object(map_to_value(fields)),
        }
    }

    /// A tree borrowing from an owned document (the CLI signs and packs `Value`s).
    pub fn from_value(v: &'a Value) -> Self {
        match v {
            Value::Null => Node::Null,
            Value::Bool(b) => Node::Bool(*b),
            Value::Number(n) => Node::Number(n.clone()),
            Value::String(s) => Node::Str(Cow::Borrowed(s)),
            Value::Array(items) => Node::Seq(items.iter().map(Node::from_value).collect()),
            Value::Object(map) => Node::Map(
                map.iter()
                    .map(|(k, v)| (Cow::Borrowed(k.as_str()), Node::from_value(v)))
                    .collect(),
            ),
        }
    }
}

/// An owned object from mapping fields (all of a mapping's, or a filtered few).
pub fn map_to_value<'n, 'a: 'n>(
    fields: impl IntoIterator<Item = &'n (Cow<'a, str>, Node<'a>)>,
) -> Map<String, Value> {
    fields
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_value()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_round_trip_keeps_order_and_types() {
        let v = serde_json::json!({"z": [1, -2, 2.5, null, true], "a": {"k": "v"}, "m": ""});
        let n = Node::from_value(&v);
        assert_eq!(n.get("m").and_then(Node::as_str), Some(""));
        assert_eq!(n.get("z").and_then(Node::as_seq).map(<[_]>::len), Some(5));
        assert!(n.get("missing").is_none());
        let back = n.to_value();
        assert_eq!(back, v);
        let keys: Vec<_> = back
            .as_object()
            .into_iter()
            .flat_map(|m| m.keys())
            .collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }
}
