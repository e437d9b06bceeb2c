//! Due dates: English date phrases read relative to the moment of capture.
//!
//! The phrases, and the date each one means, are listed in the crate documentation
//! ("Due dates"). A phrase is matched on whole words (see [`crate::text::words`]), so
//! "Monday" in "Mondays" or "may" in "I may go" is never a date. Every computation is
//! checked: a date that does not exist (February 30) or lies outside the calendar's range
//! is no date at all, never a panic.

use std::ops::Range;

use jiff::Span;
use jiff::Zoned;
use jiff::civil::{Date, Weekday};

use crate::text::{self, Word};

/// The largest number accepted in "in N days" (and weeks, months…): beyond it the phrase is
/// not a due date anyone writes, and the arithmetic stays far from the calendar's end.
const MAX_AMOUNT: i64 = 999;

/// A date phrase found in a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DueMatch {
    pub date: Date,
    /// Bytes of the phrase, its preposition ("by", "on", "due"…) included.
    pub range: Range<usize>,
    /// Indices of its first and one-past-last words.
    pub words: Range<usize>,
    /// Introduced by "by", "before" or "due": a deadline rather than a plain date.
    pub deadline: bool,
}

/// Finds the due date in `phrase_text`, read relative to `now` (in `now`'s time zone), and
/// the byte range of the phrase that gave it, its preposition included.
///
/// When the text holds several date phrases, the first one introduced by "by", "before"
/// or "due" wins, and otherwise the first one: the same choice [`crate::suggest_tasks`]
/// makes for a sentence.
///
/// ```
/// use jiff::civil::date;
/// let now = date(2026, 3, 4).at(18, 0, 0, 0).in_tz("UTC").unwrap(); // a Wednesday
/// let (due, range) = cv_suggest::parse_due("send it by Friday", &now).unwrap();
/// assert_eq!(due, date(2026, 3, 6));
/// assert_eq!(range, 8..17);
/// ```
pub fn parse_due(phrase_text: &str, now: &Zoned) -> Option<(Date, Range<usize>)> {
    let words = text::words(phrase_text, 0..phrase_text.len());
    let found = find(&words, now);
    pick(&found).map(|m| (m.date, m.range.clone()))
}

/// The phrase whose date a task gets: the first deadline, else the first date.
pub(crate) fn pick(found: &[DueMatch]) -> Option<&DueMatch> {
    found.iter().find(|m| m.deadline).or_else(|| found.first())
}

/// Every date phrase in `words`, left to right, none overlapping.
pub(crate) fn find(words: &[Word], now: &Zoned) -> Vec<DueMatch> {
    let reader = Reader {
        words,
        now,
        today: now.date(),
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        match reader.phrase_at(i) {
            Some(m) => {
                i = m.words.end;
                out.push(m);
            }
            None => i += 1,
        }
    }
    out
}

/// What a phrase says about the day it names, before it is turned into a date.
struct Reader<'a> {
    words: &'a [Word],
    now: &'a Zoned,
    today: Date,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    Minutes,
    Hours,
    Days,
    Weeks,
    Months,
    Years,
}

