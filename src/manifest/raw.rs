//! Parsing manifest text into a JSON value, refusing duplicate keys (a signed document must mean
//! one thing) and bounding nesting depth.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::ManifestError;

/// Deeper documents are refused; real manifests nest a handful of levels.
const MAX_DEPTH: usize = 64;

/// Parses YAML or JSON text (JSON when it starts with `{` or `[`).
pub fn parse_document(text: &str, origin: &str) -> Result<Value, ManifestError> {
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
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    // Integers beyond 64 bits become floats, as serde_json reads them: a field that needs an
    // integer then rejects the entry (skipped with its reason) instead of the whole document.
    // Known limit: such a number inside `metadata` would canonicalise differently from Python.
    fn visit_i128<E>(self, v: i128) -> Result<Value, E> {
        Ok(i64::try_from(v)
            .map(Value::from)
            .or_else(|_| u64::try_from(v).map(Value::from))
            .unwrap_or_else(|_| Value::from(v as f64)))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Value, E> {
        Ok(u64::try_from(v)
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(v as f64)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        // Non-finite floats have no JSON form; Python would write `Infinity`, which no JSON
        // parser accepts back, so they are refused by the entry validation instead.
        Ok(serde_json::Number::from_f64(v)
            .map(Value::Number)
            .unwrap_or(Value::Null))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Checked { depth: self.depth }.deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Checked { depth: self.depth }.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(Checked {
            depth: self.depth + 1,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<KeyString>()? {
            let v = map.next_value_seed(Checked {
                depth: self.depth + 1,
            })?;
            match out.entry(key.0) {
                serde_json::map::Entry::Vacant(slot) => {
                    slot.insert(v);
                }
                serde_json::map::Entry::Occupied(slot) => {
                    return Err(de::Error::custom(format!("duplicate key `{}`", slot.key())));
                }
            }
        }
        Ok(Value::Object(out))
    }
}

/// Map keys: strings, or YAML scalars (numbers, booleans) spelled as the string Python's
/// `json.dumps` would write for them.
struct KeyString(String);

impl<'de> de::Deserialize<'de> for KeyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_str<E>(self, v: &str) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_string<E>(self, v: String) -> Result<KeyString, E> {
                Ok(KeyString(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<KeyString, E> {
                Ok(KeyString(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<KeyString, E> {
                Ok(KeyString(super::canonical::python_float_repr(v)))
            }
            fn visit_unit<E>(self) -> Result<KeyString, E> {
                Ok(KeyString("null".into()))
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
