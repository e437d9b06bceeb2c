//! Tests against a real tantivy index in RAM.

use time::macros::{date, datetime};
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use super::*;

fn note(text: &str) -> Document {
    Document {
        id: Uuid::new_v4(),
        text: text.to_owned(),
        tags: Vec::new(),
        kind: Kind::Note,
        status: None,
        due: None,
        created: datetime!(2024-01-01 12:00 UTC),
        updated: datetime!(2024-01-01 12:00 UTC),
        pinned: false,
        archived: false,
    }
}

fn task(text: &str, status: TaskStatus, due: Option<Date>) -> Document {
    Document {
        kind: Kind::Task,
        status: Some(status),
        due,
        ..note(text)
    }
}

fn created(mut doc: Document, at: OffsetDateTime) -> Document {
    doc.created = at;
    doc.updated = at;
    doc
}

fn tagged(mut doc: Document, tags: &[&str]) -> Document {
    doc.tags = tags.iter().map(|t| (*t).to_owned()).collect();
    doc
}

fn index_with(docs: Vec<Document>) -> SearchIndex {
    let index = SearchIndex::new().expect("index");
    index.build(docs, |_| {}).expect("build");
    index
}

fn text(text: &str) -> Query {
    Query {
        text: text.to_owned(),
        ..Query::default()
    }
}

fn ids(index: &SearchIndex, q: &Query) -> Vec<Uuid> {
    index
        .search(q)
        .expect("search")
        .hits
        .iter()
        .map(|h| h.id)
        .collect()
}

fn sorted(mut ids: Vec<Uuid>) -> Vec<Uuid> {
    ids.sort();
    ids
}

#[test]
fn types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SearchIndex>();
    check::<Document>();
    check::<Results>();
}

#[test]
fn kind_and_status_round_trip_through_strings() {
    for kind in [Kind::Note, Kind::Task] {
        assert_eq!(kind.as_str().parse::<Kind>(), Ok(kind));
    }
    for status in [TaskStatus::Open, TaskStatus::Doing, TaskStatus::Done] {
        assert_eq!(status.as_str().parse::<TaskStatus>(), Ok(status));
    }
    assert!("Note".parse::<Kind>().is_err());
    assert!("closed".parse::<TaskStatus>().is_err());
}

#[test]
fn upsert_is_searchable_without_flush() {
    let index = SearchIndex::new().expect("index");
    let doc = note("Buy oat milk on the way home");
    let id = doc.id;
    index.upsert(doc);
    // No flush: the search itself waits for the write enqueued before it.
    let results = index.search(&text("oat milk")).expect("search");
    assert_eq!(results.total, 1);
    assert_eq!(results.hits[0].id, id);
    assert_eq!(index.len(), 1);
    assert!(!index.is_empty());
}

#[test]
fn many_upserts_then_search_sees_them_all() {
    let index = SearchIndex::new().expect("index");
    for i in 0..300 {
        index.upsert(note(&format!("entry number{i} zebra")));
    }
    assert_eq!(index.search(&text("zebra")).expect("search").total, 300);
    assert_eq!(index.search(&text("number299")).expect("search").total, 1);
}

#[test]
fn upsert_with_the_same_id_replaces() {
    let index = SearchIndex::new().expect("index");
    let first = note("the first version mentions pelicans");
    let id = first.id;
    index.upsert(first);
    index.flush();
    index.upsert(Document {
        text: "the second version mentions flamingos".to_owned(),
        ..note("")
    });
    index.upsert(Document {
        id,
        text: "the edited version mentions flamingos".to_owned(),
        ..note("")
    });
    assert_eq!(index.search(&text("pelicans")).expect("search").total, 0);
    let results = index.search(&text("version")).expect("search");
    assert_eq!(results.total, 2);
    assert_eq!(
        results.hits.iter().filter(|h| h.id == id).count(),
        1,
        "the replaced document counts once"
    );
    assert_eq!(index.len(), 2);
}

#[test]
fn upsert_replaces_a_document_loaded_by_build() {
    let doc = note("quarterly report draft");
    let id = doc.id;
    let index = index_with(vec![doc]);
    index.upsert(Document {
        id,
        text: "quarterly report final".to_owned(),
        ..note("")
    });
    assert_eq!(index.search(&text("draft")).expect("search").total, 0);
    assert_eq!(ids(&index, &text("final")), vec![id]);
    assert_eq!(index.len(), 1);
}

