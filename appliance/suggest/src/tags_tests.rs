use super::*;

fn neighbour(id: &str, similarity: f32, tags: &[&str]) -> Neighbour {
    Neighbour {
        item_id: id.to_owned(),
        similarity,
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
    }
}

fn vocabulary(tags: &[(&str, u32)]) -> Vec<TagUsage> {
    tags.iter()
        .map(|(tag, count)| TagUsage {
            tag: (*tag).to_owned(),
            count: *count,
        })
        .collect()
}

fn feedback(tag: &str, accepted: u32, rejected: u32) -> TagFeedback {
    TagFeedback {
        tag: tag.to_owned(),
        accepted,
        rejected,
    }
}

fn names(found: &[TagSuggestion]) -> Vec<&str> {
    found.iter().map(|t| t.tag.as_str()).collect()
}

fn close(a: f32, b: f32) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn neighbours_vote_by_similarity() {
    let neighbours = [
        neighbour("a", 0.9, &["health", "dentist"]),
        neighbour("b", 0.8, &["health"]),
        neighbour("c", 0.3, &["finance"]),
    ];
    let mut input = TagInput::new("Appointment moved to Thursday.");
    input.neighbours = &neighbours;
    input.min_confidence = 0.0;
    let found = suggest_tags(input);
    assert_eq!(names(&found), ["health", "dentist", "finance"]);
    // health: (0.9 + 0.8) / 2.0 of the similarity, best 0.9.
    assert!(close(found[0].confidence, 1.7 / 2.0 * 0.9), "{found:?}");
    assert!(close(found[1].confidence, 0.9 / 2.0 * 0.9));
    assert!(close(found[2].confidence, 0.3 / 2.0 * 0.3));
    let votes: Vec<_> = found[0]
        .evidence
        .neighbours
        .iter()
        .map(|v| (v.item_id.as_str(), v.similarity))
        .collect();
    assert_eq!(votes, [("a", 0.9), ("b", 0.8)]);
    assert_eq!(found[0].evidence.name_match, None);

    // With the default minimum, the weak vote for "finance" is left out.
    input.min_confidence = DEFAULT_MIN_TAG_CONFIDENCE;
    assert_eq!(names(&suggest_tags(input)), ["health", "dentist"]);
}

#[test]
fn dissimilar_and_broken_neighbours_do_not_vote() {
    let neighbours = [
        neighbour("a", -0.7, &["travel"]),
        neighbour("b", f32::NAN, &["travel"]),
        neighbour("c", 0.0, &["travel"]),
        neighbour("d", 7.0, &["garden"]),
        neighbour("d", 0.9, &["kitchen"]),
    ];
    let mut input = TagInput::new("");
    input.neighbours = &neighbours;
    input.min_confidence = 0.0;
    let found = suggest_tags(input);
    // "d" counts once (its first entry), clamped to 1.
    assert_eq!(names(&found), ["garden"]);
    assert!(close(found[0].confidence, 1.0));
    assert_eq!(found[0].evidence.neighbours[0].similarity, 1.0);
}

#[test]
fn the_tag_named_in_the_text_matches() {
    let vocab = vocabulary(&[
        ("invoice", 12),
        ("Home Improvement", 3),
        ("party", 2),
        ("work", 40),
        ("ai", 9),
        ("taxes", 4),
    ]);
    let text = "Sent two invoices for the #home-improvement job; the party was fun. AI rocks. Tax!";
    let mut input = TagInput::new(text);
    input.vocabulary = &vocab;
    input.min_confidence = 0.0;
    let found = suggest_tags(input);
    let got: Vec<_> = found
        .iter()
        .map(|t| {
            let m = t.evidence.name_match.clone().unwrap();
            (t.tag.as_str(), m.kind, &text[m.range])
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "Home Improvement",
                NameMatchKind::Hashtag,
                "#home-improvement"
            ),
            ("party", NameMatchKind::Exact, "party"),
            ("invoice", NameMatchKind::Stem, "invoices"),
            ("taxes", NameMatchKind::Stem, "Tax"),
        ]
    );
    assert!(close(found[0].confidence, 0.9));
    assert_eq!(found[0].evidence.usage_count, 3);
    // "work" is not in the text; "ai" is too short to look for.
    assert!(!names(&found).contains(&"ai"));
}

