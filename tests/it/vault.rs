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
    assert!(wrong.text().await.unwrap().contains("Wrong passphrase"));
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
async fn a_member_added_by_the_owner_gets_a_vault_of_their_own() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    let csrf = csrf_for(&app, &owner, "/users").await;
    let resp = owner
        .post(app.url("/users"))
        .form(&[
            ("name", "max"),
            ("passphrase", "member passphrase 1"),
            ("role", "member"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("Recovery key for max"));
    let key = recovery_key_in(&page);
    let bundle = bundle_of(&app, "max").await;
    let recovery = cv_crypto::vault::RecoveryKey::parse(&key).unwrap();
    assert!(bundle.unlock_with_recovery(&recovery).is_ok());
    // The owner's vault is a different one.
    assert!(
        stored_bundle(&app)
            .await
            .unlock_with_recovery(&recovery)
            .is_err()
    );

    let member = app.client();
    assert_eq!(
        login(&app, &member, "max", "member passphrase 1")
            .await
            .status(),
        303
    );
    assert!(is_unlocked(&dashboard(&app, &member).await));
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
