//! Process setup and the main loop. [`run`] is what `oneiric orchestrate` calls: logging, the
//! runtime, the listeners, then [`serve`] until SIGTERM/SIGINT. [`serve`] takes its listeners
//! and its shutdown signal from the caller, so tests can run the service in-process.

use std::future::Future;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use crate::activation;
use crate::activity::ActivityStore;
use crate::config::Env;
use crate::control::Via;
use crate::engine::{self, Dirs, LoadRequest, LoadedSettings};
use crate::errors::StartError;
use crate::lifecycle::LifecycleStatus;
use crate::metrics::Metrics;
use crate::remote::schedule::{Cadence, Scheduler};
use crate::resolver::Snapshot;
use crate::served::{unix_now, unix_now_f64};

use super::owner::{Next, StateOwner};
use super::reload::RELOAD_DEADLINE;
use super::sync::{RemoteSync, Report};
use super::{Service, Trigger, control_server, notify};

/// The sockets the service answers on, bound by the caller before the first load (or passed
/// by systemd), so that clients connecting early wait in the backlog instead of being refused.
pub struct Listeners {
    pub http: Option<std::net::TcpListener>,
    pub control: std::os::unix::net::UnixListener,
    pub control_path: PathBuf,
    /// The administrators' socket, when `oneiric-admin.socket` passed it: changes from
    /// whoever may connect (root and group `oneiric-admin`). Never bound here: only systemd
    /// can give it that group.
    pub admin: Option<std::os::unix::net::UnixListener>,
    /// Whether this process created the control socket's path (and removes it at exit). A
    /// socket systemd passed stays: systemd keeps listening on it across the restart.
    pub control_owned: bool,
    /// The credential `/metrics` and `/v1/*` require (`http.bearer_token_file`), read here
    /// so that a missing file stops the start before anything is served.
    pub http_token: Option<crate::http::Token>,
}

/// The listeners systemd passed (`oneiric.socket`), checked against the settings, with what
/// it did not pass bound here; without passed sockets, everything bound here. What is bound
/// here goes to systemd's fd store, so the next process of the unit gets it back; a stored
/// listener the settings no longer describe is dropped from the store and bound anew.
pub fn bind_listeners(
    settings: &LoadedSettings,
    dirs: &Dirs,
    env: &Env,
) -> Result<Listeners, StartError> {
    let http = &settings.settings.http;
    let control_path = dirs.control_socket();
    let inherited = activation::take(env)?.unwrap_or_default();
    for name in &inherited.closed {
        tracing::warn!(
            oneiric_event = "socket_activation",
            "closed a passed socket named {name:?}: oneiric serves one HTTP and one control socket"
        );
    }
    for name in &inherited.superseded {
        notify::remove_stored(name);
    }
    let mut from = Vec::new();
    let http = passed_or_bind(
        inherited.http.map(|l| (l, inherited.http_stored)),
        ("http", activation::STORED_HTTP),
        |l| activation::check_http(l, http.enabled, &http.address, http.port),
        Some,
        || bind_http(http),
        &mut from,
    )?;
    let (control, control_owned) = passed_or_bind(
        inherited.control.map(|l| (l, inherited.control_stored)),
        ("control", activation::STORED_CONTROL),
        |l| activation::check_path(l, &control_path, "oneiric.socket"),
        |l| (l, false),
        || bind_control(&control_path),
        &mut from,
    )?;
    let admin = match inherited.admin {
        Some(l) => {
            activation::check_path(&l, &dirs.admin_socket(), "oneiric-admin.socket")?;
            from.push("admin from the socket unit".into());
            Some(l)
        }
        None => {
            tracing::info!(
                oneiric_event = "socket_activation",
                "no administrators' socket (oneiric-admin.socket) passed: changes through {} take root or the service's user",
                control_path.display()
            );
            None
        }
    };
    if !from.is_empty() {
        tracing::info!(
            oneiric_event = "socket_activation",
            "listening on sockets passed by systemd: {}",
            from.join(", ")
        );
    }
    let http_token = match (&http, &settings.settings.http.bearer_token_file) {
        (Some(_), Some(path)) => Some(crate::http::Token::read(path)?),
        _ => None,
    };
    Ok(Listeners {
        http,
        control,
        admin,
        control_path,
        control_owned,
        http_token,
    })
}

