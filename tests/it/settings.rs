//! The appliance's time zone: picked at setup, changed by the owner on `/settings`, used
//! by every page; the JSON API keeps answering in UTC.

use reqwest::Method;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::api::api_request;
use crate::support::*;

/// `at` as pages show it with a fixed offset and abbreviation: "2026-03-14 20:34 IST".
fn shown(at: OffsetDateTime, hours: i8, minutes: i8, abbreviation: &str) -> String {
    let at = at.to_offset(time::UtcOffset::from_hms(hours, minutes, 0).unwrap());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} {abbreviation}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

#[tokio::test]
async fn pages_show_times_in_the_zone_picked_at_setup_and_changed_in_the_settings() {
    let app = appliance().await;
    let client = app.client();
    let csrf = csrf_for(&app, &client, "/setup").await;
    let code = app.setup_code();
    let setup = |zone: &'static str| {
        vec![
            ("setup_code", code.clone()),
            ("name", OWNER.to_owned()),
            ("passphrase", OWNER_PASS.to_owned()),
            ("passphrase_confirm", OWNER_PASS.to_owned()),
            ("time_zone", zone.to_owned()),
            ("csrf", csrf.clone()),
        ]
    };
    // An unknown zone is refused with the form again, as typed.
    let resp = client
        .post(app.url("/setup"))
        .form(&setup("Mars/Olympus_Mons"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let page = resp.text().await.unwrap();
    assert!(page.contains("Unknown time zone"), "{page}");
    assert!(page.contains(&code), "the setup code is kept: {page}");

    // Tokyo: UTC+9 all year (no daylight saving since 1951), abbreviated JST.
    let resp = client
        .post(app.url("/setup"))
        .form(&setup("Asia/Tokyo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());

    let owner = owner_client(&app).await;
    assert_eq!(
        capture_note(&app, &owner, "What time is it?")
            .await
            .status(),
        303
    );
    let id = first_item(&text_of(&app, &owner, "/notes").await);

    // The API answers in UTC (RFC 3339 with Z), for machines.
    let token = create_token(&app, OWNER, "read", "reader");
    let (status, body) = api_request(
        &app,
        Method::GET,
        &format!("/api/v1/items/{id}"),
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let created = body["created_at"].as_str().unwrap().to_owned();
    assert!(created.ends_with('Z'), "{created}");
    let created = OffsetDateTime::parse(&created, &Rfc3339).unwrap();

    // The note's page shows the same instant on Tokyo's clock.
    let item = text_of(&app, &owner, &format!("/items/{id}")).await;
    let tokyo = shown(created, 9, 0, "JST");
    assert!(
        item.contains(&format!("Created {tokyo}")),
        "{tokyo} not in {item}"
    );
    let history = text_of(&app, &owner, &format!("/items/{id}/history")).await;
    assert!(history.contains(&tokyo), "{tokyo} not in {history}");

    // The settings page (linked from the account page) shows the zone in force.
    assert!(
        text_of(&app, &owner, "/account")
            .await
            .contains(r#"href="/settings""#)
    );
    let settings = text_of(&app, &owner, "/settings").await;
    assert!(
        settings.contains(r#"<option value="Asia/Tokyo" selected>"#),
        "{settings}"
    );

    // A name that is not a zone: 400, nothing changed.
    let resp = post_form(
        &app,
        &owner,
        "/settings",
        &[("time_zone", "Europe/Atlantis")],
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert!(resp.text().await.unwrap().contains("Unknown time zone"));
    assert!(
        text_of(&app, &owner, &format!("/items/{id}"))
            .await
            .contains(&tokyo)
    );

    // India: UTC+5:30 all year, abbreviated IST. Every page switches at once.
    let resp = post_form(&app, &owner, "/settings", &[("time_zone", "asia/kolkata")]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/settings?saved=1");
    let kolkata = shown(created, 5, 30, "IST");
    let item = text_of(&app, &owner, &format!("/items/{id}")).await;
    assert!(
        item.contains(&format!("Created {kolkata}")),
        "{kolkata} not in {item}"
    );
    let settings = text_of(&app, &owner, "/settings?saved=1").await;
    assert!(
        settings.contains(r#"<option value="Asia/Kolkata" selected>"#),
        "the name is stored as the database spells it: {settings}"
    );
    let tokens = text_of(&app, &owner, "/account/tokens").await;
    assert!(tokens.contains(" IST"), "token times in the zone: {tokens}");

    // Only the owner changes it.
    add_member(&app, "max", "max's passphrase").await;
    let member = member_client(&app, "max", "max's passphrase").await;
    assert_eq!(status_of(&app, &member, "/settings").await, 403);
    let resp = post_form(&app, &member, "/settings", &[("time_zone", "UTC")]).await;
    assert_eq!(resp.status(), 403);
    assert!(
        text_of(&app, &owner, &format!("/items/{id}"))
            .await
            .contains(&kolkata)
    );
}
