use super::*;

fn texts<'a>(chunks: &[Chunk<'a>]) -> Vec<&'a str> {
    chunks.iter().map(|c| c.text).collect()
}

fn sentence_texts(text: &str) -> Vec<&str> {
    sentences(text).into_iter().map(|r| &text[r]).collect()
}

/// Every chunk's range is within the text, on char boundaries, its text is the slice,
/// indexes count from 0, chunks advance, and every non-blank character is in a chunk.
fn check_invariants(text: &str, chunks: &[Chunk<'_>], opts: &ChunkOptions) {
    let mut covered = vec![false; text.len()];
    let mut previous_start = None;
    for (i, c) in chunks.iter().enumerate() {
        assert_eq!(c.index, i);
        assert!(c.range.start < c.range.end && c.range.end <= text.len());
        assert!(text.is_char_boundary(c.range.start) && text.is_char_boundary(c.range.end));
        assert_eq!(&text[c.range.clone()], c.text);
        assert_eq!(c.text, c.text.trim(), "chunks are trimmed");
        assert!(
            estimate_tokens(c.text) <= opts.max_tokens.max(1) + 1,
            "chunk {i} is {} estimated tokens",
            estimate_tokens(c.text)
        );
        if let Some(previous) = previous_start {
            assert!(c.range.start > previous, "chunks advance");
        }
        previous_start = Some(c.range.start);
        for b in c.range.clone() {
            covered[b] = true;
        }
    }
    for (i, ch) in text.char_indices() {
        if !ch.is_whitespace() {
            assert!(covered[i], "the character at byte {i} is in no chunk");
        }
    }
}

#[test]
fn blank_text_gives_no_chunk_and_a_short_note_one() {
    let opts = ChunkOptions::default();
    assert!(chunk("", &opts).is_empty());
    assert!(chunk("  \n\t \n", &opts).is_empty());
    let note = "  Buy milk and eggs.\nCall the plumber!  ";
    let chunks = chunk(note, &opts);
    assert_eq!(texts(&chunks), ["Buy milk and eggs.\nCall the plumber!"]);
    assert_eq!(chunks[0].range, 2..38);
}

#[test]
fn sentences_end_at_marks_followed_by_a_blank_and_at_line_breaks() {
    let text =
        "First one. Second one! Third? \"Quoted.\" Then (bracketed.) Last…\nA line\n\nA paragraph";
    assert_eq!(
        sentence_texts(text),
        [
            "First one.",
            "Second one!",
            "Third?",
            "\"Quoted.\"",
            "Then (bracketed.)",
            "Last…",
            "A line",
            "A paragraph"
        ]
    );
}

#[test]
fn abbreviations_decimals_initials_and_links_do_not_end_a_sentence() {
    let text = "Bring snacks, e.g. nuts and fruit. Dr. Smith said 3.5 mg twice a day. \
                J. R. R. Tolkien wrote it. See https://example.com/a.b?x=1 for more. \
                Meet at 9 a.m. tomorrow. Costs approx. five euros. It is in the U.S. now.";
    assert_eq!(
        sentence_texts(text),
        [
            "Bring snacks, e.g. nuts and fruit.",
            "Dr. Smith said 3.5 mg twice a day.",
            "J. R. R. Tolkien wrote it.",
            "See https://example.com/a.b?x=1 for more.",
            "Meet at 9 a.m. tomorrow.",
            "Costs approx. five euros.",
            "It is in the U.S. now."
        ]
    );
}

#[test]
fn a_sentence_may_end_with_a_number_a_link_or_an_ellipsis() {
    let text = "The total was 42. Next one. Go to example.com. Then... Done";
    assert_eq!(
        sentence_texts(text),
        [
            "The total was 42.",
            "Next one.",
            "Go to example.com.",
            "Then...",
            "Done"
        ]
    );
}

#[test]
fn list_items_are_sentences_and_their_numbers_stay_with_them() {
    let text = "Shopping:\n- milk\n* eggs\n• bread\n1. Flour\n2. Sugar. And salt.";
    assert_eq!(
        sentence_texts(text),
        [
            "Shopping:",
            "- milk",
            "* eggs",
            "• bread",
            "1. Flour",
            "2. Sugar.",
            "And salt."
        ]
    );
}

#[test]
fn cjk_sentences_end_at_full_width_marks() {
    let text = "今日は晴れ。明日は雨！本当？";
    assert_eq!(
        sentence_texts(text),
        ["今日は晴れ。", "明日は雨！", "本当？"]
    );
}

#[test]
fn long_texts_are_cut_at_sentences_with_one_sentence_of_overlap() {
    let sentence =
        |i: usize| format!("Sentence number {i} talks about the garden and the roses there.");
    let text: Vec<String> = (0..40).map(sentence).collect();
    let text = text.join(" ");
    let opts = ChunkOptions::default();
    let chunks = chunk(&text, &opts);
    assert!(chunks.len() > 2, "{} chunks", chunks.len());
    check_invariants(&text, &chunks, &opts);
    for pair in chunks.windows(2) {
        // Each chunk ends with a whole sentence, and the next starts with it.
        assert!(pair[0].text.ends_with('.'));
        let last = pair[0].text.rsplit(". ").next().unwrap_or_default();
        assert!(pair[1].text.starts_with(last), "overlap: {last:?}");
        assert!(pair[1].range.start < pair[0].range.end);
    }
}

#[test]
fn overlap_can_be_turned_off() {
    let text: String = (0..40)
        .map(|i| format!("Sentence {i} is about the weather today. "))
        .collect();
    let opts = ChunkOptions {
        overlap_sentences: 0,
        ..ChunkOptions::default()
    };
    let chunks = chunk(&text, &opts);
    assert!(chunks.len() > 1);
    check_invariants(&text, &chunks, &opts);
    for pair in chunks.windows(2) {
        assert!(pair[1].range.start >= pair[0].range.end);
    }
}

#[test]
fn a_sentence_longer_than_a_chunk_is_cut_at_words() {
    let text = "word ".repeat(1_000);
    let opts = ChunkOptions {
        max_tokens: 50,
        ..ChunkOptions::default()
    };
    let chunks = chunk(&text, &opts);
    check_invariants(&text, &chunks, &opts);
    assert!(chunks.len() >= 20);
    for c in &chunks {
        assert!(c.text.split(' ').all(|w| w == "word"), "cut inside a word");
    }
}

#[test]
fn a_word_longer_than_a_chunk_is_cut_at_char_boundaries() {
    let text = format!("start {} end", "é😀x".repeat(2_000));
    let opts = ChunkOptions {
        max_tokens: 30,
        ..ChunkOptions::default()
    };
    let chunks = chunk(&text, &opts);
    check_invariants(&text, &chunks, &opts);
    assert!(chunks.len() > 10);
}

#[test]
fn tiny_limits_still_make_progress() {
    let text = "a b c. 😀😀😀 ddddddddddddddddddddddddd 12345678901234567890!";
    for max_tokens in 0..5 {
        let opts = ChunkOptions {
            max_tokens,
            overlap_sentences: 3,
            max_overlap_tokens: 10,
        };
        let chunks = chunk(text, &opts);
        check_invariants(text, &chunks, &opts);
    }
}

#[test]
fn odd_inputs_never_panic_and_are_deterministic() {
    let mut inputs: Vec<String> = vec![
        ".".into(),
        "...".into(),
        "?!".into(),
        "\n\n\n".into(),
        ". . . .".into(),
        "a.".into(),
        "\u{2028}x\u{2029}y".into(),
        "\r\nWindows\r\nlines.\r\n".into(),
        "👨‍👩‍👧‍👦 family. 🇫🇷 flag! e\u{301}cole.".into(),
        "مرحبا بالعالم. Привет, мир! Γειά σου κόσμε?".into(),
        "中文没有空格但是很长".repeat(300),
        "x".repeat(100_000),
        "9".repeat(10_000),
        "Mr. Mrs. Dr. e.g. i.e. U.S. ".repeat(500),
        "\u{0}\u{1}\u{7f} control".into(),
    ];
    // About 1 MB of mixed text.
    let mixed = "Lorem ipsum dolor sit amet, Dr. Who 3.5 ünïcödé 😀 https://x.y/z?q=1. Ok!\n"
        .repeat(13_000);
    inputs.push(mixed);
    let opts = ChunkOptions::default();
    for text in &inputs {
        let chunks = chunk(text, &opts);
        check_invariants(text, &chunks, &opts);
        assert_eq!(chunks, chunk(text, &opts));
    }
}

#[test]
fn estimates_count_words_punctuation_and_ideographs() {
    assert_eq!(estimate_tokens(""), 0);
    assert_eq!(estimate_tokens("the cat sat"), 3);
    assert_eq!(estimate_tokens("appointment"), 4);
    assert_eq!(estimate_tokens("milk"), 1);
    assert_eq!(estimate_tokens("Hello, world!"), 6);
    assert_eq!(estimate_tokens("2024"), 2);
    assert_eq!(estimate_tokens("나는"), 4);
    assert_eq!(estimate_tokens("中文"), 2);
    assert_eq!(estimate_tokens("мир"), 3);
}

#[test]
fn debug_output_has_no_text() {
    let chunks = chunk("secret words here", &ChunkOptions::default());
    let debug = format!("{chunks:?}");
    assert!(!debug.contains("secret"), "{debug}");
}