impl Reader<'_> {
    /// The lowercased word at `i`, or "" past the end.
    fn at(&self, i: usize) -> &str {
        self.words.get(i).map_or("", |w| w.lower.as_str())
    }

    /// A phrase starting at word `i`, with or without a preposition.
    fn phrase_at(&self, i: usize) -> Option<DueMatch> {
        let (skip, deadline) = match self.at(i) {
            "by" | "before" => (1, true),
            "due" if matches!(self.at(i + 1), "by" | "on" | "before") => (2, true),
            "due" => (1, true),
            "on" | "until" | "till" | "over" | "for" => (1, false),
            _ => (0, false),
        };
        if skip > 0
            && let Some((date, end)) = self.core(i + skip, true)
        {
            return Some(self.matched(i, end, date, deadline));
        }
        // "last Friday", "every Monday", "this past Sunday": not a day to come.
        if i > 0
            && matches!(
                self.at(i - 1),
                "last" | "every" | "each" | "past" | "previous"
            )
        {
            return None;
        }
        let (date, end) = self.core(i, false)?;
        Some(self.matched(i, end, date, false))
    }

    fn matched(&self, start: usize, end: usize, date: Date, deadline: bool) -> DueMatch {
        let end = self.time_of_day(end);
        DueMatch {
            date,
            range: self.words[start].start..self.words[end - 1].end,
            words: start..end,
            deadline,
        }
    }

    /// Extends a phrase over a time of day that follows it ("tomorrow morning", "Friday at
    /// 5pm", "on Dec 3 at 17:30"): part of the phrase, no change to the date.
    fn time_of_day(&self, end: usize) -> usize {
        if matches!(self.at(end), "morning" | "afternoon" | "evening" | "night") {
            return end + 1;
        }
        if self.at(end) == "at" && is_clock_time(self.at(end + 1)) {
            if matches!(self.at(end + 2), "am" | "pm") {
                return end + 3;
            }
            return end + 2;
        }
        end
    }

    /// The date phrase proper at word `j`: `Some((date, one past its last word))`.
    fn core(&self, j: usize, prepped: bool) -> Option<(Date, usize)> {
        let w0 = self.at(j);
        match w0 {
            "today" | "tonight" | "tonite" | "eod" => return Some((self.today, j + 1)),
            "tomorrow" | "tmrw" | "tmr" | "tomorow" => return Some((self.days(1)?, j + 1)),
            "eow" => return Some((self.end_of_week()?, j + 1)),
            "eom" => return Some((self.today.last_of_month(), j + 1)),
            "later" if self.at(j + 1) == "today" => return Some((self.today, j + 2)),
            "this" if matches!(self.at(j + 1), "morning" | "afternoon" | "evening") => {
                return Some((self.today, j + 2));
            }
            _ => {}
        }
        // An optional "the": "the day after tomorrow", "the end of the month", "the
        // weekend", "the 3rd of December".
        let k = if w0 == "the" { j + 1 } else { j };
        if self.at(k) == "day" && self.at(k + 1) == "after" && self.at(k + 2) == "tomorrow" {
            return Some((self.days(2)?, k + 3));
        }
        if self.at(k) == "end" && self.at(k + 1) == "of" {
            return self.end_of(k + 2);
        }
        if self.at(k) == "weekend" {
            return Some((self.this_weekend()?, k + 1));
        }
        if w0 == "this" {
            if let Some(day) = weekday(self.at(j + 1), true) {
                return Some((self.days(self.ahead(day, true))?, j + 2));
            }
            if self.at(j + 1) == "weekend" {
                return Some((self.this_weekend()?, j + 2));
            }
        }
        if w0 == "next" {
            let monday = self.next_monday()?;
            if let Some(day) = weekday(self.at(j + 1), true) {
                return Some((
                    add_days(monday, i64::from(day.to_monday_zero_offset()))?,
                    j + 2,
                ));
            }
            match self.at(j + 1) {
                "week" => return Some((monday, j + 2)),
                "weekend" => return Some((add_days(monday, 5)?, j + 2)),
                "month" => {
                    let first = self.today.first_of_month();
                    return Some((first.checked_add(Span::new().months(1)).ok()?, j + 2));
                }
                _ => {}
            }
        }
        if let Some(day) = weekday(w0, prepped) {
            return Some((self.days(self.ahead(day, false))?, j + 1));
        }
        if let Some(found) = self.month_day(j).or_else(|| self.day_month(k)) {
            return Some(found);
        }
        if let Some(date) = iso_date(w0) {
            return Some((date, j + 1));
        }
        if matches!(w0, "in" | "within")
            && let Some((amount, unit, end)) = self.amount_unit(j + 1)
        {
            let end = if self.at(end) == "time" { end + 1 } else { end };
            return Some((self.after(amount, unit)?, end));
        }
        if let Some((amount, unit, end)) = self.amount_unit(j)
            && self.at(end) == "from"
            && matches!(self.at(end + 1), "now" | "today")
        {
            return Some((self.after(amount, unit)?, end + 2));
        }
        None
    }

    /// "end of [the|this|next] day|week|month|year", from after "of".
    fn end_of(&self, mut m: usize) -> Option<(Date, usize)> {
        if matches!(self.at(m), "the" | "this") {
            m += 1;
        }
        let next = self.at(m) == "next";
        if next {
            m += 1;
        }
        let date = match (self.at(m), next) {
            ("day", false) => self.today,
            ("week", false) => self.end_of_week()?,
            ("week", true) => add_days(self.next_monday()?, 4)?,
            ("month", false) => self.today.last_of_month(),
            ("month", true) => self
                .today
                .first_of_month()
                .checked_add(Span::new().months(1))
                .ok()?
                .last_of_month(),
            ("year", false) => Date::new(self.today.year(), 12, 31).ok()?,
            _ => return None,
        };
        Some((date, m + 1))
    }

    /// "Dec 3", "December 3rd", "Dec 3 2027", "Dec. 3, 2027".
    fn month_day(&self, j: usize) -> Option<(Date, usize)> {
        let month = month(self.at(j))?;
        let day = day_of_month(self.at(j + 1))?;
        self.calendar_date(month, day, j + 2)
    }

    /// "3 Dec", "3rd of December", "the 3rd of December 2027".
    fn day_month(&self, k: usize) -> Option<(Date, usize)> {
        let day = day_of_month(self.at(k))?;
        let m = if self.at(k + 1) == "of" { k + 2 } else { k + 1 };
        let month = month(self.at(m))?;
        self.calendar_date(month, day, m + 1)
    }

    /// A month and day, with the year that may follow at `y`: without one, the next time
    /// that month and day come (today included), this year or next.
    fn calendar_date(&self, month: i8, day: i8, y: usize) -> Option<(Date, usize)> {
        let year = self.at(y);
        if year.len() == 4
            && year.bytes().all(|b| b.is_ascii_digit())
            && let Ok(year) = year.parse::<i16>()
        {
            return Some((Date::new(year, month, day).ok()?, y + 1));
        }
        let this_year = self.today.year();
        let date = Date::new(this_year, month, day)
            .ok()
            .filter(|d| *d >= self.today)
            .or_else(|| Date::new(this_year.checked_add(1)?, month, day).ok())?;
        Some((date, y))
    }

    /// "3 days", "two weeks", "a month", "an hour", "a couple of days", from word `i`.
    fn amount_unit(&self, i: usize) -> Option<(i64, Unit, usize)> {
        let (amount, u) = match self.at(i) {
            "a" | "an" if self.at(i + 1) == "couple" && self.at(i + 2) == "of" => (2, i + 3),
            "couple" if self.at(i + 1) == "of" => (2, i + 2),
            "a" | "an" => (1, i + 1),
            w => (amount(w)?, i + 1),
        };
        let (amount, unit) = match self.at(u) {
            "minute" | "minutes" | "min" | "mins" => (amount, Unit::Minutes),
            "hour" | "hours" | "hr" | "hrs" => (amount, Unit::Hours),
            "day" | "days" => (amount, Unit::Days),
            "week" | "weeks" | "wk" | "wks" => (amount, Unit::Weeks),
            "fortnight" | "fortnights" => (amount.checked_mul(2)?, Unit::Weeks),
            "month" | "months" => (amount, Unit::Months),
            "year" | "years" | "yr" | "yrs" => (amount, Unit::Years),
            _ => return None,
        };
        Some((amount, unit, u + 1))
    }

    /// The day `amount` `unit`s after the capture. Minutes and hours are added to the
    /// instant in its time zone (so "in an hour" at 23:30 is tomorrow, and a DST change is
    /// counted in real hours); days, weeks, months and years to the calendar date (a month
    /// after January 31 is the last day of February).
    fn after(&self, amount: i64, unit: Unit) -> Option<Date> {
        let span = Span::new();
        let date = match unit {
            Unit::Minutes => self
                .now
                .checked_add(span.try_minutes(amount).ok()?)
                .ok()?
                .date(),
            Unit::Hours => self
                .now
                .checked_add(span.try_hours(amount).ok()?)
                .ok()?
                .date(),
            Unit::Days => add_days(self.today, amount)?,
            Unit::Weeks => self.today.checked_add(span.try_weeks(amount).ok()?).ok()?,
            Unit::Months => self.today.checked_add(span.try_months(amount).ok()?).ok()?,
            Unit::Years => self.today.checked_add(span.try_years(amount).ok()?).ok()?,
        };
        Some(date)
    }

    fn days(&self, n: i64) -> Option<Date> {
        add_days(self.today, n)
    }

    /// Days from today to the next `day`: 1 to 7 (a plain "Friday" said on a Friday is a
    /// week later), or 0 to 6 with `today_counts` ("this Friday" said on a Friday is today).
    fn ahead(&self, day: Weekday, today_counts: bool) -> i64 {
        let diff = i64::from(day.to_monday_zero_offset())
            - i64::from(self.today.weekday().to_monday_zero_offset());
        let diff = diff.rem_euclid(7);
        if diff == 0 && !today_counts { 7 } else { diff }
    }

    /// The Monday of next week (weeks start on Monday): 1 to 7 days ahead.
    fn next_monday(&self) -> Option<Date> {
        self.days(7 - i64::from(self.today.weekday().to_monday_zero_offset()))
    }

    /// "End of the week": the Friday on or after today.
    fn end_of_week(&self) -> Option<Date> {
        self.days(self.ahead(Weekday::Friday, true))
    }

    /// "This weekend": today when it is Saturday or Sunday, else the coming Saturday.
    fn this_weekend(&self) -> Option<Date> {
        match self.today.weekday() {
            Weekday::Saturday | Weekday::Sunday => Some(self.today),
            _ => self.days(self.ahead(Weekday::Saturday, false)),
        }
    }
}

