//! Bad input gets a clear 4xx and a message, never a 500 or a half-done change.

use diesel_async::SimpleAsyncConnection as _;

use crate::support::*;

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = appliance_with_owner().await;
    let client = app.client();
    let wrong = login(&app, &client, OWNER, "not the passphrase").await;
    assert_eq!(wrong.status(), 401);
    let wrong = wrong.text().await.unwrap();
    let unknown = login(&app, &client, "nobody-here", "not the passphrase").await;
    assert_eq!(unknown.status(), 401);
    let unknown = unknown.text().await.unwrap();
    assert!(wrong.contains("Wrong user name or passphrase"));
    assert!(unknown.contains("Wrong user name or passphrase"));
    // Nothing in the page tells the two apart (apart from the echoed name and token).
    assert!(!unknown.to_lowercase().contains("no such user"));
}

#[tokio::test]
async fn logins_are_throttled_per_account() {
    let app = appliance_with_owner().await;
    let client = app.client();
    for _ in 0..5 {
        assert_eq!(
            login(&app, &client, OWNER, "guess guess guess")
                .await
                .status(),
            401
        );
    }
    let resp = login(&app, &client, OWNER, OWNER_PASS).await;
    assert_eq!(
        resp.status(),
        429,
        "even the right passphrase waits once the account is throttled"
    );
    assert!(resp.headers().get("retry-after").is_some());
    assert!(
        resp.text()
            .await
            .unwrap()
            .to_lowercase()
            .contains("try again")
    );
}

#[tokio::test]
async fn missing_or_forged_csrf_tokens_are_refused() {
    let app = appliance_with_owner().await;
    let client = app.client();
    let _ = csrf_for(&app, &client, "/login").await;
    let missing = client
        .post(app.url("/login"))
        .form(&[("name", OWNER), ("passphrase", OWNER_PASS)])
        .send()
        .await
        .unwrap();
    // A form without its token is a malformed form (400) or a CSRF failure (403).
    assert!(
        missing.status() == 400 || missing.status() == 403,
        "{}",
        missing.status()
    );
    let forged = client
        .post(app.url("/login"))
        .form(&[
            ("name", OWNER),
            ("passphrase", OWNER_PASS),
            ("csrf", "forged-token"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(forged.text().await.unwrap().contains("reload the page"));

    // Logged in: a forged token on logout is refused and the session survives.
    let owner = owner_client(&app).await;
    let resp = owner
        .post(app.url("/logout"))
        .form(&[("csrf", "forged-token")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert_eq!(status_of(&app, &owner, "/dashboard").await, 200);

    // A cross-site POST (foreign Origin) is refused even with a valid token.
    let csrf = csrf_for(&app, &owner, "/dashboard").await;
    let resp = owner
        .post(app.url("/logout"))
        .header("origin", "https://evil.example")
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn an_expired_session_sends_the_person_back_to_login() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    let csrf = csrf_for(&app, &owner, "/dashboard").await;

    let mut conn = cv_db::connect_once(&app.database_url()).await.unwrap();
    conn.batch_execute("UPDATE sessions SET expires_at = now() - interval '1 minute'")
        .await
        .unwrap();

    let resp = owner
        .post(app.url("/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await;
    // The first request to see the expired session ends it.
    let resp = resp.unwrap();
    assert!(
        resp.status() == 401 || resp.status() == 303,
        "{}",
        resp.status()
    );

    let owner = owner_client(&app).await;
    conn.batch_execute("UPDATE sessions SET expires_at = now() - interval '1 minute'")
        .await
        .unwrap();
    let resp = owner.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let to = location(&resp);
    assert_eq!(to, "/login?expired=1&next=%2Fdashboard");
    let page = text_of(&app, &owner, &to).await;
    assert!(page.contains("expired"));
}

#[tokio::test]
async fn oversized_and_malformed_forms_get_4xx() {
    let app = appliance_with_owner().await;
    let client = app.client();
    let csrf = csrf_for(&app, &client, "/login").await;

    let huge = format!(
        "name=olivia&passphrase={}&csrf={csrf}",
        "a".repeat(100 * 1024)
    );
    let resp = client
        .post(app.url("/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert!(resp.text().await.unwrap().contains("KiB"));

    for body in [
        b"name=olivia&passphrase=%ZZ&csrf=x".to_vec(),
        b"name=\xff\xfe&passphrase=x&csrf=x".to_vec(),
        b"garbage".to_vec(),
        b"".to_vec(),
    ] {
        let resp = client
            .post(app.url("/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        let status = resp.status();
        assert!(
            status == 400 || status == 403,
            "{:?} gave {status}",
            String::from_utf8_lossy(&body)
        );
    }

    let resp = client
        .post(app.url("/login"))
        .header("content-type", "application/json")
        .body(r#"{"name":"olivia"}"#)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_client_error(), "{}", resp.status());

    let resp = client.get(app.url("/no/such/page")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn wrong_methods_get_405_and_head_works_like_get() {
    let app = appliance().await;
    let client = app.client();
    let head = client.head(app.url("/healthz")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty(), "HEAD has no body");
    assert_eq!(
        client
            .head(app.url("/login"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for (method, path) in [
        (reqwest::Method::POST, "/healthz"),
        (reqwest::Method::DELETE, "/login"),
        (reqwest::Method::PUT, "/dashboard"),
    ] {
        let resp = client
            .request(method.clone(), app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method} {path}");
    }
}