#[test]
fn remove_deletes() {
    let keep = note("keep this walrus");
    let gone = note("remove this walrus");
    let (keep_id, gone_id) = (keep.id, gone.id);
    let index = index_with(vec![keep, gone]);
    index.remove(gone_id);
    assert_eq!(ids(&index, &text("walrus")), vec![keep_id]);
    index.remove(Uuid::new_v4()); // unknown id: nothing happens
    index.flush();
    assert_eq!(index.len(), 1);
}

#[test]
fn stemming_matches_word_forms() {
    let doc = note("I run every morning");
    let id = doc.id;
    let index = index_with(vec![doc, note("I walk every evening")]);
    assert_eq!(ids(&index, &text("running")), vec![id]);
    assert_eq!(ids(&index, &text("RUNS")), vec![id]);
}

#[test]
fn phrases_in_quotes_match_in_order_only() {
    let ordered = note("the big red barn by the road");
    let shuffled = note("the red big barn by the road");
    let id = ordered.id;
    let index = index_with(vec![ordered, shuffled]);
    assert_eq!(ids(&index, &text("\"big red barn\"")), vec![id]);
    assert_eq!(
        index.search(&text("big red barn")).expect("search").total,
        2
    );
}

#[test]
fn words_are_anded() {
    let both = note("apples and pears");
    let id = both.id;
    let index = index_with(vec![both, note("apples only"), note("pears only")]);
    assert_eq!(ids(&index, &text("apples pears")), vec![id]);
    assert_eq!(
        index
            .search(&text("apples OR pears"))
            .expect("search")
            .total,
        3
    );
}

#[test]
fn tags_are_searchable_as_words_and_rank_higher() {
    let by_tag = tagged(note("nothing relevant here"), &["Gardening"]);
    let by_text = note("some gardening notes in passing, and more words to dilute it");
    let (tag_id, text_id) = (by_tag.id, by_text.id);
    let index = index_with(vec![by_tag, by_text]);
    assert_eq!(ids(&index, &text("gardening")), vec![tag_id, text_id]);
}

