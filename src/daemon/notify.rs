//! The systemd notification protocol, in one place. Every call is best-effort: without
//! `NOTIFY_SOCKET` nothing is sent, and a failed send is logged, never fatal.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(oneiric_event = "notify_failed", "sd_notify failed: {e}");
    }
}

pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `RELOADING=1` with the `MONOTONIC_USEC` systemd ≥ 253 expects alongside it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[
            NotifyState::Reloading,
            now,
            NotifyState::Status("Reloading…"),
        ]),
        Err(_) => send(&[NotifyState::Reloading, NotifyState::Status("Reloading…")]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("Stopping…")]);
}

pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// The watchdog interval systemd asked for (`WATCHDOG_USEC`), if any. As in libsystemd,
/// `WATCHDOG_PID`, when set, must name this process.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.trim().parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.trim().parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| std::time::Duration::from_micros(usec))
}
