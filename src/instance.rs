//! Named instances: several services on one host (`oneiric@NAME.service`), each with its own
//! settings, state, cache and runtime directories under the packaged ones
//! (`/etc/oneiric/NAME`, `/var/lib/oneiric/NAME`, ...). The default instance is the plain
//! `oneiric.service` and the packaged paths themselves.

use std::path::{Path, PathBuf};

use crate::config::env::Env;

/// Long enough for `staging-eu-west-1.canary`, short enough for a unix socket path
/// (`/run/oneiric/NAME/control.sock` must stay under `sun_path`'s 108 bytes).
pub const MAX_LEN: usize = 64;

pub const ENV_VAR: &str = "ONEIRIC_INSTANCE";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "instance name {name:?} ({origin}): {why}; a name is 1-{MAX_LEN} letters, digits, '-', \
     '_' or '.', starting with a letter or digit (it names directories and the unit oneiric@NAME)"
)]
pub struct InstanceError {
    pub name: String,
    pub origin: &'static str,
    pub why: &'static str,
}

/// A validated instance name: one path component, never `.`/`..`, nothing systemd would
/// have to escape in `oneiric@NAME.service`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance(String);

impl Instance {
    pub fn parse(name: &str, origin: &'static str) -> Result<Self, InstanceError> {
        let refuse = |why| InstanceError {
            name: name.to_string(),
            origin,
            why,
        };
        let first = name.chars().next().ok_or_else(|| refuse("it is empty"))?;
        if name.len() > MAX_LEN {
            return Err(refuse("it is too long"));
        }
        if !first.is_ascii_alphanumeric() {
            return Err(refuse("it does not start with a letter or digit"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(refuse("it contains a character other than those allowed"));
        }
        Ok(Self(name.to_string()))
    }

    pub fn name(&self) -> &str {
        &self.0
    }

    /// This instance's directory under a packaged one: `/etc/oneiric` → `/etc/oneiric/NAME`.
    pub fn under(&self, base: &str) -> PathBuf {
        Path::new(base).join(&self.0)
    }
}

/// `--instance` beats `ONEIRIC_INSTANCE` (set by `oneiric@.service`); neither is the default
/// instance. An empty variable counts as unset, as systemd's `Environment=X=` clears.
pub fn resolve(flag: Option<&str>, env: &Env) -> Result<Option<Instance>, InstanceError> {
    match (flag, env.get(ENV_VAR)) {
        (Some(f), _) => Instance::parse(f, "--instance").map(Some),
        (None, Some(v)) => Instance::parse(v, ENV_VAR).map(Some),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_one_plain_path_component() {
        for good in ["staging", "prod-2", "eu_west.1", "A", &"x".repeat(MAX_LEN)] {
            assert_eq!(Instance::parse(good, "test").unwrap().name(), good);
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-flag",
            "a/b",
            "../etc",
            "a b",
            "a\nb",
            "caf\u{e9}",
            "a@b",
            &"x".repeat(MAX_LEN + 1),
        ] {
            let e = Instance::parse(bad, "--instance").unwrap_err();
            assert!(e.to_string().contains("--instance"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn the_flag_beats_the_environment() {
        let env = Env::from_pairs([(ENV_VAR, "staging")]);
        assert_eq!(resolve(Some("prod"), &env).unwrap().unwrap().name(), "prod");
        assert_eq!(resolve(None, &env).unwrap().unwrap().name(), "staging");
        assert_eq!(resolve(None, &Env::default()).unwrap(), None);
        assert_eq!(
            resolve(None, &Env::from_pairs([(ENV_VAR, "")])).unwrap(),
            None
        );
        let e = resolve(None, &Env::from_pairs([(ENV_VAR, "../x")])).unwrap_err();
        assert_eq!(e.origin, ENV_VAR);
    }

    #[test]
    fn directories_nest_under_the_packaged_ones() {
        let i = Instance::parse("staging", "test").unwrap();
        assert_eq!(i.under("/etc/oneiric"), Path::new("/etc/oneiric/staging"));
    }
}
