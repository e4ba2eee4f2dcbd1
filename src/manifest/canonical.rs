//! Canonical JSON, byte for byte as the Python implementation signs it:
//! `json.dumps(doc, sort_keys=True, separators=(",", ":"))` with `ensure_ascii` on.

use std::borrow::Cow;
use std::fmt::Write;

use super::node::Node;

/// Fields that carry signatures and are left out of the signed bytes.
pub const SIGNATURE_FIELDS: [&str; 3] = ["signature", "signature_algorithm", "signatures"];

/// Canonical bytes of a manifest document for signing: the document minus its signature fields.
pub fn signing_bytes(doc: &Node) -> String {
    match doc {
        Node::Map(fields) => {
            let mut out = String::with_capacity(4096);
            write_object(
                &mut out,
                fields
                    .iter()
                    .filter(|(k, _)| !SIGNATURE_FIELDS.contains(&k.as_ref())),
            );
            out
        }
        other => to_canonical(other),
    }
}

/// Canonical JSON of any value.
pub fn to_canonical(v: &Node) -> String {
    let mut out = String::new();
    write_value(&mut out, v);
    out
}

fn write_value(out: &mut String, v: &Node) {
    match v {
        Node::Null => out.push_str("null"),
        Node::Bool(true) => out.push_str("true"),
        Node::Bool(false) => out.push_str("false"),
        Node::Number(n) => write_number(out, n),
        Node::Str(s) => write_string(out, s),
        Node::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Node::Map(fields) => write_object(out, fields.iter()),
    }
}

fn write_object<'n, 'a: 'n>(
    out: &mut String,
    fields: impl Iterator<Item = &'n (Cow<'a, str>, Node<'a>)>,
) {
    // Python sorts keys by code point; Rust's `str` ordering (UTF-8 bytes) is the same order.
    let mut fields: Vec<_> = fields.collect();
    fields.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    out.push('{');
    for (i, (k, v)) in fields.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, k);
        out.push(':');
        write_value(out, v);
    }
    out.push('}');
}

fn write_number(out: &mut String, n: &serde_json::Number) {
    if let Some(u) = n.as_u64() {
        let _ = write!(out, "{u}");
    } else if let Some(i) = n.as_i64() {
        let _ = write!(out, "{i}");
    } else if let Some(f) = n.as_f64() {
        out.push_str(&python_float_repr(f));
    }
}

/// Python's `repr(float)`: the shortest digits that round-trip, in fixed notation when the
/// decimal exponent is in [-4, 16), otherwise `d.ddde±XX`; `json.dumps` spells the specials
/// `Infinity`/`NaN`.
pub fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e4", "1e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    // Position of the decimal point relative to the digit string (Python's `decpt`).
    let decpt = exp + 1;
    if (-3..=16).contains(&decpt) {
        let n = digits.len() as i32;
        let body = if decpt <= 0 {
            format!("0.{}{}", "0".repeat((-decpt) as usize), digits)
        } else if decpt >= n {
            format!("{}{}.0", digits, "0".repeat((decpt - n) as usize))
        } else {
            let (a, b) = digits.split_at(decpt as usize);
            format!("{a}.{b}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

/// A JSON string with every character outside printable ASCII escaped as `\uXXXX`
/// (UTF-16 surrogate pairs above U+FFFF), as `ensure_ascii=True` does.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    // Runs of printable ASCII (almost everything in a manifest) are copied whole.
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&s[start..i]);
        // `i` is on a character boundary: everything before it was ASCII or whole characters.
        let c = s[i..].chars().next().unwrap_or('\u{fffd}');
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            _ => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
        i += c.len_utf8();
        start = i;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_like_python() {
        for (f, want) in [
            (1e-07, "1e-07"),
            (0.5, "0.5"),
            (1.0, "1.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (123456.789, "123456.789"),
            (-2.5e-10, "-2.5e-10"),
            (1.5e300, "1.5e+300"),
            (0.1, "0.1"),
            (3600.0, "3600.0"),
            (f64::INFINITY, "Infinity"),
        ] {
            assert_eq!(python_float_repr(f), want, "{f}");
        }
    }

    #[test]
    fn strings_like_python() {
        let v = serde_json::json!({"b": "Caché – ✓ 日本 😀", "a": "q\"\\\n\u{7f}\u{1}"});
        assert_eq!(
            to_canonical(&Node::from_value(&v)),
            r#"{"a":"q\"\\\n\u007f\u0001","b":"Cach\u00e9 \u2013 \u2713 \u65e5\u672c \ud83d\ude00"}"#
        );
    }

    #[test]
    fn signature_fields_are_left_out() {
        let v = serde_json::json!({"signature": "x", "signatures": [], "signature_algorithm": "ed25519", "source": "s", "entries": [{"priority": 1}]});
        assert_eq!(
            signing_bytes(&Node::from_value(&v)),
            r#"{"entries":[{"priority":1}],"source":"s"}"#
        );
    }
}
