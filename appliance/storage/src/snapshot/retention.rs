//! Which scheduled snapshots are due, and which snapshots have expired.
//!
//! The schedule follows sanoid's: hourly, daily, weekly and monthly snapshots, each kept
//! by count. The defaults are sanoid's `production` template (36 hourly, 30 daily, 3
//! monthly) with 4 weekly added. A class is due when it has no snapshot yet in the
//! current hour, day, ISO week or month (UTC); the classes due at the same moment share
//! one snapshot (`…-hourly.daily`). A snapshot stays while any of its classes still
//! counts it among its newest N. The others (manual, before an update, a migration or a
//! restore) stay for [`Retention::other_days`] days.

use jiff::Timestamp;
use jiff::civil::Date;

use super::{Kind, SnapshotId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
    /// How long manual, update, migration and restore snapshots are kept.
    pub other_days: u32,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            hourly: 36,
            daily: 30,
            weekly: 4,
            monthly: 3,
            other_days: 30,
        }
    }
}

impl Retention {
    pub fn keep(&self, kind: Kind) -> u32 {
        match kind {
            Kind::Hourly => self.hourly,
            Kind::Daily => self.daily,
            Kind::Weekly => self.weekly,
            Kind::Monthly => self.monthly,
            Kind::Manual | Kind::Update | Kind::Migration | Kind::Restore => 0,
        }
    }

    /// The scheduled classes due at `now`, given the snapshots there are.
    pub fn due(&self, now: Timestamp, existing: &[SnapshotId]) -> Vec<Kind> {
        Kind::SCHEDULED
            .into_iter()
            .filter(|&kind| self.keep(kind) > 0)
            .filter(|&kind| {
                let current = period(kind, now);
                existing
                    .iter()
                    .filter(|id| id.has(kind))
                    .all(|id| period(kind, id.at()) < current)
            })
            .collect()
    }

    /// The snapshots to destroy at `now`.
    pub fn expired(&self, now: Timestamp, existing: &[SnapshotId]) -> Vec<SnapshotId> {
        let mut newest_first: Vec<&SnapshotId> = existing.iter().collect();
        newest_first.sort_by(|a, b| b.cmp(a));
        let mut kept: Vec<&SnapshotId> = Vec::new();
        for kind in Kind::SCHEDULED {
            let n = usize::try_from(self.keep(kind)).unwrap_or(usize::MAX);
            kept.extend(newest_first.iter().filter(|id| id.has(kind)).take(n));
        }
        let max_age = jiff::SignedDuration::from_hours(24 * i64::from(self.other_days));
        newest_first
            .into_iter()
            .filter(|id| !kept.contains(id))
            .filter(|id| {
                let other = id.kinds().iter().any(|k| !k.is_scheduled());
                !other || now.duration_since(id.at()) >= max_age
            })
            .cloned()
            .collect()
    }
}

/// A number that grows by one each hour, day, ISO week or month.
fn period(kind: Kind, at: Timestamp) -> i64 {
    let date: Date = at.to_zoned(jiff::tz::TimeZone::UTC).date();
    let days = i64::from(
        date.since(Date::constant(1970, 1, 5))
            .map_or(0, |s| s.get_days()),
    );
    match kind {
        Kind::Hourly => at.as_second().div_euclid(3600),
        Kind::Daily => days,
        // 1970-01-05 was a Monday: weeks run Monday to Sunday, as ISO weeks do.
        Kind::Weekly => days.div_euclid(7),
        Kind::Monthly => i64::from(date.year()) * 12 + i64::from(date.month()),
        _ => at.as_second(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_fresh_box_takes_every_class_in_one_snapshot() {
        let r = Retention::default();
        assert_eq!(
            r.due(at("2026-12-07T15:20:00Z"), &[]),
            Kind::SCHEDULED.to_vec()
        );
    }

    #[test]
    fn a_class_is_due_once_per_period() {
        let r = Retention::default();
        let taken = SnapshotId::new(at("2026-12-07T15:00:00Z"), &Kind::SCHEDULED);
        let existing = [taken];
        assert!(r.due(at("2026-12-07T15:59:59Z"), &existing).is_empty());
        assert_eq!(
            r.due(at("2026-12-07T16:00:00Z"), &existing),
            vec![Kind::Hourly]
        );
        assert_eq!(
            r.due(at("2026-12-08T00:00:00Z"), &existing),
            vec![Kind::Hourly, Kind::Daily]
        );
        // 2026-12-14 is a Monday.
        assert_eq!(
            r.due(at("2026-12-14T00:00:00Z"), &existing),
            vec![Kind::Hourly, Kind::Daily, Kind::Weekly]
        );
        assert_eq!(r.due(at("2027-01-01T00:00:00Z"), &existing).len(), 4);
    }

    #[test]
    fn a_class_kept_at_zero_is_never_taken() {
        let r = Retention {
            weekly: 0,
            ..Retention::default()
        };
        assert!(
            !r.due(at("2026-12-07T15:00:00Z"), &[])
                .contains(&Kind::Weekly)
        );
    }

    #[test]
    fn other_snapshots_expire_by_age_and_scheduled_ones_by_count() {
        let r = Retention {
            hourly: 2,
            daily: 0,
            weekly: 0,
            monthly: 0,
            other_days: 30,
        };
        let h = |s: &str| SnapshotId::new(at(s), &[Kind::Hourly]);
        let manual_old = SnapshotId::new(at("2026-11-01T00:00:00Z"), &[Kind::Manual]);
        let manual_new = SnapshotId::new(at("2026-12-01T00:00:00Z"), &[Kind::Update]);
        let existing = vec![
            h("2026-12-07T12:00:00Z"),
            h("2026-12-07T13:00:00Z"),
            h("2026-12-07T14:00:00Z"),
            manual_old.clone(),
            manual_new,
        ];
        let expired = r.expired(at("2026-12-07T14:30:00Z"), &existing);
        assert_eq!(expired, vec![h("2026-12-07T12:00:00Z"), manual_old]);
    }
}
