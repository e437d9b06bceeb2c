use std::time::{Duration, Instant};

use jiff::Zoned;
use jiff::civil::{Date, date};
use jiff::tz::TimeZone;

use super::*;

/// Wednesday, March 4th 2026, 18:00 UTC.
fn wednesday() -> Zoned {
    date(2026, 3, 4)
        .at(18, 0, 0, 0)
        .to_zoned(TimeZone::UTC)
        .unwrap()
}

fn tasks(text: &str) -> Vec<TaskSuggestion> {
    suggest_tasks(text, wednesday())
}

fn titles(found: &[TaskSuggestion]) -> Vec<&str> {
    found.iter().map(|t| t.title.as_str()).collect()
}

/// The one suggestion `text` gives.
fn one(text: &str) -> TaskSuggestion {
    let found = tasks(text);
    assert_eq!(found.len(), 1, "{text:?} gave {:?}", titles(&found));
    found.into_iter().next().unwrap()
}

/// Checks `(text, title, rule, due)` for each case, reporting every mismatch at once.
fn check(cases: &[(&str, &str, TaskRule, Option<Date>)]) {
    let mut wrong = Vec::new();
    for (text, title, rule, due) in cases {
        let found = tasks(text);
        let got: Vec<_> = found
            .iter()
            .map(|t| (t.title.as_str(), t.rule, t.due))
            .collect();
        if got != [(*title, *rule, *due)] {
            wrong.push(format!("{text:?}: got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

const FRI: Option<Date> = Some(date(2026, 3, 6));
const THU: Option<Date> = Some(date(2026, 3, 5));

#[test]
fn actionable_sentences_in_many_forms() {
    use TaskRule::*;
    check(&[
        ("call the dentist", "Call the dentist", Imperative, None),
        ("Buy milk.", "Buy milk", Imperative, None),
        (
            "Send Anna the invoice by Friday.",
            "Send Anna the invoice",
            Imperative,
            FRI,
        ),
        (
            "Please book a table for two!",
            "Book a table for two",
            Imperative,
            None,
        ),
        (
            "Tomorrow: pick up the kids",
            "Pick up the kids",
            Imperative,
            THU,
        ),
        (
            "On Friday, water the plants.",
            "Water the plants",
            Imperative,
            FRI,
        ),
        (
            "I need to renew my passport next week.",
            "Renew my passport",
            Obligation,
            Some(date(2026, 3, 9)),
        ),
        ("Need to call the bank.", "Call the bank", Obligation, None),
        (
            "I have to finish the report by Dec 3",
            "Finish the report",
            Obligation,
            Some(date(2026, 12, 3)),
        ),
        ("We must fix the gate", "Fix the gate", Obligation, None),
        (
            "I really need to sleep more",
            "Sleep more",
            Obligation,
            None,
        ),
        (
            "I've got to tell Ben the news",
            "Tell Ben the news",
            Obligation,
            None,
        ),
        (
            "Gotta clean the car tonight",
            "Clean the car",
            Obligation,
            Some(date(2026, 3, 4)),
        ),
        (
            "remember to water the plants",
            "Water the plants",
            Reminder,
            None,
        ),
        (
            "Don't forget to pay rent tomorrow!",
            "Pay rent",
            Reminder,
            THU,
        ),
        ("Don’t forget the milk", "The milk", Reminder, None),
        ("remind me to call grandma", "Call grandma", Reminder, None),
        ("Reminder: dentist on Friday", "Dentist", Reminder, FRI),
        ("todo: email Bob", "Email Bob", TodoMarker, None),
        ("TODO:fix the tap", "Fix the tap", TodoMarker, None),
        (
            "TODO fix the fence this weekend",
            "Fix the fence",
            TodoMarker,
            Some(date(2026, 3, 7)),
        ),
        (
            "TODO: remember to back up the photos",
            "Back up the photos",
            TodoMarker,
            None,
        ),
        (
            "To do - renew the insurance",
            "Renew the insurance",
            TodoMarker,
            None,
        ),
        ("I should call grandma", "Call grandma", Advice, None),
        (
            "We should probably update the router.",
            "Update the router",
            Advice,
            None,
        ),
        (
            "I'll book the tickets tonight",
            "Book the tickets",
            Intention,
            Some(date(2026, 3, 4)),
        ),
        (
            "I'm going to order a new lamp",
            "Order a new lamp",
            Intention,
            None,
        ),
        (
            "Tax return due April 15",
            "Tax return",
            Deadline,
            Some(date(2026, 4, 15)),
        ),
        ("The rent is due Friday.", "The rent", Deadline, FRI),
        (
            "Slides for the board by Friday",
            "Slides for the board",
            Deadline,
            FRI,
        ),
        (
            "The sink is leaking, I need to call the plumber.",
            "Call the plumber",
            Obligation,
            None,
        ),
        (
            "It's Anna's birthday on Friday so remember to buy a card",
            "Buy a card",
            Reminder,
            FRI,
        ),
        (
            "Call Anna tomorrow about the invoice",
            "Call Anna tomorrow about the invoice",
            Imperative,
            THU,
        ),
    ]);
}

#[test]
fn list_items_and_checkboxes() {
    let text = "Errands:\n- call mom tomorrow\n[ ] buy milk\n- [ ] I need to renew the permit\n\
                1. Book flights\n2) The hotel was great\n[x] pay rent\n✅ sent the forms\n\
                ☐ Milch kaufen 🥛";
    let found = tasks(text);
    assert_eq!(
        titles(&found),
        [
            "Call mom",
            "Buy milk",
            "Renew the permit",
            "Book flights",
            "Milch kaufen 🥛"
        ]
    );
    let rules: Vec<_> = found.iter().map(|t| t.rule).collect();
    assert_eq!(
        rules,
        [
            TaskRule::Imperative,
            TaskRule::Checkbox,
            TaskRule::Checkbox,
            TaskRule::Imperative,
            TaskRule::Checkbox
        ]
    );
    assert_eq!(found[0].due, THU);
    // A list item's confidence gets the list bonus; a checkbox is explicit already.
    let reasons: Vec<_> = found[0]
        .evidence
        .adjustments
        .iter()
        .map(|a| a.reason)
        .collect();
    assert_eq!(
        reasons,
        [AdjustmentReason::DueDate, AdjustmentReason::ListItem]
    );
    assert!(found[1].evidence.adjustments.is_empty());
    assert_eq!(&text[found[1].evidence.cues[0].range.clone()], "[ ]");
    assert_eq!(&text[found[1].evidence.sentence.clone()], "buy milk");
    // The checkbox keeps the obligation's words as a cue too.
    let cue_words: Vec<_> = found[2]
        .evidence
        .cues
        .iter()
        .map(|c| c.words.as_str())
        .collect();
    assert_eq!(cue_words, ["[ ]", "I need to"]);
}

#[test]
fn a_checkbox_overrides_the_filters() {
    // Questions and non-English text still count when they are ticked off as to-dos.
    let found = tasks("[ ] ask Bob whether he's coming?\n[ ] Steuererklärung abgeben");
    assert_eq!(
        titles(&found),
        ["Ask Bob whether he's coming?", "Steuererklärung abgeben"]
    );
    assert!(tasks("[ ]").is_empty());
    assert!(tasks("TODO:").is_empty());
    assert_eq!(titles(&tasks("[ ] 🥛")), ["🥛"]);
}

#[test]
fn non_actionable_sentences_give_nothing() {
    let cases = [
        "The meeting was long.",
        "I called mom yesterday.",
        "Called the plumber yesterday, he fixed it.",
        "Should I call the dentist?",
        "Can you believe it rained all week?",
        "Call mom?",
        "I should have called her back.",
        "We must have missed the train.",
        "I shouldn't have said that.",
        "I feel really tired today.",
        "So happy today! 🎉",
        "Love this song.",
        "\"Call me tomorrow,\" she said.",
        "“Buy low, sell high” is bad advice.",
        "What a beautiful sunset 🌅",
        "Book club was fun.",
        "Walk in the park was lovely.",
        "Call center was chaos today.",
        "Check-in was smooth.",
        "I don't need to buy milk.",
        "Don't call him.",
        "I have to admit, the movie was great.",
        "I must say the food was excellent.",
        "I have to go.",
        "Anna sent the invoice last Friday.",
        "The package arrived by Friday.",
        "Anna will be back by Friday.",
        "I'll be home by six.",
        "It's due Friday.",
        "Read the whole book yesterday.",
        "> Please send me the report",
        "[x] buy milk",
        "Finished the slides. Paid the rent.",
        "If you need to, call me.",
        "There is no need to worry.",
        "Das Meeting war lang.",
        "会議は長かった。",
        "",
        "   \n\n  ",
    ];
    let mut wrong = Vec::new();
    for text in cases {
        let found = tasks(text);
        if !found.is_empty() {
            wrong.push(format!("{text:?} gave {:?}", titles(&found)));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn several_sentences_each_judged_alone() {
    let text = "The meeting was long. Anna was late again! I need to send her the notes by \
                Friday. Also buy coffee; we ran out. Was it worth it? Probably.";
    let found = tasks(text);
    assert_eq!(
        titles(&found),
        ["Send her the notes", "Buy coffee; we ran out"]
    );
    let first = &found[0];
    assert_eq!(
        &text[first.evidence.sentence.clone()],
        "I need to send her the notes by Friday."
    );
    assert_eq!(
        &text[first.evidence.due_phrase.clone().unwrap()],
        "by Friday"
    );
    assert_eq!(first.evidence.cues[0].words, "I need to");
    assert_eq!(&text[first.evidence.cues[0].range.clone()], "I need to");
}

#[test]
fn confidence_follows_the_rule_and_its_adjustments() {
    let explain = |t: &TaskSuggestion| {
        t.evidence
            .adjustments
            .iter()
            .fold(t.rule.base_confidence(), |c, a| c + a.delta)
            .clamp(0.0, MAX_TASK_CONFIDENCE)
    };
    let checkbox = one("[ ] buy milk tomorrow");
    assert_eq!(checkbox.confidence, MAX_TASK_CONFIDENCE);
    let obligation = one("I need to buy milk");
    let imperative = one("buy milk");
    let advice = one("I should buy milk");
    let hedged = one("maybe buy milk someday");
    assert!(checkbox.confidence > obligation.confidence);
    assert!(obligation.confidence > imperative.confidence);
    assert!(imperative.confidence > advice.confidence);
    assert!(imperative.confidence > hedged.confidence);
    assert_eq!(
        hedged.evidence.adjustments,
        [Adjustment {
            reason: AdjustmentReason::Hedged,
            delta: -0.15
        }]
    );
    let long = one(
        "Call the insurance company about the claim for the broken window in the kitchen \
         and ask them whether they need the photos and the receipt from the glazier too",
    );
    assert!(
        long.evidence
            .adjustments
            .iter()
            .any(|a| a.reason == AdjustmentReason::Long)
    );
    for t in [checkbox, obligation, imperative, advice, hedged, long] {
        assert!((0.0..=1.0).contains(&t.confidence));
        assert!((t.confidence - explain(&t)).abs() < 1e-6, "{t:?}");
    }
}

#[test]
fn unicode_and_emoji_ranges_sit_on_char_boundaries() {
    let text = "Übermorgen ist Feiertag 🎉. 📞 Call Zoë’s landlord tomorrow — she’s away! \
                🛒 - buy crème fraîche\n☐ Kuchen backen 🎂\n— remember to email Jürgen by Friday 🙏";
    let found = tasks(text);
    assert_eq!(
        titles(&found),
        [
            "Call Zoë’s landlord tomorrow — she’s away",
            "Buy crème fraîche",
            "Kuchen backen 🎂",
            "Email Jürgen"
        ]
    );
    for t in &found {
        let mut ranges = vec![t.evidence.sentence.clone()];
        ranges.extend(t.evidence.cues.iter().map(|c| c.range.clone()));
        ranges.extend(t.evidence.due_phrase.clone());
        for r in ranges {
            assert!(text.is_char_boundary(r.start) && text.is_char_boundary(r.end));
            assert!(text.get(r).is_some());
        }
    }
    assert_eq!(found[0].due, THU);
    assert_eq!(found[3].due, FRI);
}

#[test]
fn wrapped_prose_keeps_its_sentence_together() {
    let text = "Spent most of the afternoon sorting the boxes in the cellar and so I need\n\
                to call the recycling centre about the old fridge on Friday.";
    let t = one(text);
    assert_eq!(t.title, "Call the recycling centre about the old fridge");
    assert_eq!(t.due, FRI);
    assert!(text[t.evidence.sentence.clone()].contains('\n'));
}

#[test]
fn huge_input_is_quick_and_bounded() {
    let paragraph = "The meeting was long and Anna was late. I need to send the notes by Friday. \
                     🎉 Ünïcödé everywhere — “quoted” text. - buy milk\n[ ] call mom tomorrow\n";
    let mut text = String::new();
    while text.len() < 100 * 1024 {
        text.push_str(paragraph);
    }
    let started = Instant::now();
    let found = tasks(&text);
    let took = started.elapsed();
    assert!(found.len() > 1000, "{}", found.len());
    // Debug builds on a slow CI machine included; the real thing takes milliseconds.
    assert!(took < Duration::from_secs(5), "{took:?}");

    // One enormous "sentence" without punctuation or line breaks is skipped, quickly.
    let blob = "call mom ".repeat(12_000);
    let started = Instant::now();
    assert!(tasks(&blob).is_empty());
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A small deterministic generator (xorshift), so that failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn mutated_text_never_panics() {
    let seeds = [
        "- [ ] I need to send Anna the invoice by Dec 3rd, 2027 at 5pm!",
        "TODO: remember to call Dr. Smith the day after tomorrow… 📞",
        "On Friday evening, buy crème fraîche; in 2 weeks pay rent. Was it?",
        "> quoted\n1) book flights next Friday\n☐ Kuchen 🎂 end of the month",
        "\"Call me,\" she said. I should have called. 2027-02-30 in a couple of days",
    ];
    let pieces = [
        "",
        " ",
        "\n",
        "\r\n",
        ".",
        "?",
        "!",
        "…",
        ",",
        ":",
        "-",
        "[ ]",
        "[x]",
        "☐",
        "✅",
        "#",
        "'",
        "’",
        "\"",
        "“",
        "é",
        "🎉",
        "\u{fe0f}",
        "\u{200d}",
        "by",
        "next",
        "in",
        "a",
        "Dec",
        "31st",
        "0",
        "999",
        "2027-12-31",
        "12/3",
        "Friday",
        "the",
        "end",
        "of",
        "I",
        "need",
        "to",
        "don't",
        "forget",
        "call",
    ];
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let now = wednesday();
    for round in 0..3000 {
        let mut s: String = seeds[round % seeds.len()].to_owned();
        for _ in 0..1 + rng.below(6) {
            let boundaries: Vec<usize> = (0..=s.len()).filter(|&i| s.is_char_boundary(i)).collect();
            let at = boundaries[rng.below(boundaries.len())];
            match rng.below(3) {
                0 => s.insert_str(at, pieces[rng.below(pieces.len())]),
                1 => {
                    let to = boundaries[rng.below(boundaries.len())];
                    let (a, b) = if at <= to { (at, to) } else { (to, at) };
                    s.replace_range(a..b, "");
                }
                _ => {
                    let to = boundaries[rng.below(boundaries.len())];
                    let (a, b) = if at <= to { (at, to) } else { (to, at) };
                    let copy = s[a..b].to_owned();
                    s.insert_str(b, &copy);
                }
            }
        }
        for t in suggest_tasks(&s, now.clone()) {
            assert!(!t.title.is_empty());
            assert!((0.0..=1.0).contains(&t.confidence));
            for r in std::iter::once(t.evidence.sentence.clone())
                .chain(t.evidence.cues.iter().map(|c| c.range.clone()))
                .chain(t.evidence.due_phrase.clone())
            {
                assert!(s.get(r).is_some(), "{s:?}");
            }
        }
        let _ = crate::parse_due(&s, &now);
    }
}

#[test]
fn debug_shows_no_text() {
    let t = one("I need to call Zoë about the divorce papers by Friday");
    let shown = format!("{t:?} {t:#?}");
    assert!(!shown.contains("Zoë"), "{shown}");
    assert!(!shown.contains("divorce"), "{shown}");
    assert!(!shown.contains("need to"), "{shown}");
    assert!(shown.contains("bytes>"), "{shown}");
}

#[test]
fn the_task_verb_list_is_sorted_for_binary_search() {
    assert!(TASK_VERBS.windows(2).all(|w| w[0] < w[1]));
}