#[test]
fn words_inside_other_words_do_not_match() {
    let vocab = vocabulary(&[("art", 1), ("cat", 1)]);
    let mut input = TagInput::new("Started the cartography course; category theory next.");
    input.vocabulary = &vocab;
    input.min_confidence = 0.0;
    assert!(suggest_tags(input).is_empty());
}

#[test]
fn neighbours_and_name_combine() {
    let neighbours = [neighbour("a", 0.6, &["garden"]), neighbour("b", 0.6, &[])];
    let vocab = vocabulary(&[("garden", 5)]);
    let mut input = TagInput::new("Plant tulips in the garden.");
    input.neighbours = &neighbours;
    input.vocabulary = &vocab;
    let found = suggest_tags(input);
    let t = &found[0];
    assert!(close(t.evidence.neighbour_score, 0.3));
    assert!(close(t.evidence.name_score, 0.5));
    // 1 − (1 − 0.3)(1 − 0.5)
    assert!(close(t.confidence, 0.65));
}

#[test]
fn rejections_lower_and_then_suppress_a_tag() {
    let neighbours = [neighbour("a", 0.9, &["urgent", "errands"])];
    let score = |fb: &[TagFeedback]| {
        let mut input = TagInput::new("");
        input.neighbours = &neighbours;
        input.feedback = fb;
        input.min_confidence = 0.0;
        suggest_tags(input)
            .into_iter()
            .find(|t| t.tag == "urgent")
            .map(|t| t.confidence)
    };
    let fresh = score(&[]).unwrap();
    let once = score(&[feedback("urgent", 0, 1)]).unwrap();
    let twice = score(&[feedback("Urgent", 0, 2)]).unwrap();
    assert!(close(fresh, 0.9));
    assert!(close(once, 0.9 * 2.0 / 3.0));
    assert!(close(twice, 0.9 * 0.5));
    assert_eq!(score(&[feedback("urgent", 0, 3)]), None);
    // Split over several entries, the counts still add up.
    assert_eq!(
        score(&[feedback("urgent", 0, 1), feedback(" URGENT ", 0, 2)]),
        None
    );
    // Acceptances keep a rejected tag alive while they are at least half the rejections.
    assert!(score(&[feedback("urgent", 2, 4)]).is_some());
    assert_eq!(score(&[feedback("urgent", 1, 3)]), None);
}

#[test]
fn acceptances_raise_a_tag_up_to_the_cap() {
    let neighbours = [
        neighbour("a", 0.5, &["books"]),
        neighbour("b", 0.5, &["music"]),
    ];
    let fb = [feedback("books", 1, 0), feedback("music", 0, 0)];
    let mut input = TagInput::new("");
    input.neighbours = &neighbours;
    input.feedback = &fb;
    input.min_confidence = 0.0;
    let found = suggest_tags(input);
    assert_eq!(names(&found), ["books", "music"]);
    assert!(close(found[0].confidence, 0.25 * 4.0 / 3.0));
    assert!(close(found[1].confidence, 0.25));
    let applied = found[0].evidence.feedback.unwrap();
    assert_eq!((applied.accepted, applied.rejected), (1, 0));
    assert!(close(applied.multiplier, 4.0 / 3.0));

    let many = [feedback("books", 50, 0)];
    input.feedback = &many;
    let found = suggest_tags(input);
    assert!(close(found[0].confidence, 0.25 * MAX_FEEDBACK_BOOST));
    // Never above 1.
    let strong = [neighbour("a", 1.0, &["books"])];
    input.neighbours = &strong;
    assert!(close(suggest_tags(input)[0].confidence, 1.0));
}

