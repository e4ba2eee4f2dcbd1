//! The environment layer: `ONEIRIC_<SECTION>__<FIELD>` overrides, typed by the field they
//! replace, plus the plain variables of the deployment guide.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{ConfigError, LogFormat, Settings};

/// A snapshot of the process environment, taken once so that loading is a pure function of it
/// (and tests can hand in their own).
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

/// `ONEIRIC_*` variables that are not section overrides. Anything else with the prefix and no
/// `__` is reported, so a typo does not pass silently.
pub const KNOWN_PLAIN_VARS: &[&str] = &[
    "ONEIRIC_CONFIG",
    "ONEIRIC_INSTANCE",
    "ONEIRIC_STACK_ORDER",
    "ONEIRIC_LOG_LEVEL",
    "ONEIRIC_LOG_FORMAT",
    "ONEIRIC_TRUSTED_PUBLIC_KEYS",
    "ONEIRIC_STATE_DIR",
    "ONEIRIC_CACHE_DIR",
    "ONEIRIC_RUNTIME_DIR",
    "ONEIRIC_REMOTE_TOKEN",
    "ONEIRIC_MACHINE_ID_PATH",
];

impl Env {
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Self {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value; empty values count as unset, as systemd's `Environment=X=` clears.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// Applies the environment to the merged settings value. Returns warnings for variables that
/// look like ours but mean nothing.
pub fn apply(env: &Env, merged: &mut Value) -> Result<Vec<String>, ConfigError> {
    let mut warnings = Vec::new();
    for (name, raw) in env.iter() {
        let Some(rest) = name.strip_prefix("ONEIRIC_") else {
            continue;
        };
        if raw.is_empty() {
            continue;
        }
        if !rest.contains("__") {
            if !KNOWN_PLAIN_VARS.contains(&name) {
                warnings.push(format!(
                    "environment variable {name} is not used by oneiric (section overrides are ONEIRIC_<SECTION>__<FIELD>)"
                ));
            }
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        set_path(merged, &path, raw).map_err(|message| ConfigError::Env {
            var: name.to_string(),
            message,
        })?;
        check(merged, name)?;
    }

    // The guide's plain variables, applied after the generic overrides: they are more specific.
    if let Some(level) = env.get("LOG_LEVEL") {
        set_level(merged, "LOG_LEVEL", level)?;
    }
    if let Some(level) = env.get("ONEIRIC_LOG_LEVEL") {
        set_level(merged, "ONEIRIC_LOG_LEVEL", level)?;
    }
    if let Some(format) = env.get("ONEIRIC_LOG_FORMAT") {
        let f = parse_log_format(format).map_err(|message| ConfigError::Env {
            var: "ONEIRIC_LOG_FORMAT".into(),
            message,
        })?;
        merged["logging"]["format"] = serde_json::to_value(f).unwrap_or(Value::Null);
        merged["logging"]["emit_json"] = Value::Null;
    }
    if let Some(port) = env.get("PROMETHEUS_METRICS_PORT") {
        let p: u16 = port.trim().parse().map_err(|_| ConfigError::Env {
            var: "PROMETHEUS_METRICS_PORT".into(),
            message: format!("`{port}` is not a TCP port number (0-65535)"),
        })?;
        merged["http"]["port"] = Value::from(p);
    }
    if let Some(keys) = env.get("ONEIRIC_TRUSTED_PUBLIC_KEYS") {
        let list: Vec<Value> = keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .map(|k| Value::String(k.to_string()))
            .collect();
        for k in &list {
            if let Some(s) = k.as_str() {
                crate::manifest::signature::parse_public_key(s).map_err(|e| ConfigError::Env {
                    var: "ONEIRIC_TRUSTED_PUBLIC_KEYS".into(),
                    message: e.to_string(),
                })?;
            }
        }
        merged["remote"]["trusted_public_keys"] = Value::Array(list);
    }
    Ok(warnings)
}

pub fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "json" => Ok(LogFormat::Json),
        "text" | "plain" | "console" => Ok(LogFormat::Text),
        other => Err(format!("`{other}` is not a log format (json or text)")),
    }
}

fn set_level(merged: &mut Value, var: &str, level: &str) -> Result<(), ConfigError> {
    super::parse_log_level(level).map_err(|message| ConfigError::Env {
        var: var.into(),
        message,
    })?;
    merged["logging"]["level"] = Value::String(level.to_string());
    Ok(())
}

fn check(merged: &Value, var: &str) -> Result<(), ConfigError> {
    serde_json::from_value::<Settings>(merged.clone())
        .map(|_| ())
        .map_err(|e| ConfigError::Env {
            var: var.to_string(),
            message: e.to_string(),
        })
}

/// Sets `path` in `root` to `raw`, coerced to the type of the value it replaces.
fn set_path(root: &mut Value, path: &[String], raw: &str) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty settings path".into());
    };
    let mut node = root;
    let mut walked = Vec::new();
    for part in parents {
        walked.push(part.as_str());
        let obj = node
            .as_object_mut()
            .ok_or_else(|| format!("`{}` is not a section", walked.join(".")))?;
        let known = obj.contains_key(part);
        // Map-typed fields (selections, provider_settings, options) accept new keys; struct
        // fields must exist already, which the final typed check enforces.
        node = obj.entry(part.clone()).or_insert_with(|| {
            if known {
                Value::Null
            } else {
                Value::Object(Default::default())
            }
        });
        if node.is_null() {
            *node = Value::Object(Default::default());
        }
    }
    let obj = node
        .as_object_mut()
        .ok_or_else(|| format!("`{}` is not a section", parents.join(".")))?;
    let current = obj.get(last).cloned().unwrap_or(Value::Null);
    let value = coerce(&current, raw)?;
    obj.insert(last.clone(), value);
    Ok(())
}

