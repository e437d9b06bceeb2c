//! The authorization matrix: every route of the HTTPS app, called by an anonymous
//! client, by another member of the household, with the owner's capture-only API token,
//! and by the owner. No answer to anyone but the owner carries anything of the owner's
//! vault, nothing of theirs is changed, and no route answers 500. The route list is
//! checked against the routes registered in `appliance/web/src`, so a new route cannot
//! be left out.

use std::collections::BTreeSet;

use crate::api::{api_login, api_request, get_json, json_body, wait_for_index};
use crate::support::*;

/// What the owner keeps; none of it may reach anyone else.
const SECRET_TEXT: &str = "the owner's otter sanctuary is behind the mill";
const SECRET_WORD: &str = "otter";
const SECRET_TAG: &str = "owner-secret-tag";
const SECRET_TOKEN_NAME: &str = "owner-secret-token";
/// A snapshot id of the right shape (the matrix's appliance has none).
const SNAPSHOT_ID: &str = "20261207T150000Z-manual";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Anonymous,
    OtherMember,
    CaptureToken,
    Owner,
}

#[derive(Clone, Copy)]
enum Body {
    None,
    /// Form fields; the principal's CSRF token is added as `csrf`.
    Form(&'static [(&'static str, &'static str)]),
    /// A pre-login form: the CSRF token comes from GETting this page first.
    PreloginForm(&'static str, &'static [(&'static str, &'static str)]),
    Json(&'static str),
    Multipart,
}

struct Route {
    method: &'static str,
    path: &'static str,
    body: Body,
}

const fn route(method: &'static str, path: &'static str, body: Body) -> Route {
    Route { method, path, body }
}

/// Every route, with a request that gets past input checks to the authorization one.
/// `{item}` is the owner's item, `{token}` the owner's token id, `{snapshot}` a snapshot
/// id. Routes that end a session or lock come last.
const ROUTES: &[Route] = &[
    route("GET", "/", Body::None),
    route("GET", "/healthz", Body::None),
    route("GET", "/static/app.css", Body::None),
    route("GET", "/static/icon.svg", Body::None),
    route("GET", "/static/icon-192.png", Body::None),
    route("GET", "/static/icon-512.png", Body::None),
    route("GET", "/static/icon-maskable-512.png", Body::None),
    route("GET", "/favicon.ico", Body::None),
    route("GET", "/manifest.webmanifest", Body::None),
    route("GET", "/trust", Body::None),
    route("GET", "/ca.crt", Body::None),
    route("GET", "/ca.pem", Body::None),
    route("GET", "/setup", Body::None),
    route(
        "POST",
        "/setup",
        Body::PreloginForm(
            "/setup",
            &[
                ("setup_code", "AAAA-BBBB-CCCC"),
                ("name", "mallory"),
                ("passphrase", "mallory passphrase"),
                ("passphrase_confirm", "mallory passphrase"),
            ],
        ),
    ),
    route(
        "POST",
        "/setup/restore",
        Body::PreloginForm(
            "/setup",
            &[
                ("setup_code", "AAAA-BBBB-CCCC"),
                ("repository", "/tmp/not-a-repository"),
                ("key", "not the key"),
            ],
        ),
    ),
    route("GET", "/setup/restoring", Body::None),
    route("GET", "/login", Body::None),
    route(
        "POST",
        "/login",
        Body::PreloginForm(
            "/login",
            &[("name", OWNER), ("passphrase", "a wrong guess")],
        ),
    ),
    route("GET", "/recover", Body::None),
    route(
        "POST",
        "/recover",
        Body::PreloginForm(
            "/recover",
            &[
                ("name", OWNER),
                (
                    "recovery_key",
                    "0000-0000-0000-0000-0000-0000-0000-0000-0000-0000-0000-0000-0000-0000",
                ),
                ("passphrase", "a new passphrase"),
                ("passphrase_confirm", "a new passphrase"),
            ],
        ),
    ),
    route("GET", "/dashboard", Body::None),
    route("GET", "/home", Body::None),
    route(
        "POST",
        "/home/getting-started",
        Body::Form(&[("step", "trust")]),
    ),
    route("GET", "/system", Body::None),
    route("POST", "/system/backup/run", Body::Form(&[])),
    route("POST", "/system/update/check", Body::Form(&[])),
    route("POST", "/system/update/restart", Body::Form(&[])),
    route(
        "POST",
        "/system/update/retry",
        Body::Form(&[("version", "0.0.1")]),
    ),
    route(
        "POST",
        "/system/update/window",
        Body::Form(&[("window", "03:00-05:00")]),
    ),
    route("GET", "/system/snapshots", Body::None),
    route(
        "POST",
        "/system/snapshots/create",
        Body::Form(&[("reason", "mallory's snapshot")]),
    ),
    route("GET", "/system/snapshots/{snapshot}/restore", Body::None),
    route(
        "POST",
        "/system/snapshots/{snapshot}/restore",
        Body::Form(&[("passphrase", "a wrong guess")]),
    ),
    route("GET", "/capture", Body::None),
    route("GET", "/notes", Body::None),
    route(
        "POST",
        "/notes",
        Body::Form(&[("text", "a note of whoever calls"), ("tags", "mine")]),
    ),
    route("GET", "/search", Body::None),
    route("GET", "/tasks", Body::None),
    route(
        "POST",
        "/tasks",
        Body::Form(&[("text", "a task of whoever calls")]),
    ),
    route(
        "POST",
        "/tasks/{item}/status",
        Body::Form(&[("status", "done")]),
    ),
    route("GET", "/items/{item}", Body::None),
    route("GET", "/items/{item}/history", Body::None),
    route(
        "POST",
        "/items/{item}/edit",
        Body::Form(&[("version", "1"), ("text", "hijacked"), ("tags", "")]),
    ),
    route(
        "POST",
        "/items/{item}/restore",
        Body::Form(&[("version", "1"), ("from", "1")]),
    ),
    route(
        "POST",
        "/items/{item}/task",
        Body::Form(&[("version", "1"), ("status", "open")]),
    ),
    route(
        "POST",
        "/items/{item}/flags",
        Body::Form(&[("action", "archive")]),
    ),
    route(
        "POST",
        "/items/{item}/suggestions/task",
        Body::Form(&[
            ("version", "1"),
            ("index", "0"),
            ("title", "Hijacked"),
            ("action", "accept"),
        ]),
    ),
    route(
        "POST",
        "/items/{item}/suggestions/tag",
        Body::Form(&[("version", "1"), ("tag", "hijacked"), ("action", "accept")]),
    ),
    route(
        "POST",
        "/items/{item}/delete",
        Body::Form(&[("confirm", "yes")]),
    ),
    route("GET", "/users", Body::None),
    route(
        "POST",
        "/users/invite",
        Body::Form(&[("name", "mallory"), ("role", "admin")]),
    ),
    route(
        "POST",
        "/users/invitations/revoke",
        Body::Form(&[("id", "00000000-0000-0000-0000-000000000000")]),
    ),
    route(
        "POST",
        "/users/invitations/clear",
        Body::Form(&[("id", "00000000-0000-0000-0000-000000000000")]),
    ),
    route(
        "POST",
        "/users/role",
        Body::Form(&[
            ("id", "00000000-0000-0000-0000-000000000000"),
            ("role", "admin"),
        ]),
    ),
    route(
        "POST",
        "/users/remove",
        Body::Form(&[
            ("id", "00000000-0000-0000-0000-000000000000"),
            ("confirm", "olivia"),
        ]),
    ),
    route("GET", "/invite/{token}", Body::None),
    route(
        "POST",
        "/invite/{token}",
        Body::PreloginForm(
            "/login",
            &[
                ("passphrase", "mallory passphrase"),
                ("passphrase_confirm", "mallory passphrase"),
            ],
        ),
    ),
    route("GET", "/wireguard", Body::None),
    route(
        "POST",
        "/wireguard/peers",
        Body::Form(&[("name", "mallory-phone")]),
    ),
    route(
        "POST",
        "/wireguard/endpoint",
        Body::Form(&[("endpoint", "mallory.example.net:51820")]),
    ),
    route(
        "POST",
        "/wireguard/peers/revoke",
        Body::Form(&[("name", "alice-phone")]),
    ),
    route("GET", "/settings", Body::None),
    route(
        "POST",
        "/settings",
        Body::Form(&[("time_zone", "Pacific/Kiritimati")]),
    ),
    route("GET", "/account", Body::None),
    route(
        "POST",
        "/account/passphrase",
        Body::Form(&[
            ("current", "a wrong guess"),
            ("passphrase", "a new passphrase"),
            ("passphrase_confirm", "a new passphrase"),
        ]),
    ),
    route(
        "POST",
        "/account/recovery-key",
        Body::Form(&[("current", "a wrong guess")]),
    ),
    route(
        "POST",
        "/account/delete",
        Body::Form(&[("current", "a wrong guess"), ("confirm", "olivia")]),
    ),
    route("GET", "/account/renew", Body::None),
    route(
        "POST",
        "/account/renew",
        Body::PreloginForm(
            "/account/renew",
            &[
                ("name", "olivia"),
                ("current", "a wrong guess"),
                ("passphrase", "a new passphrase"),
                ("passphrase_confirm", "a new passphrase"),
            ],
        ),
    ),
    route("GET", "/account/tokens", Body::None),
    route(
        "POST",
        "/account/tokens",
        Body::Form(&[("name", "whoever's token"), ("scope", "read")]),
    ),
    route("POST", "/account/tokens/{token}/revoke", Body::Form(&[])),
    route("GET", "/account/activity", Body::None),
    route("GET", "/account/export", Body::None),
    route(
        "POST",
        "/account/export",
        Body::Form(&[("passphrase", "a wrong guess")]),
    ),
    route("POST", "/account/import", Body::Multipart),
    route(
        "POST",
        "/vault/unlock",
        Body::Form(&[("passphrase", "a wrong guess")]),
    ),
    route("GET", "/api/v1/openapi.json", Body::None),
    route(
        "POST",
        "/api/v1/login",
        Body::Json(r#"{"user":"olivia","passphrase":"a wrong guess"}"#),
    ),
    route(
        "POST",
        "/api/v1/account/renew",
        Body::Json(
            r#"{"user":"olivia","passphrase":"a wrong guess","new_passphrase":"a new passphrase"}"#,
        ),
    ),
    route(
        "POST",
        "/api/v1/capture",
        Body::Json(r#"{"text":"captured by whoever calls"}"#),
    ),
    route("GET", "/api/v1/items/{item}", Body::None),
    route("GET", "/api/v1/search?q=otter", Body::None),
    route("GET", "/api/v1/search", Body::None),
    route("GET", "/api/v1/vault", Body::None),
    route("GET", "/api/v1/update", Body::None),
    route(
        "POST",
        "/api/v1/update/hint",
        Body::Json(r#"{"type":"update.published"}"#),
    ),
    route("POST", "/api/v1/lock", Body::None),
    route("POST", "/vault/lock", Body::Form(&[])),
    route("POST", "/logout", Body::Form(&[])),
];

/// Routes anyone may use without logging in.
fn public(path: &str) -> bool {
    matches!(
        path,
        "/" | "/healthz"
            | "/static/app.css"
            | "/static/icon.svg"
            | "/static/icon-192.png"
            | "/static/icon-512.png"
            | "/static/icon-maskable-512.png"
            | "/favicon.ico"
            | "/manifest.webmanifest"
            | "/trust"
            | "/ca.crt"
            | "/ca.pem"
            | "/setup"
            | "/setup/restore"
            | "/setup/restoring"
            | "/login"
            | "/recover"
            | "/account/renew"
            | "/invite/{token}"
            | "/api/v1/openapi.json"
            | "/api/v1/login"
            | "/api/v1/account/renew"
            | "/api/v1/update/hint"
    )
}

/// The routes registered in the web crate's sources: `.route("PATH", web::METHOD()`,
/// with the API's scope prefix for `api.rs`.
fn registered_routes() -> BTreeSet<(String, String)> {
    let re = regex::Regex::new(r#"\.route\(\s*"([^"]+)",\s*web::(get|post)\(\)"#).unwrap();
    let mut found = BTreeSet::new();
    let mut dirs = vec![std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/appliance/web/src"
    ))];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            let prefix = if path.ends_with("api.rs") {
                "/api/v1"
            } else {
                ""
            };
            for c in re.captures_iter(&source) {
                found.insert((c[2].to_uppercase(), format!("{prefix}{}", &c[1])));
            }
        }
    }
    found
}

#[test]
fn the_matrix_covers_every_registered_route() {
    let registered = registered_routes();
    assert!(
        registered.len() > 40,
        "the route scan found too little: {registered:?}"
    );
    let normalise = |p: &str| {
        p.split('?')
            .next()
            .unwrap()
            .replace("{item}", "{id}")
            .replace("{token}", "{id}")
            .replace("{snapshot}", "{id}")
    };
    let in_matrix: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_owned(), normalise(r.path)))
        .collect();
    let missing: Vec<_> = registered.difference(&in_matrix).collect();
    assert!(
        missing.is_empty(),
        "routes missing from the authorization matrix: {missing:?}"
    );
    let stale: Vec<_> = in_matrix.difference(&registered).collect();
    assert!(
        stale.is_empty(),
        "matrix routes that no longer exist: {stale:?}"
    );
}

