//! `POST /api/v1/capture` with bearer tokens: captures while locked (sealed), reads
//! nothing, and answers bad requests with clear JSON errors, writing nothing.

use crate::support::*;

pub fn create_token(
    app: &cv_testkit::TestAppliance,
    user: &str,
    scope: &str,
    name: &str,
) -> String {
    let out = std::process::Command::new(exe())
        .args(["admin", "--data-dir"])
        .arg(&app.data_dir)
        .args([
            "create-token",
            "--user",
            user,
            "--scope",
            scope,
            "--name",
            name,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let re = regex::Regex::new(r"cvt_[A-Za-z0-9_-]{43}").unwrap();
    re.find(&stdout)
        .expect("a token in the output")
        .as_str()
        .to_owned()
}

async fn post(
    app: &cv_testkit::TestAppliance,
    token: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, serde_json::Value) {
    let mut req = app
        .client()
        .post(app.url("/api/v1/capture"))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

fn items_in_dump(dump: &str) -> usize {
    dump_rows(dump, "items").len()
}

#[tokio::test]
async fn a_capture_token_writes_into_a_locked_vault_and_the_dump_reveals_nothing() {
    let app = appliance_with_owner().await;
    let token = create_token(&app, OWNER, "capture", "iphone-shortcut");
    let body = serde_json::json!({
        "text": "the heron returned to the pond at dawn",
        "tags": ["birdwatching", "secret-tag-name"],
    });
    let (status, json) = post(&app, Some(&token), "application/json", body.to_string()).await;
    assert_eq!(status, 201, "{json}");
    let id = json["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a uuid: {id}");

    let dump = pg_dump(&app);
    assert_eq!(items_in_dump(&dump), 1);
    for secret in ["heron", "birdwatching", "secret-tag-name", &token] {
        assert!(!dump.contains(secret), "{secret:?} is in the database dump");
    }

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
            "text over 16 KiB",
            format!(r#"{{"text":"{}"}}"#, "x".repeat(20 * 1024)).into_bytes(),
            413,
            "body_too_large",
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
