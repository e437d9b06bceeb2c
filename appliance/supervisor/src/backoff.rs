//! Restart delays for crashed children.

use std::time::Duration;

/// The first delay after a crash.
pub const INITIAL: Duration = Duration::from_secs(1);
/// The longest delay: a component that keeps dying is retried twice a minute, so it comes
/// back on its own once the cause (a full disk, say) is fixed.
pub const MAX: Duration = Duration::from_secs(30);
/// A child that ran this long before dying is considered to have been healthy: the next
/// restart is immediate-ish again rather than still backed off.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Exponential backoff, doubling from [`INITIAL`] to [`MAX`]. Pure: callers report how
/// long the child ran, so tests need no clock.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: INITIAL }
    }
}

impl Backoff {
    /// The delay before the next start, given how long the last run lasted.
    pub fn after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= HEALTHY_RUN {
            self.next = INITIAL;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets_after_a_healthy_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(10);
        let delays: Vec<u64> = (0..7).map(|_| b.after_run(quick).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.after_run(HEALTHY_RUN), INITIAL);
        assert_eq!(b.after_run(quick), Duration::from_secs(2));
    }
}
