//! Parsing manifest text into a [`Node`] tree, refusing duplicate keys (a signed document must
//! mean one thing) and bounding what a document may cost while it is parsed, before any
//! signature is looked at: nesting depth, nodes, items of one collection, string and key
//! lengths, and the expanded size of YAML aliases.
//!
//! Aliases are allowed (the reference implementation reads them) but bounded: the expanded tree
//! may not hold more nodes or string bytes than its text could spell without aliases, so a
//! "billion laughs" document fails after a few thousand nodes instead of after gigabytes.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::ManifestError;
use super::node::Node;

/// Deeper documents are refused; real manifests nest a handful of levels.
pub const MAX_DEPTH: usize = 64;
/// Nodes of one document (scalars and collections). 100 000 typical entries take 1.5 million.
pub const MAX_NODES: usize = 4_000_000;
/// Items of one sequence or mapping (so also entries of a manifest).
pub const MAX_ITEMS: usize = 1_000_000;
/// Bytes of one string value.
pub const MAX_STRING_BYTES: usize = 1024 * 1024;
/// Bytes of one mapping key.
pub const MAX_KEY_BYTES: usize = 4096;
/// YAML text at least this long is first counted by [`super::yaml_scan`]; below it, the
/// events serde_yaml buffers cost at most ~150 MB.
const YAML_SCAN_BYTES: usize = 512 * 1024;
/// Events of a YAML stream larger than [`YAML_SCAN_BYTES`]: serde_yaml's buffer of them stays
/// under ~600 MB. 100 000 typical entries are 2.5 million events.
pub const MAX_YAML_EVENTS: usize = 4_000_000;

/// What a document may still spend, shared by every level of one parse.
struct Budget {
    nodes: Cell<usize>,
    string_bytes: Cell<usize>,
    /// Whether the node budget comes from the text's length (else from [`MAX_NODES`]).
    by_length: bool,
}

impl Budget {
    fn for_text(len: usize) -> Self {
        // Without aliases a node takes at least one byte of text and a string no more bytes
        // than it is spelled with; the slack covers the implicit nulls of empty values.
        let by_length = len + 1024 < MAX_NODES;
        Budget {
            nodes: Cell::new((len + 1024).min(MAX_NODES)),
            string_bytes: Cell::new(len + 4096),
            by_length,
        }
    }

    fn node<E: de::Error>(&self) -> Result<(), E> {
        match self.nodes.get().checked_sub(1) {
            Some(left) => {
                self.nodes.set(left);
                Ok(())
            }
            None if self.by_length => Err(E::custom(
                "the document expands to more nodes than its text spells (YAML aliases \
                 may repeat at most the size of the document)",
            )),
            None => Err(E::custom(format!(
                "more than {MAX_NODES} nodes (manifest limit)"
            ))),
        }
    }

