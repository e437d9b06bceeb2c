//! Login and setup-code throttling, in memory.
//!
//! Failed attempts are counted over a fixed window, three ways:
//!
//! - per **(account, source address)**: the tight bound. Someone guessing from one
//!   device is stopped after a few tries, and only *that* device is: the owner typing
//!   the right passphrase on another device is not locked out by a stranger on the LAN;
//! - per **source address**, across accounts: one device cannot try a few guesses
//!   against each of many names;
//! - per **account**, across sources: a loose bound (NIST's 100) that only many sources
//!   together can reach, so a distributed guesser is still capped.
//!
//! When a count reaches its limit, further attempts it covers are refused (429 with
//! `Retry-After`) until the window that started with the first failure has passed. A
//! successful login clears the account's counts (the account-wide one and every
//! source's count for that account), not the source's own: one right passphrase must
//! not unlock guessing at other accounts from the same address.
//!
//! Time is a parameter (`now: Instant`) so tests control it. State is lost on restart,
//! which is acceptable: a restart costs an attacker far more time than it gains.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How long failures are remembered: 15 minutes.
///
/// The OWASP Authentication Cheat Sheet ("Account Lockout") suggests locking for a
/// period such as 15-30 minutes after a small number of failures rather than forever,
/// so a locked-out owner is not locked out of their own appliance for good.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);

/// Failures for one account from one source address within [`WINDOW`] before that
/// source's attempts on that account are refused.
///
/// OWASP suggests a small number. Five covers honest typos while allowing one device at
/// most 5 × 96 = 480 guesses a day, hopeless against any passphrase meeting the
/// 8-character minimum.
pub const MAX_ACCOUNT_SOURCE_FAILURES: u32 = 5;

/// Failures per source address within [`WINDOW`], across accounts, before its attempts
/// are refused.
///
/// Higher than the per-account limit because a household shares one address behind NAT
/// (several people mistyping), yet still far below NIST's 100, and it stops one address
/// from trying 5 guesses against each of many account names.
pub const MAX_ADDRESS_FAILURES: u32 = 20;

/// Failures per account within [`WINDOW`], across all sources, before every attempt on
/// it is refused.
///
/// NIST SP 800-63B §5.2.2 ("Rate Limiting (Throttling)") requires limiting consecutive
/// failed attempts on one account to no more than 100: this is that ceiling. Since one
/// source is stopped at [`MAX_ADDRESS_FAILURES`] (20), it takes at least five sources
/// failing at once to reach it, so a stranger (or a few) cannot lock the owner out,
/// while many sources together still get no more than 100 guesses per window.
pub const MAX_ACCOUNT_FAILURES: u32 = 100;

/// Entries kept before expired ones are pruned, so unknown account names typed by an
/// attacker cannot grow memory without bound.
const PRUNE_ABOVE: usize = 10_000;

/// What is being counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
    AccountFrom(String, IpAddr),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

/// Failure counters; see the module documentation.
#[derive(Debug, Default)]
pub struct Throttle {
    counters: HashMap<Key, Window>,
}

impl Throttle {
    /// Whether an attempt for `account` from `address` may proceed now; `Err` carries
    /// how long to wait. `account` is the name as typed; it is normalised here.
    pub fn check(&self, account: &str, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let name = normalise(account);
        let waits = [
            self.wait(
                &Key::AccountFrom(name.clone(), address),
                MAX_ACCOUNT_SOURCE_FAILURES,
                now,
            ),
            self.wait(&Key::Address(address), MAX_ADDRESS_FAILURES, now),
            self.wait(&Key::Account(name), MAX_ACCOUNT_FAILURES, now),
        ];
        match waits.into_iter().flatten().max() {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Whether an attempt that has no account (the setup code) may proceed from
    /// `address`.
    pub fn check_address(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.wait(&Key::Address(address), MAX_ADDRESS_FAILURES, now) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// Counts a failed login.
    pub fn record_failure(&mut self, account: &str, address: IpAddr, now: Instant) {
        let name = normalise(account);
        self.bump(Key::AccountFrom(name.clone(), address), now);
        self.bump(Key::Account(name), now);
        self.bump(Key::Address(address), now);
    }

    /// Counts a failed attempt with no account (a wrong setup code).
    pub fn record_address_failure(&mut self, address: IpAddr, now: Instant) {
        self.bump(Key::Address(address), now);
    }

    /// A successful login: forgets the account's failures, account-wide and from every
    /// source (each source keeps its own count across accounts).
    pub fn record_success(&mut self, account: &str) {
        let name = normalise(account);
        self.counters.retain(|key, _| match key {
            Key::Account(n) | Key::AccountFrom(n, _) => *n != name,
            Key::Address(_) => true,
        });
    }

    fn wait(&self, key: &Key, limit: u32, now: Instant) -> Option<Duration> {
        let window = self.counters.get(key)?;
        let ends = window.started + WINDOW;
        (window.failures >= limit && now < ends).then(|| ends - now)
    }

    fn bump(&mut self, key: Key, now: Instant) {
        if self.counters.len() >= PRUNE_ABOVE {
            self.counters.retain(|_, w| now < w.started + WINDOW);
        }
        let window = self.counters.entry(key).or_insert(Window {
            started: now,
            failures: 0,
        });
        if now >= window.started + WINDOW {
            *window = Window {
                started: now,
                failures: 0,
            };
        }
        window.failures = window.failures.saturating_add(1);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.counters.len()
    }
}

/// Names are case-insensitive (see `cv_db::UserName`), so `Alice` and `alice` share a
/// counter; overlong input is cut so a key stays small.
fn normalise(account: &str) -> String {
    account.trim().to_lowercase().chars().take(64).collect()
}

/// "14 min" or "40 s": how long to wait, for the 429 page.
pub fn describe_wait(wait: Duration) -> String {
    let secs = wait.as_secs().max(1);
    if secs < 60 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, last])
    }

