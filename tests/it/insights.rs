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
