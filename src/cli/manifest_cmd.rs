//! `manifest sign|verify|pack|keygen`.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::{CliError, CliResult, Ctx, Exit};
use crate::config;
use crate::manifest::{self, signature};

#[derive(Debug, Subcommand)]
pub enum ManifestCommand {
    /// Sign a manifest with an ed25519 key (signed_at/expires_at are set before signing)
    Sign {
        file: PathBuf,
        /// Private key file: base64 32-byte seed, raw 32 bytes, or PKCS#8 PEM
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Key identifier recorded with --append signatures
        #[arg(long)]
        key_id: Option<String>,
        /// Set expires_at this many seconds after signed_at
        #[arg(long, value_name = "SECONDS")]
        expires_in: Option<u64>,
        /// Add to `signatures` (threshold signing) instead of replacing `signature`
        #[arg(long)]
        append: bool,
        /// Set `serial` (covered by the signature) to N; hosts refuse anything older than the
        /// highest serial they accepted. `next`: one more than the file's current serial
        #[arg(long, value_name = "N|next", conflicts_with = "append")]
        serial: Option<SerialArg>,
        /// Write here instead of stdout (YAML when the name ends in .yaml/.yml)
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Verify a manifest's signatures; exits 0 only for a manifest that passes
    Verify {
        file: PathBuf,
        /// Distinct trusted signatures needed [default: settings, else 1]
        #[arg(long)]
        threshold: Option<usize>,
        /// Trusted public key, base64 of 32 raw bytes (repeatable) [default: ONEIRIC_TRUSTED_PUBLIC_KEYS / settings]
        #[arg(long = "trusted-key", value_name = "KEY")]
        trusted_keys: Vec<String>,
        /// Reject signatures older than this many seconds
        #[arg(long, value_name = "SECONDS")]
        max_age: Option<u64>,
        /// Reject manifests without expires_at
        #[arg(long)]
        require_expiry: bool,
    },
    /// Print the canonical JSON of a manifest (the bytes that are signed, plus signatures)
    Pack {
        file: PathBuf,
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Make a new ed25519 key pair: writes the private seed (base64, mode 0600), prints the public key
    Keygen {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

fn read_doc(file: &Path) -> Result<serde_json::Value, CliError> {
    let text = crate::engine::read_manifest(file)?;
    manifest::parse_document(&text, &file.display().to_string())
        .map_err(|e| CliError::new(Exit::InvalidConfig, e.to_string()))
}

fn write_out(output: Option<&Path>, text: &str) -> Result<(), CliError> {
    match output {
        Some(p) => crate::fsutil::write_atomic(p, text.as_bytes(), 0o644)
            .map_err(|e| CliError::new(Exit::Failure, format!("{}: {e}", p.display()))),
        None => {
            println!("{text}");
            Ok(())
        }
    }
}

/// `--serial N` or `--serial next`.
#[derive(Debug, Clone, Copy)]
pub enum SerialArg {
    Set(u64),
    Next,
}

impl std::str::FromStr for SerialArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "next" {
            return Ok(SerialArg::Next);
        }
        s.parse()
            .map(SerialArg::Set)
            .map_err(|_| format!("`{s}` is neither a serial number (0..2^64) nor `next`"))
    }
}

fn set_serial(doc: &mut serde_json::Value, serial: SerialArg) -> Result<(), CliError> {
    let current = doc.get("serial").and_then(serde_json::Value::as_u64);
    let n = match serial {
        SerialArg::Set(n) => n,
        SerialArg::Next => match current {
            Some(c) => c.checked_add(1).ok_or_else(|| {
                CliError::new(Exit::InvalidConfig, "serial is at its maximum (2^64 - 1)")
            })?,
            None => 1,
        },
    };
    let map = doc
        .as_object_mut()
        .ok_or_else(|| CliError::new(Exit::InvalidConfig, "manifest is not a mapping"))?;
    map.insert("serial".into(), serde_json::Value::from(n));
    Ok(())
}

pub fn run(ctx: &Ctx, cmd: ManifestCommand) -> CliResult {
    match cmd {
        ManifestCommand::Sign {
            file,
            key,
            key_id,
            expires_in,
            append,
            serial,
            output,
        } => {
            let mut doc = read_doc(&file)?;
            if let Some(serial) = serial {
                set_serial(&mut doc, serial)?;
            }
            // Refuse to sign what would not load: a signature vouches for the content.
            manifest::from_document(&doc, &file.display().to_string())
                .map_err(|e| CliError::new(Exit::InvalidConfig, e.to_string()))?;
            let bytes = std::fs::read(&key)
                .map_err(|e| CliError::new(Exit::Failure, format!("{}: {e}", key.display())))?;
            let sk = signature::parse_signing_key(&bytes)
                .map_err(|e| CliError::new(Exit::Failure, format!("{}: {e}", key.display())))?;
            signature::sign(
                &mut doc,
                &sk,
                key_id.as_deref(),
                expires_in.map(std::time::Duration::from_secs),
                time::OffsetDateTime::now_utc(),
                append,
            )
            .map_err(|e| CliError::new(Exit::InvalidConfig, e))?;
            let yaml = output
                .as_ref()
                .and_then(|p| p.extension())
                .is_some_and(|e| e == "yaml" || e == "yml");
            let text = if yaml {
                serde_yaml::to_string(&doc)
                    .map_err(|e| CliError::new(Exit::Failure, e.to_string()))?
            } else {
                serde_json::to_string_pretty(&doc)
                    .map_err(|e| CliError::new(Exit::Failure, e.to_string()))?
            };
            write_out(output.as_deref(), &text)?;
            if output.is_some() {
                eprintln!(
                    "signed with key {}",
                    signature::public_key_base64(&sk.verifying_key())
                );
            }
            Ok(Exit::Ok)
        }
        ManifestCommand::Verify {
            file,
            threshold,
            trusted_keys,
            max_age,
            require_expiry,
        } => {
            let origin = file.display().to_string();
            let doc = read_doc(&file)?;
            let m = manifest::from_document(&doc, &origin)
                .map_err(|e| CliError::new(Exit::InvalidConfig, e.to_string()))?;
            let remote = if trusted_keys.is_empty() {
                let source = ctx.settings_source();
                crate::engine::load_settings(&source, &ctx.env)
                    .map_err(|e| CliError::new(Exit::InvalidConfig, e.to_string()))?
                    .settings
                    .remote
            } else {
                config::RemoteSettings {
                    trusted_public_keys: trusted_keys,
                    ..Default::default()
                }
            };
            let mut policy = crate::engine::trust_policy_of(&remote)
                .map_err(|e| CliError::new(Exit::Usage, format!("trusted key: {e}")))?
                .local;
            if let Some(t) = threshold {
                if t == 0 {
                    return Err(CliError::new(Exit::Usage, "--threshold must be at least 1"));
                }
                policy.threshold = t;
            }
            policy.max_age_seconds = max_age.or(policy.max_age_seconds);
            policy.require_expiry |= require_expiry;
            // Verification of a file is a request for a signature: unsigned does not pass.
            policy.required = true;
            let verdict = signature::verify_value(&doc, &policy);
            let data = json!({
                "file": origin,
                "verdict": verdict,
                "entries_loaded": m.entries.len(),
                "entries_skipped": m.skipped,
            });
            ctx.print(&data, || {
                format!(
                    "{origin}: {} ({} entries, {} skipped)\n",
                    verdict.describe(),
                    m.entries.len(),
                    m.skipped.len()
                )
            });
            if matches!(verdict, signature::Verdict::Valid { .. }) {
                Ok(Exit::Ok)
            } else {
                Ok(Exit::VerifyFailed)
            }
        }
        ManifestCommand::Pack { file, output } => {
            let doc = read_doc(&file)?;
            manifest::from_document(&doc, &file.display().to_string())
                .map_err(|e| CliError::new(Exit::InvalidConfig, e.to_string()))?;
            write_out(
                output.as_deref(),
                &manifest::canonical::to_canonical(&manifest::Node::from_value(&doc)),
            )?;
            Ok(Exit::Ok)
        }
        ManifestCommand::Keygen { out } => {
            use base64::Engine;
            let mut seed = [0u8; 32];
            let mut f = std::fs::File::open("/dev/urandom")
                .map_err(|e| CliError::new(Exit::Failure, format!("/dev/urandom: {e}")))?;
            std::io::Read::read_exact(&mut f, &mut seed)
                .map_err(|e| CliError::new(Exit::Failure, format!("/dev/urandom: {e}")))?;
            let sk = ed25519_dalek::SigningKey::from_bytes(&seed);
            let encoded = base64::engine::general_purpose::STANDARD.encode(seed);
            crate::fsutil::write_atomic(&out, format!("{encoded}\n").as_bytes(), 0o600)
                .map_err(|e| CliError::new(Exit::Failure, format!("{}: {e}", out.display())))?;
            let public = signature::public_key_base64(&sk.verifying_key());
            ctx.print(
                &json!({"private_key_file": out, "public_key": public}),
                || format!("{public}\n"),
            );
            Ok(Exit::Ok)
        }
    }
}