/// A passed listener that agrees with the settings (`check`), or what `bind` makes when none
/// was passed. One from the socket unit that disagrees is an error: the unit and the
/// settings say different things and the operator must decide. One from the fd store that
/// disagrees was stored before the settings changed: it is dropped from the store and the
/// settings' listener bound (and stored) instead. `from` gets where a kept one came from.
fn passed_or_bind<L, T>(
    passed: Option<(L, bool)>,
    (what, store_name): (&str, &str),
    check: impl FnOnce(&L) -> Result<(), activation::ActivationError>,
    keep: impl FnOnce(L) -> T,
    bind: impl FnOnce() -> Result<T, StartError>,
    from: &mut Vec<String>,
) -> Result<T, StartError> {
    let Some((l, stored)) = passed else {
        return bind();
    };
    match check(&l) {
        Ok(()) => {
            let source = if stored {
                "the fd store"
            } else {
                "the socket unit"
            };
            from.push(format!("{what} from {source}"));
            Ok(keep(l))
        }
        Err(e) if stored => {
            tracing::info!(
                oneiric_event = "socket_activation",
                "dropping the stored {what} listener: {e}"
            );
            drop(l);
            notify::remove_stored(store_name);
            bind()
        }
        Err(e) => Err(e.into()),
    }
}

/// Binds the HTTP listener the settings describe (none when disabled) and stores it.
fn bind_http(
    http: &crate::config::HttpSettings,
) -> Result<Option<std::net::TcpListener>, StartError> {
    if !http.enabled {
        return Ok(None);
    }
    let addr = format!("{}:{}", http.address, http.port);
    let l = std::net::TcpListener::bind(&addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| StartError::Listen {
            addr: addr.clone(),
            source,
        })?;
    notify::store_fd(activation::STORED_HTTP, l.as_fd());
    Ok(Some(l))
}

/// Binds the control socket and stores it. Whether this process owns the path (removes it at
/// exit): not once the store holds the socket, which must keep a path clients can reach.
fn bind_control(
    path: &std::path::Path,
) -> Result<(std::os::unix::net::UnixListener, bool), StartError> {
    let l = crate::control::bind(path)?;
    let stored = notify::store_fd(activation::STORED_CONTROL, l.as_fd());
    Ok((l, !stored))
}

/// What [`serve`] needs besides its listeners.
pub struct ServeOptions {
    pub req: LoadRequest,
    /// The settings read for setting up logging and listeners; the first load uses them.
    pub settings: LoadedSettings,
    pub metrics: Metrics,
    /// Where logs go and how traces are exported, for the ready line.
    pub banner: String,
}