#[test]
fn tag_filter_is_exact_and_case_insensitive() {
    let work = tagged(note("budget meeting"), &["Work", "Q3 plans"]);
    let home = tagged(note("budget for groceries"), &["home"]);
    let workshop = tagged(note("budget for the workshop"), &["workshop"]);
    let (work_id, home_id) = (work.id, home.id);
    let index = index_with(vec![work, home, workshop]);
    let with_tags = |tags: &[&str]| Query {
        text: "budget".to_owned(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        ..Query::default()
    };
    assert_eq!(ids(&index, &with_tags(&["work"])), vec![work_id]);
    assert_eq!(ids(&index, &with_tags(&["WORK"])), vec![work_id]);
    assert_eq!(ids(&index, &with_tags(&["q3 PLANS"])), vec![work_id]);
    assert_eq!(
        ids(&index, &with_tags(&["work", "q3 plans"])),
        vec![work_id]
    );
    assert!(ids(&index, &with_tags(&["work", "home"])).is_empty());
    assert!(
        ids(&index, &with_tags(&["q3"])).is_empty(),
        "no partial tags"
    );
    assert_eq!(ids(&index, &with_tags(&[" Home "])), vec![home_id]);
    // Tag filters without text.
    let only_tag = Query {
        tags: vec!["HOME".to_owned()],
        ..Query::default()
    };
    assert_eq!(ids(&index, &only_tag), vec![home_id]);
}

#[test]
fn unicode_tags_filter_and_count() {
    let doc = tagged(note("résumé draft"), &["Ünïcödé", "日本語"]);
    let id = doc.id;
    let index = index_with(vec![doc]);
    let q = Query {
        tags: vec!["üNÏCÖDÉ".to_owned()],
        ..Query::default()
    };
    assert_eq!(ids(&index, &q), vec![id]);
    let q = Query {
        tags: vec!["日本語".to_owned()],
        ..Query::default()
    };
    assert_eq!(ids(&index, &q), vec![id]);
}

#[test]
fn filter_by_kind_and_status() {
    let n = note("plan the trip");
    let open = task("plan the trip: book hotel", TaskStatus::Open, None);
    let done = task("plan the trip: buy tickets", TaskStatus::Done, None);
    let (n_id, open_id, done_id) = (n.id, open.id, done.id);
    let index = index_with(vec![n, open, done]);
    let q = |kind, status| Query {
        text: "trip".to_owned(),
        kind,
        status,
        ..Query::default()
    };
    assert_eq!(ids(&index, &q(Some(Kind::Note), None)), vec![n_id]);
    assert_eq!(
        sorted(ids(&index, &q(Some(Kind::Task), None))),
        sorted(vec![open_id, done_id])
    );
    assert_eq!(
        ids(&index, &q(Some(Kind::Task), Some(TaskStatus::Done))),
        vec![done_id]
    );
    assert_eq!(ids(&index, &q(None, Some(TaskStatus::Open))), vec![open_id]);
    assert!(ids(&index, &q(None, Some(TaskStatus::Doing))).is_empty());
}

#[test]
fn filter_by_created_range_is_inclusive_then_exclusive() {
    let jan = created(note("log entry"), datetime!(2024-01-01 0:00 UTC));
    let feb = created(note("log entry"), datetime!(2024-02-01 0:00 UTC));
    let mar = created(note("log entry"), datetime!(2024-03-01 0:00 UTC));
    let (jan_id, feb_id, mar_id) = (jan.id, feb.id, mar.id);
    let index = index_with(vec![jan, feb, mar]);
    let q = |from, to| Query {
        created_from: from,
        created_to: to,
        ..Query::default()
    };
    let feb_start = Some(datetime!(2024-02-01 0:00 UTC));
    let mar_start = Some(datetime!(2024-03-01 0:00 UTC));
    assert_eq!(ids(&index, &q(feb_start, mar_start)), vec![feb_id]);
    assert_eq!(ids(&index, &q(feb_start, None)), vec![mar_id, feb_id]);
    assert_eq!(ids(&index, &q(None, feb_start)), vec![jan_id]);
    // Another offset, the same instant.
    let feb_in_paris = Some(datetime!(2024-02-01 1:00 +01:00));
    assert_eq!(ids(&index, &q(feb_in_paris, mar_start)), vec![feb_id]);
    assert!(ids(&index, &q(mar_start, feb_start)).is_empty());
}

#[test]
fn archived_items_are_hidden_unless_asked_for() {
    let live = note("old receipts");
    let archived = Document {
        archived: true,
        ..note("old receipts archived")
    };
    let (live_id, archived_id) = (live.id, archived.id);
    let index = index_with(vec![live, archived]);
    assert_eq!(ids(&index, &text("receipts")), vec![live_id]);
    assert_eq!(ids(&index, &Query::default()), vec![live_id]);
    let all = Query {
        text: "receipts".to_owned(),
        include_archived: true,
        ..Query::default()
    };
    let hits = index.search(&all).expect("search").hits;
    assert_eq!(
        sorted(hits.iter().map(|h| h.id).collect()),
        sorted(vec![live_id, archived_id])
    );
    assert!(hits.iter().any(|h| h.id == archived_id && h.archived));
    // Field syntax cannot reach around the filter: a colon is read as a space.
    assert!(ids(&index, &text("archived:true")).is_empty());
    assert_eq!(ids(&index, &text("old: receipts")), vec![live_id]);
}

#[test]
fn sort_by_due_puts_undated_last_then_newest() {
    let t = |due, at| created(task("pay the bills", TaskStatus::Open, due), at);
    let soon = t(Some(date!(2024 - 05 - 01)), datetime!(2024-01-01 0:00 UTC));
    let later = t(Some(date!(2024 - 06 - 01)), datetime!(2024-01-05 0:00 UTC));
    let later_newer = t(Some(date!(2024 - 06 - 01)), datetime!(2024-01-09 0:00 UTC));
    let undated_old = t(None, datetime!(2023-01-01 0:00 UTC));
    let undated_new = t(None, datetime!(2024-04-01 0:00 UTC));
    let expected = vec![
        soon.id,
        later_newer.id,
        later.id,
        undated_new.id,
        undated_old.id,
    ];
    let index = index_with(vec![undated_old, later, soon, undated_new, later_newer]);
    let q = Query {
        text: "bills".to_owned(),
        sort: Sort::Due,
        ..Query::default()
    };
    let results = index.search(&q).expect("search");
    assert_eq!(
        results.hits.iter().map(|h| h.id).collect::<Vec<_>>(),
        expected
    );
    assert_eq!(results.hits[0].due, Some(date!(2024 - 05 - 01)));
    assert_eq!(results.hits[4].due, None);
    // Paging keeps the order.
    let page = Query {
        limit: 2,
        offset: 2,
        ..q
    };
    assert_eq!(ids(&index, &page), expected[2..4]);
}

#[test]
fn sort_newest_and_relevance_without_text() {
    let old = created(note("alpha"), datetime!(2020-01-01 0:00 UTC));
    let mid = created(note("alpha alpha alpha"), datetime!(2022-01-01 0:00 UTC));
    let new = created(
        note("alpha beta gamma delta"),
        datetime!(2024-01-01 0:00 UTC),
    );
    let expected = vec![new.id, mid.id, old.id];
    let index = index_with(vec![mid, old, new]);
    let newest = Query {
        text: "alpha".to_owned(),
        sort: Sort::Newest,
        ..Query::default()
    };
    assert_eq!(ids(&index, &newest), expected);
    // Relevance with no text falls back to newest.
    assert_eq!(ids(&index, &Query::default()), expected);
    // Relevance with text ranks the densest match first, and reports scores.
    let hits = index.search(&text("alpha")).expect("search").hits;
    assert_eq!(hits[0].id, expected[1]);
    assert!(hits.iter().all(|h| h.score > 0.0));
    assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
}

#[test]
fn hits_carry_the_stored_fields() {
    let doc = Document {
        tags: vec!["Errand".to_owned(), "café".to_owned()],
        pinned: true,
        ..created(
            task(
                "collect the parcel",
                TaskStatus::Doing,
                Some(date!(2024 - 07 - 14)),
            ),
            datetime!(2024-03-05 10:20:30.123456 +02:00),
        )
    };
    let id = doc.id;
    let index = index_with(vec![doc]);
    let hit = index
        .search(&text("parcel"))
        .expect("search")
        .hits
        .remove(0);
    assert_eq!(hit.id, id);
    assert_eq!(hit.kind, Kind::Task);
    assert_eq!(hit.status, Some(TaskStatus::Doing));
    assert_eq!(hit.due, Some(date!(2024 - 07 - 14)));
    assert_eq!(hit.tags, vec!["Errand".to_owned(), "café".to_owned()]);
    assert_eq!(hit.created, datetime!(2024-03-05 08:20:30.123456 UTC));
    assert!(hit.pinned);
    assert!(!hit.archived);
}

#[test]
fn limit_and_offset_are_clamped() {
    let docs: Vec<Document> = (0..250)
        .map(|i| {
            created(
                note("common word"),
                datetime!(2024-01-01 0:00 UTC) + time::Duration::minutes(i),
            )
        })
        .collect();
    let index = index_with(docs);
    let q = |limit, offset| Query {
        text: "common".to_owned(),
        limit,
        offset,
        ..Query::default()
    };
    let results = index.search(&q(0, 0)).expect("search");
    assert_eq!(results.hits.len(), 1, "a limit of 0 means 1");
    assert_eq!(results.total, 250);
    assert_eq!(
        index.search(&q(10_000, 0)).expect("search").hits.len(),
        MAX_LIMIT
    );
    assert_eq!(index.search(&q(20, 240)).expect("search").hits.len(), 10);
    let beyond = index.search(&q(20, usize::MAX)).expect("search");
    assert!(beyond.hits.is_empty());
    assert_eq!(beyond.total, 250);
    // Pages do not overlap.
    let first = ids(&index, &q(100, 0));
    let second = ids(&index, &q(100, 100));
    assert!(first.iter().all(|id| !second.contains(id)));
}

#[test]
fn hostile_query_strings_never_fail() {
    let index = index_with(vec![
        note("an ordinary note about cats"),
        note("AND OR NOT"),
    ]);
    let long = "word ".repeat(420);
    let mut many_bytes = "ü".repeat(3_000); // 6 000 bytes, cut inside the limit
    many_bytes.push_str(" cats");
    let hostile = [
        "\"unclosed",
        "AND",
        "OR",
        "NOT",
        "a:b",
        "text:cats",
        "*",
        "?",
        "cats^",
        "cats~",
        "-cats",
        "+",
        "-",
        "()",
        "(((",
        ")))",
        "[a TO b]",
        "{",
        "}",
        "\\",
        "\"\"",
        "😀🐈",
        "🐈 cats",
        "IN [1 2]",
        "https://example.com/?q=a&b=c",
        "\0\u{1}\u{7f}",
        "'; DROP TABLE items; --",
        "<script>alert(1)</script>",
        long.as_str(),
        many_bytes.as_str(),
    ];
    for q in hostile {
        let results = index.search(&text(q));
        assert!(results.is_ok(), "query {q:?} failed: {results:?}");
    }
    assert_eq!(index.search(&text("🐈 cats")).expect("search").total, 1);
}

#[test]
fn snippet_highlights_point_at_matched_words() {
    let doc = note(
        "Shopping list. We were running low on coffee, so I ran to the shop; \
         the runner-up was tea. Nothing else.",
    );
    let index = index_with(vec![doc]);
    let hit = index
        .search(&text("run coffee"))
        .expect("search")
        .hits
        .remove(0);
    let snippet = &hit.snippet;
    let words: Vec<String> = snippet
        .highlights
        .iter()
        .map(|r| snippet.text[r.clone()].to_lowercase())
        .collect();
    assert!(words.contains(&"running".to_owned()), "{words:?}");
    assert!(words.contains(&"coffee".to_owned()), "{words:?}");
    assert!(!words.contains(&"tea".to_owned()));
    assert_sorted_disjoint(snippet);
}

#[test]
fn snippet_highlights_respect_multibyte_text() {
    let doc = note("Le café ☕ était naïve et CAFÉ encore: naïve café");
    let index = index_with(vec![doc]);
    for query in ["café", "naïve", "CAFÉ naïve"] {
        let hit = index.search(&text(query)).expect("search").hits.remove(0);
        let snippet = &hit.snippet;
        assert!(!snippet.highlights.is_empty(), "{query}");
        assert_sorted_disjoint(snippet);
        for r in &snippet.highlights {
            assert!(snippet.text.is_char_boundary(r.start));
            assert!(snippet.text.is_char_boundary(r.end));
            let word = snippet.text[r.clone()].to_lowercase();
            assert!(
                query.to_lowercase().split(' ').any(|q| q == word),
                "{query}: highlighted {word:?}"
            );
        }
    }
}

#[test]
fn long_text_snippet_is_cut_around_the_match() {
    let text_body = format!(
        "{} the needle is here {}",
        "hay ".repeat(200),
        "straw ".repeat(200)
    );
    let index = index_with(vec![note(&text_body)]);
    let hit = index
        .search(&text("needle"))
        .expect("search")
        .hits
        .remove(0);
    let snippet = hit.snippet;
    assert!(snippet.text.starts_with('…'));
    assert!(snippet.text.ends_with('…'));
    assert!(snippet.text.chars().count() <= snippet::SNIPPET_CHARS + 2);
    assert_eq!(snippet.highlights.len(), 1);
    assert_eq!(&snippet.text[snippet.highlights[0].clone()], "needle");
}

#[test]
fn snippet_without_query_or_text_match_is_the_start() {
    let long = "é".repeat(300);
    let short = tagged(note("short text."), &["Holiday"]);
    let index = index_with(vec![note(&long), short]);
    let hits = index.search(&Query::default()).expect("search").hits;
    let long_hit = hits
        .iter()
        .find(|h| h.snippet.text.starts_with('é'))
        .expect("long");
    assert_eq!(
        long_hit.snippet.text.chars().count(),
        snippet::SNIPPET_CHARS + 1
    );
    assert!(long_hit.snippet.text.ends_with('…'));
    assert!(long_hit.snippet.highlights.is_empty());
    // Matched on the tag only: the text's start, nothing highlighted.
    let hit = index
        .search(&text("holiday"))
        .expect("search")
        .hits
        .remove(0);
    assert_eq!(hit.snippet.text, "short text.");
    assert!(hit.snippet.highlights.is_empty());
    // A short text with a match is shown whole, trailing punctuation included.
    let hit = index.search(&text("short")).expect("search").hits.remove(0);
    assert_eq!(hit.snippet.text, "short text.");
    assert_eq!(hit.snippet.highlights, vec![0..5]);
}

fn assert_sorted_disjoint(snippet: &Snippet) {
    for pair in snippet.highlights.windows(2) {
        assert!(pair[0].end <= pair[1].start, "{:?}", snippet.highlights);
    }
    for r in &snippet.highlights {
        assert!(r.start < r.end && r.end <= snippet.text.len());
    }
}

#[test]
fn tags_counts_non_archived_items_case_insensitively() {
    let index = index_with(vec![
        tagged(note("a"), &["work", "Urgent"]),
        tagged(note("b"), &["Work"]),
        tagged(note("c"), &["Work", "work"]),
        tagged(note("d"), &["ärger"]),
        tagged(note("e"), &["zebra"]),
        Document {
            archived: true,
            ..tagged(note("f"), &["Work", "archived-only"])
        },
    ]);
    assert_eq!(
        index.tags(),
        vec![
            ("Urgent".to_owned(), 1),
            ("Work".to_owned(), 3),
            ("zebra".to_owned(), 1),
            ("ärger".to_owned(), 1),
        ]
    );
    // Writes are visible to tags() like to search().
    index.upsert(tagged(note("g"), &["new-tag"]));
    assert!(index.tags().contains(&("new-tag".to_owned(), 1)));
}

#[test]
fn build_reports_progress_and_indexes_everything() {
    let index = SearchIndex::new().expect("index");
    let docs = (0..5_000).map(|i| {
        let doc = note(&format!("generated document {i} about topic{}", i % 17));
        if i % 10 == 0 {
            tagged(doc, &["tenth"])
        } else {
            doc
        }
    });
    let mut reports = Vec::new();
    index.build(docs, |n| reports.push(n)).expect("build");
    assert_eq!(reports.last(), Some(&5_000));
    assert_eq!(reports.first(), Some(&1_000));
    assert!(reports.windows(2).all(|w| w[0] < w[1]), "{reports:?}");
    assert_eq!(index.len(), 5_000);
    assert_eq!(
        index.search(&text("generated")).expect("search").total,
        5_000
    );
    assert_eq!(index.search(&text("topic3")).expect("search").total, 294);
    assert_eq!(index.tags(), vec![("tenth".to_owned(), 500)]);
}

#[test]
fn build_of_nothing_reports_zero() {
    let index = SearchIndex::new().expect("index");
    let mut reports = Vec::new();
    index.build(Vec::new(), |n| reports.push(n)).expect("build");
    assert_eq!(reports, vec![0]);
    assert!(index.is_empty());
}

#[test]
fn build_keeps_the_last_of_duplicate_ids() {
    let first = note("duplicate first");
    let id = first.id;
    let second = Document {
        id,
        text: "duplicate second".to_owned(),
        ..note("")
    };
    let index = index_with(vec![first, second]);
    assert_eq!(index.len(), 1);
    assert_eq!(index.search(&text("first")).expect("search").total, 0);
    assert_eq!(ids(&index, &text("second")), vec![id]);
}

#[test]
fn memory_bytes_grows_with_documents() {
    let index = SearchIndex::new().expect("index");
    let empty = index.memory_bytes();
    index
        .build((0..200).map(|i| note(&format!("some words {i}"))), |_| {})
        .expect("build");
    let small = index.memory_bytes();
    assert!(small > 0);
    index
        .build(
            (0..2_000).map(|i| note(&format!("many more words to hold {i} {}", i * 7))),
            |_| {},
        )
        .expect("build");
    let large = index.memory_bytes();
    assert!(small > empty, "{empty} -> {small}");
    assert!(large > small, "{small} -> {large}");
}

#[test]
fn debug_prints_no_content() {
    let secret = "my secret diary entry";
    let doc = tagged(note(secret), &["private-tag"]);
    let index = index_with(vec![doc.clone()]);
    let hits = index.search(&text("secret")).expect("search");
    let query = Query {
        tags: vec!["private-tag".to_owned()],
        ..text("secret diary")
    };
    for printed in [
        format!("{index:?}"),
        format!("{doc:?}"),
        format!("{hits:?}"),
        format!("{query:?}"),
    ] {
        assert!(!printed.contains("secret"), "{printed}");
        assert!(!printed.contains("diary"), "{printed}");
        assert!(!printed.contains("private-tag"), "{printed}");
    }
}

#[test]
fn drop_stops_the_writer_even_with_writes_queued() {
    let index = SearchIndex::new().expect("index");
    for i in 0..500 {
        index.upsert(note(&format!("queued {i}")));
    }
    drop(index); // joins the writer thread; a hang or panic fails the test
}

#[test]
fn concurrent_writers_and_readers() {
    let index = Arc::new(SearchIndex::new().expect("index"));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let index = Arc::clone(&index);
            std::thread::spawn(move || {
                for i in 0..100 {
                    let doc = note(&format!("writer{w} item{i} shared"));
                    index.upsert(doc);
                    // Each writer reads its own write.
                    let q = text(&format!("writer{w} item{i}"));
                    assert_eq!(index.search(&q).expect("search").total, 1);
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    assert_eq!(index.search(&text("shared")).expect("search").total, 400);
}

#[test]
fn writes_are_committed_in_batches_without_a_search_asking() {
    let index = SearchIndex::new().unwrap();
    for n in 0..50 {
        index.upsert(note(&format!("burst note number {n}")));
    }
    // Not searchable at once (the commit is batched)…
    let started = Instant::now();
    // …but within the commit interval, with nobody asking.
    while index.len() < 50 {
        assert!(
            started.elapsed() < COMMIT_INTERVAL * 8,
            "the batched commit never came ({} searchable)",
            index.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // A search right after a write asks for its commit and does not wait the interval.
    let started = Instant::now();
    index.upsert(note("a pelican, just now"));
    assert_eq!(ids(&index, &text("pelican")).len(), 1);
    assert!(
        started.elapsed() < COMMIT_INTERVAL,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn lookup_applies_the_filters_keeps_the_order_and_cuts_the_chunk() {
    let note_a = tagged(
        note("First sentence here. The dentist appointment is on Monday."),
        &["Health"],
    );
    let task_b = tagged(
        task("Call the dentist", TaskStatus::Open, None),
        &["health"],
    );
    let done_c = task("Pay the dentist bill", TaskStatus::Done, None);
    let mut old_d = created(
        note("An old note about teeth"),
        datetime!(2020-01-01 0:00 UTC),
    );
    old_d.tags = vec!["health".into()];
    let mut archived_e = note("Archived dental note");
    archived_e.archived = true;
    let (a, b, c, d, e) = (note_a.id, task_b.id, done_c.id, old_d.id, archived_e.id);
    let index = index_with(vec![note_a, task_b, done_c, old_d, archived_e]);
    let unknown = Uuid::new_v4();
    let all: Vec<(Uuid, Option<std::ops::Range<usize>>)> = [e, d, unknown, c, b, a]
        .iter()
        .map(|id| (*id, None))
        .collect();
    let lookup = |q: &Query| -> Vec<Uuid> {
        index
            .lookup(q, &all)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect()
    };
    // No filter but the default (archived hidden); the text is ignored; order kept.
    assert_eq!(lookup(&text("nothing matches this")), vec![d, c, b, a]);
    assert_eq!(
        lookup(&Query {
            include_archived: true,
            ..Query::default()
        }),
        vec![e, d, c, b, a]
    );
    let tag = |t: &str| Query {
        tags: vec![t.to_owned()],
        ..Query::default()
    };
    assert_eq!(lookup(&tag("HEALTH")), vec![d, b, a]);
    assert_eq!(
        lookup(&Query {
            kind: Some(Kind::Task),
            ..Query::default()
        }),
        vec![c, b]
    );
    assert_eq!(
        lookup(&Query {
            status: Some(TaskStatus::Open),
            ..Query::default()
        }),
        vec![b]
    );
    assert_eq!(
        lookup(&Query {
            created_to: Some(datetime!(2021-01-01 0:00 UTC)),
            ..Query::default()
        }),
        vec![d]
    );
    assert_eq!(
        lookup(&Query {
            created_from: Some(datetime!(2021-01-01 0:00 UTC)),
            tags: vec!["health".into()],
            ..Query::default()
        }),
        vec![b, a]
    );
    assert!(index.lookup(&Query::default(), &[]).unwrap().is_empty());
    // The snippet is the chunk's text when its range is valid, else the start.
    let hit = |range| {
        index
            .lookup(&Query::default(), &[(a, range)])
            .unwrap()
            .remove(0)
    };
    assert_eq!(
        hit(Some(21..58)).snippet.text,
        "The dentist appointment is on Monday."
    );
    assert!(
        hit(Some(3..1000))
            .snippet
            .text
            .starts_with("First sentence")
    );
    assert!(hit(None).snippet.text.starts_with("First sentence"));
    assert_eq!(hit(None).tags, vec!["Health".to_owned()]);
}
