use jiff::Zoned;
use jiff::civil::{Date, date};
use jiff::tz::{TimeZone, TimeZoneDatabase};

use super::parse_due;

/// A capture time in UTC.
fn utc(y: i16, m: i8, d: i8, h: i8, min: i8) -> Zoned {
    date(y, m, d)
        .at(h, min, 0, 0)
        .to_zoned(TimeZone::UTC)
        .unwrap()
}

/// A capture time in a named zone, from the tzdb inside the test binary.
fn zoned(zone: &str, y: i16, m: i8, d: i8, h: i8, min: i8) -> Zoned {
    let tz = TimeZoneDatabase::bundled().get(zone).unwrap();
    date(y, m, d).at(h, min, 0, 0).to_zoned(tz).unwrap()
}

fn due(phrase: &str, now: &Zoned) -> Option<Date> {
    parse_due(phrase, now).map(|(d, _)| d)
}

/// Checks every `(phrase, expected date)` and reports all mismatches at once.
fn check(now: &Zoned, cases: &[(&str, Option<Date>)]) {
    let wrong: Vec<String> = cases
        .iter()
        .filter_map(|(phrase, want)| {
            let got = due(phrase, now);
            (got != *want).then(|| format!("{phrase:?}: got {got:?}, want {want:?}"))
        })
        .collect();
    assert!(wrong.is_empty(), "captured {now}:\n{}", wrong.join("\n"));
}

#[test]
fn a_wednesday_evening() {
    // Wednesday, March 4th 2026.
    let now = utc(2026, 3, 4, 18, 0);
    check(
        &now,
        &[
            ("today", Some(date(2026, 3, 4))),
            ("tonight", Some(date(2026, 3, 4))),
            ("later today", Some(date(2026, 3, 4))),
            ("this evening", Some(date(2026, 3, 4))),
            ("by end of day", Some(date(2026, 3, 4))),
            ("tomorrow", Some(date(2026, 3, 5))),
            ("tomorrow morning", Some(date(2026, 3, 5))),
            ("day after tomorrow", Some(date(2026, 3, 6))),
            ("the day after tomorrow", Some(date(2026, 3, 6))),
            ("Friday", Some(date(2026, 3, 6))),
            ("on Friday", Some(date(2026, 3, 6))),
            ("by Friday", Some(date(2026, 3, 6))),
            ("this Friday", Some(date(2026, 3, 6))),
            ("next Friday", Some(date(2026, 3, 13))),
            ("Wednesday", Some(date(2026, 3, 11))),
            ("this Wednesday", Some(date(2026, 3, 4))),
            ("next Wednesday", Some(date(2026, 3, 11))),
            ("Monday", Some(date(2026, 3, 9))),
            ("next Monday", Some(date(2026, 3, 9))),
            ("on fri", Some(date(2026, 3, 6))),
            ("next tues", Some(date(2026, 3, 10))),
            ("this weekend", Some(date(2026, 3, 7))),
            ("over the weekend", Some(date(2026, 3, 7))),
            ("next weekend", Some(date(2026, 3, 14))),
            ("next week", Some(date(2026, 3, 9))),
            ("end of the week", Some(date(2026, 3, 6))),
            ("end of week", Some(date(2026, 3, 6))),
            ("by the end of this week", Some(date(2026, 3, 6))),
            ("end of next week", Some(date(2026, 3, 13))),
            ("end of the month", Some(date(2026, 3, 31))),
            ("end of month", Some(date(2026, 3, 31))),
            ("end of next month", Some(date(2026, 4, 30))),
            ("next month", Some(date(2026, 4, 1))),
            ("end of the year", Some(date(2026, 12, 31))),
            ("by Dec 3", Some(date(2026, 12, 3))),
            ("Dec. 3", Some(date(2026, 12, 3))),
            ("on December 3rd", Some(date(2026, 12, 3))),
            ("3 Dec", Some(date(2026, 12, 3))),
            ("the 3rd of December", Some(date(2026, 12, 3))),
            ("Dec 3 2027", Some(date(2027, 12, 3))),
            ("December 3rd, 2027", Some(date(2027, 12, 3))),
            ("3 December 2027", Some(date(2027, 12, 3))),
            ("2027-12-03", Some(date(2027, 12, 3))),
            ("March 4", Some(date(2026, 3, 4))),
            ("March 1", Some(date(2027, 3, 1))),
            ("in two weeks", Some(date(2026, 3, 18))),
            ("in 2 weeks time", Some(date(2026, 3, 18))),
            ("within 2 weeks", Some(date(2026, 3, 18))),
            ("in 3 days", Some(date(2026, 3, 7))),
            ("in three days", Some(date(2026, 3, 7))),
            ("in twelve days", Some(date(2026, 3, 16))),
            ("in a couple of days", Some(date(2026, 3, 6))),
            ("in a week", Some(date(2026, 3, 11))),
            ("in a fortnight", Some(date(2026, 3, 18))),
            ("in a month", Some(date(2026, 4, 4))),
            ("in a year", Some(date(2027, 3, 4))),
            ("in an hour", Some(date(2026, 3, 4))),
            ("in 30 minutes", Some(date(2026, 3, 4))),
            ("in 6 hours", Some(date(2026, 3, 5))),
            ("a week from now", Some(date(2026, 3, 11))),
            ("two days from today", Some(date(2026, 3, 6))),
        ],
    );
}

