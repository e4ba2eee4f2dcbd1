//! The command line: clap definitions (also the source of the man pages and completions),
//! dispatch, and the mapping of every error to an exit code scripts can rely on.

mod docs;
mod inspect;
mod lifecycle;
mod manifest_cmd;
mod remote;
mod service;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::Env;
use crate::domain::Domain;
use crate::engine::{Dirs, LoadRequest, ManifestSource, Overrides, SettingsSource};
use crate::errors::HasExit;
use crate::instance::Instance;

pub use crate::exit::Exit;

/// An error on its way out of the process, with its exit code.
#[derive(Debug)]
pub struct CliError {
    pub exit: Exit,
    pub message: String,
}

impl CliError {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }
}

/// Any error of the program keeps the code `errors` assigns it.
impl<E: HasExit + std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::new(e.exit(), e.to_string())
    }
}

pub type CliResult = Result<Exit, CliError>;

#[derive(Debug, Parser)]
#[command(
    name = "oneiric",
    version,
    about = "Oneiric — the universal resolution layer",
    long_about = "Decides, for every (domain, key), which provider is active among the candidates \
from local settings and signed manifests, explains why, health-checks and hot-swaps them, and \
serves the answer over a CLI, an HTTP API and Prometheus metrics.",
    after_help = "Exit codes: 0 ok, 1 error, 2 usage, 3 invalid settings or manifest, 4 unhealthy, \
5 not found, 6 refused or rolled back, 7 signature verification failed."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Named instance (oneiric@NAME.service): its settings, state, cache and runtime
    /// directories are /etc/oneiric/NAME, /var/lib/oneiric/NAME, ... unless given below
    /// [env: ONEIRIC_INSTANCE; default: the default instance]
    #[arg(long, global = true, value_name = "NAME")]
    pub instance: Option<String>,
    /// Settings directory or merged settings file [env: ONEIRIC_CONFIG; default: /etc/oneiric]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Manifest to load in addition to the settings directory's (path or URL; repeatable)
    #[arg(long = "manifest", global = true, value_name = "PATH|URL")]
    pub manifests: Vec<String>,
    /// State directory [env: ONEIRIC_STATE_DIR, STATE_DIRECTORY; default: /var/lib/oneiric]
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Cache directory [env: ONEIRIC_CACHE_DIR, CACHE_DIRECTORY; default: /var/cache/oneiric]
    #[arg(long, global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Runtime directory holding control.sock [env: ONEIRIC_RUNTIME_DIR, RUNTIME_DIRECTORY; default: /run/oneiric]
    #[arg(long, global = true, value_name = "DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Print machine-readable JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// Log level (trace, debug, info, warning, error) [env: ONEIRIC_LOG_LEVEL, LOG_LEVEL]
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List candidates, winners first
    List {
        #[arg(long)]
        domain: Option<Domain>,
        /// Include shadowed (losing) candidates
        #[arg(long)]
        shadowed: bool,
    },
    /// Print the active provider of one (domain, key)
    Resolve(KeyArgs),
    /// Show every candidate of one (domain, key) in order, with the reasons
    Explain(KeyArgs),
    /// Per-key status: winner, bound provider, lifecycle state, pause/drain
    Status {
        #[arg(long)]
        domain: Option<Domain>,
        #[arg(long)]
        key: Option<String>,
        #[arg(long)]
        shadowed: bool,
    },
    /// Check health; with --probe (the unit's ExecStartPre) also run the active probes
    Health {
        /// Also check directories and run the active candidates' probes
        #[arg(long)]
        probe: bool,
        /// The unit's pre-start check: what can be judged offline (settings, local and cached
        /// manifests, directories). A remote manifest not fetched yet and a dependency's probe
        /// that fails are warnings: the service fetches and probes, and reports them
        #[arg(long, conflicts_with = "probe")]
        pre_start: bool,
        /// Fail (exit 3) on warnings too: skipped entries, unsigned manifests, duplicates
        #[arg(long)]
        strict: bool,
    },
    /// Validate settings and manifests without starting anything (like `nginx -t`)
    Check {
        /// Fail (exit 3) on warnings too: skipped entries, unsigned manifests, duplicates
        #[arg(long)]
        strict: bool,
    },
    /// Hot-swap (domain, key) to PROVIDER: probe, bind, roll back on failure; pins the choice
    Swap {
        domain: Domain,
        key: String,
        /// Provider to activate (omit with --unpin)
        #[arg(required_unless_present = "unpin")]
        provider: Option<String>,
        /// Bind even if the health probe fails
        #[arg(long)]
        force: bool,
        /// Remove an earlier swap's pin and return to ordinary ranking
        #[arg(long, conflicts_with_all = ["provider", "force"])]
        unpin: bool,
    },
    /// Pause a key (refuses swaps) or resume it
    Pause {
        domain: Domain,
        key: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        resume: bool,
    },
    /// Mark a key draining (refuses swaps) or clear it
    Drain {
        domain: Domain,
        key: String,
        #[arg(long)]
        note: Option<String>,
        #[arg(long)]
        clear: bool,
    },
    /// List paused and draining keys; with --changes, who changed the service through the control socket
    Activity {
        /// The newest change requests (reload, swap, unpin, pause, drain) the service was
        /// sent, allowed or refused, with the peer's uid and pid
        #[arg(long)]
        changes: bool,
    },
    /// Sign, verify, pack manifests; make keys
    #[command(subcommand)]
    Manifest(manifest_cmd::ManifestCommand),
    /// Run the service (systemd Type=notify): resolve, probe, refresh, serve HTTP and metrics
    Orchestrate(OrchestrateArgs),
    /// Ask the running service to reload; returns when the reload finished (the unit's ExecReload)
    Reload {
        /// Seconds to wait for the service's answer (at most a day)
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        timeout: u64,
    },
    /// Fetch remote manifests into the cache now (conditional request, retries, signature check)
    RemoteSync {
        /// Keep syncing every --refresh-interval seconds
        #[arg(long)]
        watch: bool,
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
        refresh_interval: Option<u64>,
    },
    /// Show the cached remote manifests: age, ETag, last result, rollback mark
    RemoteStatus,
    /// Forget the rollback high-water mark of a remote manifest, so that the next fetch accepts
    /// an older (still validly signed) manifest from it. For a deliberate downgrade only
    RemoteResetRollback {
        /// The manifest URL whose mark is forgotten
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        url: Option<String>,
        /// Forget every URL's mark (also the way out of a corrupt marks file)
        #[arg(long)]
        all: bool,
    },
    /// Print a shell completion script
    Completions { shell: clap_complete::Shell },
    /// Write man pages (oneiric.1 and one per subcommand) into a directory
    Man {
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    pub domain: Domain,
    pub key: String,
    /// Required capability (repeatable)
    #[arg(long = "capability", value_name = "NAME")]
    pub capabilities: Vec<String>,
    /// Rank partial capability matches instead of filtering them out
    #[arg(long)]
    pub any: bool,
}

