//! When each remote manifest is fetched next: refresh splay, the origin's `Cache-Control:
//! max-age` and `Retry-After`, and backoff after failures.
//!
//! Fetches happen on *slots*: `k × interval + phase` in Unix time, where the phase is this
//! host's stable offset for the URL, within `refresh_splay × interval`. Anchoring slots to the
//! wall clock rather than to the process's start is what breaks lockstep: hosts started by the
//! same reboot wave or configuration run still fetch at their own phase, and a restarted host
//! keeps its phase. Every delay (max-age, Retry-After, backoff) is a whole number of slots, so
//! a host never fetches more often than its interval and stays on its phase afterwards.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::config::RemoteSettings;

/// Where the host's identity comes from unless `ONEIRIC_MACHINE_ID_PATH` says otherwise.
pub const MACHINE_ID_PATH: &str = "/etc/machine-id";

/// A timer firing up to this much early still counts as on its slot.
const SLOT_TOLERANCE: f64 = 0.010;

/// Two fetches of one URL start at least this share of the interval apart, however late the
/// first one started (a busy host): the origin never sees a host faster than its interval,
/// give or take the jitter of timers and connection setup.
const MIN_GAP: f64 = 0.95;

/// What the origin asked for in its answer, for the next fetch's timing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hints {
    /// `Cache-Control: max-age` (or `s-maxage`) of a 200 or 304, in seconds.
    pub max_age: Option<u64>,
    /// `Retry-After` of a 429 or 503, in seconds from the answer.
    pub retry_after: Option<u64>,
}

/// How a fetch ended, as far as its timing goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The origin answered (new copy, 304, or a body that was refused).
    Answered,
    /// The origin could not be reached or kept failing, or the breaker was open.
    Failed,
}

/// The refresh cadence of one settings generation, in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cadence {
    pub interval: f64,
    pub splay: f64,
    /// The longest gap any hint or backoff may cause.
    pub max_interval: f64,
    pub jitter: f64,
}

impl Cadence {
    pub fn of(r: &RemoteSettings) -> Self {
        let interval = r.refresh_interval.max(1) as f64;
        let max = r
            .refresh_max_interval
            .unwrap_or_else(|| r.refresh_interval.saturating_mul(10)) as f64;
        Self {
            interval,
            splay: r.refresh_splay,
            // A `--refresh-interval` above the configured maximum wins: the interval is the
            // floor of every delay.
            max_interval: max.max(interval),
            jitter: r.retry_jitter,
        }
    }

    /// Slots a gap of `seconds` spans, rounded up, within `1..=max slots`.
    fn slots(&self, seconds: f64) -> i64 {
        let max = (self.max_interval / self.interval).floor().max(1.0);
        (seconds / self.interval).ceil().clamp(1.0, max) as i64
    }

    fn max_slots(&self) -> i64 {
        (self.max_interval / self.interval).floor().max(1.0) as i64
    }
}

/// A stable number in `[0, 1)` for `(host, url)`: the host's place within the splay window.
pub fn host_fraction(host: &str, url: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(host.as_bytes())
        .chain_update([0u8])
        .chain_update(url.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits: exactly representable, and strictly below 1.
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Debug, Clone, Copy)]
struct UrlState {
    /// The next slot to fetch on.
    next: i64,
    /// The slot being fetched now (handed out by `due`), if any.
    fetching: Option<i64>,
    failures: u32,
}

/// The fetch schedule of every remote manifest of this host.
#[derive(Debug)]
pub struct Scheduler {
    host: String,
    urls: HashMap<String, UrlState>,
    /// The cadence the slots of `urls` count in; another one (a reload changed the settings)
    /// starts every URL afresh.
    cadence: Option<Cadence>,
    /// Unix time of the last wake-up, for the local checks between remote slots.
    last_wake: f64,
}

impl Scheduler {
    pub fn new(host: String) -> Self {
        Self {
            host,
            urls: HashMap::new(),
            cadence: None,
            last_wake: 0.0,
        }
    }

    fn use_cadence(&mut self, c: &Cadence) {
        if self.cadence.as_ref() != Some(c) {
            // Keep only fetches in flight, so their outcome is still recorded.
            self.urls.retain(|_, s| s.fetching.is_some());
            self.cadence = Some(*c);
        }
    }

    /// This host's offset for `url` within each interval, in seconds.
    pub fn phase(&self, url: &str, c: &Cadence) -> f64 {
        host_fraction(&self.host, url) * c.splay * c.interval
    }

    fn slot_time(&self, url: &str, k: i64, c: &Cadence) -> f64 {
        k as f64 * c.interval + self.phase(url, c)
    }

