//! Numbers for people: durations, byte counts, dates.

use jiff::tz::TimeZone;
use time::OffsetDateTime;

/// "45 s", "12 min", "3 h 12 min", "2 d 4 h": the two largest units, no more.
pub(crate) fn human_duration(duration: time::Duration) -> String {
    let secs = duration.whole_seconds().max(0);
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    if days > 0 {
        format!("{days} d {hours} h")
    } else if hours > 0 {
        format!("{hours} h {mins} min")
    } else if mins > 0 {
        format!("{mins} min")
    } else {
        format!("{secs} s")
    }
}

/// Binary units, one decimal above KiB: "512 B", "1.5 KiB", "931.3 GiB".
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // f64 is exact enough for display: 53 bits cover 8 PiB exactly.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The share of `part` in `whole`, rounded down, in percent (0 when `whole` is 0).
pub(crate) fn percent(part: u64, whole: u64) -> u64 {
    if whole == 0 {
        return 0;
    }
    let p = u128::from(part) * 100 / u128::from(whole);
    u64::try_from(p.min(100)).unwrap_or(100)
}

/// "2026-03-14": the date in the appliance's zone `tz` (see `crate::zone`).
pub(crate) fn date(at: OffsetDateTime, tz: &TimeZone) -> String {
    crate::zone::zoned(at, tz).strftime("%Y-%m-%d").to_string()
}

/// "2026-03-14 15:04 CET": the date and time in the appliance's zone `tz`, with the
/// zone's abbreviation (or its offset, "+0530", where the zone has none), so that a
/// reader abroad knows which clock it is.
pub(crate) fn date_time(at: OffsetDateTime, tz: &TimeZone) -> String {
    crate::zone::zoned(at, tz)
        .strftime("%Y-%m-%d %H:%M %Z")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    #[test]
    fn durations_show_the_two_largest_units() {
        assert_eq!(human_duration(Duration::seconds(-5)), "0 s");
        assert_eq!(human_duration(Duration::seconds(45)), "45 s");
        assert_eq!(human_duration(Duration::seconds(12 * 60 + 59)), "12 min");
        assert_eq!(human_duration(Duration::minutes(3 * 60 + 12)), "3 h 12 min");
        assert_eq!(human_duration(Duration::hours(52)), "2 d 4 h");
    }

    #[test]
    fn bytes_use_binary_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(5 * 1024 * 1024), "5.0 MiB");
        assert_eq!(human_bytes(1_000_000_000_000), "931.3 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn percentages_never_divide_by_zero() {
        assert_eq!(percent(1, 0), 0);
        assert_eq!(percent(1, 3), 33);
        assert_eq!(percent(u64::MAX, u64::MAX), 100);
    }

    #[test]
    fn dates_and_times_are_in_the_appliances_zone() {
        let utc = TimeZone::UTC;
        let berlin = crate::zone::parse("Europe/Berlin").unwrap();
        let new_york = crate::zone::parse("America/New_York").unwrap();
        let kolkata = crate::zone::parse("Asia/Kolkata").unwrap();
        let at = datetime!(2026-03-14 23:30 -02:00); // 2026-03-15 01:30 UTC
        assert_eq!(date(at, &utc), "2026-03-15");
        assert_eq!(date(at, &new_york), "2026-03-14");
        assert_eq!(date_time(at, &utc), "2026-03-15 01:30 UTC");
        assert_eq!(date_time(at, &berlin), "2026-03-15 02:30 CET");
        // Summer time, and a zone whose abbreviation is its offset.
        let july = datetime!(2026-07-01 12:00 UTC);
        assert_eq!(date_time(july, &berlin), "2026-07-01 14:00 CEST");
        assert_eq!(date_time(july, &new_york), "2026-07-01 08:00 EDT");
        assert_eq!(date_time(july, &kolkata), "2026-07-01 17:30 IST");
    }
}