#[derive(Debug, Args)]
pub struct OrchestrateArgs {
    /// Seconds between re-reads of settings and manifests (at most a week)
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub refresh_interval: Option<u64>,
    /// Port of the HTTP listener (metrics and API) [env: PROMETHEUS_METRICS_PORT]
    #[arg(long, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Do not serve HTTP
    #[arg(long)]
    pub no_http: bool,
}

/// Everything a command needs to know about where things are.
pub struct Ctx {
    pub global: Global,
    pub env: Env,
    pub instance: Option<Instance>,
    pub dirs: Dirs,
}

impl Ctx {
    pub fn request(&self, overrides: Overrides) -> LoadRequest {
        LoadRequest {
            config: self.settings_source(),
            manifests: self
                .global
                .manifests
                .iter()
                .map(|m| ManifestSource::parse(m))
                .collect(),
            env: self.env.clone(),
            overrides: Overrides {
                log_level: self.global.log_level.clone(),
                ..overrides
            },
            dirs: self.dirs.clone(),
        }
    }

    pub fn settings_source(&self) -> SettingsSource {
        SettingsSource::resolve(
            self.global.config.as_deref(),
            self.instance.as_ref(),
            &self.env,
        )
    }

    /// Root becomes the owner of the state and cache directories before a command reads or
    /// writes them offline (see `as_owner`); a no-op for anyone else.
    pub fn act_as_dir_owner(&self) -> Result<(), CliError> {
        crate::as_owner::become_owner_of(&[&self.dirs.state, &self.dirs.cache])?;
        Ok(())
    }

    /// Prints data as JSON or with the given human renderer; either way with the credentials
    /// of any URL in it redacted (a manifest origin, an error message).
    pub fn print<T: serde::Serialize>(&self, data: &T, human: impl FnOnce() -> String) {
        if self.global.json {
            match serde_json::to_string_pretty(data) {
                Ok(s) => println!("{}", crate::text::redact_urls_in(&s)),
                Err(e) => eprintln!("oneiric: cannot encode JSON: {e}"),
            }
        } else {
            print!("{}", shown(&human()));
        }
    }
}