    /// The first slot at or after `t`.
    fn slot_at_or_after(&self, url: &str, t: f64, c: &Cadence) -> i64 {
        ((t - self.phase(url, c) - SLOT_TOLERANCE) / c.interval).ceil() as i64
    }

    /// When the main loop should wake next (Unix seconds): the earliest slot due among `urls`,
    /// and at least once an interval for the local checks.
    pub fn next_wake(&mut self, urls: &[String], c: &Cadence, now: f64) -> f64 {
        self.use_cadence(c);
        let mut wake = if self.last_wake > 0.0 {
            self.last_wake + c.interval
        } else {
            now + c.interval
        };
        for url in urls {
            let state = self.state(url, c, now);
            if state.fetching.is_none() {
                wake = wake.min(self.slot_time(url, state.next, c));
            }
        }
        wake
    }

    /// Records a wake-up at `now`.
    pub fn woke(&mut self, now: f64) {
        self.last_wake = now;
    }

    fn state(&mut self, url: &str, c: &Cadence, now: f64) -> UrlState {
        if let Some(s) = self.urls.get(url) {
            return *s;
        }
        // First sight (the startup fetch ran, or is about to): the first slot a whole
        // interval away.
        let s = UrlState {
            next: self.slot_at_or_after(url, now + c.interval, c),
            fetching: None,
            failures: 0,
        };
        self.urls.insert(url.to_string(), s);
        s
    }

    /// The URLs whose slot has come at `now`, marked as being fetched.
    pub fn due(&mut self, urls: &[String], c: &Cadence, now: f64) -> Vec<String> {
        self.use_cadence(c);
        let mut out = Vec::new();
        for url in urls {
            let state = self.state(url, c, now);
            if state.fetching.is_none()
                && self.slot_time(url, state.next, c) <= now + SLOT_TOLERANCE
            {
                if let Some(s) = self.urls.get_mut(url) {
                    s.fetching = Some(s.next);
                }
                out.push(url.clone());
            }
        }
        out
    }

    /// Records a fetch of `url` that started at `started` (Unix seconds) and schedules the
    /// next one. A fetch `due` handed out counts from its slot; any other (startup, reload,
    /// `systemctl reload`) from its start, so the next comes a whole interval later either way.
    pub fn record(&mut self, url: &str, result: Outcome, hints: Hints, c: &Cadence, started: f64) {
        self.use_cadence(c);
        let state = self.state(url, c, started);
        let base = state
            .fetching
            .unwrap_or_else(|| self.slot_at_or_after(url, started, c));
        // A fetch handed out late (a busy host) is still the fetch of its own slot, but the
        // next one waits for a slot far enough from when it actually started.
        let earliest = self.slot_at_or_after(url, started + MIN_GAP * c.interval, c);
        let failures = match result {
            Outcome::Answered => 0,
            Outcome::Failed => state.failures.saturating_add(1),
        };
        let step = match (result, hints.retry_after) {
            (Outcome::Failed, Some(after)) => c.slots(after as f64),
            (Outcome::Failed, None) => {
                // Doubling in whole intervals, plus up to `retry_jitter` of that again drawn
                // per host, so hosts that failed together do not return together.
                let exp = failures.saturating_sub(1).min(30);
                let doubled = (1i64 << exp).min(c.max_slots());
                let extra = (doubled as f64 * c.jitter * fastrand::f64()).floor() as i64;
                (doubled + extra).min(c.max_slots())
            }
            (Outcome::Answered, _) => hints.max_age.map(|m| c.slots(m as f64)).unwrap_or(1),
        };
        // A fetch that overran its next slots waits for the first slot after its start
        // plus one interval, never fetching twice within one.
        let next = (base + step).max(earliest);
        self.urls.insert(
            url.to_string(),
            UrlState {
                next,
                fetching: None,
                failures,
            },
        );
    }

    /// Moves the slots of `urls` that came while the previous refresh was still running to the
    /// first slot after `now`: a slow origin gets fewer requests, not a burst.
    pub fn skip(&mut self, urls: &[String], c: &Cadence, now: f64) {
        self.use_cadence(c);
        for url in urls {
            let phase = self.phase(url, c);
            if let Some(s) = self.urls.get_mut(url) {
                if s.fetching.is_none() {
                    let after = ((now - phase) / c.interval).floor() as i64 + 1;
                    s.next = s.next.max(after);
                }
            }
        }
    }

    /// The Unix time of the next fetch of `url`, if scheduled.
    pub fn next_fetch(&self, url: &str, c: &Cadence) -> Option<f64> {
        self.urls.get(url).map(|s| self.slot_time(url, s.next, c))
    }
}

