//! Households that keep each other's secrets: invitations (the member chooses their own
//! passphrase on their own device), accounts made at the command line renewed at first
//! login (own passphrase, new vault keys, new recovery key), new recovery keys, roles,
//! and removing a member or one's own account (nothing of theirs left).

use diesel::QueryableByName;
use diesel_async::RunQueryDsl as _;

use cv_crypto::Passphrase;
use cv_crypto::vault::{ItemBinding, KeyBundle, RecoveryKey};

use crate::support::*;

const MEMBER: &str = "max";
const MEMBER_PASS: &str = "max's very own words";
const MEMBER_NOTE: &str = "the surprise party is on friday";

fn pass(text: &str) -> Passphrase {
    Passphrase::new(text.to_owned()).unwrap()
}

/// Posts the invite form as `client` (the owner); returns the page.
async fn invite(
    app: &cv_testkit::TestAppliance,
    client: &reqwest::Client,
    name: &str,
    role: &str,
) -> (u16, String) {
    let resp = post_form(
        app,
        client,
        "/users/invite",
        &[("name", name), ("role", role), ("hours", "72")],
    )
    .await;
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The invitation link in the household page shown after inviting.
fn invitation_link(page: &str) -> String {
    regex::Regex::new(r#"https://[^"<\s]+/invite/[A-Za-z0-9_-]+"#)
        .unwrap()
        .find(page)
        .unwrap_or_else(|| panic!("no invitation link in:\n{page}"))
        .as_str()
        .to_owned()
}

/// The path of a link (the appliance is reached through `app.url`).
fn path_of(link: &str) -> String {
    let rest = link.strip_prefix("https://").unwrap();
    rest[rest.find('/').unwrap()..].to_owned()
}

/// Accepts an invitation in a fresh client (another device); returns the client and the
/// page after (the recovery key).
async fn accept(
    app: &cv_testkit::TestAppliance,
    path: &str,
    passphrase: &str,
) -> (reqwest::Client, u16, String) {
    let client = app.client();
    // Any page before login gives the form token (a double-submit cookie): a link that
    // no longer works has no form to take it from.
    let csrf = csrf_for(app, &client, "/login").await;
    let resp = client
        .post(app.url(path))
        .form(&[
            ("passphrase", passphrase),
            ("passphrase_confirm", passphrase),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (client, status, resp.text().await.unwrap())
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    owner_id: uuid::Uuid,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    data_key: Vec<u8>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    data_key_sealed: bool,
    #[diesel(sql_type = diesel::sql_types::Bytea)]
    content: Vec<u8>,
}

/// Every item of `name` as stored: id, owner, data key (wrapped or sealed) and the
/// first version's ciphertext — what someone with the database in hand has.
async fn stored_items(app: &cv_testkit::TestAppliance, name: &str) -> Vec<KeyRow> {
    let mut conn = cv_db::connect_once(&app.database_url()).await.unwrap();
    diesel::sql_query(
        "SELECT items.id, items.owner_id, items.data_key, items.data_key_sealed, v.content \
         FROM items JOIN users ON users.id = items.owner_id \
         JOIN item_versions v ON v.item_id = items.id AND v.version = 1 \
         WHERE users.name = $1 ORDER BY items.created_at",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .load(&mut conn)
    .await
    .unwrap()
}

fn binding(row: &KeyRow) -> ItemBinding {
    ItemBinding {
        item: *row.id.as_bytes(),
        version: 1,
        owner: *row.owner_id.as_bytes(),
    }
}

/// Tries everything in `known` (passphrases) and `keys` (recovery keys) on `bundle`:
/// none may open it.
fn opens_with_none(bundle: &KeyBundle, known: &[&str], keys: &[&str]) {
    for p in known {
        if let Ok(p) = Passphrase::for_login((*p).to_owned()) {
            assert!(
                bundle.unlock(&p).is_err(),
                "the passphrase {p:?} opened the vault"
            );
        }
    }
    for k in keys {
        let key = RecoveryKey::parse(k).unwrap();
        assert!(
            bundle.unlock_with_recovery(&key).is_err(),
            "a recovery key someone else saw opened the vault"
        );
    }
}

#[tokio::test]
async fn an_invited_member_chooses_their_own_passphrase_and_nothing_the_owner_has_opens_their_vault()
 {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;

    // Bad invitations are refused with the form again.
    assert_eq!(invite(&app, &owner, "eve", "owner").await.0, 400);
    assert_eq!(invite(&app, &owner, "bad name!", "member").await.0, 400);
    assert_eq!(invite(&app, &owner, OWNER, "member").await.0, 409);

    let (status, page) = invite(&app, &owner, MEMBER, "member").await;
    assert_eq!(status, 200, "{page}");
    let link = invitation_link(&page);
    assert!(page.contains("<svg"), "the link has a QR code");
    assert!(
        !page.contains(r#"name="passphrase""#),
        "the owner chooses no passphrase"
    );
    // One open invitation per name.
    assert_eq!(invite(&app, &owner, MEMBER, "admin").await.0, 409);
    let path = path_of(&link);
    // The database keeps only the link's digest.
    let secret = path.rsplit('/').next().unwrap();
    assert!(!pg_dump(&app).contains(secret));

    // A wrong link is refused; the right one names who invited whom.
    let stranger = app.client();
    assert_eq!(
        status_of(&app, &stranger, "/invite/not-a-real-invitation").await,
        404
    );
    let landing = text_of(&app, &stranger, &path).await;
    assert!(
        landing.contains(OWNER) && landing.contains(MEMBER),
        "{landing}"
    );

    // Mismatched passphrases: the form again.
    let csrf = csrf_for(&app, &stranger, &path).await;
    let resp = stranger
        .post(app.url(&path))
        .form(&[
            ("passphrase", MEMBER_PASS),
            ("passphrase_confirm", "something else"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);

    // The member, on their own device.
    let (member, status, shown) = accept(&app, &path, MEMBER_PASS).await;
    assert_eq!(status, 200, "{shown}");
    let recovery = recovery_key_in(&shown);
    assert_eq!(capture_note(&app, &member, MEMBER_NOTE).await.status(), 303);
    let item = first_item(&text_of(&app, &member, "/notes").await);
    assert!(
        text_of(&app, &member, &format!("/items/{item}"))
            .await
            .contains(MEMBER_NOTE)
    );

    // The link works once.
    let (_, again, _) = accept(&app, &path, "another passphrase").await;
    assert_eq!(again, 404);

    // The owner's session reaches nothing of the member's.
    assert_eq!(
        status_of(&app, &owner, &format!("/items/{item}")).await,
        404
    );
    assert!(!text_of(&app, &owner, "/notes").await.contains(MEMBER_NOTE));
    assert!(
        !text_of(&app, &owner, "/search?q=surprise")
            .await
            .contains(MEMBER_NOTE)
    );
    // Nor the owner's database access, with everything the owner saw (their own
    // passphrase, the invitation link, the household page).
    let bundle = bundle_of(&app, MEMBER).await;
    opens_with_none(&bundle, &[OWNER_PASS, &link, secret, &page], &[]);
    let dump = pg_dump(&app);
    for secret in [MEMBER_NOTE, MEMBER_PASS, recovery.as_str()] {
        assert!(!dump.contains(secret), "the dump holds {secret:?}");
    }
    // The member's own keys do open it.
    assert!(bundle.unlock(&pass(MEMBER_PASS)).is_ok());
    assert!(
        bundle
            .unlock_with_recovery(&RecoveryKey::parse(&recovery).unwrap())
            .is_ok()
    );

    // The owner's activity says what happened; the member's says how they joined.
    let owner_log = text_of(&app, &owner, "/account/activity").await;
    assert!(
        owner_log.contains("Invitation sent") && owner_log.contains("Invitation accepted"),
        "{owner_log}"
    );
    let member_log = text_of(&app, &member, "/account/activity").await;
    assert!(member_log.contains("Invitation accepted"), "{member_log}");
    // Members do not manage the household.
    assert_eq!(status_of(&app, &member, "/users").await, 403);
}

#[tokio::test]
async fn invitations_can_be_withdrawn_and_expire() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    let (_, page) = invite(&app, &owner, "zoe", "admin").await;
    let path = path_of(&invitation_link(&page));
    let list = text_of(&app, &owner, "/users").await;
    let id = regex::Regex::new(r#"name="id" value="([0-9a-f-]{36})""#)
        .unwrap()
        .captures(&list)
        .unwrap()[1]
        .to_owned();
    let resp = post_form(&app, &owner, "/users/invitations/revoke", &[("id", &id)]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(status_of(&app, &app.client(), &path).await, 404);
    assert!(text_of(&app, &owner, "/users").await.contains("withdrawn"));
    // Withdrawing twice is a clear conflict; a bad id a clear 400.
    assert_eq!(
        post_form(&app, &owner, "/users/invitations/revoke", &[("id", &id)])
            .await
            .status(),
        409
    );
    assert_eq!(
        post_form(&app, &owner, "/users/invitations/revoke", &[("id", "nope")])
            .await
            .status(),
        400
    );

    // A new one for the same name works; once expired, it does not.
    let (_, page) = invite(&app, &owner, "zoe", "member").await;
    let path = path_of(&invitation_link(&page));
    assert_eq!(status_of(&app, &app.client(), &path).await, 200);
    let mut conn = cv_db::connect_once(&app.database_url()).await.unwrap();
    diesel::sql_query(
        "UPDATE invitations SET expires_at = now() - interval '1 second' WHERE name = 'zoe'",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(status_of(&app, &app.client(), &path).await, 404);
    let (_, status, _) = accept(&app, &path, "zoe's passphrase").await;
    assert_eq!(status, 404);
    assert!(text_of(&app, &owner, "/users").await.contains("expired"));
}

#[tokio::test]
async fn an_account_made_at_the_command_line_renews_everything_at_first_login() {
    let app = appliance_with_owner().await;
    let given = given_passphrase(MEMBER_PASS);
    let out = app.create_user(MEMBER, &given, false);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let old_recovery = recovery_key_in(&stdout);
    assert!(
        stdout.contains("must choose their own passphrase"),
        "{stdout}"
    );
    // Before the member logs in, a capture token made for them files a note (sealed).
    let token = create_token(&app, MEMBER, "capture", "shortcut");
    let resp = app
        .client()
        .post(app.url("/api/v1/capture"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"text": "captured before renewal"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    // What the one who made the account can keep: the bundle and item keys as they are now.
    let old_bundle = bundle_of(&app, MEMBER).await;
    let old_items = stored_items(&app, MEMBER).await;
    assert_eq!(old_items.len(), 1);
    assert!(old_items[0].data_key_sealed);

    // The given passphrase opens nothing: the login page sends them to renew, the API
    // answers renew_required, and the recovery key someone else saw cannot reset it.
    let client = app.client();
    let resp = login(&app, &client, MEMBER, &given).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), format!("/account/renew?name={MEMBER}"));
    assert_eq!(
        status_of(&app, &client, "/notes").await,
        303,
        "no session was made"
    );
    let resp = app
        .client()
        .post(app.url("/api/v1/login"))
        .json(&serde_json::json!({"user": MEMBER, "passphrase": given}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "renew_required", "{body}");
    let csrf = csrf_for(&app, &client, "/recover").await;
    let resp = client
        .post(app.url("/recover"))
        .form(&[
            ("name", MEMBER),
            ("recovery_key", old_recovery.as_str()),
            ("passphrase", "taken over by whoever made it"),
            ("passphrase_confirm", "taken over by whoever made it"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("renew_required"));

    // Renewing: a wrong given passphrase, the same passphrase again and a short one are
    // refused clearly.
    let renew = |current: &str, new: &str| {
        app.client()
            .post(app.url("/api/v1/account/renew"))
            .json(
                &serde_json::json!({"user": MEMBER, "passphrase": current, "new_passphrase": new}),
            )
            .send()
    };
    assert_eq!(
        renew("wrong passphrase", MEMBER_PASS)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(renew(&given, &given).await.unwrap().status(), 400);
    assert_eq!(renew(&given, "short").await.unwrap().status(), 400);
    // The form at /account/renew does the same as the API; here, the web form.
    let page = text_of(&app, &client, &format!("/account/renew?name={MEMBER}")).await;
    assert!(page.contains(r#"value="max""#), "{page}");
    let csrf = csrf_in(&page);
    let resp = client
        .post(app.url("/account/renew"))
        .form(&[
            ("name", MEMBER),
            ("current", given.as_str()),
            ("passphrase", MEMBER_PASS),
            ("passphrase_confirm", MEMBER_PASS),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let new_recovery = recovery_key_in(&resp.text().await.unwrap());
    assert_ne!(new_recovery, old_recovery);
    // Renewing again is a conflict: it is their own passphrase now.
    assert_eq!(
        renew(MEMBER_PASS, "yet another passphrase")
            .await
            .unwrap()
            .status(),
        409
    );

    // The note captured before is still there, under a new key.
    let notes = text_of(&app, &client, "/notes").await;
    assert!(notes.contains("captured before renewal"), "{notes}");
    assert_eq!(capture_note(&app, &client, MEMBER_NOTE).await.status(), 303);
    // The token the maker of the account could have kept is revoked.
    let resp = app
        .client()
        .post(app.url("/api/v1/capture"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"text": "after"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Nothing from before opens anything now: not the given passphrase or the old
    // recovery key on the new bundle; not the old bundle's vault key on the new item keys;
    // not the old data key on the re-encrypted content.
    let bundle = bundle_of(&app, MEMBER).await;
    opens_with_none(&bundle, &[&given, OWNER_PASS], &[&old_recovery]);
    assert!(bundle.unlock(&pass(MEMBER_PASS)).is_ok());
    assert!(
        bundle
            .unlock_with_recovery(&RecoveryKey::parse(&new_recovery).unwrap())
            .is_ok()
    );
    let old_vault = old_bundle.unlock(&pass(&given)).unwrap();
    let old_key = old_vault
        .open_sealed_data_key(
            &old_items[0].data_key,
            &binding(&old_items[0]).data_key_binding(),
        )
        .unwrap();
    let now = stored_items(&app, MEMBER).await;
    assert_eq!(now.len(), 2);
    for row in &now {
        assert!(!row.data_key_sealed);
        assert!(
            old_vault
                .unwrap_data_key(&row.data_key, &binding(row).data_key_binding())
                .is_err()
        );
        assert!(cv_crypto::vault::decrypt_content(&old_key, &binding(row), &row.content).is_err());
    }
    let log = text_of(&app, &client, "/account/activity").await;
    assert!(
        log.contains("Own passphrase and new recovery key set"),
        "{log}"
    );
}

#[tokio::test]
async fn a_new_recovery_key_replaces_the_old_one() {
    let app = appliance().await;
    let out = app.create_user(OWNER, OWNER_PASS, false);
    let old = recovery_key_in(&String::from_utf8_lossy(&out.stdout));
    let owner = owner_client(&app).await;
    let resp = post_form(
        &app,
        &owner,
        "/account/recovery-key",
        &[("current", "not my passphrase")],
    )
    .await;
    assert_eq!(resp.status(), 401);
    let resp = post_form(
        &app,
        &owner,
        "/account/recovery-key",
        &[("current", OWNER_PASS)],
    )
    .await;
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    let new = recovery_key_in(&page);
    assert!(page.contains("no longer works"));
    let bundle = stored_bundle(&app).await;
    assert!(
        bundle
            .unlock_with_recovery(&RecoveryKey::parse(&old).unwrap())
            .is_err()
    );
    assert!(
        bundle
            .unlock_with_recovery(&RecoveryKey::parse(&new).unwrap())
            .is_ok()
    );
    assert!(bundle.unlock(&pass(OWNER_PASS)).is_ok());
    assert!(
        text_of(&app, &owner, "/account/activity")
            .await
            .contains("New recovery key made")
    );
}

/// What of `name` a database dump still holds: rows keyed by their id, and their name.
fn traces_in_dump(dump: &str, id: &str, name: &str) -> Vec<String> {
    let mut found = Vec::new();
    for table in [
        "users",
        "vault_keys",
        "items",
        "sessions",
        "api_tokens",
        "audit_events",
        "suggestion_feedback",
        "invitations",
    ] {
        for row in dump_rows(dump, table) {
            if row.contains(&id) {
                found.push(format!("{table}: {}", row.join(" | ")));
            }
        }
    }
    if dump_rows(dump, "users").iter().any(|r| r.contains(&name)) {
        found.push(format!("users: the name {name}"));
    }
    found
}

#[tokio::test]
async fn removing_a_member_leaves_nothing_of_theirs_and_is_audited() {
    let app = appliance_with_owner().await;
    add_member(&app, MEMBER, MEMBER_PASS).await;
    let member = member_client(&app, MEMBER, MEMBER_PASS).await;
    assert_eq!(capture_note(&app, &member, MEMBER_NOTE).await.status(), 303);
    let token = create_token(&app, MEMBER, "full", "laptop");
    let member_api = crate::api::api_login(&app, MEMBER, MEMBER_PASS).await;
    let member_csrf = csrf_for(&app, &member, "/capture").await;
    let owner = owner_client(&app).await;
    let page = text_of(&app, &owner, "/users").await;
    let id = regex::Regex::new(r#"name="id" value="([0-9a-f-]{36})""#)
        .unwrap()
        .captures(&page)
        .unwrap()[1]
        .to_owned();
    let dump = pg_dump(&app);
    assert!(
        !traces_in_dump(&dump, &id, MEMBER).is_empty(),
        "the member is in the dump before"
    );
    assert_eq!(items_in_dump(&dump), 1);

    // The owner's role cannot be given, a member can be made admin and back.
    assert_eq!(
        post_form(
            &app,
            &owner,
            "/users/role",
            &[("id", &id), ("role", "owner")]
        )
        .await
        .status(),
        400
    );
    assert_eq!(
        post_form(
            &app,
            &owner,
            "/users/role",
            &[("id", &id), ("role", "admin")]
        )
        .await
        .status(),
        303
    );
    assert_eq!(
        status_of(&app, &member, "/users").await,
        200,
        "an admin manages the household"
    );
    // An admin cannot change roles.
    assert_eq!(
        post_form(
            &app,
            &member,
            "/users/role",
            &[("id", &id), ("role", "member")]
        )
        .await
        .status(),
        403
    );
    assert_eq!(
        post_form(
            &app,
            &owner,
            "/users/role",
            &[("id", &id), ("role", "member")]
        )
        .await
        .status(),
        303
    );

    // Removing needs the name typed again.
    let resp = post_form(
        &app,
        &owner,
        "/users/remove",
        &[("id", &id), ("confirm", "someone")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("type their name"));
    let resp = post_form(
        &app,
        &owner,
        "/users/remove",
        &[("id", &id), ("confirm", MEMBER)],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), format!("/users?removed={MEMBER}"));

    // Nothing of theirs is left: no account, keys, items, sessions or tokens.
    let dump = pg_dump(&app);
    assert_eq!(traces_in_dump(&dump, &id, MEMBER), Vec::<String>::new());
    assert_eq!(items_in_dump(&dump), 0);
    assert!(
        dump_rows(&dump, "vault_keys").len() == 1,
        "only the owner's keys"
    );
    // Their browser session, API session and token are refused.
    assert_eq!(
        status_of(&app, &member, "/notes").await,
        303,
        "back to the login page"
    );
    let resp = member
        .post(app.url("/vault/lock"))
        .form(&[("csrf", member_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "the session is gone");
    let resp = app
        .client()
        .get(app.url("/api/v1/vault"))
        .bearer_auth(&member_api)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = app
        .client()
        .get(app.url("/api/v1/vault"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // And it is in the owner's activity log.
    let log = text_of(&app, &owner, "/account/activity").await;
    assert!(
        log.contains("Household member removed") && log.contains(MEMBER),
        "{log}"
    );
    // The owner cannot be removed, nor remove themselves here.
    let owner_page = text_of(&app, &owner, "/users").await;
    assert!(
        !owner_page.contains("/users/remove"),
        "nobody left to remove"
    );
}

#[tokio::test]
async fn a_member_can_delete_their_own_account_and_the_owner_cannot() {
    let app = appliance_with_owner().await;
    add_member(&app, MEMBER, MEMBER_PASS).await;
    let member = member_client(&app, MEMBER, MEMBER_PASS).await;
    assert_eq!(capture_note(&app, &member, MEMBER_NOTE).await.status(), 303);
    let wrong_name = post_form(
        &app,
        &member,
        "/account/delete",
        &[("current", MEMBER_PASS), ("confirm", "nope")],
    )
    .await;
    assert_eq!(wrong_name.status(), 400);
    let wrong_pass = post_form(
        &app,
        &member,
        "/account/delete",
        &[("current", "not it at all"), ("confirm", MEMBER)],
    )
    .await;
    assert_eq!(wrong_pass.status(), 401);
    let resp = post_form(
        &app,
        &member,
        "/account/delete",
        &[("current", MEMBER_PASS), ("confirm", MEMBER)],
    )
    .await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/login?deleted=1");
    let dump = pg_dump(&app);
    assert_eq!(items_in_dump(&dump), 0);
    assert!(
        !dump_rows(&dump, "users")
            .iter()
            .any(|r| r.contains(&MEMBER))
    );
    assert_eq!(
        login(&app, &app.client(), MEMBER, MEMBER_PASS)
            .await
            .status(),
        401
    );

    let owner = owner_client(&app).await;
    assert!(
        text_of(&app, &owner, "/account/activity")
            .await
            .contains("A member deleted their account")
    );
    let resp = post_form(
        &app,
        &owner,
        "/account/delete",
        &[("current", OWNER_PASS), ("confirm", OWNER)],
    )
    .await;
    assert_eq!(resp.status(), 403);
}

/// The household in real browsers: the owner invites on one phone; the member, on
/// another (a separate browser profile), accepts, chooses a passphrase and sees the
/// recovery key; nothing the owner has opens the member's vault; and a member made at
/// the command line is led through renewal at first login, after which the recovery key
/// printed for them fails.
#[tokio::test]
async fn in_two_browsers_an_invited_member_keeps_their_vault_to_themselves() {
    use crate::browser::{
        LOGIN_SUBMIT, NAVIGATION, check_page, on_a_phone, path_of as url_path, screenshot,
        wait_for_path, wait_for_text,
    };
    let Some((app, owner)) = on_a_phone(appliance_with_owner()).await else {
        return;
    };
    owner.goto(&app.url("/login")).await;
    owner.type_into("input[name=name]", OWNER).await;
    owner.type_into("input[name=passphrase]", OWNER_PASS).await;
    owner.click(LOGIN_SUBMIT).await;
    owner
        .wait_for_url(|url| url_path(url) != "/login", NAVIGATION)
        .await;

    // The owner invites max: a link and its QR code, no passphrase to choose.
    owner.goto(&app.url("/users")).await;
    check_page(&owner).await;
    owner.type_into("input[name=name]", MEMBER).await;
    owner
        .click("form[action='/users/invite'] [type=submit]")
        .await;
    wait_for_text(&owner, "Invitation for max").await;
    let link = owner.text(".secret-link a").await;
    assert!(link.contains("/invite/"), "{link}");
    owner.find(".qr svg").await;
    screenshot(&owner, "invitation-phone.png").await;
    check_page(&owner).await;

    // Max, on their own phone.
    let member = cv_testkit::browser::Browser::start(&app.ca_pem(), 390, 844).await;
    let path = url_path(&link);
    member.goto(&app.url(&path)).await;
    wait_for_text(&member, "invited you").await;
    check_page(&member).await;
    member
        .type_into("input[name=passphrase]", MEMBER_PASS)
        .await;
    member
        .type_into("input[name=passphrase_confirm]", MEMBER_PASS)
        .await;
    member.click("form[action^='/invite/'] [type=submit]").await;
    wait_for_text(&member, "only time it is shown").await;
    let recovery = member.text(".recovery-key").await;
    assert_eq!(recovery.split('-').count(), 14, "{recovery}");
    screenshot(&member, "invited-recovery-key-phone.png").await;
    check_page(&member).await;
    member.click(".card a.button-primary").await;
    member
        .wait_for_url(|url| url_path(url) != path, NAVIGATION)
        .await;
    member.goto(&app.url("/notes")).await;
    member.type_into("textarea[name=text]", MEMBER_NOTE).await;
    member.click("form[action='/notes'] [type=submit]").await;
    wait_for_text(&member, "surprise party").await;
    let item = first_item(&member.page_source().await);

    // The owner tries everything they have. Their session:
    owner.goto(&app.url(&format!("/items/{item}"))).await;
    wait_for_text(&owner, "Not found").await;
    assert!(!owner.page_source().await.contains(MEMBER_NOTE));
    owner.goto(&app.url("/search?q=surprise+party")).await;
    assert!(!owner.page_source().await.contains(MEMBER_NOTE));
    // The invitation link they saw, again:
    owner.goto(&link).await;
    wait_for_text(&owner, "does not work").await;
    // Their database access, with the passphrase they know and everything on their page:
    let seen = owner.page_source().await;
    opens_with_none(
        &bundle_of(&app, MEMBER).await,
        &[OWNER_PASS, &link, &seen],
        &[],
    );
    assert!(!pg_dump(&app).contains(MEMBER_NOTE));
    // While max's own passphrase and recovery key open it.
    let bundle = bundle_of(&app, MEMBER).await;
    assert!(bundle.unlock(&pass(MEMBER_PASS)).is_ok());
    assert!(
        bundle
            .unlock_with_recovery(&RecoveryKey::parse(&recovery).unwrap())
            .is_ok()
    );
    member.quit().await;

    // Zoe is made at the command line: at first login she is led to choose her own
    // passphrase, and gets a new recovery key.
    let given = given_passphrase("zoe's own passphrase");
    let out = app.create_user("zoe", &given, false);
    let printed = recovery_key_in(&String::from_utf8_lossy(&out.stdout));
    let zoe = cv_testkit::browser::Browser::start(&app.ca_pem(), 390, 844).await;
    zoe.goto(&app.url("/login")).await;
    zoe.type_into("input[name=name]", "zoe").await;
    zoe.type_into("input[name=passphrase]", &given).await;
    zoe.click(LOGIN_SUBMIT).await;
    wait_for_path(&zoe, "/account/renew").await;
    check_page(&zoe).await;
    screenshot(&zoe, "renew-phone.png").await;
    zoe.type_into("input[name=current]", &given).await;
    zoe.type_into("input[name=passphrase]", "zoe's own passphrase")
        .await;
    zoe.type_into("input[name=passphrase_confirm]", "zoe's own passphrase")
        .await;
    zoe.click("form[action='/account/renew'] [type=submit]")
        .await;
    wait_for_text(&zoe, "Your new recovery key").await;
    let renewed = zoe.text(".recovery-key").await;
    assert_ne!(renewed, printed);
    let bundle = bundle_of(&app, "zoe").await;
    assert!(
        bundle
            .unlock_with_recovery(&RecoveryKey::parse(&printed).unwrap())
            .is_err(),
        "the printed recovery key fails"
    );
    assert!(
        bundle.unlock(&pass(&given)).is_err(),
        "the given passphrase fails"
    );
    assert!(
        bundle
            .unlock_with_recovery(&RecoveryKey::parse(&renewed).unwrap())
            .is_ok()
    );
    zoe.quit().await;

    // The owner locks their vault and mistypes the passphrase: the unlock form comes
    // back with the error, to try again at once.
    owner.goto(&app.url("/home")).await;
    owner
        .click("form[action='/vault/lock'] [type=submit]")
        .await;
    wait_for_text(&owner, "locked").await;
    owner
        .type_into(
            "form[action='/vault/unlock'] input[name=passphrase]",
            "not it at all",
        )
        .await;
    owner
        .click("form[action='/vault/unlock'] [type=submit]")
        .await;
    wait_for_text(&owner, "Wrong passphrase").await;
    owner
        .find("form[action='/vault/unlock'] input[name=passphrase]")
        .await;
    check_page(&owner).await;
    owner.quit().await;
}
