//! Export and import: the whole vault, decrypted, as a checked zip after re-entering the
//! passphrase; imported into an empty vault it comes back exactly.

use std::io::Cursor;

use crate::api::{api_login, get_json, wait_for_index};
use crate::support::*;

async fn export(
    app: &cv_testkit::TestAppliance,
    client: &reqwest::Client,
    pass: &str,
) -> reqwest::Response {
    post_form(app, client, "/account/export", &[("passphrase", pass)]).await
}

async fn import(
    app: &cv_testkit::TestAppliance,
    client: &reqwest::Client,
    zip: Vec<u8>,
) -> reqwest::Response {
    let csrf = csrf_for(app, client, "/account/export").await;
    let form = reqwest::multipart::Form::new().text("csrf", csrf).part(
        "archive",
        reqwest::multipart::Part::bytes(zip)
            .file_name("export.zip")
            .mime_str("application/zip")
            .unwrap(),
    );
    client
        .post(app.url("/account/import"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

fn items_of(zip: &[u8]) -> Vec<cv_archive::ExportItem> {
    let (_, mut items) =
        cv_archive::read_archive(Cursor::new(zip), &cv_archive::Limits::default()).unwrap();
    items.sort_by_key(|i| (i.created_at, i.versions[0].text.to_string()));
    items
}

fn without_ids(items: &[cv_archive::ExportItem]) -> Vec<cv_archive::ExportItem> {
    items
        .iter()
        .cloned()
        .map(|mut i| {
            i.id = uuid::Uuid::nil();
            i
        })
        .collect()
}

/// Where the compressed bytes of the zip's first `items/…` entry start (after its
/// local file header: 30 bytes, the name, the extra field).
fn compressed_data_of_first_item(zip: &[u8]) -> usize {
    let u16_at = |at: usize| usize::from(u16::from_le_bytes([zip[at], zip[at + 1]]));
    let mut at = 0;
    while at + 30 < zip.len() {
        if zip[at..].starts_with(b"PK\x03\x04") {
            let (name_len, extra_len) = (u16_at(at + 26), u16_at(at + 28));
            let name = &zip[at + 30..at + 30 + name_len];
            let data = at + 30 + name_len + extra_len;
            if name.starts_with(b"items/") {
                return data;
            }
            at = data;
        } else {
            at += 1;
        }
    }
    panic!("no items/ entry in the export");
}

#[tokio::test]
async fn an_export_imported_into_an_empty_vault_restores_it_exactly() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    for (text, tags) in [
        ("Plant the tulip bulbs before the frost", "garden"),
        ("Café ☕ with Ana — ideas for the trip", "travel, people"),
        ("A third note, to be archived", ""),
    ] {
        let resp = post_form(&app, &owner, "/notes", &[("text", text), ("tags", tags)]).await;
        assert_eq!(resp.status(), 303);
    }
    let page = text_of(&app, &owner, "/search?q=tulip").await;
    let tulip = first_item(&page);
    for (path, fields) in [
        (
            format!("/items/{tulip}/edit"),
            vec![
                ("version", "1"),
                ("text", "Plant the tulip bulbs before the first frost"),
                ("tags", "garden, autumn"),
            ],
        ),
        (
            format!("/items/{tulip}/task"),
            vec![
                ("version", "2"),
                ("status", "open"),
                ("priority", "high"),
                ("due", "2026-11-30"),
            ],
        ),
        (format!("/items/{tulip}/flags"), vec![("action", "pin")]),
    ] {
        assert_eq!(
            post_form(&app, &owner, &path, &fields).await.status(),
            303,
            "{path}"
        );
    }
    let page = text_of(&app, &owner, "/search?q=archived").await;
    let third = first_item(&page);
    assert_eq!(
        post_form(
            &app,
            &owner,
            &format!("/items/{third}/flags"),
            &[("action", "archive")]
        )
        .await
        .status(),
        303
    );

    // The passphrase is asked again; a wrong one exports nothing.
    let resp = export(&app, &owner, "not my passphrase").await;
    assert_eq!(resp.status(), 401);
    assert!(resp.text().await.unwrap().contains("Wrong passphrase"));
    let resp = export(&app, &owner, OWNER_PASS).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    assert!(
        resp.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("contextvault-olivia-")
    );
    let zip = resp.bytes().await.unwrap().to_vec();
    let exported = items_of(&zip);
    assert_eq!(exported.len(), 3);
    let tulip_item = exported.iter().find(|i| i.id.to_string() == tulip).unwrap();
    assert_eq!(tulip_item.versions.len(), 3, "every version is exported");
    assert!(tulip_item.pinned);
    assert_eq!(
        tulip_item.versions[0].text.as_str(),
        "Plant the tulip bulbs before the frost"
    );
    assert_eq!(
        tulip_item.versions[2]
            .task
            .as_ref()
            .unwrap()
            .due
            .unwrap()
            .to_string(),
        "2026-11-30"
    );
    assert!(exported.iter().any(|i| i.archived));

    // Into another account's empty vault (ids are taken here, so it gets new ones).
    add_member(&app, "max", "max's passphrase").await;
    let max = member_client(&app, "max", "max's passphrase").await;
    let resp = import(&app, &max, zip.clone()).await;
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    assert_eq!(location(&resp), "/account/export?imported=3");
    let resp = export(&app, &max, "max's passphrase").await;
    assert_eq!(resp.status(), 200);
    let again = items_of(&resp.bytes().await.unwrap());
    assert_eq!(
        without_ids(&again),
        without_ids(&exported),
        "the round trip is exact"
    );
    // Imported items are searchable at once.
    let session = api_login(&app, "max", "max's passphrase").await;
    wait_for_index(&app, &session).await;
    let (_, json) = get_json(&app, &session, "/api/v1/search?q=tulip").await;
    assert_eq!(json["total"], 1, "{json}");

    // Not into a vault that has items: nothing is written.
    let before = items_in_dump(&pg_dump(&app));
    let resp = import(&app, &max, zip.clone()).await;
    assert_eq!(resp.status(), 409);
    assert_eq!(items_in_dump(&pg_dump(&app)), before);

    // Damaged or foreign files are refused as a whole.
    add_member(&app, "zoe", "zoe's passphrase").await;
    let zoe = member_client(&app, "zoe", "zoe's passphrase").await;
    let mut flipped = zip.clone();
    flipped[compressed_data_of_first_item(&zip) + 5] ^= 0x40;
    for (what, bad) in [
        ("a flipped bit", flipped),
        ("not a zip", b"PK\x03\x04 certainly not a zip".to_vec()),
        ("empty", Vec::new()),
    ] {
        let resp = import(&app, &zoe, bad).await;
        assert_eq!(resp.status(), 400, "{what}");
        assert_eq!(
            items_in_dump(&pg_dump(&app)),
            before,
            "{what}: nothing written"
        );
    }
    let activity = text_of(&app, &owner, "/account/activity").await;
    assert!(
        activity.contains("Vault exported") && activity.contains("Export refused"),
        "{activity}"
    );
    assert!(
        text_of(&app, &max, "/account/activity")
            .await
            .contains("Vault imported")
    );
}