#[test]
fn phrases_that_are_no_due_date() {
    let now = utc(2026, 3, 4, 18, 0);
    check(
        &now,
        &[
            // Ambiguous numeric dates are left alone (day-month or month-day?).
            ("12/3", None),
            ("on 3.12.", None),
            // Dates that do not exist.
            ("Feb 30", None),
            ("February 30th 2027", None),
            ("2027-02-30", None),
            ("April 31", None),
            ("Dec 32", None),
            // The past, and repetitions.
            ("last Friday", None),
            ("this past Sunday", None),
            ("every Monday", None),
            ("on Mondays", None),
            // Words that only look like dates.
            ("I may go", None),
            ("march on", None),
            ("I sat down in the sun", None),
            ("in 5000 days", None),
            ("in a few days", None),
            ("two weeks ago", None),
            ("the weekday", None),
            ("", None),
        ],
    );
}

#[test]
fn the_phrase_range_covers_preposition_and_time_of_day() {
    let now = utc(2026, 3, 4, 18, 0);
    let text = "send it by Friday";
    let (d, r) = parse_due(text, &now).unwrap();
    assert_eq!((d, &text[r.clone()]), (date(2026, 3, 6), "by Friday"));
    assert_eq!(r, 8..17);
    for (text, phrase) in [
        ("call Anna tomorrow at 5pm please", "tomorrow at 5pm"),
        ("call Anna tomorrow at 5 pm", "tomorrow at 5 pm"),
        ("meet on Dec 3 at 17:30.", "on Dec 3 at 17:30"),
        ("dinner Friday evening", "Friday evening"),
        (
            "pay rent due by the end of the month",
            "due by the end of the month",
        ),
        ("report due Friday", "due Friday"),
    ] {
        let (_, r) = parse_due(text, &now).unwrap();
        assert_eq!(&text[r], phrase, "{text}");
    }
}

#[test]
fn a_deadline_is_preferred_to_an_earlier_plain_date() {
    let now = utc(2026, 3, 4, 18, 0);
    let text = "On Monday I need to finish the report by Friday";
    let (d, r) = parse_due(text, &now).unwrap();
    assert_eq!(d, date(2026, 3, 6));
    assert_eq!(&text[r], "by Friday");
    let (d, _) = parse_due("Tomorrow, and then Friday", &now).unwrap();
    assert_eq!(d, date(2026, 3, 5));
}

#[test]
fn a_friday_evening() {
    // Friday, March 6th 2026, 21:30: "Friday" is a week away, "this Friday" is today.
    let now = utc(2026, 3, 6, 21, 30);
    check(
        &now,
        &[
            ("tonight", Some(date(2026, 3, 6))),
            ("tomorrow", Some(date(2026, 3, 7))),
            ("Friday", Some(date(2026, 3, 13))),
            ("this Friday", Some(date(2026, 3, 6))),
            ("next Friday", Some(date(2026, 3, 13))),
            ("Saturday", Some(date(2026, 3, 7))),
            ("next Saturday", Some(date(2026, 3, 14))),
            ("Monday", Some(date(2026, 3, 9))),
            ("next Monday", Some(date(2026, 3, 9))),
            ("this weekend", Some(date(2026, 3, 7))),
            ("next weekend", Some(date(2026, 3, 14))),
            ("next week", Some(date(2026, 3, 9))),
            ("end of the week", Some(date(2026, 3, 6))),
            ("in 3 hours", Some(date(2026, 3, 7))),
            ("in an hour", Some(date(2026, 3, 6))),
        ],
    );
}

#[test]
fn a_sunday() {
    // Sunday, March 8th 2026: the weekend is today; next week starts tomorrow.
    let now = utc(2026, 3, 8, 11, 0);
    check(
        &now,
        &[
            ("this weekend", Some(date(2026, 3, 8))),
            ("next weekend", Some(date(2026, 3, 14))),
            ("next week", Some(date(2026, 3, 9))),
            ("Sunday", Some(date(2026, 3, 15))),
            ("this Sunday", Some(date(2026, 3, 8))),
            ("next Sunday", Some(date(2026, 3, 15))),
            ("end of the week", Some(date(2026, 3, 13))),
        ],
    );
}