fn add_days(date: Date, n: i64) -> Option<Date> {
    date.checked_add(Span::new().try_days(n).ok()?).ok()
}

/// A weekday's name; the short forms ("fri", "tues") only where a preposition or
/// "this"/"next" shows that a day is meant (`sure`), since "sat", "sun" and "wed" are also
/// ordinary words.
fn weekday(w: &str, sure: bool) -> Option<Weekday> {
    let day = match w {
        "monday" => Weekday::Monday,
        "tuesday" => Weekday::Tuesday,
        "wednesday" => Weekday::Wednesday,
        "thursday" => Weekday::Thursday,
        "friday" => Weekday::Friday,
        "saturday" => Weekday::Saturday,
        "sunday" => Weekday::Sunday,
        _ if !sure => return None,
        "mon" => Weekday::Monday,
        "tue" | "tues" => Weekday::Tuesday,
        "wed" | "weds" => Weekday::Wednesday,
        "thu" | "thur" | "thurs" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    };
    Some(day)
}

/// A month's name or its usual abbreviation, as a number 1 to 12. (Only ever read next to
/// a day of the month, so "may" and "march" as verbs are left alone.)
fn month(w: &str) -> Option<i8> {
    let m = match w {
        "january" | "jan" => 1,
        "february" | "feb" => 2,
        "march" | "mar" => 3,
        "april" | "apr" => 4,
        "may" => 5,
        "june" | "jun" => 6,
        "july" | "jul" => 7,
        "august" | "aug" => 8,
        "september" | "sep" | "sept" => 9,
        "october" | "oct" => 10,
        "november" | "nov" => 11,
        "december" | "dec" => 12,
        _ => return None,
    };
    Some(m)
}

