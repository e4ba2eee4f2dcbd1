//! Finding and reading the settings files, and merging the layers.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::env::{self, Env};
use crate::config::{
    AppSettings, ConfigError, DomainSettings, HttpSettings, LifecycleSettings, LoggingSettings,
    RemoteSettings, Settings, StackOrder,
};
use crate::instance::Instance;

/// Settings files are small; anything bigger is a mistake (or an attack).
const MAX_SETTINGS_BYTES: u64 = 4 * 1024 * 1024;

pub const DEFAULT_CONFIG: &str = "/etc/oneiric";

/// Where settings come from, and whether the location was asked for explicitly (then it must
/// exist) or is the default (then its absence means built-in defaults).
#[derive(Debug, Clone)]
pub struct SettingsSource {
    pub path: PathBuf,
    pub explicit: bool,
}

impl SettingsSource {
    /// `--config` beats `ONEIRIC_CONFIG` beats `/etc/oneiric` (a named instance's
    /// `/etc/oneiric/NAME`, which must exist: an instance without settings is a mistake, not
    /// a request for the built-in defaults).
    pub fn resolve(flag: Option<&Path>, instance: Option<&Instance>, env: &Env) -> Self {
        match (flag, env.get("ONEIRIC_CONFIG")) {
            (Some(p), _) => Self {
                path: p.to_path_buf(),
                explicit: true,
            },
            (None, Some(p)) => Self {
                path: PathBuf::from(p),
                explicit: true,
            },
            (None, None) => match instance {
                Some(i) => Self {
                    path: i.under(DEFAULT_CONFIG),
                    explicit: true,
                },
                None => Self {
                    path: PathBuf::from(DEFAULT_CONFIG),
                    explicit: false,
                },
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadedSettings {
    pub settings: Settings,
    pub stack_order: StackOrder,
    /// `manifest.yaml` found in the settings directory, loaded as a manifest.
    pub dir_manifest: Option<PathBuf>,
    /// Every settings file read, in layer order.
    pub files: Vec<PathBuf>,
    /// True when no settings location existed and the built-in defaults are in use.
    pub builtin_defaults: bool,
    pub warnings: Vec<String>,
}

/// Loads defaults → settings location → environment. Command-line flags are applied by the
/// caller, which then calls [`Settings::validate`] again.
pub fn load_settings(source: &SettingsSource, env: &Env) -> Result<LoadedSettings, ConfigError> {
    let mut merged =
        serde_json::to_value(Settings::default()).map_err(|e| ConfigError::Invalid {
            path: source.path.clone(),
            message: format!("internal: cannot represent defaults: {e}"),
        })?;
    let mut files = Vec::new();
    let mut dir_manifest = None;
    let mut builtin_defaults = false;

    match std::fs::metadata(&source.path) {
        Ok(meta) if meta.is_dir() => {
            dir_manifest = load_dir(&source.path, &mut merged, &mut files)?;
        }
        Ok(_) => {
            let doc = read_doc::<Settings>(&source.path)?;
            merge(&mut merged, doc);
            files.push(source.path.clone());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !source.explicit => {
            builtin_defaults = true;
        }
        Err(source_err) => {
            return Err(ConfigError::Read {
                path: source.path.clone(),
                source: source_err,
            });
        }
    }

    let warnings = env::apply(env, &mut merged)?;
    let settings: Settings = serde_json::from_value(merged).map_err(|e| ConfigError::Invalid {
        path: source.path.clone(),
        message: e.to_string(),
    })?;
    settings
        .validate()
        .map_err(|message| ConfigError::Invalid {
            path: files.last().cloned().unwrap_or_else(|| source.path.clone()),
            message,
        })?;
    let stack_order = match env.get("ONEIRIC_STACK_ORDER") {
        Some(s) => StackOrder::parse(s).map_err(|message| ConfigError::Env {
            var: "ONEIRIC_STACK_ORDER".into(),
            message,
        })?,
        None => StackOrder::default(),
    };
    Ok(LoadedSettings {
        settings,
        stack_order,
        dir_manifest,
        files,
        builtin_defaults,
        warnings,
    })
}

/// Section files of the guide's directory layout, lowest layer first after the Python-style
/// merged documents `oneiric.yaml` and `local.yaml`.
fn load_dir(
    dir: &Path,
    merged: &mut Value,
    files: &mut Vec<PathBuf>,
) -> Result<Option<PathBuf>, ConfigError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();

    let find = |stem: &str| -> Result<Option<PathBuf>, ConfigError> {
        let found: Vec<&String> = names
            .iter()
            .filter(|n| *n == &format!("{stem}.yml") || *n == &format!("{stem}.yaml"))
            .collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(dir.join(one))),
            _ => Err(ConfigError::Invalid {
                path: dir.join(format!("{stem}.yml")),
                message: format!("both {stem}.yml and {stem}.yaml exist; keep one"),
            }),
        }
    };

    for stem in ["oneiric", "local"] {
        if let Some(p) = find(stem)? {
            let doc = read_doc::<Settings>(&p)?;
            merge(merged, doc);
            files.push(p);
        }
    }
    for stem in SECTION_STEMS {
        if let Some(p) = find(stem)? {
            let doc = read_section(stem, &p)?;
            let mut wrapped = serde_json::Map::new();
            wrapped.insert(stem.to_string(), doc);
            merge(merged, Value::Object(wrapped));
            files.push(p);
        }
    }

    let known = |n: &str| {
        let stem = n
            .strip_suffix(".yml")
            .or_else(|| n.strip_suffix(".yaml"))
            .unwrap_or(n);
        SECTION_STEMS.contains(&stem) || ["oneiric", "local", "manifest"].contains(&stem)
    };
    if let Some(stray) = names
        .iter()
        .filter(|n| n.ends_with(".yml") || n.ends_with(".yaml"))
        .find(|n| !known(n))
    {
        return Err(ConfigError::Invalid {
            path: dir.join(stray),
            message: format!(
                "unknown settings file (expected one of {}.yml, or manifest.yaml)",
                SECTION_STEMS.join(".yml, ")
            ),
        });
    }
    find("manifest")
}

const SECTION_STEMS: [&str; 11] = [
    "app",
    "adapters",
    "services",
    "tasks",
    "events",
    "workflows",
    "actions",
    "remote",
    "logging",
    "http",
    "lifecycle",
];

fn read_section(stem: &str, path: &Path) -> Result<Value, ConfigError> {
    match stem {
        "app" => read_doc::<AppSettings>(path),
        "remote" => read_doc::<RemoteSettings>(path),
        "logging" => read_doc::<LoggingSettings>(path),
        "http" => read_doc::<HttpSettings>(path),
        "lifecycle" => read_doc::<LifecycleSettings>(path),
        _ => read_doc::<DomainSettings>(path),
    }
}

/// Reads one settings document, checks it against its typed section (for located errors and
/// unknown fields), and returns it as a value for merging.
fn read_doc<T: DeserializeOwned>(path: &Path) -> Result<Value, ConfigError> {
    let text = read_text(path, MAX_SETTINGS_BYTES)?;
    let is_json = path.extension().is_some_and(|e| e == "json");
    if !is_json {
        // serde_yaml expands aliases without a bound (8 KB of them took 2.5 s and 445 MB);
        // settings have no use for them.
        if let Some(at) = crate::manifest::yaml_scan::first_alias(&text) {
            return Err(ConfigError::Parse {
                path: path.to_path_buf(),
                line: at.line,
                column: at.column,
                message: "YAML aliases (`*name`) are not allowed in settings files".into(),
            });
        }
    }
    let value: Value = if is_json {
        serde_json::from_str(&text).map_err(|e| json_error(path, &e))?
    } else {
        serde_yaml::from_str(&text).map_err(|e| yaml_error(path, &e))?
    };
    // An empty file (or one holding only comments) is an empty section.
    if value.is_null() {
        return Ok(Value::Object(Default::default()));
    }
    if is_json {
        serde_json::from_str::<T>(&text).map_err(|e| json_error(path, &e))?;
    } else {
        serde_yaml::from_str::<T>(&text).map_err(|e| yaml_error(path, &e))?;
    }
    Ok(value)
}

/// Reads a settings file: size-limited and UTF-8 checked.
pub fn read_text(path: &Path, limit: u64) -> Result<String, ConfigError> {
    use crate::fsutil::ReadError;
    crate::fsutil::read_text(path, limit).map_err(|e| match e {
        ReadError::Io(source) => ConfigError::Read {
            path: path.to_path_buf(),
            source,
        },
        ReadError::TooLarge { size, limit } => ConfigError::TooLarge {
            path: path.to_path_buf(),
            size,
            limit,
        },
        ReadError::NotUtf8 { offset } => ConfigError::NotUtf8 {
            path: path.to_path_buf(),
            offset,
        },
        ReadError::NotRegular { what } => ConfigError::Read {
            path: path.to_path_buf(),
            source: crate::fsutil::not_regular(what),
        },
    })
}

pub fn yaml_error(path: &Path, e: &serde_yaml::Error) -> ConfigError {
    let (line, column) = e
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((0, 0));
    ConfigError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message: strip_location(&e.to_string()),
    }
}

pub fn json_error(path: &Path, e: &serde_json::Error) -> ConfigError {
    ConfigError::Parse {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_location(&e.to_string()),
    }
}

/// serde's messages end with " at line L column C"; the error already says that up front.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Deep merge: objects merge key by key, anything else is replaced by the higher layer.
fn merge(base: &mut Value, layer: Value) {
    match (base, layer) {
        (Value::Object(b), Value::Object(l)) => {
            for (k, v) in l {
                match b.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, l) => *b = l,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, body: &str) {
        std::fs::write(dir.join(name), body).unwrap();
    }

    fn src(p: &Path) -> SettingsSource {
        SettingsSource {
            path: p.to_path_buf(),
            explicit: true,
        }
    }

    #[test]
    fn directory_layout_layers() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "app.yml", "name: demo\nenvironment: staging\n");
        write(d.path(), "adapters.yaml", "selections:\n  cache: redis\n");
        write(d.path(), "services.yml", "# only a comment\n");
        write(d.path(), "manifest.yaml", "entries: []\n");
        let env = Env::from_pairs([("ONEIRIC_APP__NAME", "from-env")]);
        let l = load_settings(&src(d.path()), &env).unwrap();
        assert_eq!(l.settings.app.name, "from-env");
        assert_eq!(l.settings.app.environment, "staging");
        assert_eq!(l.settings.adapters.selections["cache"], "redis");
        assert_eq!(l.dir_manifest, Some(d.path().join("manifest.yaml")));
        assert_eq!(l.files.len(), 3);
    }

