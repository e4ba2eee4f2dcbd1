//! The pause an accept loop takes after a failed `accept`. Errors such as `EMFILE` (no file
//! descriptor left) or `ENOBUFS` repeat on the very next call while the listener stays
//! readable, so a loop that retries at once spins a core at 100 % and starves the
//! connections it could still serve; nginx stops accepting for a while in the same case.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(10);
const MAX: Duration = Duration::from_secs(1);

/// One per accept loop, owned by it.
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// Failures since the last successful accept.
    failures: u32,
}

impl AcceptBackoff {
    /// How long to wait after the `failures`-th failure in a row: 10 ms, doubling, at most 1 s.
    pub fn delay(failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(16);
        FIRST.saturating_mul(1 << shift).min(MAX)
    }

    /// What an accept loop does with each result: the accepted value, or `None` after the
    /// pause a failure takes.
    pub async fn check<T>(&mut self, listener: &str, accepted: std::io::Result<T>) -> Option<T> {
        match accepted {
            Ok(v) => {
                self.succeeded(listener);
                Some(v)
            }
            Err(e) => {
                self.failed(listener, &e).await;
                None
            }
        }
    }

    /// After a failed accept on `listener`: says so (the first failure of a run, and every
    /// hundredth), then sleeps.
    async fn failed(&mut self, listener: &str, e: &std::io::Error) {
        self.failures = self.failures.saturating_add(1);
        if self.failures == 1 || self.failures % 100 == 0 {
            tracing::warn!(
                oneiric_event = "accept_failed",
                "{listener}: accept failed ({e}); pausing accepts (failure {} in a row)",
                self.failures
            );
        }
        tokio::time::sleep(Self::delay(self.failures)).await;
    }

    fn succeeded(&mut self, listener: &str) {
        if self.failures > 0 {
            tracing::info!(
                oneiric_event = "accept_recovered",
                "{listener}: accepting again after {} failed accepts",
                self.failures
            );
            self.failures = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_from_ten_milliseconds_to_one_second() {
        let ms: Vec<u128> = (1..=9)
            .map(|n| AcceptBackoff::delay(n).as_millis())
            .collect();
        assert_eq!(ms, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        assert_eq!(AcceptBackoff::delay(u32::MAX), MAX);
    }
}
