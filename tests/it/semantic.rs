//! Search by meaning with the real model in jailed workers: notes embedded in the
//! background and stored encrypted, found by a paraphrase that shares no word with them,
//! the vector index rebuilt from the encrypted rows at unlock, a note captured while
//! locked embedded after the unlock; never another person's items; by words only, and
//! saying so, when the AI is off.

use std::time::Duration;

use cv_testkit::{Launch, TestAppliance};
use serde_json::Value;

use crate::api::{api_login, api_request, capture, get_json, wait_for_index};
use crate::support::*;
use crate::workers::appliance_with_workers;

const DENTIST: &str = "Book an appointment with the dentist about the aching molar";
const PARAPHRASE: &str = "tooth pain doctor visit";
const NOTES: [&str; 3] = [
    DENTIST,
    "The canal boat needs a new engine before the summer",
    "Buy oat milk, rye bread and apples at the market",
];
const LOCKED_NOTE: &str = "The kitten needs its vaccination at the vet next week";
const LOCKED_PARAPHRASE: &str = "take the cat to the animal doctor";

async fn search(app: &TestAppliance, token: &str, query: &str) -> Value {
    let (status, json) = get_json(app, token, &format!("/api/v1/search?{query}")).await;
    assert_eq!(status, 200, "{json}");
    json
}

/// The hit for `id` in a search's results, if any.
fn hit<'a>(json: &'a Value, id: &str) -> Option<&'a Value> {
    json["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == id)
}

/// Waits until `query` finds `id` by meaning (its embedding is stored in the
/// background); returns the response.
async fn found_by_meaning(app: &TestAppliance, token: &str, query: &str, id: &str) -> Value {
    cv_testkit::eventually(Duration::from_secs(120), "a match in meaning", || async {
        let json = search(app, token, query).await;
        let found = hit(&json, id).is_some_and(|h| h["matched"] == "meaning");
        found.then_some(json)
    })
    .await
}

async fn ai_up(app: &TestAppliance) {
    cv_testkit::eventually(Duration::from_secs(120), "local AI up", || async {
        let (_, health) = app.health().await;
        (health["ai"]["state"] == "up").then_some(())
    })
    .await;
}

