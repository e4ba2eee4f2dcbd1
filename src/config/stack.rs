//! `ONEIRIC_STACK_ORDER`: the inferred priority of named layers.

use std::collections::BTreeMap;

/// Layer name → priority. `production:100,staging:50,default:0`, or bare `a,b,c` meaning
/// 0, 10, 20 (later names rank higher, as in the reference implementation).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StackOrder {
    layers: BTreeMap<String, i64>,
}

impl StackOrder {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut layers = BTreeMap::new();
        for (i, part) in s.split(',').map(str::trim).enumerate() {
            if part.is_empty() {
                continue;
            }
            let (name, prio) = match part.split_once(':') {
                Some((n, p)) => {
                    let p = p.trim().parse::<i64>().map_err(|_| {
                        format!("`{part}`: priority `{}` is not an integer", p.trim())
                    })?;
                    (n.trim(), p)
                }
                None => (part, (i as i64) * 10),
            };
            if !crate::domain::is_valid_name(name) {
                return Err(format!("`{name}` is not a valid layer name"));
            }
            if !(-1000..=1000).contains(&prio) {
                return Err(format!("`{part}`: priority must be within ±1000"));
            }
            if layers.insert(name.to_string(), prio).is_some() {
                return Err(format!("layer `{name}` is listed twice"));
            }
        }
        Ok(Self { layers })
    }

    /// The inferred priority of a layer: its own entry, else the `default` layer's, else none.
    pub fn priority_of(&self, layer: &str) -> Option<(i64, &str)> {
        self.layers
            .get_key_value(layer)
            .or_else(|| self.layers.get_key_value("default"))
            .map(|(k, v)| (*v, k.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.layers.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_and_bare() {
        let s = StackOrder::parse("production:100,staging:50,default:0").unwrap();
        assert_eq!(s.priority_of("production"), Some((100, "production")));
        assert_eq!(s.priority_of("other"), Some((0, "default")));
        let b = StackOrder::parse("a,b,c").unwrap();
        assert_eq!(b.priority_of("c"), Some((20, "c")));
        assert_eq!(b.priority_of("zzz"), None);
    }

    #[test]
    fn rejects_garbage() {
        assert!(StackOrder::parse("a:x").is_err());
        assert!(StackOrder::parse("a:1,a:2").is_err());
        assert!(StackOrder::parse("a/b:1").is_err());
        assert!(StackOrder::parse("a:5000").is_err());
    }
}
