//! Search and the task list: built from the decrypted vault at unlock, kept current on
//! every write, filtered, highlighted; never another person's items.

use crate::api::{api_login, api_request, get_json, wait_for_index};
use crate::support::*;

fn ids_in(page: &str) -> Vec<String> {
    let re = regex::Regex::new(r#"class="note-link" href="/items/([0-9a-f-]{36})""#).unwrap();
    re.captures_iter(page).map(|c| c[1].to_owned()).collect()
}

#[tokio::test]
async fn search_finds_filters_highlights_and_follows_every_write() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    for (text, tags) in [
        ("Running along the canal at sunrise", "sport, morning"),
        ("The canal boat needs a new engine", "boat"),
        ("Dinner ideas: lentil soup, flatbread", ""),
    ] {
        let resp = post_form(&app, &owner, "/notes", &[("text", text), ("tags", tags)]).await;
        assert_eq!(resp.status(), 303);
    }
    let resp = post_form(
        &app,
        &owner,
        "/tasks",
        &[
            ("text", "Renew the canal mooring permit"),
            ("due", "2026-12-03"),
            ("priority", "high"),
            ("tags", "boat"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/tasks?created=1");

    // Stemming, highlighting, AND of words.
    let page = text_of(&app, &owner, "/search?q=run").await;
    assert!(page.contains("1 result<"), "{page}");
    assert!(page.contains("<mark>Running</mark>"), "{page}");
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/search?q=canal").await).len(),
        3
    );
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/search?q=canal+engine").await).len(),
        1
    );
    // Filters.
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/search?q=canal&tag=boat").await).len(),
        2
    );
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/search?q=canal&kind=task").await).len(),
        1
    );
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/search?q=canal&kind=note").await).len(),
        2
    );
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/search?q=canal&status=open").await).len(),
        1
    );
    assert_eq!(
        ids_in(
            &text_of(
                &app,
                &owner,
                "/search?q=canal&from=2000-01-01&to=2000-12-31"
            )
            .await
        )
        .len(),
        0
    );
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/search?tag=morning").await).len(),
        1
    );
    let page = text_of(&app, &owner, "/search").await;
    assert!(
        page.contains("boat (2)"),
        "the tag filter lists tags with counts: {page}"
    );

    // The task list, soonest due first, and the quick "done" button.
    let tasks = text_of(&app, &owner, "/tasks").await;
    assert!(tasks.contains("Renew the canal mooring permit") && tasks.contains("due 2026-12-03"));
    let task_id = ids_in(&tasks)[0].clone();
    let resp = post_form(
        &app,
        &owner,
        &format!("/tasks/{task_id}/status"),
        &[("status", "done")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/tasks?status=done").await),
        [task_id]
    );
    assert!(ids_in(&text_of(&app, &owner, "/tasks?status=open").await).is_empty());

    // Edits, archive and delete show at once.
    let boat = ids_in(&text_of(&app, &owner, "/search?q=engine").await)[0].clone();
    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{boat}/edit"),
        &[
            ("version", "1"),
            ("text", "The canal boat needs a new propeller"),
            ("tags", "boat"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert!(ids_in(&text_of(&app, &owner, "/search?q=engine").await).is_empty());
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/search?q=propeller").await),
        std::slice::from_ref(&boat)
    );
    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{boat}/flags"),
        &[("action", "archive")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert!(ids_in(&text_of(&app, &owner, "/search?q=propeller").await).is_empty());
    assert_eq!(
        ids_in(&text_of(&app, &owner, "/search?q=propeller&archived=1").await),
        std::slice::from_ref(&boat)
    );
    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{boat}/delete"),
        &[("confirm", "yes")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert!(ids_in(&text_of(&app, &owner, "/search?q=propeller&archived=1").await).is_empty());

    // Bad input: a clear 400, on the page and in the API.
    for bad in [
        "/search?from=2026-99-01",
        "/search?kind=poem",
        "/search?status=maybe",
        "/search?colour=red",
        "/search?from=2026-02-01&to=2026-01-01",
        "/tasks?status=later",
    ] {
        assert_eq!(status_of(&app, &owner, bad).await, 400, "{bad}");
    }
    let session = api_login(&app, OWNER, OWNER_PASS).await;
    for bad in [
        "/api/v1/search?limit=0",
        "/api/v1/search?limit=500",
        "/api/v1/search?limit=x",
        "/api/v1/search?x=1",
    ] {
        let (status, json) = get_json(&app, &session, bad).await;
        assert_eq!(
            (status, json["error"].as_str()),
            (400, Some("bad_request")),
            "{bad}: {json}"
        );
    }
    // Hostile query text is just text.
    for odd in ["%22unclosed", "AND", "archived:true", "*", "%F0%9F%A6%86"] {
        let (status, json) = get_json(&app, &session, &format!("/api/v1/search?q={odd}")).await;
        assert_eq!(status, 200, "{odd}: {json}");
    }

    // Another member finds nothing of the owner's.
    add_member(&app, "max", "max's passphrase").await;
    let max = api_login(&app, "max", "max's passphrase").await;
    wait_for_index(&app, &max).await;
    let (_, json) = get_json(&app, &max, "/api/v1/search?q=canal").await;
    assert_eq!(json["total"], 0, "{json}");
    let (_, json) = get_json(&app, &max, "/api/v1/search").await;
    assert_eq!(json["total"], 0, "{json}");

    // Locked: no search at all.
    let (status, _) = api_request(
        &app,
        reqwest::Method::POST,
        "/api/v1/lock",
        Some(&session),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(status_of(&app, &owner, "/search?q=canal").await, 423);
    let (status, json) = get_json(&app, &session, "/api/v1/search?q=canal").await;
    assert_eq!(
        (status, json["error"].as_str()),
        (423, Some("vault_locked"))
    );
}