/// Runs the service until SIGTERM/SIGINT. Returns an error when it cannot start.
pub fn run(req: LoadRequest) -> Result<(), StartError> {
    // Logging first, from settings alone, so that a bad manifest is reported in the right place.
    let pre = engine::settings(&req);
    let (level, format) = match &pre {
        Ok(l) => (
            l.settings
                .logging
                .level
                .as_deref()
                .and_then(|s| crate::telemetry::parse_level(s).ok())
                .unwrap_or(tracing::level_filters::LevelFilter::INFO),
            l.settings
                .logging
                .format
                .or(match l.settings.logging.emit_json {
                    Some(true) => Some(crate::config::LogFormat::Json),
                    Some(false) => Some(crate::config::LogFormat::Text),
                    None => None,
                }),
        ),
        Err(_) => (tracing::level_filters::LevelFilter::INFO, None),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("oneiric")
        .build()
        .map_err(StartError::Runtime)?;
    let metrics = Metrics::new()?;
    // Inside the runtime: the OTLP exporter's channel and HTTP client live on it.
    let telemetry = {
        let _guard = runtime.enter();
        crate::telemetry::init(
            level,
            format,
            Some(crate::telemetry::TraceExport {
                env: &req.env,
                dropped: metrics.otel_spans_dropped.clone(),
            }),
        )
    };
    let result = (|| {
        let settings = pre.map_err(|e| StartError::Load(e.into()))?;
        let listeners = bind_listeners(&settings, &req.dirs, &req.env)?;
        let banner = format!("logging to {}; traces {}", telemetry.sink, telemetry.otel);
        runtime.block_on(async {
            // Handlers before the first load: a SIGTERM during startup waits for the main
            // loop instead of killing the process with the default action.
            let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
            let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
            let shutdown = async move {
                tokio::select! {
                    _ = term.recv() => tracing::info!(oneiric_event = "stop", "SIGTERM: stopping"),
                    _ = int.recv() => tracing::info!(oneiric_event = "stop", "SIGINT: stopping"),
                }
            };
            let options = ServeOptions {
                req,
                settings,
                metrics,
                banner,
            };
            serve(options, listeners, shutdown).await
        })
    })();
    // A failed first load was logged by the reload itself.
    if let Err(e) = &result {
        if !matches!(e, StartError::Load(_)) {
            tracing::error!(oneiric_event = "startup_failed", "{e}");
        }
    }
    // Flush pending spans while the runtime (which carries the exporter) still runs, bounded
    // well inside TimeoutStopSec.
    telemetry.shutdown(Duration::from_secs(5));
    // Tasks still parked on I/O must not delay exit past TimeoutStopSec.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

fn signal(
    kind: tokio::signal::unix::SignalKind,
) -> Result<tokio::signal::unix::Signal, StartError> {
    tokio::signal::unix::signal(kind).map_err(StartError::Signal)
}

/// Loads, serves and reloads until `shutdown` completes. The first load is a reload with
/// `Trigger::Startup`; no READY=1 until it succeeded.
pub async fn serve(
    options: ServeOptions,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let ServeOptions {
        req,
        settings,
        metrics,
        banner,
    } = options;
    let mut sighup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let control_path = listeners
        .control_owned
        .then(|| listeners.control_path.clone());
    let result = serve_inner(
        req,
        settings,
        metrics,
        banner,
        listeners,
        shutdown,
        &mut sighup,
    )
    .await;
    if let Some(path) = control_path {
        let _ = std::fs::remove_file(path);
    }
    result
}

async fn serve_inner(
    req: LoadRequest,
    settings: LoadedSettings,
    metrics: Metrics,
    banner: String,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    sighup: &mut tokio::signal::unix::Signal,
) -> Result<(), StartError> {
    let dirs = req.dirs.clone();
    for (what, dir) in [("state", &dirs.state), ("cache", &dirs.cache)] {
        std::fs::create_dir_all(dir).map_err(|source| StartError::Directory {
            what,
            path: dir.clone(),
            source,
        })?;
    }
    let lifecycle = load_lifecycle(&dirs.state);
    let activity = ActivityStore::open(&dirs.state)?;
    let empty = Next {
        settings: settings.clone(),
        manifests: Vec::new(),
        snapshot: Arc::new(Snapshot::default()),
        warnings: Vec::new(),
        demo: false,
        unavailable: Vec::new(),
        restored_from: None,
    };
    let owner = StateOwner::new(
        dirs.state.clone(),
        lifecycle,
        activity,
        empty,
        Arc::new(metrics),
    );
    let view = owner.view();
    let (host, host_from) = crate::remote::schedule::host_identity(&req.env);
    if host.is_empty() {
        tracing::warn!(
            oneiric_event = "splay_identity",
            "no machine id or host name to derive this host's refresh offset from; every such host fetches on the same phase"
        );
    } else {
        tracing::debug!(
            oneiric_event = "splay_identity",
            "refresh offset derived from {host_from}"
        );
    }
    // The main loop owns the schedule: it sleeps on it, so nothing else may move a slot
    // behind its back. Fetches, which run in reloads and refreshes elsewhere, report to it.
    let mut timer = RefreshTimer {
        schedule: Scheduler::new(host),
        refreshing: false,
    };
    let (reports_tx, mut reports) = tokio::sync::mpsc::unbounded_channel();
    let (installed_tx, installed_rx) = tokio::sync::watch::channel(0);
    let service = Arc::new(Service {
        owner,
        view: view.clone(),
        req,
        pipeline: tokio::sync::Mutex::new(RemoteSync::new(reports_tx.clone())),
        reload_started: AtomicU64::new(0),
        loads_published: AtomicU64::new(0),
        started: Instant::now(),
        installed: installed_tx,
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let control_path = listeners.control_path.clone();
    // The first load: remote manifests fetched first; with the server down the cached copy
    // is served (and says how old it is). Beside it, the saved state is checked; when it
    // still applies, clients are answered from it until the load is installed (READY=1 still
    // waits for the load). Without one, they are answered after the load.
    let first_load = {
        let s = Arc::clone(&service);
        let settings = settings.clone();
        tokio::spawn(async move { s.reload(Trigger::Startup, Some(settings)).await })
    };
    let restored = super::restore::restore(&service, &settings).await;
    let mut pending = Some(listeners);
    let mut servers = None;
    if restored.is_some() {
        if let Some(l) = pending.take() {
            servers = Some(start_servers(l, &service, &stop_rx)?);
        }
        service.owner.set_ready(true);
        notify::status(&view.status_line());
    }
    let saver = super::restore::spawn_saver(&service, installed_rx, restored.is_some());
    let loaded = first_load
        .await
        .map_err(crate::errors::ReloadError::from)
        .and_then(|r| r);
    if let Err(e) = loaded {
        if restored.is_some() {
            // What it described no longer loads: the next start must not answer from it.
            crate::persisted::remove(&service.req.dirs.state);
        }
        return Err(StartError::Load(e));
    }
    // The startup fetches' next slots are known (and in the metrics) by the time it is ready.
    timer.drain(&mut reports, service.owner.metrics());
    let (tasks, http_addr) = match (servers, pending.take()) {
        (Some(s), _) => s,
        (None, Some(l)) => start_servers(l, &service, &stop_rx)?,
        (None, None) => (Vec::new(), None),
    };
    service.owner.set_ready(true);
    let status = view.status_line();
    notify::ready(&status);
    match http_addr {
        Some(a) => tracing::info!(
            oneiric_event = "ready",
            "ready: {status}; HTTP on http://{a} ({}); control socket {}; {banner}",
            crate::http::Route::PATTERNS.join(", "),
            control_path.display(),
        ),
        None => tracing::info!(
            oneiric_event = "ready",
            "ready: {status}; HTTP disabled; control socket {}; {banner}",
            control_path.display()
        ),
    }

    let watchdog = notify::watchdog_interval();
    // Without a watchdog the tick is effectively never: no idle wake-ups.
    let mut watchdog_timer = tokio::time::interval(
        watchdog
            .map(|w| w / 2)
            .unwrap_or(Duration::from_secs(86_400 * 365)),
    );
    let mut last_fingerprint = service.fingerprint();
    let mut last_expired = view.observe_expiry();
    tokio::pin!(shutdown);
    timer.schedule.woke(unix_now_f64());

    loop {
        // Before the URLs are read: a reload reports its fetches before it installs what
        // names them.
        timer.drain(&mut reports, service.owner.metrics());
        // Recomputed every turn: a reload may change the URLs or the cadence, and each fetch
        // moves its URL's next slot.
        let (urls, cadence) = {
            let served = view.served();
            (
                engine::remote_urls(&service.req, &served.settings),
                Cadence::of(&served.settings.settings.remote),
            )
        };
        let wake_in = {
            let now = unix_now_f64();
            let at = timer.schedule.next_wake(&urls, &cadence, now);
            Duration::from_secs_f64((at - now).clamp(0.0, cadence.max_interval))
        };
        tokio::select! {
            () = &mut shutdown => break,
            _ = sighup.recv() => {
                let s = Arc::clone(&service);
                tokio::spawn(async move { let _ = s.reload(Trigger::Sighup, None).await; });
            }
            // A report moves its URL's next slot (and a finished refresh lets the next one
            // start): the sleep is computed again, or it would sleep past them and drift off
            // its phase.
            Some(report) = reports.recv() => timer.apply(report, service.owner.metrics()),
            () = tokio::time::sleep(wake_in) => {
                let now = unix_now_f64();
                // Freshness is re-judged on the timer, not only at load: with the origin down
                // nothing would reload, and an expired manifest must stop looking ready.
                let expired = view.observe_expiry();
                if expired != last_expired {
                    match &expired {
                        Some(line) => tracing::error!(oneiric_event = "manifest_expired", "{line}; /readyz reports not ready until a fresh manifest arrives"),
                        None => tracing::info!(oneiric_event = "manifest_fresh", "every served manifest is fresh again"),
                    }
                    notify::status(&view.status_line());
                    last_expired = expired;
                }
                let current = service.fingerprint();
                let local_changed = current != last_fingerprint;
                last_fingerprint = current;
                // Fetches that ended while this wake-up was pending count before what is due
                // is judged, as if they had changed the schedule the moment they ended.
                timer.drain(&mut reports, service.owner.metrics());
                timer.schedule.woke(now);
                // A slow remote must not pile up refreshes.
                if !timer.refreshing {
                    timer.refreshing = true;
                    let due = timer.schedule.due(&urls, &cadence, now);
                    let s = Arc::clone(&service);
                    let done = reports_tx.clone();
                    tokio::spawn(async move {
                        s.refresh(local_changed, due).await;
                        let _ = done.send(Report::RefreshDone);
                    });
                } else {
                    timer.schedule.skip(&urls, &cadence, now);
                }
            }
            _ = watchdog_timer.tick(), if watchdog.is_some() => {
                if service.progressing() {
                    notify::watchdog();
                } else {
                    tracing::error!(oneiric_event = "watchdog_withheld", "a reload has run for more than {} s; withholding watchdog pings", RELOAD_DEADLINE.as_secs());
                }
            }
        }
    }

    notify::stopping();
    service.owner.set_ready(false);
    let _ = stop_tx.send(true);
    // Let servers finish in-flight requests briefly, then move on.
    let drain = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    // A write in flight finishes on its blocking thread (the file is replaced whole or not).
    saver.abort();
    // A reload in flight finishes or is abandoned; state on disk is always whole.
    let _ = tokio::time::timeout(Duration::from_secs(5), service.pipeline.lock()).await;
    if let Err(e) = service.owner.save().await {
        tracing::error!(oneiric_event = "state_write_failed", "{e}");
    }
    tracing::info!(oneiric_event = "stopped", "stopped");
    Ok(())
}

/// Starts answering on the listeners: HTTP (when enabled) and the control socket. Returns
/// their tasks and the HTTP address.
fn start_servers(
    listeners: Listeners,
    service: &Arc<Service>,
    stop_rx: &tokio::sync::watch::Receiver<bool>,
) -> Result<
    (
        Vec<tokio::task::JoinHandle<()>>,
        Option<std::net::SocketAddr>,
    ),
    StartError,
> {
    let mut tasks = Vec::new();
    let http_addr = match listeners.http {
        Some(std_listener) => {
            let listener = tokio::net::TcpListener::from_std(std_listener).map_err(|source| {
                StartError::Listen {
                    addr: "inherited".into(),
                    source,
                }
            })?;
            let local = listener.local_addr().ok();
            tasks.push(tokio::spawn(crate::http::serve(
                listener,
                service.view.clone(),
                listeners.http_token.map(Arc::new),
                stop_rx.clone(),
            )));
            local
        }
        None => None,
    };
    let unix = [
        (Some(listeners.control), Via::Control),
        (listeners.admin, Via::Admin),
    ];
    for (listener, via) in unix {
        let Some(listener) = listener else { continue };
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|source| {
            StartError::Control(crate::control::BindError::Socket {
                path: listeners
                    .control_path
                    .with_file_name(via.socket_name())
                    .display()
                    .to_string(),
                source,
            })
        })?;
        tasks.push(tokio::spawn(control_server::serve(
            listener,
            via,
            Arc::clone(service),
            stop_rx.clone(),
        )));
    }
    Ok((tasks, http_addr))
}

/// The main loop's refresh state: when each remote manifest is fetched next, and whether a
/// refresh is running. Changed only by the loop, from its own wake-ups and from [`Report`]s.
struct RefreshTimer {
    schedule: Scheduler,
    refreshing: bool,
}

impl RefreshTimer {
    fn apply(&mut self, report: Report, metrics: &Metrics) {
        match report {
            Report::Fetched {
                url,
                result,
                hints,
                cadence,
                started,
            } => {
                self.schedule.record(&url, result, hints, &cadence, started);
                if let Some(next) = self.schedule.next_fetch(&url, &cadence) {
                    metrics
                        .remote_next_fetch
                        .with_label_values(&[crate::text::redact_url(&url).as_str()])
                        .set(next);
                }
            }
            Report::RefreshDone => self.refreshing = false,
        }
    }

    /// Applies every report sent so far.
    fn drain(
        &mut self,
        reports: &mut tokio::sync::mpsc::UnboundedReceiver<Report>,
        metrics: &Metrics,
    ) {
        while let Ok(report) = reports.try_recv() {
            self.apply(report, metrics);
        }
    }
}

/// The persisted lifecycle status. A corrupt file must not keep the service down: it is kept
/// aside for inspection and the service starts with an empty status.
fn load_lifecycle(state_dir: &std::path::Path) -> LifecycleStatus {
    match LifecycleStatus::load(state_dir) {
        Ok(s) => s,
        Err(e) => {
            let path = LifecycleStatus::path(state_dir);
            let aside = path.with_extension(format!("json.corrupt-{}", unix_now()));
            let _ = std::fs::rename(&path, &aside);
            tracing::error!(
                oneiric_event = "state_corrupt",
                "{e}; moved to {} and starting with an empty lifecycle status",
                aside.display()
            );
            LifecycleStatus::default()
        }
    }
}