/// "3", "03", "3rd", "21st": 1 to 31.
fn day_of_month(w: &str) -> Option<i8> {
    let digits = w
        .strip_suffix("st")
        .or_else(|| w.strip_suffix("nd"))
        .or_else(|| w.strip_suffix("rd"))
        .or_else(|| w.strip_suffix("th"))
        .unwrap_or(w);
    if digits.is_empty() || digits.len() > 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let day = digits.parse::<i8>().ok()?;
    (1..=31).contains(&day).then_some(day)
}

/// "3", "12", "one" to "twelve": the amount in "in N days".
fn amount(w: &str) -> Option<i64> {
    const WORDS: [&str; 12] = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ];
    if let Some(n) = WORDS.iter().position(|n| *n == w) {
        return i64::try_from(n + 1).ok();
    }
    if w.is_empty() || w.len() > 3 || !w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    w.parse::<i64>().ok().filter(|n| *n <= MAX_AMOUNT)
}

/// "2027-12-03": the one all-numeric form that is never ambiguous. ("12/3" and "3.12."
/// are left alone: day-month or month-day depends on the writer's country.)
fn iso_date(w: &str) -> Option<Date> {
    let b = w.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let year = w.get(0..4)?.parse::<i16>().ok()?;
    let month = w.get(5..7)?.parse::<i8>().ok()?;
    let day = w.get(8..10)?.parse::<i8>().ok()?;
    Date::new(year, month, day).ok()
}

/// "5", "17:30", "5pm", "5:30am", "noon", "midnight".
fn is_clock_time(w: &str) -> bool {
    if matches!(w, "noon" | "midnight") {
        return true;
    }
    let w = w
        .strip_suffix("am")
        .or_else(|| w.strip_suffix("pm"))
        .unwrap_or(w);
    let (hour, minute) = w.split_once(':').unwrap_or((w, "00"));
    let two_digits =
        |s: &str, max: u8| !s.is_empty() && s.len() <= 2 && s.parse::<u8>().is_ok_and(|n| n <= max);
    two_digits(hour, 24) && minute.len() == 2 && two_digits(minute, 59)
}

#[cfg(test)]
#[path = "due_tests.rs"]
mod tests;
