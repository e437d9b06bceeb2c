//! The appliance's time zone: the one every page shows times and dates in.
//!
//! Times are stored and sent to machines (the JSON API) in UTC; only what a person reads
//! is in the appliance's zone. The owner picks the zone at setup and changes it on
//! `/settings`; it is stored in the database (`cv_db::settings`). Until one is chosen,
//! the box's own zone is used (`/etc/timezone`, else the target of `/etc/localtime`),
//! else UTC.
//!
//! Zone names are looked up in the copy of the IANA tz database compiled into the binary
//! (jiff's `tzdb-bundle-always`), never in `/usr/share/zoneinfo`: a read-only appliance
//! image without it works, and every box accepts the same names.

use std::sync::{Mutex, OnceLock, PoisonError};

use jiff::tz::{TimeZone, TimeZoneDatabase};

use crate::error::WebError;

/// The bundled tz database (see the module docs).
fn db() -> &'static TimeZoneDatabase {
    static DB: OnceLock<TimeZoneDatabase> = OnceLock::new();
    DB.get_or_init(TimeZoneDatabase::bundled)
}

/// The zone called `name` (an IANA name such as "Europe/Berlin", in any letter case), or
/// a 400 that says what is expected.
pub(crate) fn parse(name: &str) -> Result<TimeZone, WebError> {
    let name = name.trim();
    // The longest IANA name is 32 bytes ("America/Argentina/ComodRivadavia"); anything
    // much longer is not one, and is not echoed back in full.
    if name.len() > MAX_NAME_BYTES {
        return Err(unknown("(too long)"));
    }
    // Only what the database lists; its lookup never touches the file system, and
    // accepts the database's own aliases ("US/Eastern"), which is fine.
    if name.is_empty() {
        return Err(unknown(name));
    }
    db().get(name).map_err(|_| unknown(name))
}

/// Longer than any IANA zone name with room to spare (see [`parse`]).
const MAX_NAME_BYTES: usize = 64;

fn unknown(name: &str) -> WebError {
    WebError::InvalidInput(format!(
        "Unknown time zone {name:?}: pick one from the list, such as Europe/Berlin, \
         America/New_York or UTC."
    ))
}

/// The zone's IANA name ("Europe/Berlin"; "UTC").
pub(crate) fn name(tz: &TimeZone) -> &str {
    tz.iana_name().unwrap_or("UTC")
}

/// Every zone name the database knows, sorted: the choices of the setup and settings
/// forms.
pub(crate) fn names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<String> = db()
            .available()
            .map(|n| n.as_str().to_owned())
            // "posix/…", "right/…" and the like are copies under other names.
            .filter(|n| !n.contains('/') || n.starts_with(char::is_uppercase))
            .collect();
        names.sort();
        names.dedup();
        names
    })
}

/// The box's own zone, for when the owner has not chosen one: `/etc/timezone` (Debian
/// writes the IANA name there), else the zone `/etc/localtime` links to, else UTC.
pub(crate) fn system_default() -> TimeZone {
    from_files(
        std::fs::read_to_string("/etc/timezone").ok().as_deref(),
        std::fs::read_link("/etc/localtime").ok().as_deref(),
    )
}

fn from_files(etc_timezone: Option<&str>, localtime_link: Option<&std::path::Path>) -> TimeZone {
    if let Some(tz) = etc_timezone.and_then(|text| parse(text).ok()) {
        return tz;
    }
    // "/usr/share/zoneinfo/Europe/Berlin" (or "../usr/share/zoneinfo/…"): the name is
    // what follows "zoneinfo/".
    let linked = localtime_link
        .and_then(|p| p.to_str())
        .and_then(|p| p.split_once("zoneinfo/"))
        .and_then(|(_, name)| parse(name).ok());
    linked.unwrap_or(TimeZone::UTC)
}

/// The zone in force, read from the database once and kept; changed through
/// [`ZoneCache::set`] (this process is the only one that changes it).
#[derive(Default)]
pub(crate) struct ZoneCache(Mutex<Option<TimeZone>>);

impl ZoneCache {
    fn slot(&self) -> std::sync::MutexGuard<'_, Option<TimeZone>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached zone, if it has been read.
    pub fn cached(&self) -> Option<TimeZone> {
        self.slot().clone()
    }

    pub fn set(&self, tz: TimeZone) {
        *self.slot() = Some(tz);
    }
}