/// This host's identity for the splay: the machine id (`/etc/machine-id`, or the file named by
/// `ONEIRIC_MACHINE_ID_PATH`), else the host name; with neither, every host gets the same
/// phase, which the caller reports. Returns the identity and where it came from.
pub fn host_identity(env: &crate::config::Env) -> (String, String) {
    let path = env
        .get("ONEIRIC_MACHINE_ID_PATH")
        .unwrap_or(MACHINE_ID_PATH);
    if let Ok(id) = std::fs::read_to_string(path) {
        let id = id.trim();
        if !id.is_empty() {
            return (id.to_string(), path.to_string());
        }
    }
    if let Some(name) = hostname() {
        return (name, "the host name".to_string());
    }
    (
        String::new(),
        "nothing (no machine id, no host name)".to_string(),
    )
}

/// gethostname(2): the unit's `ProcSubset=pid` hides /proc/sys/kernel/hostname.
fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; the kernel writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// Parses `Cache-Control` for `max-age` / `s-maxage` (the shared-cache one wins, as for a CDN).
/// `no-cache`/`no-store` mean "ask every time": no hint beyond the interval.
pub fn parse_max_age(value: &str) -> Option<u64> {
    let mut max_age = None;
    let mut s_maxage = None;
    for directive in value.split(',') {
        let d = directive.trim();
        let (name, arg) = match d.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (d, None),
        };
        match name.to_ascii_lowercase().as_str() {
            "no-cache" | "no-store" => return None,
            "max-age" => max_age = arg.and_then(|a| a.parse::<u64>().ok()),
            "s-maxage" => s_maxage = arg.and_then(|a| a.parse::<u64>().ok()),
            _ => {}
        }
    }
    s_maxage.or(max_age)
}