#[test]
fn the_end_of_a_month() {
    // Saturday, January 31st 2026: a month later is the last day of February.
    let now = utc(2026, 1, 31, 10, 0);
    check(
        &now,
        &[
            ("tomorrow", Some(date(2026, 2, 1))),
            ("in a month", Some(date(2026, 2, 28))),
            ("in 2 months", Some(date(2026, 3, 31))),
            ("end of the month", Some(date(2026, 1, 31))),
            ("end of next month", Some(date(2026, 2, 28))),
            ("next month", Some(date(2026, 2, 1))),
            ("this weekend", Some(date(2026, 1, 31))),
        ],
    );
}

#[test]
fn new_years_eve_rolls_into_the_next_year() {
    // Thursday, December 31st 2026, late.
    let now = utc(2026, 12, 31, 23, 30);
    check(
        &now,
        &[
            ("tomorrow", Some(date(2027, 1, 1))),
            ("in an hour", Some(date(2027, 1, 1))),
            ("Jan 5", Some(date(2027, 1, 5))),
            ("Dec 31", Some(date(2026, 12, 31))),
            ("Dec 30", Some(date(2027, 12, 30))),
            ("next week", Some(date(2027, 1, 4))),
            ("next month", Some(date(2027, 1, 1))),
            ("end of the year", Some(date(2026, 12, 31))),
            ("Friday", Some(date(2027, 1, 1))),
            ("in 2 weeks", Some(date(2027, 1, 14))),
        ],
    );
}

#[test]
fn february_29th_is_the_next_one_that_exists_within_a_year() {
    check(
        &utc(2027, 2, 27, 9, 0),
        &[("Feb 29", Some(date(2028, 2, 29)))],
    );
    // 2026 has none and neither has 2027: no date rather than one years away.
    check(&utc(2026, 3, 4, 9, 0), &[("Feb 29", None)]);
    check(
        &utc(2027, 3, 1, 9, 0),
        &[("Feb 29", Some(date(2028, 2, 29)))],
    );
}

#[test]
fn dst_spring_forward_in_berlin() {
    // Sunday, March 29th 2026: Berlin skips 02:00–03:00, so the day has 23 hours.
    let now = zoned("Europe/Berlin", 2026, 3, 29, 0, 30);
    check(
        &now,
        &[
            ("today", Some(date(2026, 3, 29))),
            ("tomorrow", Some(date(2026, 3, 30))),
            // 00:30 CET + 23 real hours is 00:30 CEST the next day.
            ("in 23 hours", Some(date(2026, 3, 30))),
            ("in 22 hours", Some(date(2026, 3, 29))),
            ("next week", Some(date(2026, 3, 30))),
            ("this weekend", Some(date(2026, 3, 29))),
        ],
    );
    let late = zoned("Europe/Berlin", 2026, 3, 29, 23, 30);
    check(
        &late,
        &[
            ("in an hour", Some(date(2026, 3, 30))),
            ("tomorrow", Some(date(2026, 3, 30))),
        ],
    );
}

#[test]
fn dst_fall_back_in_new_york() {
    // Sunday, November 1st 2026: New York repeats 01:00–02:00, so the day has 25 hours.
    let now = zoned("America/New_York", 2026, 11, 1, 0, 30);
    check(
        &now,
        &[
            ("in 24 hours", Some(date(2026, 11, 1))),
            ("in 25 hours", Some(date(2026, 11, 2))),
            ("tomorrow", Some(date(2026, 11, 2))),
            ("Friday", Some(date(2026, 11, 6))),
        ],
    );
}

#[test]
fn the_capture_time_zone_decides_what_today_is() {
    // The same instant: still Friday evening in New York, already Saturday in Berlin.
    let ny = zoned("America/New_York", 2026, 3, 6, 20, 0);
    let berlin = ny.with_time_zone(TimeZoneDatabase::bundled().get("Europe/Berlin").unwrap());
    assert_eq!(due("tomorrow", &ny), Some(date(2026, 3, 7)));
    assert_eq!(due("tomorrow", &berlin), Some(date(2026, 3, 8)));
}

#[test]
fn the_end_of_the_calendar_is_no_panic() {
    let now = utc(9999, 12, 30, 12, 0);
    for phrase in [
        "tomorrow",
        "day after tomorrow",
        "next week",
        "next month",
        "in 999 years",
        "in 999 months",
        "in 12 hours",
        "Jan 3",
        "end of next month",
        "next weekend",
        "Friday",
    ] {
        // Whatever the answer, there is one, and no panic.
        let _ = due(phrase, &now);
    }
    assert_eq!(due("in 999 years", &now), None);
    let early = utc(-9998, 1, 2, 0, 0);
    assert_eq!(due("today", &early), Some(date(-9998, 1, 2)));
}
