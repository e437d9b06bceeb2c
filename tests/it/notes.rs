//! Notes are encrypted before they are stored: readable by their owner with the vault
//! unlocked, writable (sealed) while it is locked, and nowhere in a database dump.

use diesel_async::SimpleAsyncConnection as _;

use crate::support::*;

const UNLOCKED_TEXT: &str = "pelicans nest on the old pier";
const LOCKED_TEXT: &str = "walruses prefer the north beach";

#[tokio::test]
async fn notes_are_sealed_while_locked_and_never_in_a_database_dump() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;

    let resp = capture_note(&app, &owner, UNLOCKED_TEXT).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/notes?captured=1");
    assert!(
        text_of(&app, &owner, "/notes")
            .await
            .contains(UNLOCKED_TEXT)
    );

    // Locked: the appliance can still write, but not read.
    lock(&app, &owner).await;
    assert_eq!(capture_note(&app, &owner, LOCKED_TEXT).await.status(), 303);
    let page = text_of(&app, &owner, "/notes").await;
    assert!(page.contains("2 notes"), "{page}");
    assert!(!page.contains(UNLOCKED_TEXT) && !page.contains(LOCKED_TEXT));

    let dump = pg_dump(&app);
    assert!(dump.contains("item_versions"), "the dump has the tables");
    for secret in [
        UNLOCKED_TEXT,
        LOCKED_TEXT,
        "pelicans",
        "walruses",
        OWNER_PASS,
    ] {
        assert!(!dump.contains(secret), "{secret:?} is in the database dump");
    }

    // Unlocking re-wraps the sealed key, and both notes read again.
    unlock(&app, &owner, OWNER_PASS).await;
    let page = text_of(&app, &owner, "/notes").await;
    assert!(
        page.contains(UNLOCKED_TEXT) && page.contains(LOCKED_TEXT),
        "{page}"
    );
    let dump = pg_dump(&app);
    assert!(!dump.contains(LOCKED_TEXT));
    // The unlock re-wraps sealed keys while it builds the search index, in the
    // background. Column 3 of `items` is `data_key_sealed`.
    cv_testkit::eventually(
        std::time::Duration::from_secs(30),
        "no data key left sealed after the unlock",
        || async {
            let sealed = dump_rows(&pg_dump(&app), "items")
                .iter()
                .filter(|row| row.get(3) == Some(&"t"))
                .count();
            (sealed == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_tampered_note_is_reported_never_shown_as_garbage() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    assert_eq!(
        capture_note(&app, &owner, UNLOCKED_TEXT).await.status(),
        303
    );
    let mut conn = cv_db::connect_once(&app.database_url()).await.unwrap();
    // Flip one bit of the ciphertext.
    conn.batch_execute(
        "UPDATE item_versions SET content = set_byte(content, 20, get_byte(content, 20) # 1)",
    )
    .await
    .unwrap();
    let resp = owner.get(app.url("/notes")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let page = resp.text().await.unwrap();
    assert!(page.contains("failed its integrity check"), "{page}");
    assert!(!page.contains(UNLOCKED_TEXT));
}

#[tokio::test]
async fn bad_notes_are_refused_and_nothing_is_stored() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    for empty in ["", "   \n  "] {
        let resp = capture_note(&app, &owner, empty).await;
        assert_eq!(resp.status(), 400, "{empty:?}");
        assert!(resp.text().await.unwrap().contains("write something"));
    }
    let resp = capture_note(&app, &owner, &"x".repeat(17 * 1024)).await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("at most 16 KiB"));
    let resp = capture_note(&app, &owner, &"x".repeat(70 * 1024)).await;
    assert_eq!(resp.status(), 413, "over the 64 KiB form limit");
    let many_tags = vec!["t"; 10_000].join(",");
    let resp = post_form(
        &app,
        &owner,
        "/notes",
        &[("text", "hello"), ("tags", many_tags.as_str())],
    )
    .await;
    assert_eq!(resp.status(), 400, "10 000 tags");
    assert!(resp.text().await.unwrap().contains("at most 32 tags"));
    let csrf = csrf_for(&app, &owner, "/notes").await;
    let forged = owner
        .post(app.url("/notes"))
        .form(&[("text", "hello"), ("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let anonymous = app.client();
    let resp = anonymous
        .post(app.url("/notes"))
        .form(&[("text", "hello"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let dump = pg_dump(&app);
    assert_eq!(items_in_dump(&dump), 0, "no refused note was stored");
}

#[tokio::test]
async fn household_members_never_see_each_others_notes() {
    let app = appliance_with_owner().await;
    add_member(&app, "max", "max's passphrase").await;
    let owner = owner_client(&app).await;
    assert_eq!(
        capture_note(&app, &owner, UNLOCKED_TEXT).await.status(),
        303
    );
    let max = member_client(&app, "max", "max's passphrase").await;
    let page = text_of(&app, &max, "/notes").await;
    assert!(!page.contains(UNLOCKED_TEXT));
    assert!(page.contains("Nothing yet"));
    assert_eq!(capture_note(&app, &max, LOCKED_TEXT).await.status(), 303);
    assert!(!text_of(&app, &owner, "/notes").await.contains(LOCKED_TEXT));
}