/// Parses `Retry-After`: delta-seconds or an HTTP date, as seconds from `now` (Unix).
pub fn parse_retry_after(value: &str, now: i64) -> Option<u64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs);
    }
    let at = time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    Some(at.unix_timestamp().saturating_sub(now).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cadence(interval: f64, splay: f64, max: f64) -> Cadence {
        Cadence {
            interval,
            splay,
            max_interval: max,
            jitter: 0.25,
        }
    }

    fn urls() -> Vec<String> {
        vec!["https://origin.example/m.json".to_string()]
    }

    #[test]
    fn phase_is_stable_per_host_and_spread_across_hosts() {
        let c = cadence(300.0, 0.5, 3000.0);
        let a = Scheduler::new("host-a".into());
        assert_eq!(a.phase(&urls()[0], &c), a.phase(&urls()[0], &c));
        let phases: Vec<f64> = (0..1000)
            .map(|i| Scheduler::new(format!("host-{i}")).phase(&urls()[0], &c))
            .collect();
        assert!(phases.iter().all(|p| (0.0..150.0).contains(p)));
        // Ten buckets of the 150 s window each get roughly a tenth of the hosts.
        for b in 0..10 {
            let n = phases
                .iter()
                .filter(|p| (**p / 15.0).floor() as usize == b)
                .count();
            assert!((50..=150).contains(&n), "bucket {b}: {n}");
        }
        let none = cadence(300.0, 0.0, 3000.0);
        assert_eq!(a.phase(&urls()[0], &none), 0.0);
    }

    #[test]
    fn fetches_once_per_interval_on_the_phase() {
        let c = cadence(10.0, 0.5, 100.0);
        let mut s = Scheduler::new("h".into());
        let phase = s.phase(&urls()[0], &c);
        let start = 1_000_003.3;
        s.record(&urls()[0], Outcome::Answered, Hints::default(), &c, start);
        let mut now = start;
        let mut fetched = vec![start];
        for _ in 0..5 {
            now = s.next_wake(&urls(), &c, now);
            s.woke(now);
            for u in s.due(&urls(), &c, now) {
                fetched.push(now);
                s.record(&u, Outcome::Answered, Hints::default(), &c, now);
            }
        }
        for w in fetched.windows(2) {
            assert!(w[1] - w[0] >= 10.0 - SLOT_TOLERANCE, "{fetched:?}");
        }
        for t in &fetched[1..] {
            assert!(((t - phase) / 10.0 - ((t - phase) / 10.0).round()).abs() < 1e-6);
        }
    }

    #[test]
    fn hints_and_backoff_stay_between_interval_and_maximum() {
        let c = cadence(10.0, 0.0, 100.0);
        let mut s = Scheduler::new("h".into());
        let u = &urls()[0];
        let at = 1_000_000.0;
        let hint = |max_age, retry_after| Hints {
            max_age,
            retry_after,
        };
        s.record(u, Outcome::Answered, hint(Some(35), None), &c, at);
        assert_eq!(s.next_fetch(u, &c), Some(at + 40.0));
        s.record(u, Outcome::Answered, hint(Some(1), None), &c, at);
        assert_eq!(s.next_fetch(u, &c), Some(at + 10.0));
        s.record(u, Outcome::Answered, hint(Some(100_000), None), &c, at);
        assert_eq!(s.next_fetch(u, &c), Some(at + 100.0));
        s.record(u, Outcome::Failed, hint(None, Some(20)), &c, at);
        assert_eq!(s.next_fetch(u, &c), Some(at + 20.0));
        s.record(u, Outcome::Failed, hint(None, Some(0)), &c, at);
        assert_eq!(s.next_fetch(u, &c), Some(at + 10.0));
        // Failures 3, 4, ...: doubling with up to 25 % more, capped at the maximum.
        let mut last = 0.0;
        for _ in 0..6 {
            s.record(u, Outcome::Failed, Hints::default(), &c, at);
            let gap = s.next_fetch(u, &c).unwrap() - at;
            assert!((10.0..=100.0).contains(&gap), "{gap}");
            assert!(gap >= last || gap == 100.0);
            last = gap;
        }
        assert_eq!(last, 100.0);
        s.record(u, Outcome::Answered, Hints::default(), &c, at);
        assert_eq!(s.next_fetch(u, &c), Some(at + 10.0));
    }

    #[test]
    fn a_fetch_started_late_keeps_its_slot() {
        let c = cadence(1.0, 0.5, 3.0);
        let mut s = Scheduler::new("h".into());
        let u = &urls()[0];
        let phase = s.phase(u, &c);
        let start = 1_000_000.0 + phase;
        s.record(u, Outcome::Answered, Hints::default(), &c, start - 5.0);
        let due_at = s.next_fetch(u, &c).unwrap() + 3.0;
        // Woken 30 ms late: the next fetch is on the very next slot (0.97 s later).
        let now = due_at + 0.03;
        assert_eq!(s.due(std::slice::from_ref(u), &c, now).len(), 1);
        s.record(u, Outcome::Answered, Hints::default(), &c, now);
        let next = s.next_fetch(u, &c).unwrap();
        assert!((next - (due_at + 1.0)).abs() < 1e-6, "{next} vs {due_at}");
        // Woken 300 ms late: the very next slot would be 0.7 s later, too soon; the one after.
        let now = next + 0.3;
        assert_eq!(s.due(std::slice::from_ref(u), &c, now).len(), 1);
        s.record(u, Outcome::Answered, Hints::default(), &c, now);
        let after = s.next_fetch(u, &c).unwrap();
        assert!((after - (next + 2.0)).abs() < 1e-6, "{after} vs {next}");
    }

    #[test]
    fn an_out_of_band_fetch_pushes_the_next_slot_a_whole_interval_away() {
        let c = cadence(10.0, 1.0, 100.0);
        let mut s = Scheduler::new("h".into());
        let u = &urls()[0];
        let phase = s.phase(u, &c);
        // Just before a slot: that slot is skipped.
        let at = 1_000_000.0 + phase - 0.5;
        s.record(u, Outcome::Answered, Hints::default(), &c, at);
        let next = s.next_fetch(u, &c).unwrap();
        assert!(next - at >= 10.0 && next - at < 20.0, "{}", next - at);
    }

    #[test]
    fn a_new_cadence_reschedules_from_now() {
        let fast = cadence(1.0, 0.0, 3.0);
        let slow = cadence(3600.0, 0.0, 36000.0);
        let mut s = Scheduler::new("h".into());
        let u = &urls()[0];
        let at = 1_000_000.0;
        s.record(u, Outcome::Answered, Hints::default(), &fast, at);
        assert_eq!(s.next_fetch(u, &fast), Some(at + 1.0));
        // Slot numbers of the 1 s cadence mean nothing at 3600 s: the next fetch is an
        // interval of the new cadence away, not in a distant century.
        let wake = s.next_wake(std::slice::from_ref(u), &slow, at + 0.5);
        assert!(wake > at && wake <= at + 0.5 + 3600.0, "{wake}");
    }

    #[test]
    fn headers_parse() {
        assert_eq!(parse_max_age("public, max-age=600"), Some(600));
        assert_eq!(parse_max_age("max-age=600, s-maxage=60"), Some(60));
        assert_eq!(parse_max_age("no-cache, max-age=600"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
        assert_eq!(parse_retry_after("120", 0), Some(120));
        let now = time::macros::datetime!(2026-01-01 00:00:00 UTC).unix_timestamp();
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now),
            Some(60)
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now),
            Some(0)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