    fn string<E: de::Error>(&self, len: usize, what: &str, limit: usize) -> Result<(), E> {
        if len > limit {
            return Err(E::custom(format!(
                "a {what} of {len} bytes is longer than the {limit}-byte limit"
            )));
        }
        match self.string_bytes.get().checked_sub(len) {
            Some(left) => {
                self.string_bytes.set(left);
                Ok(())
            }
            None => Err(E::custom(
                "the document expands to more string bytes than its text holds (YAML aliases \
                 may repeat at most the size of the document)",
            )),
        }
    }
}

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
    let budget = Budget::for_text(trimmed.len());
    let scratch = Scratch::default();
    let root = Checked {
        depth: 0,
        budget: &budget,
        scratch: &scratch,
    };
    let value = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        let mut de = serde_json::Deserializer::from_str(trimmed);
        let v = root
            .deserialize(&mut de)
            .map_err(|e| syntax(e.line(), e.column(), strip(&e.to_string())))?;
        de.end()
            .map_err(|e| syntax(e.line(), e.column(), strip(&e.to_string())))?;
        v
    } else {
        let counted = if trimmed.len() >= YAML_SCAN_BYTES {
            super::yaml_scan::within(trimmed, MAX_YAML_EVENTS)
        } else {
            Ok(())
        };
        if let Err(at) = counted {
            return Err(syntax(
                at.line,
                at.column,
                format!(
                    "more than {MAX_YAML_EVENTS} YAML events (manifest limit; larger manifests \
                     can be served as JSON, see `oneiric manifest pack`)"
                ),
            ));
        }
        let mut docs = serde_yaml::Deserializer::from_str(trimmed);
        let first = docs
            .next()
            .ok_or_else(|| syntax(1, 1, "empty document".into()))?;
        let v = root.deserialize(first).map_err(|e| {
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

/// Mapping fields and sequence items are gathered in a vector kept per nesting level, then
/// copied once into an exactly sized one: a manifest's tree is a few hundred thousand small
/// collections, and growing each from empty cost more than building it.
#[derive(Default)]
struct Scratch<'de> {
    maps: RefCell<Vec<Vec<Field<'de>>>>,
    seqs: RefCell<Vec<Vec<Node<'de>>>>,
}

type Field<'de> = (Cow<'de, str>, Node<'de>);

/// The level's vector (empty, with the capacity it grew to), to be handed back with [`put`].
fn take<T>(pool: &RefCell<Vec<Vec<T>>>, depth: usize) -> Vec<T> {
    pool.borrow_mut()
        .get_mut(depth)
        .map(std::mem::take)
        .unwrap_or_default()
}

fn put<T>(pool: &RefCell<Vec<Vec<T>>>, depth: usize, mut v: Vec<T>) {
    v.clear();
    let mut pool = pool.borrow_mut();
    if pool.len() <= depth {
        pool.resize_with(depth + 1, Vec::new);
    }
    pool[depth] = v;
}

#[derive(Clone, Copy)]
struct Checked<'b, 'de> {
    depth: usize,
    budget: &'b Budget,
    scratch: &'b Scratch<'de>,
}

impl Checked<'_, '_> {
    fn deeper(self) -> Self {
        Checked {
            depth: self.depth + 1,
            ..self
        }
    }

    fn string<E: de::Error>(&self, len: usize) -> Result<(), E> {
        self.budget.string(len, "string", MAX_STRING_BYTES)
    }
}

impl<'de> DeserializeSeed<'de> for Checked<'_, 'de> {
    type Value = Node<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        if self.depth > MAX_DEPTH {
            return Err(de::Error::custom(format!(
                "nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        self.budget.node()?;
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked<'_, 'de> {
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
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Node<'de>, E> {
        self.string(v.len())?;
        Ok(Node::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node<'de>, E> {
        self.string(v.len())?;
        Ok(Node::Str(Cow::Owned(v.to_string())))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node<'de>, E> {
        self.string(v.len())?;
        Ok(Node::Str(Cow::Owned(v)))
    }
    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }
    // The wrapper was counted as a node already; what it wraps is the same node.
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        pooled(&self.scratch.seqs, self.depth, Node::Seq, |out| {
            self.seq_items(&mut seq, out)
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        pooled(&self.scratch.maps, self.depth, Node::Map, |out| {
            self.map_fields(&mut map, out)
        })
    }
}

/// Fills the level's pooled vector, then copies it into an exact-size one for the node.
/// Draining (not `mem::take`) keeps the pooled buffer's capacity for the next sibling: one
/// allocation per node, no regrowth.
fn pooled<'de, T, E>(
    pool: &RefCell<Vec<Vec<T>>>,
    depth: usize,
    node: fn(Vec<T>) -> Node<'de>,
    fill: impl FnOnce(&mut Vec<T>) -> Result<(), E>,
) -> Result<Node<'de>, E> {
    let mut out = take(pool, depth);
    #[allow(clippy::drain_collect)]
    let built = fill(&mut out).map(|()| node(out.drain(..).collect()));
    put(pool, depth, out);
    built
}

impl<'de> Checked<'_, 'de> {
    fn seq_items<A: SeqAccess<'de>>(
        self,
        seq: &mut A,
        out: &mut Vec<Node<'de>>,
    ) -> Result<(), A::Error> {
        while let Some(v) = seq.next_element_seed(self.deeper())? {
            if out.len() == MAX_ITEMS {
                return Err(too_many_items());
            }
            out.push(v);
        }
        Ok(())
    }

    fn map_fields<A: MapAccess<'de>>(
        self,
        map: &mut A,
        out: &mut Vec<Field<'de>>,
    ) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed(self.budget))? {
            if out.len() == MAX_ITEMS {
                return Err(too_many_items());
            }
            let v = map.next_value_seed(self.deeper())?;
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
        Ok(())
    }
}

/// Fields of a mapping checked for duplicates by scanning as they are read.
const SCAN_LIMIT: usize = 16;

fn too_many_items<E: de::Error>() -> E {
    E::custom(format!(
        "a sequence or mapping of more than {MAX_ITEMS} items (manifest limit)"
    ))
}

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
/// `json.dumps` would write for them; bounded in length and counted against the budget.
struct KeyString<'a>(Cow<'a, str>);

