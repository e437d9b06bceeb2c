//! Suggestions on the item page with the real model in jailed workers: a task with its
//! due date and evidence, accepted into a task; a tag carried by similar notes, added,
//! and no longer suggested after three dismissals; related notes; the answers stored
//! only encrypted; nothing written for another person, a stale page, an unknown
//! suggestion or a bad CSRF token.

use std::time::Duration;

use cv_testkit::TestAppliance;
use serde_json::Value;

use crate::api::{api_login, capture, get_json, wait_for_index};
use crate::support::*;
use crate::workers::appliance_with_workers;

const PLUMBER: &str = "Remember to call the plumber tomorrow about the leaking sink";
const PASSPORT: &str = "Don't forget to renew the passport by Friday";
const GARDEN: [&str; 3] = [
    "Planted tomatoes and basil in the raised bed",
    "Pruned the roses and spread mulch over the flower beds",
    "Watered the lettuce seedlings in the vegetable patch",
];
const UNTAGGED: [&str; 4] = [
    "Planted peppers and tomatoes in the raised vegetable bed",
    "Sowed carrots and lettuce seedlings in the vegetable patch",
    "Spread mulch around the roses in the flower bed",
    "Watered the basil and tomato seedlings in the raised bed",
];

async fn item(app: &TestAppliance, token: &str, id: &str) -> Value {
    let (status, json) = get_json(app, token, &format!("/api/v1/items/{id}")).await;
    assert_eq!(status, 200, "{json}");
    json
}

fn feedback_rows(app: &TestAppliance) -> usize {
    dump_rows(&pg_dump(app), "suggestion_feedback").len()
}

