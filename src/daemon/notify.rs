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

/// `status` goes out on one line: a newline in it (from a manifest's text, an error message)
/// would start an assignment of its own.
pub fn ready(status: &str) {
    send(&[
        NotifyState::Ready,
        NotifyState::Status(&crate::text::one_line(status)),
    ]);
}

pub fn status(status: &str) {
    send(&[NotifyState::Status(&crate::text::one_line(status))]);
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

/// Hands a listener the service bound itself to systemd's fd store (`FDSTORE=1`, kept while
/// `FileDescriptorStoreMax=` allows), so that the next process of this unit gets it back in
/// `LISTEN_FDS` under `name`. Returns whether it was sent: without `NOTIFY_SOCKET` (tests, a
/// manual start) there is no store, and the caller keeps owning the socket's path.
pub fn store_fd(name: &str, fd: std::os::fd::BorrowedFd<'_>) -> bool {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return false;
    }
    match sd_notify::notify_with_fds(
        false,
        &[NotifyState::FdStore, NotifyState::FdName(name)],
        &[fd],
    ) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(
                oneiric_event = "notify_failed",
                "handing {name} to systemd's fd store failed: {e}; a restart will bind it again"
            );
            false
        }
    }
}

/// Drops a stored listener the settings no longer describe (`FDSTOREREMOVE=1`).
pub fn remove_stored(name: &str) {
    send(&[NotifyState::FdStoreRemove, NotifyState::FdName(name)]);
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