fn coerce(current: &Value, raw: &str) -> Result<Value, String> {
    let t = raw.trim();
    match current {
        Value::Bool(_) => parse_bool(t)
            .map(Value::Bool)
            .ok_or_else(|| format!("`{t}` is not a boolean (true/false)")),
        Value::Number(n) => {
            if n.is_f64() {
                t.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| format!("`{t}` is not a number"))
            } else if let Ok(i) = t.parse::<i64>() {
                Ok(Value::from(i))
            } else {
                t.parse::<u64>()
                    .map(Value::from)
                    .map_err(|_| format!("`{t}` is not an integer"))
            }
        }
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Array(_) => {
            if t.starts_with('[') {
                serde_json::from_str(t).map_err(|e| format!("not a JSON list: {e}"))
            } else {
                Ok(Value::Array(
                    t.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| Value::String(s.to_string()))
                        .collect(),
                ))
            }
        }
        Value::Object(_) => serde_json::from_str(t).map_err(|e| format!("not a JSON object: {e}")),
        // Optional field or a new map entry: take the scalar's natural YAML type.
        Value::Null => {
            if let Some(b) = parse_bool(t) {
                Ok(Value::Bool(b))
            } else if let Ok(i) = t.parse::<i64>() {
                Ok(Value::from(i))
            } else if let Ok(u) = t.parse::<u64>() {
                // Above i64::MAX: an integer still, or an optional u64 reads it as a float.
                Ok(Value::from(u))
            } else if let Some(n) = t.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                Ok(Value::Number(n))
            } else {
                Ok(Value::String(raw.to_string()))
            }
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Value {
        serde_json::to_value(Settings::default()).unwrap()
    }

    #[test]
    fn typed_overrides() {
        let env = Env::from_pairs([
            ("ONEIRIC_REMOTE__MAX_RETRIES", "7"),
            ("ONEIRIC_REMOTE__VERIFY_TLS", "false"),
            ("ONEIRIC_REMOTE__RETRY_JITTER", "0.5"),
            ("ONEIRIC_ADAPTERS__SELECTIONS__CACHE", "redis"),
            ("ONEIRIC_REMOTE__ALLOWED_FILE_URI_ROOTS", "/a,/b"),
            ("ONEIRIC_REMOTE__MANIFEST_URL", "https://x/m.yaml"),
        ]);
        let mut v = defaults();
        apply(&env, &mut v).unwrap();
        let s: Settings = serde_json::from_value(v).unwrap();
        assert_eq!(s.remote.max_retries, 7);
        assert!(!s.remote.verify_tls);
        assert_eq!(s.remote.retry_jitter, 0.5);
        assert_eq!(s.adapters.selections["cache"], "redis");
        assert_eq!(s.remote.allowed_file_uri_roots.len(), 2);
        assert_eq!(s.remote.manifest_url.as_deref(), Some("https://x/m.yaml"));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (var, val) in [
            ("ONEIRIC_REMOTE__MAX_RETRIES", "lots"),
            ("ONEIRIC_REMOTE__NO_SUCH_FIELD", "1"),
            ("ONEIRIC_NOSECTION__X", "1"),
            ("PROMETHEUS_METRICS_PORT", "99999"),
            ("ONEIRIC_LOG_FORMAT", "xml"),
            ("LOG_LEVEL", "LOUD"),
            ("ONEIRIC_TRUSTED_PUBLIC_KEYS", "not-base64!"),
        ] {
            let mut v = defaults();
            let err = apply(&Env::from_pairs([(var, val)]), &mut v).unwrap_err();
            assert!(err.to_string().contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn guide_variables_are_used() {
        let env = Env::from_pairs([
            ("LOG_LEVEL", "INFO"),
            ("ONEIRIC_LOG_FORMAT", "json"),
            ("PROMETHEUS_METRICS_PORT", "9191"),
        ]);
        let mut v = defaults();
        apply(&env, &mut v).unwrap();
        let s: Settings = serde_json::from_value(v).unwrap();
        assert_eq!(s.logging.level.as_deref(), Some("INFO"));
        assert_eq!(s.logging.format, Some(LogFormat::Json));
        assert_eq!(s.http.port, 9191);
    }

    #[test]
    fn unknown_plain_variable_warns() {
        let mut v = defaults();
        let w = apply(&Env::from_pairs([("ONEIRIC_CONFG", "/etc")]), &mut v).unwrap();
        assert!(w[0].contains("ONEIRIC_CONFG"));
    }
}
