//! The home page's getting-started list: each step's "done" comes from the appliance's
//! real state (an API token, a second account) or from the person's own tick, and the
//! list goes away once dismissed. Bad answers get a 400 with a message.

use crate::support::*;

/// The getting-started list's items as (done, title) pairs, from the page's HTML.
fn steps(html: &str) -> Vec<(bool, String)> {
    html.split(r#"<li class="checklist-item">"#)
        .skip(1)
        .map(|item| {
            let done = item.contains(">done</span>");
            let title = item
                .split("</span>\n      <span>")
                .nth(1)
                .and_then(|rest| rest.split(['<', ':']).next())
                .unwrap_or_default()
                .to_owned();
            (done, title)
        })
        .collect()
}

fn done(html: &str, starting: &str) -> bool {
    let all = steps(html);
    all.iter()
        .find(|(_, title)| title.starts_with(starting))
        .unwrap_or_else(|| panic!("no step {starting:?} in {all:?}"))
        .0
}

#[tokio::test]
async fn steps_are_done_from_real_state_or_ticked_off_and_the_list_can_be_hidden() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    let home = text_of(&app, &owner, "/home").await;
    assert_eq!(steps(&home).len(), 4, "{home}");
    assert!(steps(&home).iter().all(|(done, _)| !done), "{home}");

    // A token and a second account are seen; the certificate is ticked off by hand.
    let resp = post_form(
        &app,
        &owner,
        "/account/tokens",
        &[("name", "shortcut"), ("scope", "capture")],
    )
    .await;
    assert!(resp.status().as_u16() < 400, "{}", resp.status());
    add_member(&app, "sam", "sam's long passphrase").await;
    let resp = post_form(&app, &owner, "/home/getting-started", &[("step", "trust")]).await;
    assert_eq!(resp.status(), 303);
    assert_eq!(location(&resp), "/home");
    let home = text_of(&app, &owner, "/home").await;
    assert!(done(&home, "Make an API token"), "{home}");
    assert!(done(&home, "Invite your household"), "{home}");
    assert!(done(&home, "Trust this appliance"), "{home}");
    assert!(!done(&home, "Add this phone to the VPN"), "{home}");

    // A member's list has only their own steps, and ticks are per account.
    let member = app.client();
    assert_eq!(
        login(&app, &member, "sam", "sam's long passphrase")
            .await
            .status(),
        303
    );
    let theirs = text_of(&app, &member, "/home").await;
    let titles: Vec<String> = steps(&theirs).into_iter().map(|(_, t)| t).collect();
    assert_eq!(titles.len(), 2, "{theirs}");
    assert!(!done(&theirs, "Trust this appliance"), "{theirs}");

    // Dismissed, the list is gone for good.
    let resp = post_form(
        &app,
        &owner,
        "/home/getting-started",
        &[("step", "dismissed")],
    )
    .await;
    assert_eq!(resp.status(), 303);
    let home = text_of(&app, &owner, "/home").await;
    assert!(!home.contains("Getting started"), "{home}");
    assert!(
        text_of(&app, &member, "/home")
            .await
            .contains("Getting started")
    );
}

#[tokio::test]
async fn an_unknown_step_is_refused_with_a_message() {
    let app = appliance_with_owner().await;
    let owner = owner_client(&app).await;
    for fields in [vec![("step", "admin")], vec![("step", "")], vec![]] {
        let resp = post_form(&app, &owner, "/home/getting-started", &fields).await;
        assert_eq!(resp.status(), 400, "{fields:?}");
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("getting-started step") || body.contains("step"),
            "{fields:?}: {body}"
        );
    }
    assert!(
        text_of(&app, &owner, "/home")
            .await
            .contains("Getting started")
    );
}