    #[test]
    fn a_source_is_throttled_on_an_account_after_five_failures_until_the_window_ends() {
        let mut t = Throttle::default();
        let start = Instant::now();
        for i in 0..MAX_ACCOUNT_SOURCE_FAILURES {
            assert!(t.check("alice", ip(1), start).is_ok(), "attempt {i}");
            t.record_failure("alice", ip(1), start);
        }
        let wait = t.check("alice", ip(1), start).unwrap_err();
        assert_eq!(wait, WINDOW);
        // Names are case-insensitive.
        assert!(t.check("ALICE", ip(1), start).is_err());
        // Another source (the owner's own phone) is not locked out by this one.
        assert!(
            t.check("Alice", ip(2), start + Duration::from_secs(60))
                .is_ok()
        );
        // Another account from the first address is still allowed.
        assert!(t.check("bob", ip(1), start).is_ok());
        // After the window, the source may try again.
        assert!(t.check("alice", ip(1), start + WINDOW).is_ok());
    }

    #[test]
    fn a_few_strangers_cannot_lock_the_owner_out() {
        let mut t = Throttle::default();
        let now = Instant::now();
        // Four sources guess until each is stopped by its own limits.
        for source in 10..14 {
            for _ in 0..MAX_ADDRESS_FAILURES {
                if t.check("alice", ip(source), now).is_ok() {
                    t.record_failure("alice", ip(source), now);
                }
            }
            assert!(t.check("alice", ip(source), now).is_err());
        }
        assert!(t.check("alice", ip(1), now).is_ok(), "the owner's device");
    }

    #[test]
    fn many_sources_together_hit_the_account_wide_bound() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for i in 0..MAX_ACCOUNT_FAILURES {
            // A new source for every few guesses: no per-source limit is reached.
            let source = IpAddr::from([10, 0, 0, (i / 4) as u8]);
            assert!(t.check("alice", source, now).is_ok(), "guess {i}");
            t.record_failure("alice", source, now);
        }
        let wait = t.check("alice", ip(1), now + Duration::from_secs(1));
        assert_eq!(wait, Err(WINDOW - Duration::from_secs(1)));
        assert!(t.check("bob", ip(1), now).is_ok(), "other accounts are not");
        assert!(t.check("alice", ip(1), now + WINDOW).is_ok());
    }

    #[test]
    fn failures_outside_the_window_start_a_new_one() {
        let mut t = Throttle::default();
        let start = Instant::now();
        for _ in 0..MAX_ACCOUNT_SOURCE_FAILURES - 1 {
            t.record_failure("alice", ip(1), start);
        }
        let later = start + WINDOW + Duration::from_secs(1);
        t.record_failure("alice", ip(1), later);
        assert!(t.check("alice", ip(1), later).is_ok());
    }

    #[test]
    fn an_address_is_throttled_after_twenty_failures_across_accounts() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for i in 0..MAX_ADDRESS_FAILURES {
            t.record_failure(&format!("user{i}"), ip(9), now);
        }
        assert!(t.check("someone-new", ip(9), now).is_err());
        assert!(t.check("someone-new", ip(10), now).is_ok());
        assert!(t.check_address(ip(9), now).is_err());
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for _ in 0..MAX_ACCOUNT_SOURCE_FAILURES {
            t.record_failure("alice", ip(1), now);
        }
        t.record_success("ALICE");
        assert!(t.check("alice", ip(1), now).is_ok());
        assert_eq!(t.len(), 1, "only the address's count is left");
        for i in 0..MAX_ADDRESS_FAILURES {
            t.record_address_failure(ip(1), now + Duration::from_secs(u64::from(i)));
        }
        t.record_success("alice");
        assert!(t.check("alice", ip(1), now).is_err());
    }

    #[test]
    fn setup_code_failures_count_per_address() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for _ in 0..MAX_ADDRESS_FAILURES {
            assert!(t.check_address(ip(3), now).is_ok());
            t.record_address_failure(ip(3), now);
        }
        let wait = t
            .check_address(ip(3), now + Duration::from_secs(300))
            .unwrap_err();
        assert_eq!(wait, WINDOW - Duration::from_secs(300));
    }

    #[test]
    fn expired_entries_are_pruned_when_the_map_is_large() {
        let mut t = Throttle::default();
        let now = Instant::now();
        for i in 0..PRUNE_ABOVE {
            t.record_address_failure(IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]), now);
        }
        assert_eq!(t.len(), PRUNE_ABOVE);
        t.record_address_failure(ip(1), now + WINDOW);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn waits_are_described_for_people() {
        assert_eq!(describe_wait(Duration::from_secs(0)), "1 s");
        assert_eq!(describe_wait(Duration::from_secs(40)), "40 s");
        assert_eq!(describe_wait(Duration::from_secs(61)), "2 min");
        assert_eq!(describe_wait(WINDOW), "15 min");
    }
}
