//! Snapshot ids: `20261207T150000Z-hourly.daily`, the UTC second it was taken and why.

use jiff::Timestamp;

use super::SnapshotError;

/// Why a snapshot was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Hourly,
    Daily,
    Weekly,
    Monthly,
    /// Asked for by a person (`snapshot create`, the dashboard).
    Manual,
    /// Just before an update is installed.
    Update,
    /// Just before database migrations are applied.
    Migration,
    /// Just before a restore, so that the restore can be undone.
    Restore,
}

impl Kind {
    pub const SCHEDULED: [Kind; 4] = [Kind::Hourly, Kind::Daily, Kind::Weekly, Kind::Monthly];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hourly => "hourly",
            Kind::Daily => "daily",
            Kind::Weekly => "weekly",
            Kind::Monthly => "monthly",
            Kind::Manual => "manual",
            Kind::Update => "update",
            Kind::Migration => "migration",
            Kind::Restore => "restore",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [
            Kind::Hourly,
            Kind::Daily,
            Kind::Weekly,
            Kind::Monthly,
            Kind::Manual,
            Kind::Update,
            Kind::Migration,
            Kind::Restore,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }

    pub fn is_scheduled(self) -> bool {
        Kind::SCHEDULED.contains(&self)
    }
}

/// A snapshot's name, the same on every backend (a ZFS snapshot name, a btrfs
/// subvolume's directory name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId {
    name: String,
    at: Timestamp,
    kinds: Vec<Kind>,
}

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

impl SnapshotId {
    /// The id for a snapshot taken at `at` (to the second) for `kinds` (not empty).
    pub fn new(at: Timestamp, kinds: &[Kind]) -> SnapshotId {
        let mut kinds = kinds.to_vec();
        kinds.sort();
        kinds.dedup();
        let at = Timestamp::from_second(at.as_second()).unwrap_or(at);
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let name = format!("{}-{}", at.strftime(TIME_FORMAT), names.join("."));
        SnapshotId { name, at, kinds }
    }

    pub fn parse(s: &str) -> Result<SnapshotId, SnapshotError> {
        let bad = || SnapshotError::BadId(s.chars().take(80).collect());
        let (time, kinds) = s.split_once('-').ok_or_else(bad)?;
        let at = jiff::fmt::strtime::parse(TIME_FORMAT, time)
            .and_then(|t| t.to_datetime())
            .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC))
            .map_err(|_| bad())?
            .timestamp();
        let kinds: Vec<Kind> = kinds
            .split('.')
            .map(Kind::parse)
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let id = SnapshotId::new(at, &kinds);
        if kinds.is_empty() || id.name != s {
            return Err(bad());
        }
        Ok(id)
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }

    pub fn at(&self) -> Timestamp {
        self.at
    }

    pub fn kinds(&self) -> &[Kind] {
        &self.kinds
    }

    pub fn has(&self, kind: Kind) -> bool {
        self.kinds.contains(&kind)
    }
}

impl std::fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_sort_by_time() {
        let at: Timestamp = "2026-12-07T15:00:00.75Z".parse().unwrap();
        let id = SnapshotId::new(at, &[Kind::Daily, Kind::Hourly, Kind::Daily]);
        assert_eq!(id.as_str(), "20261207T150000Z-hourly.daily");
        assert_eq!(SnapshotId::parse(id.as_str()).unwrap(), id);
        let later = SnapshotId::new("2026-12-07T16:00:00Z".parse().unwrap(), &[Kind::Manual]);
        assert!(id < later);
    }

    #[test]
    fn other_names_are_not_ids() {
        for bad in [
            "",
            "manual",
            "20261207T150000Z",
            "20261207T150000Z-",
            "20261207T150000Z-yearly",
            "20261307T150000Z-hourly",
            "20261207T150000Z-daily.hourly",
            "pre-update-0.1.1",
            "../20261207T150000Z-hourly",
        ] {
            assert!(SnapshotId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
