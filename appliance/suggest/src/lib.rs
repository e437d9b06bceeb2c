//! Suggestions with a confidence and the evidence behind it: tasks (with due dates) found
//! in captured text, and tags for an item from the person's own tags.
//!
//! Everything here is a plain, rule-based function of its input: no I/O, no database, no
//! model, no clock (the capture time is a parameter), no logging. Each suggestion says
//! which rule made it, how its confidence was reached, and which bytes of the text were
//! the reason, so that a page can highlight them and the person can judge. A rule is
//! meant to be read and argued with; the word lists in `task.rs` and `due.rs` are the
//! rules' whole vocabulary.
//!
//! `Debug` never shows text, titles or tag names (only their sizes), so that a
//! suggestion logged by mistake leaks nothing.
//!
//! # Tasks: [`suggest_tasks`]
//!
//! The text is cut into sentences: at line breaks (a line of 60 or more characters that
//! does not end a sentence continues on the next, as wrapped prose does), and within a
//! line at `.`, `!`, `?` and `…` followed by a space (not after "Dr.", "e.g.", "Dec." or
//! an initial, nor before a lowercase letter or a digit). A line's bullet (`-`, `*`, `+`,
//! `•`), number (`1.`, `2)`) or heading mark (`#`) is set aside; a line with an open
//! checkbox (`[ ]`, `[]`, `☐`) is one task whatever its punctuation; a ticked one (`[x]`,
//! `☑`, `✅`) is done and a quoted line (`> …`) is someone else's, and both give nothing.
//! A sentence longer than 500 bytes is prose and is skipped.
//!
//! Leading fillers ("please", "also", "oh", "so", "maybe"…), "note to self" and a leading
//! date ("Tomorrow: call Anna") are skipped; then the first rule that holds makes the
//! sentence a task:
//!
//! | rule | recognises | base |
//! |---|---|---|
//! | [`TaskRule::Checkbox`] | an open checkbox | 0.9 |
//! | [`TaskRule::TodoMarker`] | `todo:`, `to do -`, `task:`, `action item:`, `TODO` (capitals need no colon) | 0.9 |
//! | [`TaskRule::Reminder`] | "remember to", "don't forget (to)", "remind me to", "make sure to", "be sure to", `reminder:` | 0.85 |
//! | [`TaskRule::Obligation`] | "(I/we) need to", "have to", "must", "gotta"; "I've got to", "I'd better", "I'll have to" | 0.8 |
//! | [`TaskRule::Imperative`] | a verb from the task-verb list first ("call", "buy", "send", "book", "renew"… 124 of them) | 0.65 |
//! | [`TaskRule::Advice`] | "I/we should", "ought to", followed by a task verb | 0.55 |
//! | [`TaskRule::Intention`] | "I'll", "I will", "I'm going to", followed by a task verb | 0.5 |
//! | [`TaskRule::Deadline`] | nothing above, but "by"/"before"/"due" and a date: "tax return due April 15" | 0.5 |
//!
//! A reminder or a cue with a subject ("I need to", "I should") also counts at the start
//! of a later clause: "The sink leaks, I need to call the plumber" (after `,` `;` `:` `—`
//! or "so", "and", "but", "then"). A checkbox or a to-do marker still strips a cue after
//! it ("[ ] I need to renew the permit" → "Renew the permit").
//!
//! What is *not* a task, unless a checkbox or a to-do marker says it is:
//!
//! - questions (ending in `?`) and quotations (starting with a quote mark);
//! - the past and regrets: no rule matches "I called mom", and "I should have called",
//!   "we must have missed it" (a modal, "have", a past participle) are refused; "Read the
//!   book yesterday" (a verb spelt the same in the past, and "yesterday", "ago",
//!   "already", "last week"…) too;
//! - negations: "Don't call him", "I don't need to", "I must not";
//! - figures of speech: "I have to admit", "I must say", "I have to go.", "Take care!",
//!   "Get well soon";
//! - a first word that is a noun: "Book club was fun", "Call center was chaos", "Plan B
//!   failed" (the word after it, or a "was"/"were" in the same clause, gives it away);
//! - feelings, descriptions and plain notes, which match no rule at all;
//! - a deadline in a statement about someone or the past: "Anna will be back by Friday",
//!   "It's due Friday", "The package arrived by Friday".
//!
//! The rules are English. Other languages give tasks only through checkboxes and to-do
//! markers.
//!
//! **Title**: the sentence from its first word (after fillers, a leading date and the
//! cue) to its end, without a due phrase that ends it ("…by Friday"), without trailing
//! punctuation, whitespace collapsed, the first letter upper-cased. A date phrase inside
//! the sentence stays ("Call Anna tomorrow about the invoice").
//!
//! **Confidence**: the rule's base, plus +0.1 with a due date, +0.05 for a list item
//! (without a checkbox), −0.15 when the sentence hedges ("maybe", "perhaps", "probably",
//! "might", "someday"…), −0.1 beyond 25 words; clamped to 0..=0.95 (no rule is sure).
//! Each change is listed in [`TaskEvidence::adjustments`], so the number can be
//! recomputed from the evidence.
//!
//! **Evidence**: the sentence's byte range, the cue words (checkbox, marker, "I need
//! to", the imperative's verb, the deadline's "by") with their ranges, and the due
//! phrase's range. Ranges are byte offsets into the given text, always on `char`
//! boundaries.
//!
//! # Due dates: [`parse_due`]
//!
//! Read relative to the capture time, in its time zone (so "today" is the person's
//! today). Weeks start on Monday. A phrase may start with "by", "before", "due" (these
//! make it a deadline), "on", "until", "till", "over" or "for", and may end with a time
//! of day ("morning", "evening", "at 5pm", "at 17:30"), all part of its range.
//!
//! | phrase | date |
//! |---|---|
//! | today, tonight, this evening, later today, end of day, EOD | today |
//! | tomorrow (tmrw) | today + 1 |
//! | (the) day after tomorrow | today + 2 |
//! | Friday, on Friday, by Friday | the next Friday *after* today: 1 to 7 days ahead, so "Friday" said on a Friday is a week later |
//! | this Friday | the next Friday, today included: 0 to 6 days ahead |
//! | next Friday | the Friday of next week (the week after the capture's, Monday to Sunday): on a Monday 11 days ahead, on a Saturday 6 |
//! | this weekend, the weekend | today on a Saturday or Sunday, else the coming Saturday |
//! | next weekend | the Saturday of next week |
//! | next week | the Monday of next week |
//! | end of (the/this) week, EOW | the Friday on or after today |
//! | end of next week | the Friday of next week |
//! | end of (the/this) month, EOM | the last day of this month |
//! | next month / end of next month | the first / last day of next month |
//! | end of the year | December 31 |
//! | Dec 3, December 3rd, 3 Dec, the 3rd of December | the next December 3, today included: this year, or next year when it has passed |
//! | Dec 3 2027, December 3rd, 2027, 2027-12-03 | that day, even when past |
//! | in 3 days, in two weeks, in a month, in a year, within 2 weeks, in a couple of days, in a fortnight, a week from now | added to the date; a month after January 31 is February's last day |
//! | in an hour, in 30 minutes | added to the instant, in the zone (usually today; at 23:30 tomorrow; across a DST change in real hours) |
//!
//! Amounts are digits (up to 999) or one to twelve, "a"/"an". Weekday abbreviations
//! ("fri", "tues") count only after a preposition or "this"/"next" ("sat" and "sun" are
//! words too). Not dates: numeric forms other than ISO ("12/3" is December 3 or March 12
//! depending on the country), days that do not exist (February 30, or February 29 when
//! neither this year nor next has one: no date rather than a guess), "last Friday",
//! "every Monday", "Mondays", "in a few days". When a sentence has several date phrases,
//! the first deadline wins, else the first phrase.
//!
//! # Tags: [`suggest_tags`]
//!
//! Candidates are the person's own tags only: the vocabulary and the neighbours' tags
//! (compared trimmed and lowercased, spelt as the vocabulary spells them). A tag the
//! item already has is never suggested. Each candidate gets two scores, 0 to 1:
//!
//! - **neighbours**: the share of the neighbours' positive similarity that carries the
//!   tag, times the best similarity among those carrying it (five neighbours at 0.8 that
//!   all carry it: 0.8; one of the five: 0.16). Negative similarity and NaN count as 0;
//!   a neighbour listed twice counts once.
//! - **name**: the text names the tag as a word or words: `#tag` 0.9 (also for names
//!   under three characters, which match no other way), the exact words 0.5, the words
//!   up to a plural ending ("invoices" for "invoice") 0.4.
//!
//! They combine as independent evidence, 1 − (1 − neighbours)(1 − name), which is then
//! multiplied by the **feedback** factor, 2·(accepted + 1)/(accepted + rejected + 2):
//! 1 with no answers, ⅔ after one rejection, ½ after two, 4/3 after one acceptance,
//! capped at 1.5. A tag rejected three times or more, and more than twice as often as it
//! was accepted, is not suggested at all. The result is clamped to 0..=1; those at or
//! above the minimum confidence (0.3 by default) are returned, best first, ties by the
//! lowercased name, at most the limit (5 by default).

mod due;
mod tags;
mod task;
mod text;

pub use due::parse_due;
pub use tags::{
    DEFAULT_MIN_TAG_CONFIDENCE, DEFAULT_TAG_LIMIT, FeedbackApplied, MAX_FEEDBACK_BOOST, NameMatch,
    NameMatchKind, Neighbour, NeighbourVote, SUPPRESS_AFTER_REJECTIONS, TagEvidence, TagFeedback,
    TagInput, TagSuggestion, TagUsage, suggest_tags, tally_feedback,
};
pub use task::{
    Adjustment, AdjustmentReason, Cue, LONG_SENTENCE_WORDS, MAX_TASK_CONFIDENCE, TaskEvidence,
    TaskRule, TaskSuggestion, suggest_tasks,
};
