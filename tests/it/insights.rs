//! Insights with the real model: recent notes grouped into themes by meaning on the
//! home page, each theme with its notes as evidence.

use std::time::Duration;

use crate::api::{api_login, capture, get_json, wait_for_index};
use crate::support::*;
use crate::workers::appliance_with_workers;

const GARDEN: [&str; 4] = [
    "Plant the tomato seedlings in the raised garden bed",
    "Water the tomato plants in the garden every evening",
    "The garden tomatoes need stakes and more compost",
    "Pick the ripe tomatoes in the garden before the rain",
];
const DENTIST: [&str; 4] = [
    "Dentist appointment about the aching molar on Tuesday",
    "The dentist said the molar needs a filling",
    "Ask the dentist whether the molar filling is covered",
    "My molar still aches after the dentist visit",
];

#[tokio::test]
async fn recent_notes_are_grouped_into_themes_on_the_home_page() {
    let Some(app) = appliance_with_workers("").await else {
        return;
    };
    create_member(&app, OWNER, OWNER_PASS);
    cv_testkit::eventually(Duration::from_secs(120), "local AI up", || async {
        let (_, health) = app.health().await;
        (health["ai"]["state"] == "up").then_some(())
    })
    .await;
    let session = api_login(&app, OWNER, OWNER_PASS).await;
    wait_for_index(&app, &session).await;
    let mut garden = Vec::new();
    for text in GARDEN.iter().chain(&DENTIST) {
        let id = capture(&app, &session, text, &[]).await;
        if GARDEN.contains(text) {
            garden.push(id);
        }
    }
    cv_testkit::eventually(Duration::from_secs(180), "every note embedded", || async {
        let (_, json) = get_json(&app, &session, "/api/v1/vault").await;
        (json["index"]["semantic"]["items"] == 8).then_some(())
    })
    .await;

    let owner = owner_client(&app).await;
    let page = text_of(&app, &owner, "/home").await;
    assert!(page.contains("Themes of the last 14 days"), "{page}");
    let themes = page
        .split("<li class=\"theme\">")
        .skip(1)
        .collect::<Vec<_>>();
    assert!(themes.len() >= 2, "{page}");
    // The garden notes make one theme, labelled with its words, linking to them.
    let theme = themes
        .iter()
        .find(|t| garden.iter().filter(|id| t.contains(id.as_str())).count() >= 3)
        .unwrap_or_else(|| panic!("no garden theme in {page}"));
    let label = theme
        .split("<strong>")
        .nth(1)
        .unwrap()
        .split("</strong>")
        .next()
        .unwrap();
    assert!(
        label.contains("tomato") || label.contains("garden"),
        "{label}"
    );
    assert!(!DENTIST.iter().any(|d| theme.contains(d)), "{theme}");
}

/// Insights are computed from the indexes whenever something changed since they were
/// last computed: a note captured a second ago counts, a task due tomorrow is listed,
/// and a deleted note is gone, on the very next view.
#[tokio::test]
async fn insights_reflect_a_capture_made_a_second_earlier() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    // Right after login the (empty) index may still be building: then there are none.
    cv_testkit::eventually(
        Duration::from_secs(20),
        "insights of the empty vault",
        || async {
            let page = text_of(&app, &owner, "/dashboard").await;
            page.contains("Nothing captured in the last 14 days")
                .then_some(())
        },
    )
    .await;
    for n in 1..=9 {
        assert_eq!(
            capture_note(&app, &owner, &format!("note number {n}"))
                .await
                .status(),
            303
        );
        let page = text_of(&app, &owner, "/dashboard").await;
        assert!(
            page.contains(&format!("among {n} recent notes")),
            "after {n}: {page}"
        );
    }
    let tomorrow = (time::OffsetDateTime::now_utc().date() + time::Duration::days(1)).to_string();
    let resp = post_form(
        &app,
        &owner,
        "/tasks",
        &[("text", "Renew the car insurance"), ("due", &tomorrow)],
    )
    .await;
    assert_eq!(resp.status(), 303, "{}", resp.text().await.unwrap());
    let page = text_of(&app, &owner, "/dashboard").await;
    assert!(page.contains("Renew the car insurance"), "{page}");
    let item = first_item(&text_of(&app, &owner, "/notes").await);
    let resp = post_form(
        &app,
        &owner,
        &format!("/items/{item}/delete"),
        &[("confirm", "yes")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let page = text_of(&app, &owner, "/dashboard").await;
    assert!(
        page.contains("among 9 recent notes"),
        "after deleting one: {page}"
    );
}
