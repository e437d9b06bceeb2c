//! Every account has a vault: logging in unlocks it (keys in the service's memory only),
//! logging out or "Lock now" locks it, and a restart leaves every vault locked.

use std::time::Duration;

use cv_testkit::eventually;

use crate::support::*;

async fn dashboard(app: &cv_testkit::TestAppliance, client: &reqwest::Client) -> String {
    let resp = client.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

fn is_unlocked(html: &str) -> bool {
    html.contains("action=\"/vault/lock\"")
}

fn is_locked(html: &str) -> bool {
    html.contains("action=\"/vault/unlock\"")
}

#[tokio::test]
async fn the_admin_cli_creates_a_vault_and_prints_its_recovery_key_once() {
    let app = appliance().await;
    let out = app.create_user(OWNER, OWNER_PASS, false);
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let key = recovery_key_in(&stdout);
    let bundle = stored_bundle(&app).await;
    let recovery = cv_crypto::vault::RecoveryKey::parse(&key).unwrap();
    assert!(bundle.unlock_with_recovery(&recovery).is_ok());
    let pass = cv_crypto::Passphrase::for_login(OWNER_PASS.into()).unwrap();
    assert!(
        bundle.unlock(&pass).is_ok(),
        "the passphrase opens the vault too"
    );
}

#[tokio::test]
async fn login_unlocks_lock_now_locks_and_unlock_checks_the_passphrase() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    let page = dashboard(&app, &owner).await;
    assert!(is_unlocked(&page), "logging in unlocks the vault");

    let csrf = csrf_in(&page);
    let resp = owner
        .post(app.url("/vault/lock"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    let page = dashboard(&app, &owner).await;
    assert!(is_locked(&page), "Lock now locks, and the session stays");

    let wrong = owner
        .post(app.url("/vault/unlock"))
        .form(&[("passphrase", "not my passphrase"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    // Not a dead end: the unlock form again, with the error, to retry from.
    let retry = wrong.text().await.unwrap();
    assert!(retry.contains("Wrong passphrase"), "{retry}");
    assert!(is_locked(&retry), "no unlock form to retry: {retry}");
    assert!(retry.contains(r#"name="passphrase""#), "{retry}");
    let csrf = csrf_in(&retry);
    assert!(is_locked(&dashboard(&app, &owner).await));

    let forged = owner
        .post(app.url("/vault/unlock"))
        .form(&[("passphrase", OWNER_PASS), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert!(is_locked(&dashboard(&app, &owner).await));

    let right = owner
        .post(app.url("/vault/unlock"))
        .form(&[("passphrase", OWNER_PASS), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), 303);
    assert!(is_unlocked(&dashboard(&app, &owner).await));

    // Logging out locks it (for every device of the account).
    let other_device = owner_client(&app).await;
    let out = owner
        .post(app.url("/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    assert!(is_locked(&dashboard(&app, &other_device).await));
}

#[tokio::test]
async fn after_a_restart_of_the_service_every_vault_is_locked() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    assert!(is_unlocked(&dashboard(&app, &owner).await));
    let old = app.service_pid().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(old as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let page = eventually(Duration::from_secs(60), "the restarted service", || async {
        let resp = owner.get(app.url("/dashboard")).send().await.ok()?;
        if resp.status() != 200 || app.service_pid() == Some(old) {
            return None;
        }
        resp.text().await.ok()
    })
    .await;
    assert!(
        is_locked(&page),
        "the session survives in PostgreSQL, the keys did not survive the process"
    );
}

#[tokio::test]
async fn an_idle_vault_locks_itself_while_the_login_lasts() {
    let launch = cv_testkit::Launch::Appliance {
        env: vec![],
        extra: "[sessions]\nvault_lock_minutes = 1\n".into(),
    };
    let app = cv_testkit::TestAppliance::launch(&exe(), launch).await;
    assert!(app.create_user(OWNER, OWNER_PASS, false).status.success());
    let owner = owner_client(&app).await;
    assert!(is_unlocked(&dashboard(&app, &owner).await));
    // Use within the minute keeps it open...
    tokio::time::sleep(Duration::from_secs(40)).await;
    assert!(is_unlocked(&dashboard(&app, &owner).await));
    // ...a minute without any request locks it; the login itself lasts.
    tokio::time::sleep(Duration::from_secs(62)).await;
    assert!(is_locked(&dashboard(&app, &owner).await));
}

#[tokio::test]
async fn changing_the_passphrase_rewraps_the_vault_and_keeps_the_recovery_key() {
    let app = appliance().await;
    let out = app.create_user(OWNER, OWNER_PASS, false);
    let recovery = recovery_key_in(&String::from_utf8_lossy(&out.stdout));
    let owner = owner_client(&app).await;
    let csrf = csrf_for(&app, &owner, "/account").await;
    let change = |current: &'static str, new: &'static str, again: &'static str| {
        owner
            .post(app.url("/account/passphrase"))
            .form(&[
                ("current", current),
                ("passphrase", new),
                ("passphrase_confirm", again),
                ("csrf", csrf.as_str()),
            ])
            .send()
    };
    const NEW: &str = "a brand new passphrase";
    assert_eq!(
        change("wrong current one", NEW, NEW)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        change(OWNER_PASS, NEW, "something else")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        change(OWNER_PASS, "short", "short").await.unwrap().status(),
        400
    );
    let ok = change(OWNER_PASS, NEW, NEW).await.unwrap();
    assert_eq!(ok.status(), 303);
    assert_eq!(location(&ok), "/account?changed=1");
    assert!(is_unlocked(&dashboard(&app, &owner).await));

    let fresh = app.client();
    assert_eq!(login(&app, &fresh, OWNER, OWNER_PASS).await.status(), 401);
    assert_eq!(login(&app, &fresh, OWNER, NEW).await.status(), 303);
    let bundle = stored_bundle(&app).await;
    let new = cv_crypto::Passphrase::for_login(NEW.into()).unwrap();
    assert!(bundle.unlock(&new).is_ok());
    let key = cv_crypto::vault::RecoveryKey::parse(&recovery).unwrap();
    assert!(
        bundle.unlock_with_recovery(&key).is_ok(),
        "the recovery key still opens it"
    );
}

#[tokio::test]
async fn the_recovery_key_sets_a_new_passphrase_and_ends_every_session() {
    let app = appliance().await;
    let out = app.create_user(OWNER, OWNER_PASS, false);
    let recovery = recovery_key_in(&String::from_utf8_lossy(&out.stdout));
    let out = app.create_user("max", "max's passphrase", false);
    let someone_elses = recovery_key_in(&String::from_utf8_lossy(&out.stdout));
    let old_session = owner_client(&app).await;

    let client = app.client();
    let csrf = csrf_for(&app, &client, "/recover").await;
    let recover = |key: String| {
        client
            .post(app.url("/recover"))
            .form(&[
                ("name", OWNER.to_owned()),
                ("recovery_key", key),
                ("passphrase", "recovered passphrase".to_owned()),
                ("passphrase_confirm", "recovered passphrase".to_owned()),
                ("csrf", csrf.clone()),
            ])
            .send()
    };
    // A typo is caught by the key's checksum and said so.
    let mut typo = recovery.clone();
    typo.replace_range(0..1, if typo.starts_with('A') { "B" } else { "A" });
    let resp = recover(typo).await.unwrap();
    assert_eq!(resp.status(), 400);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("not a valid recovery key")
    );
    // A valid key of another vault is simply wrong.
    let resp = recover(someone_elses).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("Wrong user name or recovery key")
    );

    // Typed in lower case with spaces: still the key.
    let resp = recover(recovery.to_lowercase().replace('-', " "))
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/dashboard");
    assert!(is_unlocked(&dashboard(&app, &client).await));

    let resp = old_session.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(resp.status(), 303, "every earlier session ended");
    let fresh = app.client();
    assert_eq!(login(&app, &fresh, OWNER, OWNER_PASS).await.status(), 401);
    assert_eq!(
        login(&app, &fresh, OWNER, "recovered passphrase")
            .await
            .status(),
        303
    );
}