/// `at` as a point on jiff's time line.
pub(crate) fn timestamp(at: time::OffsetDateTime) -> jiff::Timestamp {
    jiff::Timestamp::from_nanosecond(at.unix_timestamp_nanos())
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// `at` in the zone `tz`.
pub(crate) fn zoned(at: time::OffsetDateTime, tz: &TimeZone) -> jiff::Zoned {
    timestamp(at).to_zoned(tz.clone())
}

/// The date at `at` in the zone `tz`.
pub(crate) fn date_in(at: time::OffsetDateTime, tz: &TimeZone) -> time::Date {
    let d = zoned(at, tz).date();
    // jiff's civil dates are always valid calendar dates, as are time's.
    time::Month::try_from(u8::try_from(d.month()).unwrap_or(1))
        .ok()
        .and_then(|m| {
            time::Date::from_calendar_date(i32::from(d.year()), m, u8::try_from(d.day()).ok()?).ok()
        })
        .unwrap_or_else(|| at.date())
}

/// `at`, the same instant, with the offset `tz` has then: its `date()` is the day in
/// that zone.
pub(crate) fn in_zone(at: time::OffsetDateTime, tz: &TimeZone) -> time::OffsetDateTime {
    let seconds = tz.to_offset(timestamp(at)).seconds();
    time::UtcOffset::from_whole_seconds(seconds).map_or(at, |offset| at.to_offset(offset))
}

/// Today in the zone `tz`.
pub(crate) fn today(tz: &TimeZone) -> time::Date {
    date_in(time::OffsetDateTime::now_utc(), tz)
}

/// The first instant of `day` in the zone `tz` (midnight, or the first moment after a
/// daylight saving gap that skips it).
pub(crate) fn start_of_day(day: time::Date, tz: &TimeZone) -> time::OffsetDateTime {
    let utc_midnight = day.midnight().assume_utc();
    let start = i8::try_from(u8::from(day.month()))
        .ok()
        .and_then(|m| {
            jiff::civil::Date::new(
                i16::try_from(day.year()).ok()?,
                m,
                i8::try_from(day.day()).ok()?,
            )
            .ok()
        })
        .and_then(|d| d.to_zoned(tz.clone()).ok()?.start_of_day().ok());
    start
        .and_then(|z| {
            time::OffsetDateTime::from_unix_timestamp_nanos(z.timestamp().as_nanosecond()).ok()
        })
        .unwrap_or(utc_midnight)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn names_are_checked_against_the_bundled_database() {
        assert_eq!(name(&parse("Europe/Berlin").unwrap()), "Europe/Berlin");
        assert_eq!(
            name(&parse(" america/new_york ").unwrap()),
            "America/New_York"
        );
        assert_eq!(name(&parse("UTC").unwrap()), "UTC");
        let long = "Europe/".repeat(20);
        for bad in [
            "",
            "Mars/Olympus_Mons",
            "../../etc/passwd",
            "Europe/Berlin\n/x",
            &long,
        ] {
            let e = parse(bad).unwrap_err();
            assert!(matches!(e, WebError::InvalidInput(_)), "{bad:?}: {e:?}");
            assert!(e.to_string().contains("Unknown time zone"), "{e}");
            assert!(!e.to_string().contains(&long), "echoed in full: {e}");
        }
    }

    #[test]
    fn the_choices_hold_the_usual_zones() {
        let names = names();
        for zone in ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "UTC"] {
            assert!(names.iter().any(|n| n == zone), "{zone} missing");
        }
        assert!(
            names.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        assert!(!names.iter().any(|n| n.starts_with("posix/")));
    }

    #[test]
    fn days_begin_and_end_in_the_zone() {
        use time::macros::{date, datetime};
        let tokyo = parse("Asia/Tokyo").unwrap();
        // 2026-03-14 20:00 UTC is already the 15th in Tokyo (UTC+9).
        assert_eq!(
            date_in(datetime!(2026-03-14 20:00 UTC), &tokyo),
            date!(2026 - 03 - 15)
        );
        let there = in_zone(datetime!(2026-03-14 20:00 UTC), &tokyo);
        assert_eq!(there, datetime!(2026-03-14 20:00 UTC), "the same instant");
        assert_eq!(there.date(), date!(2026 - 03 - 15));
        assert_eq!(
            start_of_day(date!(2026 - 03 - 15), &tokyo),
            datetime!(2026-03-14 15:00 UTC)
        );
        assert_eq!(
            start_of_day(date!(2026 - 03 - 15), &TimeZone::UTC),
            datetime!(2026-03-15 00:00 UTC)
        );
    }

    #[test]
    fn the_default_comes_from_the_box() {
        let berlin = from_files(Some("Europe/Berlin\n"), None);
        assert_eq!(name(&berlin), "Europe/Berlin");
        let linked = from_files(
            Some("nonsense"),
            Some(Path::new("../usr/share/zoneinfo/Asia/Tokyo")),
        );
        assert_eq!(name(&linked), "Asia/Tokyo");
        assert_eq!(name(&from_files(None, None)), "UTC");
    }
}