#[tokio::test]
async fn paraphrases_find_notes_by_meaning_and_the_vectors_stay_encrypted() {
    let Some(app) = appliance_with_workers("").await else {
        return;
    };
    create_member(&app, OWNER, OWNER_PASS);
    add_member(&app, "mallory", "mallory's long passphrase").await;
    ai_up(&app).await;
    let session = api_login(&app, OWNER, OWNER_PASS).await;
    wait_for_index(&app, &session).await;
    let mut ids = Vec::new();
    for (text, tags) in NOTES.iter().zip([&["health"][..], &["boat"], &[]]) {
        ids.push(capture(&app, &session, text, tags).await);
    }
    let dentist = ids[0].clone();

    // No word in common, found by meaning; the API says how it searched.
    let q = format!("q={}", PARAPHRASE.replace(' ', "+"));
    let json = found_by_meaning(&app, &session, &q, &dentist).await;
    assert_eq!(json["mode"], "hybrid", "{json}");
    assert_eq!(json["words_only_reason"], Value::Null, "{json}");
    assert_eq!(json["results"][0]["id"], dentist.as_str(), "{json}");
    // The snippet of a meaning-only hit is its best chunk: here the whole note.
    assert_eq!(json["results"][0]["snippet"], DENTIST, "{json}");
    // Filters apply to meaning too.
    let json = search(&app, &session, &format!("{q}&tag=boat")).await;
    assert!(hit(&json, &dentist).is_none(), "{json}");
    let json = search(&app, &session, &format!("{q}&kind=task")).await;
    assert!(hit(&json, &dentist).is_none(), "{json}");
    let json = search(&app, &session, &format!("{q}&tag=health")).await;
    assert!(hit(&json, &dentist).is_some(), "{json}");
    // A word query still matches by its words.
    let json = search(&app, &session, "q=dentist").await;
    assert_eq!(json["results"][0]["id"], dentist.as_str(), "{json}");
    let matched = json["results"][0]["matched"].as_str().unwrap();
    assert!(matched == "words" || matched == "both", "{json}");
    // The page shows why each hit matched.
    let owner = owner_client(&app).await;
    let page = text_of(&app, &owner, &format!("/search?{q}")).await;
    assert!(page.contains(&format!("/items/{dentist}")), "{page}");
    assert!(page.contains(">meaning</span>"), "{page}");
    assert!(!page.contains("Searching by words only"), "{page}");

    // Another person never gets the owner's items, by words or meaning.
    let mallory = api_login(&app, "mallory", "mallory's long passphrase").await;
    wait_for_index(&app, &mallory).await;
    let own = capture(&app, &mallory, "My dentist is very kind", &[]).await;
    found_by_meaning(&app, &mallory, "q=tooth+doctor+appointment", &own).await;
    for query in [q.as_str(), "q=dentist", "q=canal+boat+engine", "q="] {
        let json = search(&app, &mallory, query).await;
        for id in &ids {
            assert!(hit(&json, id).is_none(), "{query}: {json}");
        }
    }

    // The database holds one encrypted row per item, and no text.
    let dump = pg_dump(&app);
    let rows = dump_rows(&dump, "item_embeddings");
    assert_eq!(rows.len(), 4, "{rows:?}");
    for row in &rows {
        // item_id, version, model, ciphertext: format 1, blob type 6 (embeddings).
        assert_eq!(row.len(), 4, "{row:?}");
        assert_eq!(row[2], "all-MiniLM-L6-v2");
        assert!(row[3].starts_with("\\\\x0106"), "{}", &row[3][..20]);
    }
    for secret in NOTES
        .iter()
        .chain(&["My dentist", "dentist", "aching molar"])
    {
        assert!(!dump.contains(secret), "{secret:?} is in the database dump");
    }

    // Lock; capture while locked (sealed to the capture key).
    let (status, _) = api_request(
        &app,
        reqwest::Method::POST,
        "/api/v1/lock",
        Some(&session),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let capture_token = create_token(&app, OWNER, "capture", "phone");
    let kitten = capture(&app, &capture_token, LOCKED_NOTE, &[]).await;
    assert!(!pg_dump(&app).contains("kitten"));

    // Unlock: the vectors come back from the encrypted rows (not embedded again), and
    // the note captured while locked is embedded afterwards.
    let session = api_login(&app, OWNER, OWNER_PASS).await;
    wait_for_index(&app, &session).await;
    let status = cv_testkit::eventually(Duration::from_secs(120), "embeddings", || async {
        let (_, json) = get_json(&app, &session, "/api/v1/vault").await;
        let semantic = json["index"]["semantic"].clone();
        (semantic["items"] == 4 && semantic["pending"] == 0).then_some(semantic)
    })
    .await;
    assert_eq!(status["embedded"], 1, "{status}");
    assert_eq!(status["state"], "ready", "{status}");
    let json = found_by_meaning(&app, &session, &q, &dentist).await;
    assert_eq!(json["mode"], "hybrid");
    let q = format!("q={}", LOCKED_PARAPHRASE.replace(' ', "+"));
    let json = found_by_meaning(&app, &session, &q, &kitten).await;
    assert_eq!(json["results"][0]["id"], kitten.as_str(), "{json}");

    // Deleting an item deletes its embeddings.
    let owner = owner_client(&app).await;
    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{kitten}/delete"),
        &[("confirm", "yes")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(dump_rows(&pg_dump(&app), "item_embeddings").len(), 4);
    let json = search(&app, &session, &q).await;
    assert!(hit(&json, &kitten).is_none(), "{json}");
}

#[tokio::test]
async fn without_the_ai_search_is_by_words_and_says_so() {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipped: the appliance mode needs root");
        return;
    }
    let launch = Launch::Appliance {
        env: Vec::new(),
        extra: "[workers]\ncount = 0\n".into(),
    };
    let app = TestAppliance::launch(&exe(), launch).await;
    create_member(&app, OWNER, OWNER_PASS);
    let session = api_login(&app, OWNER, OWNER_PASS).await;
    wait_for_index(&app, &session).await;
    let dentist = capture(&app, &session, DENTIST, &[]).await;

    let json = search(&app, &session, "q=dentist").await;
    assert_eq!(json["mode"], "words", "{json}");
    assert_eq!(json["results"][0]["id"], dentist.as_str(), "{json}");
    assert_eq!(json["results"][0]["matched"], "words", "{json}");
    let reason = json["words_only_reason"].as_str().unwrap();
    assert!(reason.contains("local AI is off"), "{json}");
    // A listing without text matched nothing in particular.
    let json = search(&app, &session, "q=").await;
    assert_eq!(json["results"][0]["matched"], Value::Null, "{json}");
    assert_eq!(json["words_only_reason"], Value::Null, "{json}");
    // No shared word, no meaning: nothing.
    let json = search(&app, &session, "q=tooth+pain+doctor+visit").await;
    assert_eq!(json["total"], 0, "{json}");
    let (_, vault) = get_json(&app, &session, "/api/v1/vault").await;
    assert_eq!(vault["index"]["semantic"]["state"], "off", "{vault}");

    let owner = owner_client(&app).await;
    let page = text_of(&app, &owner, "/search?q=dentist").await;
    assert!(
        page.contains("Searching by words only: the local AI is off"),
        "{page}"
    );
    assert!(page.contains(">words</span>"), "{page}");
    // Bad input is still a clear 400.
    let (status, json) = get_json(&app, &session, "/api/v1/search?q=x&kind=poem").await;
    assert_eq!(status, 400, "{json}");
    assert!(dump_rows(&pg_dump(&app), "item_embeddings").is_empty());
}