/// Text for the terminal: URL credentials redacted, control characters escaped.
pub fn shown(text: &str) -> String {
    crate::text::terminal_safe(&crate::text::redact_urls_in(text)).into_owned()
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() {
                Exit::Usage
            } else {
                Exit::Ok
            };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    // The process environment is read here, at the edge, once; below it is plain data. A
    // non-UTF-8 variable cannot be ours (all our values are text): skipped, not an error.
    let env = Env::from_pairs(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
    );
    let instance = match crate::instance::resolve(cli.global.instance.as_deref(), &env) {
        Ok(i) => i,
        Err(e) => {
            let e = CliError::from(e);
            eprintln!("oneiric: {}", shown(&e.message));
            return ExitCode::from(e.exit);
        }
    };
    let dirs = Dirs::resolve(
        cli.global.state_dir.as_deref(),
        cli.global.cache_dir.as_deref(),
        cli.global.runtime_dir.as_deref(),
        instance.as_ref(),
        &env,
    );
    let ctx = Ctx {
        global: cli.global,
        env,
        instance,
        dirs,
    };
    let result = run(&ctx, cli.command);
    match result {
        Ok(exit) => ExitCode::from(exit),
        Err(e) => {
            // A permission error after root became the directories' owner would be a puzzle
            // without it.
            let acting = crate::as_owner::acting_as()
                .map(|o| format!(" (run as {o})"))
                .unwrap_or_default();
            eprintln!("oneiric: {}{acting}", shown(&e.message));
            ExitCode::from(e.exit)
        }
    }
}

fn run(ctx: &Ctx, command: Command) -> CliResult {
    match &command {
        // Through the control socket first: root stays root there, so the service's record
        // of the request names root. Their offline paths switch (cli::lifecycle).
        Command::Swap { .. } | Command::Pause { .. } | Command::Drain { .. } => {}
        // Nothing in the service's directories.
        Command::Manifest(_)
        | Command::Reload { .. }
        | Command::Completions { .. }
        | Command::Man { .. } => {}
        Command::List { .. }
        | Command::Resolve(_)
        | Command::Explain(_)
        | Command::Status { .. }
        | Command::Health { .. }
        | Command::Check { .. }
        | Command::Activity { .. }
        | Command::Orchestrate(_)
        | Command::RemoteSync { .. }
        | Command::RemoteStatus
        | Command::RemoteResetRollback { .. } => ctx.act_as_dir_owner()?,
    }
    match command {
        Command::List { domain, shadowed } => inspect::list(ctx, domain, shadowed),
        Command::Resolve(k) => inspect::resolve(ctx, &k),
        Command::Explain(k) => inspect::explain(ctx, &k),
        Command::Status {
            domain,
            key,
            shadowed,
        } => inspect::status(ctx, domain, key.as_deref(), shadowed),
        Command::Health {
            probe,
            pre_start,
            strict,
        } => service::health(ctx, probe, pre_start, strict),
        Command::Check { strict } => service::check(ctx, strict),
        Command::Swap {
            domain,
            key,
            provider,
            force,
            unpin,
        } => lifecycle::swap(ctx, domain, &key, provider.as_deref(), force, unpin),
        Command::Pause {
            domain,
            key,
            note,
            resume,
        } => lifecycle::pause(ctx, domain, &key, !resume, note),
        Command::Drain {
            domain,
            key,
            note,
            clear,
        } => lifecycle::drain(ctx, domain, &key, !clear, note),
        Command::Activity { changes } => lifecycle::activity(ctx, changes),
        Command::Manifest(m) => manifest_cmd::run(ctx, m),
        Command::Orchestrate(args) => service::orchestrate(ctx, args),
        Command::Reload { timeout } => service::reload(ctx, timeout),
        Command::RemoteSync {
            watch,
            refresh_interval,
        } => remote::sync(ctx, watch, refresh_interval),
        Command::RemoteStatus => remote::status(ctx),
        Command::RemoteResetRollback { url, all } => {
            remote::reset_rollback(ctx, url.as_deref(), all)
        }
        Command::Completions { shell } => docs::completions(shell),
        Command::Man { out_dir } => docs::man(&out_dir),
    }
}

/// A small current-thread runtime for the CLI's async work (probes, swaps).
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map(|rt| rt.block_on(f))
        .map_err(|e| CliError::new(Exit::Failure, format!("cannot start runtime: {e}")))
}
