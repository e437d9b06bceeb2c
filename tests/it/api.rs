//! `POST /api/v1/capture` with bearer tokens: captures while locked (sealed), reads
//! nothing, and answers bad requests with clear JSON errors, writing nothing.

use serde_json::Value;

use crate::support::*;

/// `method path` on the JSON API, with a bearer token and a body (its content type and
/// bytes) when given; the status and the JSON answer (the text, as a JSON string, when
/// the answer is not JSON).
pub async fn api_request(
    app: &cv_testkit::TestAppliance,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<(&str, reqwest::Body)>,
) -> (u16, Value) {
    let mut req = app.client().request(method, app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some((content_type, body)) = body {
        req = req.header("content-type", content_type).body(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// A JSON body for [`api_request`].
pub fn json_body(json: &str) -> Option<(&'static str, reqwest::Body)> {
    Some(("application/json", json.to_owned().into()))
}

/// `POST /api/v1/capture`.
async fn post(
    app: &cv_testkit::TestAppliance,
    token: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let path = "/api/v1/capture";
    let body = Some((content_type, body.into()));
    api_request(app, reqwest::Method::POST, path, token, body).await
}

/// Captures `text` with `tags` through the API (expecting 201); the new item's id.
pub async fn capture(
    app: &cv_testkit::TestAppliance,
    token: &str,
    text: &str,
    tags: &[&str],
) -> String {
    let body = serde_json::json!({"text": text, "tags": tags}).to_string();
    let (status, json) = post(app, Some(token), "application/json", body).await;
    assert_eq!(status, 201, "{json}");
    json["id"].as_str().unwrap().to_owned()
}

/// `GET path` with a bearer token; the status and the JSON body.
pub async fn get_json(app: &cv_testkit::TestAppliance, token: &str, path: &str) -> (u16, Value) {
    api_request(app, reqwest::Method::GET, path, Some(token), None).await
}

/// Logs in through `POST /api/v1/login`; the session token.
pub async fn api_login(app: &cv_testkit::TestAppliance, user: &str, pass: &str) -> String {
    let body = serde_json::json!({"user": user, "passphrase": pass}).to_string();
    let (status, json) = api_request(
        app,
        reqwest::Method::POST,
        "/api/v1/login",
        None,
        json_body(&body),
    )
    .await;
    assert_eq!(status, 200);
    json["token"].as_str().unwrap().to_owned()
}

/// Waits until the vault's search index is built (`GET /api/v1/vault`).
pub async fn wait_for_index(app: &cv_testkit::TestAppliance, token: &str) -> Value {
    cv_testkit::eventually(
        std::time::Duration::from_secs(60),
        "the search index to be ready",
        || async {
            let (status, json) = get_json(app, token, "/api/v1/vault").await;
            assert_eq!(status, 200, "{json}");
            assert_ne!(json["index"]["state"], "failed", "{json}");
            (json["index"]["state"] == "ready").then_some(json)
        },
    )
    .await
}

#[tokio::test]
async fn a_capture_token_writes_into_a_locked_vault_and_the_dump_reveals_nothing() {
    let app = appliance_with_owner().await;
    let token = create_token(&app, OWNER, "capture", "iphone-shortcut");
    let body = serde_json::json!({
        "text": "# Pond diary\n\nthe heron returned to the pond at dawn",
        "tags": ["birdwatching", "secret-tag-name"],
    });
    let (status, json) = post(&app, Some(&token), "application/json", body.to_string()).await;
    assert_eq!(status, 201, "{json}");
    let id = json["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a uuid: {id}");
    let other = serde_json::json!({"text": "kingfishers nest in the riverbank", "tags": ["river"]});
    let (status, _) = post(&app, Some(&token), "application/json", other.to_string()).await;
    assert_eq!(status, 201);

    // A capture token reads nothing, not even search.
    let (status, json) = get_json(&app, &token, "/api/v1/search?q=heron").await;
    assert_eq!((status, json["error"].as_str()), (403, Some("forbidden")));

    let dump = pg_dump(&app);
    assert_eq!(items_in_dump(&dump), 2);
    for secret in [
        "heron",
        "Pond diary",
        "birdwatching",
        "secret-tag-name",
        "kingfishers",
        "river",
        &token,
    ] {
        assert!(!dump.contains(secret), "{secret:?} is in the database dump");
    }

    // A login through the API unlocks the vault and builds its index: the captures are
    // found by their words, their tags, and a phrase.
    let session = api_login(&app, OWNER, OWNER_PASS).await;
    wait_for_index(&app, &session).await;
    let (status, json) = get_json(&app, &session, "/api/v1/search?q=herons").await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["total"], 1, "{json}");
    let hit = &json["results"][0];
    assert_eq!(hit["id"], id.as_str());
    assert!(hit["score"].as_f64().unwrap() > 0.0);
    let snippet = hit["snippet"].as_str().unwrap();
    let [start, end] = [0, 1].map(|i| hit["highlights"][0][i].as_u64().unwrap() as usize);
    assert_eq!(&snippet[start..end], "heron", "{hit}");
    let (_, json) = get_json(&app, &session, "/api/v1/search?tag=secret-tag-name").await;
    assert_eq!(json["results"][0]["id"], id.as_str(), "{json}");
    let (_, json) = get_json(&app, &session, "/api/v1/search?q=%22pond%20at%20dawn%22").await;
    assert_eq!(json["total"], 1, "{json}");
    let (_, json) = get_json(&app, &session, "/api/v1/search?q=kingfisher").await;
    assert_eq!(json["results"][0]["tags"], serde_json::json!(["river"]));

    // Logging in unlocks the vault; the capture is readable there.
    let owner = owner_client(&app).await;
    assert!(
        text_of(&app, &owner, "/notes")
            .await
            .contains("the heron returned")
    );
}

#[tokio::test]
async fn bad_api_requests_get_json_errors_and_write_nothing() {
    let app = appliance_with_owner().await;
    let token = create_token(&app, OWNER, "capture", "script");
    let ok = r#"{"text":"hello"}"#;

    let (status, json) = post(&app, None, "application/json", ok).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("token_invalid"))
    );
    let (status, _) = post(&app, Some("cvt_not-a-real-token"), "application/json", ok).await;
    assert_eq!(status, 401);

    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"text\": ".to_vec(),
            400,
            "bad_request",
        ),
        (
            "unknown field",
            br#"{"text":"x","colour":"red"}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "invalid UTF-8",
            b"{\"text\":\"\xff\xfe\"}".to_vec(),
            400,
            "bad_request",
        ),
        (
            "empty text",
            br#"{"text":"   "}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "missing text",
            br#"{"tags":["a"]}"#.to_vec(),
            400,
            "bad_request",
        ),
        (
            "10 000 tags",
            format!(
                r#"{{"text":"x","tags":[{}]}}"#,
                vec![r#""a""#; 10_000].join(",")
            )
            .into_bytes(),
            400,
            "bad_request",
        ),
        (
            "text over 4,096 characters",
            format!(r#"{{"text":"{}"}}"#, "x".repeat(20 * 1024)).into_bytes(),
            422,
            "text_too_long",
        ),
        (
            "body over 64 KiB",
            format!(r#"{{"text":"{}"}}"#, "x".repeat(100 * 1024)).into_bytes(),
            413,
            "body_too_large",
        ),
    ];
    for (what, body, want_status, want_code) in cases {
        let (status, json) = post(&app, Some(&token), "application/json", body).await;
        assert_eq!(status, want_status, "{what}: {json}");
        assert_eq!(json["error"].as_str(), Some(want_code), "{what}: {json}");
        assert!(
            json["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {json}"
        );
    }
    let (status, json) = post(&app, Some(&token), "text/plain", ok).await;
    assert_eq!(status, 400, "wrong content type: {json}");

    let read_only = create_token(&app, OWNER, "read", "reader");
    let (status, json) = post(&app, Some(&read_only), "application/json", ok).await;
    assert_eq!((status, json["error"].as_str()), (403, Some("forbidden")));

    let out = std::process::Command::new(exe())
        .args(["admin", "--data-dir"])
        .arg(&app.data_dir)
        .args(["revoke-token", "--user", OWNER, "--name", "script"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let (status, json) = post(&app, Some(&token), "application/json", ok).await;
    assert_eq!(
        (status, json["error"].as_str()),
        (401, Some("token_revoked"))
    );

    assert_eq!(
        items_in_dump(&pg_dump(&app)),
        0,
        "no refused request wrote an item"
    );
}