    #[test]
    fn merged_file_yaml_and_json() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "s.yaml",
            "app: {name: x}\nremote: {refresh_interval: 60}\nlogging: {level: debug}\n",
        );
        let l = load_settings(&src(&d.path().join("s.yaml")), &Env::default()).unwrap();
        assert_eq!(l.settings.remote.refresh_interval, 60);
        write(
            d.path(),
            "s.json",
            r#"{"tasks": {"selections": {"t": "p"}}}"#,
        );
        let l = load_settings(&src(&d.path().join("s.json")), &Env::default()).unwrap();
        assert_eq!(l.settings.tasks.selections["t"], "p");
    }

    /// Found by the settings fuzz target: aliases expanded by serde_yaml cost seconds and
    /// hundreds of MB for a few KB of text; and a retry delay of 1e300 panicked the retry path.
    #[test]
    fn aliases_and_absurd_delays_are_located_errors() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "app.yml",
            "name: &n x
environment: *n
",
        );
        let e = load_settings(&src(d.path()), &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("app.yml:2:") && e.contains("aliases"), "{e}");

        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "remote.yml",
            "retry_base_delay: 1e300\nretry_max_delay: 1e300\n",
        );
        let e = load_settings(&src(d.path()), &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("retry_max_delay") && e.contains("3600"), "{e}");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "app.yml", "name: x\nenviroment: prod\n");
        let e = load_settings(&src(d.path()), &Env::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("app.yml:2:"), "{e}");
        assert!(e.contains("enviroment"), "{e}");

        let d = tempfile::tempdir().unwrap();
        write(d.path(), "adapter.yml", "selections: {}\n");
        let e = load_settings(&src(d.path()), &Env::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("adapter.yml") && e.contains("unknown settings file"),
            "{e}"
        );
    }

    #[test]
    fn missing_default_location_means_builtin_defaults() {
        let s = SettingsSource {
            path: PathBuf::from("/nonexistent/oneiric"),
            explicit: false,
        };
        let l = load_settings(&s, &Env::default()).unwrap();
        assert!(l.builtin_defaults);
        let s = SettingsSource {
            explicit: true,
            ..s
        };
        assert!(load_settings(&s, &Env::default()).is_err());
    }

    #[test]
    fn a_named_instance_reads_its_own_directory_which_must_exist() {
        let staging = Instance::parse("staging", "test").unwrap();
        let s = SettingsSource::resolve(None, Some(&staging), &Env::default());
        assert_eq!(s.path, PathBuf::from("/etc/oneiric/staging"));
        assert!(s.explicit);
        let env = Env::from_pairs([("ONEIRIC_CONFIG", "/srv/o")]);
        assert_eq!(
            SettingsSource::resolve(None, Some(&staging), &env).path,
            PathBuf::from("/srv/o")
        );
        assert_eq!(
            SettingsSource::resolve(Some(Path::new("/x")), Some(&staging), &env).path,
            PathBuf::from("/x")
        );
    }
}