#[test]
fn existing_tags_are_never_suggested() {
    let neighbours = [neighbour("a", 0.9, &["Health", "dentist"])];
    let vocab = vocabulary(&[("dentist", 3), ("health", 8)]);
    let existing = ["health ".to_owned(), "DENTIST".to_owned()];
    let mut input = TagInput::new("#dentist #health");
    input.neighbours = &neighbours;
    input.vocabulary = &vocab;
    input.existing_tags = &existing;
    input.min_confidence = 0.0;
    assert!(suggest_tags(input).is_empty());
}

#[test]
fn ordering_is_deterministic_with_ties_by_name() {
    let neighbours = [
        neighbour("a", 0.5, &["zeta", "alpha", "Mid"]),
        neighbour("b", 0.5, &["zeta", "alpha", "Mid"]),
    ];
    let mut input = TagInput::new("");
    input.neighbours = &neighbours;
    input.min_confidence = 0.0;
    let first = suggest_tags(input);
    assert_eq!(names(&first), ["alpha", "Mid", "zeta"]);
    for _ in 0..10 {
        assert_eq!(suggest_tags(input), first);
    }
    // The same input in another order gives the same tags in the same order.
    let reversed = [
        neighbour("b", 0.5, &["Mid", "alpha", "zeta"]),
        neighbour("a", 0.5, &["zeta", "Mid", "alpha"]),
    ];
    input.neighbours = &reversed;
    assert_eq!(names(&suggest_tags(input)), ["alpha", "Mid", "zeta"]);
}

#[test]
fn limit_and_minimum_confidence() {
    let neighbours = [neighbour(
        "a",
        0.8,
        &["a1", "a2", "a3", "a4", "a5", "a6", "a7"],
    )];
    let mut input = TagInput::new("");
    input.neighbours = &neighbours;
    assert_eq!(names(&suggest_tags(input)), ["a1", "a2", "a3", "a4", "a5"]);
    input.limit = 2;
    assert_eq!(names(&suggest_tags(input)), ["a1", "a2"]);
    input.min_confidence = 0.81;
    assert!(suggest_tags(input).is_empty());
    input.limit = 0;
    input.min_confidence = 0.0;
    assert!(suggest_tags(input).is_empty());
}

#[test]
fn spelling_comes_from_the_vocabulary() {
    let neighbours = [neighbour("a", 0.9, &["new york"])];
    let vocab = vocabulary(&[("New York", 2)]);
    let mut input = TagInput::new("");
    input.neighbours = &neighbours;
    input.vocabulary = &vocab;
    let found = suggest_tags(input);
    assert_eq!(names(&found), ["New York"]);
    assert_eq!(found[0].evidence.usage_count, 2);
}

#[test]
fn tally_adds_up_events() {
    let t = tally_feedback([
        ("work", true),
        ("Work ", false),
        ("home", false),
        ("work", false),
        ("  ", true),
    ]);
    assert_eq!(t, [feedback("home", 0, 1), feedback("work", 1, 2)]);
}

#[test]
fn unicode_tags_and_text() {
    let vocab = vocabulary(&[("Café", 2), ("日本", 1), ("Ärzte", 1)]);
    let text = "Neues café 🎉 in der Stadt; #日本 trip; ärzte";
    let mut input = TagInput::new(text);
    input.vocabulary = &vocab;
    input.min_confidence = 0.0;
    let found = suggest_tags(input);
    assert_eq!(names(&found), ["日本", "Café", "Ärzte"]);
    for t in &found {
        let r = t.evidence.name_match.clone().unwrap().range;
        assert!(text.get(r).is_some());
    }
}

#[test]
fn debug_shows_neither_text_nor_tags() {
    let neighbours = [neighbour("item-1", 0.9, &["divorce"])];
    let vocab = vocabulary(&[("divorce", 1)]);
    let fb = [feedback("divorce", 1, 0)];
    let mut input = TagInput::new("Letter from the divorce lawyer");
    input.neighbours = &neighbours;
    input.vocabulary = &vocab;
    input.feedback = &fb;
    let found = suggest_tags(input);
    let shown = format!("{input:?} {found:?} {found:#?}");
    assert!(!shown.contains("divorce"), "{shown}");
    assert!(!shown.contains("lawyer"), "{shown}");
    assert!(shown.contains("item-1"), "{shown}");
}
