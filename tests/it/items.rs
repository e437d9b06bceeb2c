//! Items: edited with every version kept (shown as diffs), tagged, pinned, archived,
//! made tasks, deleted with their keys; and the same items through the JSON API.

use diesel_async::SimpleAsyncConnection as _;
use reqwest::Method;
use serde_json::Value;

use crate::api::{api_request, json_body};
use crate::support::*;

/// The id of the newest note linked from `/notes`.
async fn newest_item(app: &cv_testkit::TestAppliance, client: &reqwest::Client) -> String {
    let page = text_of(app, client, "/notes").await;
    let re = regex::Regex::new(r#"href="/items/([0-9a-f-]{36})""#).unwrap();
    re.captures(&page)
        .unwrap_or_else(|| panic!("no item link on /notes: {page}"))[1]
        .to_owned()
}

#[tokio::test]
async fn an_item_is_edited_tagged_made_a_task_and_keeps_its_history() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;

    // A phone shares a page to Context Vault (the manifest's share target): it arrives
    // in the capture box, escaped.
    let resp = app
        .client()
        .get(app.url("/manifest.webmanifest"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/manifest+json");
    let manifest: Value = resp.json().await.unwrap();
    assert_eq!(manifest["share_target"]["action"], "/capture");
    let page = text_of(
        &app,
        &owner,
        "/capture?title=A%20recipe&text=%3Cb%3Elentils%3C%2Fb%3E&url=https%3A%2F%2Fexample.org%2Fsoup",
    )
    .await;
    assert!(
        page.contains("A recipe\n&#60;b&#62;lentils&#60;/b&#62;\nhttps:"),
        "{page}"
    );
    assert!(!page.contains("<b>lentils"));
    // Shared while logged out: the login leads back to the capture box, text and all.
    let phone = app.client();
    let resp = phone
        .get(app.url("/capture?text=shared%20thing"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let to_login = location(&resp);
    assert_eq!(to_login, "/login?next=%2Fcapture%3Ftext%3Dshared%2520thing");
    let login_page = text_of(&app, &phone, &to_login).await;
    assert!(login_page.contains(r#"name="next" value="/capture?text=shared%20thing""#));
    let resp = phone
        .post(app.url("/login"))
        .form(&[
            ("name", OWNER),
            ("passphrase", OWNER_PASS),
            ("next", "/capture?text=shared%20thing"),
            ("csrf", &csrf_in(&login_page)),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/capture?text=shared%20thing");

    let resp = post_form(
        &app,
        &owner,
        "/notes",
        &[
            (
                "text",
                "# Groceries\n\nbuy milk\ncall the plumber\n<script>alert(1)</script>",
            ),
            ("tags", "home, errands , home"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let id = newest_item(&app, &owner).await;
    let item = format!("/items/{id}");

    let page = text_of(&app, &owner, &item).await;
    assert!(page.contains("<h1>Groceries</h1>"), "Markdown is rendered");
    assert!(!page.contains("<script>alert"), "raw HTML is never live");
    assert!(page.contains("&lt;script&gt;"));
    // Without the local AI: no related notes, and the page says why; the rule-based
    // task suggestions still come ("buy milk" starts with a task verb).
    assert!(
        page.contains("Related notes appear once this note is indexed by meaning"),
        "{page}"
    );
    assert!(page.contains(r#"name="title" value="Buy milk""#), "{page}");
    assert!(
        page.contains("#home") && page.contains("#errands"),
        "{page}"
    );
    assert_eq!(
        page.matches(">#home<").count(),
        1,
        "duplicate tags are merged"
    );

    // Edit: a new version.
    let resp = post_form(
        &app,
        &owner,
        &format!("{item}/edit"),
        &[
            ("version", "1"),
            ("text", "# Groceries\n\nbuy oat milk\ncall the plumber"),
            ("tags", "home, weekend"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), format!("{item}?saved=1"));
    // A second edit of version 1 (another tab) is refused, and keeps what was typed.
    let resp = post_form(
        &app,
        &owner,
        &format!("{item}/edit"),
        &[("version", "1"), ("text", "stale tab text"), ("tags", "")],
    )
    .await;
    assert_eq!(resp.status(), 409);
    let body = resp.text().await.unwrap();
    assert!(body.contains("changed elsewhere") && body.contains("stale tab text"));

    // Make it a task, then finish it.
    let resp = post_form(
        &app,
        &owner,
        &format!("{item}/task"),
        &[("version", "2"), ("status", "open")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert!(text_of(&app, &owner, &item).await.contains("task: open"));
    for (field, bad) in [
        ("status", "bogus"),
        ("due", "2026-13-45"),
        ("priority", "urgent"),
    ] {
        let mut fields = vec![("version", "3"), ("status", "done")];
        fields.retain(|(k, _)| *k != field);
        fields.push((field, bad));
        let resp = post_form(&app, &owner, &format!("{item}/task"), &fields).await;
        assert_eq!(resp.status(), 400, "{field}={bad}");
    }
    let resp = post_form(
        &app,
        &owner,
        &format!("{item}/task"),
        &[
            ("version", "3"),
            ("status", "done"),
            ("priority", "high"),
            ("due", "2026-12-03"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);

    let history = text_of(&app, &owner, &format!("{item}/history")).await;
    for want in [
        "Version 4",
        "Version 1",
        "status: open → done",
        "priority: normal → high",
        "due: none → 2026-12-03",
        "became a task",
        "tags added: weekend",
        "tags removed: errands",
        r#"<span class="diff-removed">− buy milk</span>"#,
        r#"<span class="diff-added">+ buy oat milk</span>"#,
    ] {
        assert!(history.contains(want), "history lacks {want:?}: {history}");
    }

    // Pin, archive.
    let resp = post_form(&app, &owner, &format!("{item}/flags"), &[("action", "pin")]).await;
    assert_eq!(resp.status(), 303);
    assert!(text_of(&app, &owner, "/notes").await.contains("pinned"));
    let resp = post_form(
        &app,
        &owner,
        &format!("{item}/flags"),
        &[("action", "archive")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert!(!text_of(&app, &owner, "/notes").await.contains(&id));
    assert!(text_of(&app, &owner, &item).await.contains("archived"));
    let resp = post_form(
        &app,
        &owner,
        &format!("{item}/flags"),
        &[("action", "explode")],
    )
    .await;
    assert_eq!(resp.status(), 400);

    // Locked: nothing can be read or changed.
    lock(&app, &owner).await;
    assert_eq!(status_of(&app, &owner, &item).await, 423);
    assert_eq!(
        status_of(&app, &owner, &format!("{item}/history")).await,
        423
    );
    unlock(&app, &owner, OWNER_PASS).await;

    // Delete: refused without the confirmation, then gone with every version.
    let resp = post_form(&app, &owner, &format!("{item}/delete"), &[]).await;
    assert_eq!(resp.status(), 400);
    assert_eq!(status_of(&app, &owner, &item).await, 200);
    let resp = post_form(
        &app,
        &owner,
        &format!("{item}/delete"),
        &[("confirm", "yes")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/notes?deleted=1");
    assert_eq!(status_of(&app, &owner, &item).await, 404);
    assert_eq!(status_of(&app, &owner, "/items/not-a-uuid").await, 404);
    let dump = pg_dump(&app);
    assert!(dump_rows(&dump, "items").is_empty());
    assert!(dump_rows(&dump, "item_versions").is_empty());
}

#[tokio::test]
async fn an_earlier_version_is_restored_as_a_new_version() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    assert_eq!(
        capture_note(&app, &owner, "first draft of the plan")
            .await
            .status(),
        303
    );
    let item = format!("/items/{}", newest_item(&app, &owner).await);
    let resp = post_form(
        &app,
        &owner,
        &format!("{item}/edit"),
        &[
            ("version", "1"),
            ("text", "a worse second draft"),
            ("tags", "plans"),
        ],
    )
    .await;
    assert_eq!(resp.status(), 303);

    // The history offers version 1 back, against version 2 as the current one.
    let history = text_of(&app, &owner, &format!("{item}/history")).await;
    assert!(history.contains("Restore this version"), "{history}");
    assert!(history.contains(r#"name="version" value="2""#), "{history}");
    assert!(history.contains(r#"name="from" value="1""#), "{history}");
    assert!(!history.contains(r#"name="from" value="2""#), "{history}");

    let restore = |version: &'static str, from: &'static str| {
        let (app, owner, item) = (&app, &owner, &item);
        async move {
            post_form(
                app,
                owner,
                &format!("{item}/restore"),
                &[("version", version), ("from", from)],
            )
            .await
        }
    };
    let resp = restore("2", "1").await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), format!("{item}?saved=1"));
    let page = text_of(&app, &owner, &item).await;
    assert!(page.contains("first draft of the plan"), "{page}");
    assert!(!page.contains("worse second draft"), "{page}");
    assert!(page.contains("version 3"), "{page}");
    assert!(
        !page.contains("#plans"),
        "the tags of version 1 come back too"
    );
    let history = text_of(&app, &owner, &format!("{item}/history")).await;
    assert!(
        history.contains("Version 3") && history.contains("Version 2"),
        "kept, not rewritten: {history}"
    );

    // The history page of another tab still says version 2: refused, nothing changed.
    let resp = restore("2", "2").await;
    assert_eq!(resp.status(), 409);
    let body = resp.text().await.unwrap();
    assert!(body.contains("changed elsewhere"), "{body}");
    assert!(
        body.contains(r#"name="version" value="3""#),
        "the history again: {body}"
    );
    let page = text_of(&app, &owner, &item).await;
    assert!(page.contains("first draft of the plan") && page.contains("version 3"));

    // A version that does not exist.
    assert_eq!(restore("3", "99").await.status(), 404);
}

#[tokio::test]
async fn the_json_api_logs_in_reads_locks_and_reports_tampering() {
    let app = appliance_with_owner().await;
    let login = |pass: &str| format!(r#"{{"user":"{OWNER}","passphrase":"{pass}"}}"#);

    let (status, json) = api_request(
        &app,
        Method::POST,
        "/api/v1/login",
        None,
        json_body(&login("wrong passphrase")),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("login_failed"))
    );
    let (status, _) = api_request(
        &app,
        Method::POST,
        "/api/v1/login",
        None,
        json_body(r#"{"user":"olivia","passphrase":"x","otp":1}"#),
    )
    .await;
    assert_eq!(status, 400, "unknown fields are refused");
    let (status, json) = api_request(
        &app,
        Method::POST,
        "/api/v1/login",
        None,
        json_body(&login(OWNER_PASS)),
    )
    .await;
    assert_eq!(status, 200, "{json}");
    let session = json["token"].as_str().unwrap().to_owned();
    assert!(session.starts_with("cvs_"));

    let (status, json) = api_request(
        &app,
        Method::POST,
        "/api/v1/capture",
        Some(&session),
        json_body(r#"{"text":"the otters came back","tags":["river"]}"#),
    )
    .await;
    assert_eq!(status, 201, "{json}");
    let id = json["id"].as_str().unwrap().to_owned();
    let item = format!("/api/v1/items/{id}");
    let (status, json) = api_request(&app, Method::GET, &item, Some(&session), None).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["text"], "the otters came back");
    assert_eq!(json["tags"], serde_json::json!(["river"]));
    assert_eq!(json["kind"], "note");
    assert_eq!(json["version"], 1);

    let capture_only = create_token(&app, OWNER, "capture", "shortcut");
    let (status, json) = api_request(&app, Method::GET, &item, Some(&capture_only), None).await;
    assert_eq!((status, json["error"].as_str()), (403, Some("forbidden")));
    let (status, _) = api_request(
        &app,
        Method::GET,
        "/api/v1/items/00000000-0000-0000-0000-000000000000",
        Some(&session),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = api_request(
        &app,
        Method::GET,
        "/api/v1/items/nonsense",
        Some(&session),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = api_request(&app, Method::GET, &item, Some("cvs_forged"), None).await;
    assert_eq!(status, 401);

    // A flipped bit in the stored ciphertext: reported, never garbage.
    let mut conn = cv_db::connect_once(&app.database_url()).await.unwrap();
    conn.batch_execute(
        "UPDATE item_versions SET content = set_byte(content, 20, get_byte(content, 20) # 1)",
    )
    .await
    .unwrap();
    let (status, json) = api_request(&app, Method::GET, &item, Some(&session), None).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (409, Some("item_tampered")),
        "{json}"
    );
    assert!(!json.to_string().contains("otters"));

    let (status, json) =
        api_request(&app, Method::POST, "/api/v1/lock", Some(&session), None).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["was_unlocked"], true);
    let (status, json) = api_request(&app, Method::GET, &item, Some(&session), None).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (423, Some("vault_locked"))
    );

    let (status, json) = api_request(&app, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(json["openapi"], "3.1.0");
}

#[tokio::test]
async fn tokens_are_managed_in_the_dashboard_and_the_account_activity_shows_their_use() {
    let app = appliance_with_owner().await;
    // A failed login first, for the activity page.
    assert_eq!(
        login(&app, &app.client(), OWNER, "not my passphrase")
            .await
            .status(),
        401
    );
    let owner = owner_client(&app).await;
    let resp = post_form(
        &app,
        &owner,
        "/account/tokens",
        &[("name", ""), ("scope", "capture")],
    )
    .await;
    assert_eq!(resp.status(), 400, "a token needs a name");
    let resp = post_form(
        &app,
        &owner,
        "/account/tokens",
        &[("name", "phone"), ("scope", "root")],
    )
    .await;
    assert_eq!(resp.status(), 400, "unknown scope");
    let resp = post_form(
        &app,
        &owner,
        "/account/tokens",
        &[("name", "phone"), ("scope", "capture")],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let token = api_token_in(&resp.text().await.unwrap());
    assert!(
        !text_of(&app, &owner, "/account/tokens")
            .await
            .contains(&token),
        "shown once only"
    );
    let (status, _) = api_request(
        &app,
        Method::POST,
        "/api/v1/capture",
        Some(&token),
        json_body(r#"{"text":"from the phone"}"#),
    )
    .await;
    assert_eq!(status, 201);
    let list = text_of(&app, &owner, "/account/tokens").await;
    let id = token_id_in(&list);
    assert!(!list.contains("last used never"), "use is recorded: {list}");
    let resp = post_form(&app, &owner, &format!("/account/tokens/{id}/revoke"), &[]).await;
    assert_eq!(resp.status(), 303);
    let (status, json) = api_request(
        &app,
        Method::POST,
        "/api/v1/capture",
        Some(&token),
        json_body(r#"{"text":"after revocation"}"#),
    )
    .await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("token_revoked"))
    );
    // Revoking twice, or someone else's id: not found.
    let resp = post_form(&app, &owner, &format!("/account/tokens/{id}/revoke"), &[]).await;
    assert_eq!(resp.status(), 404);

    let activity = text_of(&app, &owner, "/account/activity").await;
    for want in [
        "Failed login",
        "Logged in",
        "API token created",
        "API token used",
        "API token revoked",
        "phone (capture)",
    ] {
        assert!(
            activity.contains(want),
            "activity lacks {want:?}: {activity}"
        );
    }
    assert!(!activity.contains(&token));
    assert!(
        !activity.contains("from the phone"),
        "no vault content in the log"
    );
}