struct KeySeed<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = KeyString<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyString<'de>, D::Error> {
        let key = d.deserialize_any(KeyVisitor)?;
        self.0.string(key.0.len(), "mapping key", MAX_KEY_BYTES)?;
        Ok(key)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
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

    /// Every bound fails fast with a located error naming it; each case is a known attack.
    #[test]
    fn hostile_documents_hit_a_named_limit_quickly() {
        // Billion laughs: nine levels of ten aliases each.
        let mut laughs = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            laughs.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        // Many aliases of a medium anchor: 34 s and 3.2 GB before the bound.
        let base = vec!["v"; 2000].join(", ");
        let refs = vec!["*b"; 50_000].join(", ");
        let wide = format!("base: &b [{base}]\nrefs: [{refs}]\nentries: []\n");
        // One collection with more items than the limit (empty entries, JSON).
        let many = format!("{{\"entries\":[{}]}}", vec!["{}"; MAX_ITEMS + 1].join(","));
        let long_string = format!("{{\"a\": \"{}\"}}", "x".repeat(MAX_STRING_BYTES + 1));
        let long_key = format!("{{\"{}\": 1}}", "k".repeat(MAX_KEY_BYTES + 1));
        for (name, text, needle) in [
            ("laughs", laughs.as_str(), "expands to more"),
            ("wide aliases", wide.as_str(), "expands to more"),
            ("many items", many.as_str(), "items (manifest limit)"),
            ("long string", long_string.as_str(), "byte limit"),
            ("long key", long_key.as_str(), "mapping key"),
        ] {
            let e = parse_document(text, "m").unwrap_err();
            let ManifestError::Syntax { line, message, .. } = &e else {
                panic!("{name}: not a located error: {e}");
            };
            assert!(*line >= 1, "{name}: no line in {e}");
            assert!(message.contains(needle), "{name}: {e}");
        }
    }

    #[test]
    fn large_yaml_is_counted_before_serde_yaml_buffers_it() {
        // Tiny nodes, just over the event limit: refused by the streaming count.
        let n = MAX_YAML_EVENTS / 2 + 1;
        let text = format!("x: [{}]\n", vec!["[]"; n].join(","));
        let e = parse_document(&text, "m").unwrap_err();
        assert!(e.to_string().contains("YAML events"), "{e}");
        // Under it, a large document parses as before.
        let ok = format!("entries: []\nx: [{}]\n", vec!["1"; 300_000].join(","));
        assert!(parse_document(&ok, "m").is_ok());
    }

    #[test]
    fn benign_aliases_still_load() {
        let text = "caps: &c [kv, ttl]\nentries:\n  - {domain: adapter, key: a, provider: p, factory: f, capabilities: *c}\n  - {domain: adapter, key: b, provider: p, factory: f, capabilities: *c}\n";
        let v = parse_document(text, "m").unwrap();
        assert_eq!(v["entries"][1]["capabilities"][1], "ttl");
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