/// Whether the page offers the tag `garden`.
fn offers_garden(page: &str) -> bool {
    page.contains(r#"name="tag" value="garden""#)
}

#[tokio::test]
async fn tasks_tags_and_related_notes_are_suggested_and_answers_stay_encrypted() {
    let Some(app) = appliance_with_workers("").await else {
        return;
    };
    create_member(&app, OWNER, OWNER_PASS);
    add_member(&app, "mallory", "mallory's long passphrase").await;
    cv_testkit::eventually(Duration::from_secs(120), "local AI up", || async {
        let (_, health) = app.health().await;
        (health["ai"]["state"] == "up").then_some(())
    })
    .await;
    let session = api_login(&app, OWNER, OWNER_PASS).await;
    wait_for_index(&app, &session).await;
    let plumber = capture(&app, &session, PLUMBER, &[]).await;
    let passport = capture(&app, &session, PASSPORT, &[]).await;
    let mut garden = Vec::new();
    for text in GARDEN {
        garden.push(capture(&app, &session, text, &["garden"]).await);
    }
    let mut untagged = Vec::new();
    for text in UNTAGGED {
        untagged.push(capture(&app, &session, text, &[]).await);
    }
    cv_testkit::eventually(Duration::from_secs(120), "embeddings", || async {
        let (_, json) = get_json(&app, &session, "/api/v1/vault").await;
        let semantic = &json["index"]["semantic"];
        (semantic["items"] == 9 && semantic["pending"] == 0).then_some(())
    })
    .await;
    let owner = owner_client(&app).await;

    // A task with tomorrow's date (in the appliance's zone, which is this process's),
    // its evidence marked.
    let tomorrow = jiff::Zoned::now().date().tomorrow().unwrap().to_string();
    let page = text_of(&app, &owner, &format!("/items/{plumber}")).await;
    assert!(
        page.contains("Call the plumber tomorrow about the leaking sink"),
        "{page}"
    );
    assert!(
        page.contains(&format!(r#"datetime="{tomorrow}""#)),
        "{page}"
    );
    assert!(page.contains("<mark>Remember to</mark>"), "{page}");
    assert!(page.contains("<mark>tomorrow</mark>"), "{page}");
    let title = "Call the plumber tomorrow about the leaking sink";
    let accept = |version: &'static str, index: &'static str| {
        vec![
            ("version", version),
            ("index", index),
            ("title", title),
            ("action", "accept"),
        ]
    };

    // Another person cannot answer the owner's suggestions.
    let mallory = member_client(&app, "mallory", "mallory's long passphrase").await;
    let path = format!("/items/{plumber}/suggestions/task");
    let resp = post_form(&app, &mallory, &path, &accept("1", "0")).await;
    assert_eq!(resp.status(), 404);
    let resp = post_form(
        &app,
        &mallory,
        &format!("/items/{}/suggestions/tag", untagged[0]),
        &[("version", "1"), ("tag", "garden"), ("action", "accept")],
    )
    .await;
    assert_eq!(resp.status(), 404);
    // A stale page, an unknown suggestion, a title that is not the one at that
    // position, an unknown action, a bad CSRF token: refused, nothing written.
    for (fields, status) in [
        (accept("2", "0"), 409),
        (accept("1", "7"), 409),
        (accept("1", "1"), 409),
        (
            vec![
                ("version", "1"),
                ("index", "0"),
                ("title", "Pay mallory"),
                ("action", "accept"),
            ],
            409,
        ),
        (
            vec![
                ("version", "1"),
                ("index", "0"),
                ("title", title),
                ("action", "maybe"),
            ],
            400,
        ),
    ] {
        let resp = post_form(&app, &owner, &path, &fields).await;
        assert_eq!(resp.status(), status, "{fields:?}");
    }
    let resp = owner
        .post(app.url(&path))
        .form(&[
            ("csrf", "not-the-token"),
            ("version", "1"),
            ("index", "0"),
            ("title", title),
            ("action", "accept"),
        ])
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());
    assert_eq!(feedback_rows(&app), 0);
    assert_eq!(item(&app, &session, &plumber).await["version"], 1);

    // Accepting makes a task of its own, due tomorrow, with the clean title (no cue, no
    // Markdown); the note stays as it was, and the suggestion is not offered again.
    let resp = post_form(&app, &owner, &path, &accept("1", "0")).await;
    assert_eq!(resp.status(), 303);
    let task = location(&resp)
        .strip_prefix("/items/")
        .expect("the answer leads to the new task")
        .to_owned();
    assert_ne!(task, plumber);
    let json = item(&app, &session, &task).await;
    assert_eq!(json["text"], title, "{json}");
    assert_eq!(json["task"]["due"], tomorrow.as_str(), "{json}");
    assert_eq!(json["task"]["status"], "open", "{json}");
    let note = item(&app, &session, &plumber).await;
    assert_eq!(note["version"], 1, "{note}");
    assert_eq!(note["task"], Value::Null, "{note}");
    let page = text_of(&app, &owner, &format!("/items/{plumber}")).await;
    assert!(!page.contains("<mark>Remember to</mark>"), "{page}");

    // A dismissed task suggestion is not shown again.
    let page = text_of(&app, &owner, &format!("/items/{passport}")).await;
    assert!(page.contains("Renew the passport"), "{page}");
    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{passport}/suggestions/task"),
        &[
            ("version", "1"),
            ("index", "0"),
            ("title", "Renew the passport"),
            ("action", "dismiss"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let page = text_of(&app, &owner, &format!("/items/{passport}")).await;
    assert!(!page.contains("Renew the passport"), "{page}");
    assert_eq!(item(&app, &session, &passport).await["task"], Value::Null);

    // Related notes of an untagged garden note: the garden notes.
    let page = text_of(&app, &owner, &format!("/items/{}", untagged[0])).await;
    let linked = garden
        .iter()
        .filter(|id| page.contains(&format!(r#"href="/items/{id}""#)))
        .count();
    assert!(linked >= 2, "{page}");
    assert!(page.contains("related ·"), "{page}");
    // The tag carried by its similar notes is suggested, with that evidence.
    assert!(offers_garden(&page), "{page}");
    assert!(page.contains("similar notes carry it"), "{page}");
    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{}/suggestions/tag", untagged[0]),
        &[("version", "1"), ("tag", "garden"), ("action", "accept")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let json = item(&app, &session, &untagged[0]).await;
    assert_eq!(json["tags"], serde_json::json!(["garden"]), "{json}");
    assert_eq!(json["version"], 2, "{json}");
    // A tag that is not suggested cannot be added through this path.
    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{}/suggestions/tag", untagged[1]),
        &[("version", "1"), ("tag", "mallory"), ("action", "accept")],
    )
    .await;
    assert_eq!(resp.status(), 409);

    // Dismissed on three notes, it is no longer suggested anywhere.
    for id in &untagged[1..] {
        let page = text_of(&app, &owner, &format!("/items/{id}")).await;
        assert!(offers_garden(&page), "{page}");
        let resp = post_form(
            &app,
            &owner,
            &format!("/items/{id}/suggestions/tag"),
            &[("version", "1"), ("tag", "garden"), ("action", "dismiss")],
        )
        .await;
        assert_eq!(resp.status(), 303);
        assert_eq!(item(&app, &session, id).await["version"], 1);
    }
    for id in &untagged[1..] {
        let page = text_of(&app, &owner, &format!("/items/{id}")).await;
        assert!(!offers_garden(&page), "{page}");
    }

    // Six answers, stored only encrypted (format 1, blob type 7).
    let dump = pg_dump(&app);
    let rows = dump_rows(&dump, "suggestion_feedback");
    assert_eq!(rows.len(), 6, "{rows:?}");
    for row in &rows {
        assert_eq!(row.len(), 4, "{row:?}");
        assert!(row[3].starts_with("\\\\x0107"), "{}", &row[3][..20]);
    }
    for secret in ["garden", "plumber", "Plumber", "passport", "tomatoes"] {
        assert!(!dump.contains(secret), "{secret:?} is in the database dump");
    }
}
