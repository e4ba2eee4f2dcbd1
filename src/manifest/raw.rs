//! Parsing manifest text into a [`Node`] tree, refusing duplicate keys (a signed document must
//! mean one thing) and bounding nesting depth.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::ManifestError;
use super::node::Node;

/// Deeper documents are refused; real manifests nest a handful of levels.
const MAX_DEPTH: usize = 64;

/// Parses YAML or JSON text into an owned document (for the CLI, which edits and re-writes it).
pub fn parse_document(text: &str, origin: &str) -> Result<Value, ManifestError> {
    parse_tree(text, origin).map(|n| n.to_value())
}

/// Parses YAML or JSON text (JSON when it starts with `{` or `[`) into a tree borrowing from it.
pub fn parse_tree<'a>(text: &'a str, origin: &str) -> Result<Node<'a>, ManifestError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    let syntax = |line: usize, column: usize, message: String| ManifestError::Syntax {
        origin: origin.to_string(),
        line,
        column,
        message,
    };
    let value = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(trimmed);
        let v = Checked { depth: 0 }
            .deserialize(&mut de)
            .map_err(|e| syntax(e.line(), e.column(), strip(&e.to_string())))?;
        de.end()
            .map_err(|e| syntax(e.line(), e.column(), strip(&e.to_string())))?;
        v
    } else {
        let mut docs = serde_yaml::Deserializer::from_str(trimmed);
        let first = docs
            .next()
            .ok_or_else(|| syntax(1, 1, "empty document".into()))?;
        let v = Checked { depth: 0 }.deserialize(first).map_err(|e| {
            let (l, c) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            syntax(l, c, strip(&e.to_string()))
        })?;
        if docs.next().is_some() {
            return Err(syntax(
                0,
                0,
                "more than one YAML document in the stream".into(),
            ));
        }
        v
    };
    if value.is_null() {
        return Err(syntax(1, 1, "empty document".into()));
    }
    Ok(value)
}

fn strip(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

struct Checked {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(v.into()))
    }
    // Integers beyond 64 bits become floats, as serde_json reads them: a field that needs an
    // integer then rejects the entry (skipped with its reason) instead of the whole document.
    // Known limit: such a number inside `metadata` would canonicalise differently from Python.
    fn visit_i128<E>(self, v: i128) -> Result<Node<'de>, E> {
        Ok(i64::try_from(v)
            .map(|i| Node::Number(i.into()))
            .or_else(|_| u64::try_from(v).map(|u| Node::Number(u.into())))
            .unwrap_or_else(|_| float(v as f64)))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Node<'de>, E> {
        Ok(u64::try_from(v)
            .map(|u| Node::Number(u.into()))
            .unwrap_or_else(|_| float(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        Ok(float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Checked { depth: self.depth }.deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Checked { depth: self.depth }.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(Checked {
            depth: self.depth + 1,
        })? {
            out.push(v);
        }
        Ok(Node::Seq(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut out: Vec<(Cow<'de, str>, Node<'de>)> = Vec::new();
        while let Some(key) = map.next_key::<KeyString>()? {
            let v = map.next_value_seed(Checked {
                depth: self.depth + 1,
            })?;
            // Mappings of a manifest have a dozen fields at most: a scan beats hashing. Big
            // ones (free-form metadata) are checked once, sorted, at the end.
            if out.len() < SCAN_LIMIT && out.iter().any(|(k, _)| *k == key.0) {
                return Err(duplicate(&key.0));
            }
            out.push((key.0, v));
        }
        if out.len() > SCAN_LIMIT {
            let mut keys: Vec<&str> = out.iter().map(|(k, _)| k.as_ref()).collect();
            keys.sort_unstable();
            if let Some(w) = keys.windows(2).find(|w| w[0] == w[1]) {
                return Err(duplicate(w[0]));
            }
        }
        Ok(Node::Map(out))
    }
}

/// Fields of a mapping checked for duplicates by scanning as they are read.
const SCAN_LIMIT: usize = 16;

fn duplicate<E: de::Error>(key: &str) -> E {
    E::custom(format!("duplicate key `{key}`"))
}

fn float<'a>(v: f64) -> Node<'a> {
    // Non-finite floats have no JSON form; Python would write `Infinity`, which no JSON
    // parser accepts back, so they are refused by the entry validation instead.
    serde_json::Number::from_f64(v)
        .map(Node::Number)
        .unwrap_or(Node::Null)
}

/// Map keys: strings, or YAML scalars (numbers, booleans) spelled as the string Python's
/// `json.dumps` would write for them.
struct KeyString<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for KeyString<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyString<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<KeyString<'de>, E> {
                Ok(KeyString(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString<'de>, E> {
                Ok(KeyString(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<KeyString<'de>, E> {
                Ok(KeyString(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyString<'de>, E> {
                Ok(KeyString(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyString<'de>, E> {
                Ok(KeyString(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyString<'de>, E> {
                Ok(KeyString(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyString<'de>, E> {
                Ok(KeyString(Cow::Owned(super::canonical::python_float_repr(
                    v,
                ))))
            }
            fn visit_unit<E>(self) -> Result<KeyString<'de>, E> {
                Ok(KeyString(Cow::Borrowed("null")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_are_refused() {
        for text in [
            "{\"a\": 1, \"a\": 2}",
            "a: 1\na: 2\n",
            "entries:\n  - {key: x, key: y}\n",
        ] {
            let e = parse_document(text, "t").unwrap_err().to_string();
            assert!(e.contains("duplicate"), "{text}: {e}");
        }
    }

    #[test]
    fn duplicate_keys_in_big_mappings_are_refused() {
        let mut fields: Vec<String> = (0..20).map(|i| format!("\"f{i}\": {i}")).collect();
        assert!(parse_document(&format!("{{{}}}", fields.join(",")), "t").is_ok());
        fields.push("\"f3\": 0".into());
        let e = parse_document(&format!("{{{}}}", fields.join(",")), "t").unwrap_err();
        assert!(e.to_string().contains("duplicate key `f3`"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_document(&deep, "t").is_err());
        let yaml = format!("a: {}1{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_document(&yaml, "t").is_err());
    }

    #[test]
    fn errors_have_locations() {
        let e = parse_document("a: 1\nb: [1, 2\n", "m.yaml").unwrap_err();
        assert!(
            matches!(e, ManifestError::Syntax { line, .. } if line >= 2),
            "{e}"
        );
        let e = parse_document("{\"a\": 1,,}", "m.json").unwrap_err();
        assert!(matches!(e, ManifestError::Syntax { line: 1, .. }), "{e}");
    }
}