async fn call(
    app: &cv_testkit::TestAppliance,
    client: &reqwest::Client,
    bearer: Option<&str>,
    csrf: &str,
    route: &Route,
    path: &str,
) -> (u16, String) {
    let method = reqwest::Method::from_bytes(route.method.as_bytes()).unwrap();
    let mut req = client.request(method, app.url(path));
    if let Some(bearer) = bearer {
        req = req.bearer_auth(bearer);
    }
    req = match route.body {
        Body::None => req,
        Body::Form(fields) => {
            let mut form: Vec<(&str, &str)> = fields.to_vec();
            form.push(("csrf", csrf));
            req.form(&form)
        }
        Body::PreloginForm(page, fields) => {
            let html = text_of(app, client, page).await;
            let prelogin = if html.contains("name=\"csrf\"") {
                csrf_in(&html)
            } else {
                String::new()
            };
            let mut form: Vec<(&str, &str)> = fields.to_vec();
            form.push(("csrf", &prelogin));
            req.form(&form)
        }
        Body::Json(json) => req.header("content-type", "application/json").body(json),
        Body::Multipart => req.multipart(
            reqwest::multipart::Form::new()
                .text("csrf", csrf.to_owned())
                .part(
                    "archive",
                    reqwest::multipart::Part::bytes(b"not a zip".to_vec()),
                ),
        ),
    };
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn no_route_leaks_or_changes_the_owners_vault() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    let resp = post_form(
        &app,
        &owner,
        "/notes",
        &[("text", SECRET_TEXT), ("tags", SECRET_TAG)],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let item = first_item(&text_of(&app, &owner, "/notes").await);
    let capture_token = create_token(&app, OWNER, "capture", SECRET_TOKEN_NAME);
    let tokens_page = text_of(&app, &owner, "/account/tokens").await;
    let token_id = token_id_in(&tokens_page);
    let owner_api = api_login(&app, OWNER, OWNER_PASS).await;
    wait_for_index(&app, &owner_api).await;

    add_member(&app, "max", "max's passphrase").await;
    let max = member_client(&app, "max", "max's passphrase").await;

    let secrets = [SECRET_TEXT, SECRET_WORD, SECRET_TAG, SECRET_TOKEN_NAME];
    // Members call the API with a session token of their own.
    let max_api = api_login(&app, "max", "max's passphrase").await;
    let mut owner_saw_secret = 0;
    for who in [
        Who::Anonymous,
        Who::OtherMember,
        Who::CaptureToken,
        Who::Owner,
    ] {
        let client = match who {
            Who::OtherMember => max.clone(),
            Who::Owner => owner.clone(),
            Who::Anonymous | Who::CaptureToken => app.client(),
        };
        let csrf = match who {
            Who::OtherMember | Who::Owner => csrf_for(&app, &client, "/capture").await,
            _ => "no-session".to_owned(),
        };
        for route in ROUTES {
            // The owner's column is the positive control: their reads must show their
            // data (so the leak check can see a leak). Their writes are tested elsewhere.
            if who == Who::Owner && route.method != "GET" {
                continue;
            }
            let path = route
                .path
                .replace("{item}", &item)
                .replace("{token}", &token_id)
                .replace("{snapshot}", SNAPSHOT_ID);
            let api = path.starts_with("/api/");
            let bearer = match who {
                Who::CaptureToken => Some(capture_token.as_str()),
                Who::OtherMember if api => Some(max_api.as_str()),
                Who::Owner if api => Some(owner_api.as_str()),
                _ => None,
            };
            let (status, body) = call(&app, &client, bearer, &csrf, route, &path).await;
            let what = format!("{who:?} {} {path}", route.method);
            assert_ne!(status, 500, "{what}: {body}");
            if who == Who::Owner {
                if status == 200 && secrets.iter().any(|s| body.contains(s)) {
                    owner_saw_secret += 1;
                }
                continue;
            }
            for secret in secrets {
                assert!(!body.contains(secret), "{what} leaks {secret:?}: {body}");
            }
            // Without a session, only public routes answer; pages send the browser to the
            // login page (GET) or refuse (POST); the API wants a token.
            match who {
                Who::Anonymous | Who::CaptureToken
                    if !public(route.path.split('?').next().unwrap()) =>
                {
                    if api && who == Who::CaptureToken {
                        let allowed = path == "/api/v1/capture";
                        assert!(
                            if allowed { status < 300 } else { status == 403 },
                            "{what}: {status} {body}"
                        );
                    } else if route.method == "GET" && !api {
                        assert_eq!(status, 303, "{what}");
                    } else {
                        assert_eq!(status, 401, "{what}: {body}");
                    }
                }
                Who::OtherMember if path.contains(&item) || path.contains(&token_id) => {
                    assert_eq!(status, 404, "{what}: {body}");
                }
                Who::OtherMember
                    if path.starts_with("/users")
                        || path.starts_with("/wireguard")
                        || path == "/settings"
                        || path.starts_with("/system") =>
                {
                    assert_eq!(status, 403, "{what}");
                }
                _ => {}
            }
        }
    }
    assert!(
        owner_saw_secret >= 6,
        "the owner's own pages show their data ({owner_saw_secret} did)"
    );

    // Nothing of the owner's changed: the item is at version 1 with its text, not
    // archived; the token still captures; the vault is still unlocked for them.
    let (status, json) = get_json(&app, &owner_api, &format!("/api/v1/items/{item}")).await;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["version"], 1);
    assert_eq!(json["text"], SECRET_TEXT);
    assert_eq!(json["archived"], false);
    assert_eq!(json["kind"], "note");
    let (status, _) = api_request(
        &app,
        reqwest::Method::POST,
        "/api/v1/capture",
        Some(&capture_token),
        json_body(r#"{"text":"still works"}"#),
    )
    .await;
    assert_eq!(status, 201);
    let (_, json) = get_json(&app, &owner_api, "/api/v1/search?q=otter").await;
    assert_eq!(json["total"], 1, "{json}");
    // No member named mallory was made, by setup or by a member.
    assert!(!text_of(&app, &owner, "/users").await.contains("mallory"));
}
