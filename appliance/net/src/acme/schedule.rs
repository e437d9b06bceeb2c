//! When to renew, and how long to wait after a failure. Pure functions of the
//! certificate's dates, the CA's renewal window and the clock, so tests need no CA.

use std::time::Duration;

use time::OffsetDateTime;

/// The first retry after a failed attempt: soon enough that a passing network problem
/// costs a minute, not a day.
pub const RETRY_FIRST: Duration = Duration::from_secs(60);

/// The longest wait between retries. Let's Encrypt allows 5 failed validations per
/// account, host name and hour (<https://letsencrypt.org/docs/rate-limits/>); doubling
/// from a minute reaches that pace after a few tries, and six hours still leaves about
/// a hundred attempts within the last third of a 90-day certificate.
pub const RETRY_MAX: Duration = Duration::from_secs(6 * 60 * 60);

/// A renewal window the CA suggested through ACME Renewal Information (RFC 9773).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalWindow {
    /// Renew no earlier than this…
    pub start: OffsetDateTime,
    /// …and before this.
    pub end: OffsetDateTime,
}

/// When a certificate valid from `not_before` to `not_after` should be renewed.
///
/// Without a window from the CA: when a third of its lifetime remains (30 days of a
/// 90-day certificate, what Let's Encrypt recommends:
/// <https://letsencrypt.org/docs/integration-guide/#when-to-renew>). With one: a
/// point inside it, `fraction` (0 to 1, drawn at random by the caller) of the way in,
/// as RFC 9773 §4.2 asks, so that many clients do not all renew at the window's start.
/// A window that ends before it starts is ignored.
pub fn renewal_time(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    window: Option<RenewalWindow>,
    fraction: f64,
) -> OffsetDateTime {
    if let Some(window) = window
        && window.end > window.start
    {
        let fraction = if fraction.is_finite() {
            fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        return window.start + (window.end - window.start) * fraction;
    }
    let lifetime = (not_after - not_before).max(time::Duration::ZERO);
    not_after - lifetime / 3
}

/// How long to wait after `failures` attempts in a row failed (1 or more): one minute,
/// doubling each time, at most [`RETRY_MAX`].
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(20);
    RETRY_FIRST.saturating_mul(1u32 << doublings).min(RETRY_MAX)
}

/// How long from `now` until `at` (zero when `at` has passed), for a sleep.
pub fn until(now: OffsetDateTime, at: OffsetDateTime) -> Duration {
    let delta = at - now;
    if delta.is_negative() {
        Duration::ZERO
    } else {
        delta.unsigned_abs()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn without_a_window_a_third_of_the_lifetime_remains() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = datetime!(2026-04-01 0:00 UTC); // 90 days
        assert_eq!(
            renewal_time(nb, na, None, 0.5),
            datetime!(2026-03-02 0:00 UTC)
        );
        // A six-day certificate renews with two days left.
        let na = datetime!(2026-01-07 0:00 UTC);
        assert_eq!(
            renewal_time(nb, na, None, 0.5),
            datetime!(2026-01-05 0:00 UTC)
        );
        // Nonsense dates renew at once rather than never.
        assert_eq!(renewal_time(na, nb, None, 0.5), nb);
    }

    #[test]
    fn a_window_from_the_ca_wins_and_is_honoured_inside() {
        let nb = datetime!(2026-01-01 0:00 UTC);
        let na = datetime!(2026-04-01 0:00 UTC);
        let window = RenewalWindow {
            start: datetime!(2026-01-10 0:00 UTC),
            end: datetime!(2026-01-12 0:00 UTC),
        };
        assert_eq!(renewal_time(nb, na, Some(window), 0.0), window.start);
        assert_eq!(
            renewal_time(nb, na, Some(window), 0.5),
            datetime!(2026-01-11 0:00 UTC)
        );
        assert_eq!(renewal_time(nb, na, Some(window), 1.0), window.end);
        assert_eq!(renewal_time(nb, na, Some(window), 7.0), window.end);
        assert_eq!(renewal_time(nb, na, Some(window), f64::NAN), window.start);
        let backwards = RenewalWindow {
            start: window.end,
            end: window.start,
        };
        assert_eq!(
            renewal_time(nb, na, Some(backwards), 0.5),
            datetime!(2026-03-02 0:00 UTC)
        );
    }

    #[test]
    fn retries_double_from_a_minute_to_six_hours() {
        let minutes = |n| retry_delay(n).as_secs() / 60;
        assert_eq!(minutes(0), 1);
        assert_eq!(minutes(1), 1);
        assert_eq!(minutes(2), 2);
        assert_eq!(minutes(3), 4);
        assert_eq!(minutes(9), 256);
        assert_eq!(minutes(10), 360);
        assert_eq!(minutes(u32::MAX), 360);
    }

    #[test]
    fn until_never_goes_negative() {
        let now = datetime!(2026-01-01 0:00 UTC);
        assert_eq!(until(now, now - time::Duration::hours(1)), Duration::ZERO);
        assert_eq!(
            until(now, now + time::Duration::seconds(90)),
            Duration::from_secs(90)
        );
    }
}
