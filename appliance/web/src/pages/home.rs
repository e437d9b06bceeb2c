//! The home page a person lands on after logging in: the capture box first, then what
//! they saved last, what is due soon, their vault's state, and a getting-started list
//! until every step is done or the list is dismissed. The appliance's own state (its
//! components) is on the System page (`dashboard.rs`).

use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use serde::Deserialize;
use time::OffsetDateTime;

use super::dashboard::{InsightsView, insights_view};
use super::see_other;
use crate::error::WebError;
use crate::format::{date, human_bytes, human_duration};
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/home", web::get().to(home))
        // The dashboard's old address, in bookmarks and on installed web apps: the home
        // took its place.
        .route("/dashboard", web::get().to(home))
        .route("/home/getting-started", web::post().to(tick_off));
}

/// How many of the newest notes the home page lists.
const RECENT: i64 = 5;

/// The step a person ticks off themselves: whether a phone trusts the appliance's CA is
/// known to the phone only.
const STEP_TRUST: &str = "trust";
/// The whole list, dismissed.
const STEP_DISMISSED: &str = "dismissed";

#[derive(Debug, Template, WebTemplate)]
#[template(path = "home.html")]
pub(crate) struct HomePage {
    pub user_name: String,
    pub can_manage_users: bool,
    pub csrf: String,
    /// "Saved." after a capture from this page.
    pub notice: Option<&'static str>,
    /// `Some(n)`: the vault is locked and holds n notes.
    pub locked_count: Option<i64>,
    pub recent: Vec<RecentView>,
    /// The getting-started list; empty once done or dismissed.
    pub steps: Vec<StepView>,
    pub vault_unlocked_for: Option<String>,
    pub index: Option<String>,
    pub insights: Option<InsightsView>,
}

#[derive(Debug, Clone)]
pub(crate) struct RecentView {
    pub href: String,
    /// One line of plain text (`None`: the note failed its integrity check).
    pub preview: Option<String>,
    pub created: String,
}

#[derive(Debug, Clone)]
pub(crate) struct StepView {
    pub title: &'static str,
    pub href: &'static str,
    pub link: &'static str,
    pub done: bool,
    /// Set for a step only the person can tick off (the value posted).
    pub tick: Option<&'static str>,
}

/// The getting-started list from what is known: `trusted` (ticked off), an active API
/// token, a VPN device (`None`: not the person's to add, so not listed), a second
/// account (`None`: likewise).
fn steps(
    trusted: bool,
    has_token: bool,
    has_vpn_peer: Option<bool>,
    household: Option<bool>,
) -> Vec<StepView> {
    let mut steps = vec![StepView {
        title: "Trust this appliance's certificate on your phone",
        href: "/trust",
        link: "How to trust it",
        done: trusted,
        tick: (!trusted).then_some(STEP_TRUST),
    }];
    if let Some(done) = has_vpn_peer {
        steps.push(StepView {
            title: "Add this phone to the VPN, to reach your vault from anywhere",
            href: "/wireguard",
            link: "Add a device",
            done,
            tick: None,
        });
    }
    steps.push(StepView {
        title: "Make an API token for a Shortcut or a script",
        href: "/account/tokens",
        link: "Make a token",
        done: has_token,
        tick: None,
    });
    if let Some(done) = household {
        steps.push(StepView {
            title: "Invite your household",
            href: "/users",
            link: "Add an account",
            done,
            tick: None,
        });
    }
    steps
}

/// How much of a note the home page shows: about one line on a phone.
const PREVIEW_CHARS: usize = 80;

/// The start of a note as plain text, for a one-line list.
fn preview(text: &str) -> String {
    let plain = crate::markdown::to_plain(text);
    match plain.char_indices().nth(PREVIEW_CHARS) {
        Some((cut, _)) => format!("{}…", plain[..cut].trim_end()),
        None => plain,
    }
}

#[derive(Deserialize)]
struct HomeQuery {
    captured: Option<String>,
}

/// `GET /home` (and `/dashboard`).
async fn home(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HomePage, WebError> {
    let now = OffsetDateTime::now_utc();
    let tz = state.time_zone().await;
    let captured = web::Query::<HomeQuery>::from_query(req.query_string())
        .ok()
        .is_some_and(|q| q.captured.is_some());
    let admin = user.user.role.can_manage_users();
    let mut conn = state.conn().await?;
    let ticked = cv_db::getting_started::done(&mut conn, user.user.id).await?;
    let steps = if ticked.iter().any(|s| s == STEP_DISMISSED) {
        Vec::new()
    } else {
        let has_token = cv_db::tokens::list(&mut conn, user.user.id)
            .await?
            .iter()
            .any(|t| t.revoked_at.is_none());
        let household = if admin {
            Some(cv_db::User::count(&mut conn).await? > 1)
        } else {
            None
        };
        // Adding VPN devices is the owner's and admins' (an unreachable supervisor
        // leaves the step open rather than failing the page).
        let has_vpn_peer = if admin {
            Some(
                state
                    .status
                    .control()
                    .wg_list_peers()
                    .await
                    .is_ok_and(|o| !o.peers.is_empty()),
            )
        } else {
            None
        };
        let all = steps(
            ticked.iter().any(|s| s == STEP_TRUST),
            has_token,
            has_vpn_peer,
            household,
        );
        if all.iter().all(|s| s.done) {
            Vec::new()
        } else {
            all
        }
    };

    let unlocked = state.keyring.get(user.user.id, now);
    let (locked_count, recent) = match &unlocked {
        Some(u) => {
            let views = cv_vault::newest(&mut conn, user.user.id, &u.vault, RECENT)
                .await
                .map_err(WebError::from)?;
            let recent = views
                .into_iter()
                .map(|v| RecentView {
                    href: format!("/items/{}", v.id.0),
                    preview: v.text.ok().map(|t| preview(&t)),
                    created: date(v.created_at, &tz),
                })
                .collect();
            (None, recent)
        }
        None => (
            Some(
                cv_vault::count(&mut conn, user.user.id)
                    .await
                    .map_err(WebError::from)?,
            ),
            Vec::new(),
        ),
    };
    drop(conn);
    let index = unlocked.as_ref().map(|u| {
        let (phase, indexed, total) = u.index.progress();
        match phase {
            "building" => format!("building: {indexed} of {total} items"),
            "ready" => format!(
                "ready: {} items, {} in memory",
                u.index.index.len(),
                human_bytes(u.index.index.memory_bytes())
            ),
            _ => "failed (see the appliance's log); lock and unlock to retry".to_owned(),
        }
    });
    let insights = match &unlocked {
        Some(u) => crate::insights::current(&state, u.index.clone())
            .await
            .map(|i| insights_view(&i, &state.insights, state.ai.pool.is_some(), now)),
        None => None,
    };
    Ok(HomePage {
        user_name: user.user.name.to_string(),
        can_manage_users: admin,
        csrf: user.csrf_token.clone(),
        notice: captured.then_some(if unlocked.is_some() {
            "Saved."
        } else {
            "Saved, sealed: your vault is locked, so even this appliance cannot read it until you unlock."
        }),
        locked_count,
        recent,
        steps,
        vault_unlocked_for: unlocked.map(|u| human_duration(now - u.since)),
        index,
        insights,
    })
}

#[derive(Deserialize)]
struct TickForm {
    csrf: String,
    step: String,
}

/// `POST /home/getting-started`: ticks off the certificate step, or dismisses the list.
async fn tick_off(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<TickForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    let step = match form.step.as_str() {
        STEP_TRUST => STEP_TRUST,
        STEP_DISMISSED => STEP_DISMISSED,
        _ => {
            return Err(WebError::BadRequest(
                "Unknown getting-started step: expected \"trust\" or \"dismissed\".".into(),
            ));
        }
    };
    let mut conn = state.conn().await?;
    cv_db::getting_started::mark_done(&mut conn, user.user.id, step).await?;
    Ok(see_other("/home").finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::dashboard::{DueCard, ThemeCard};

    fn page(steps: Vec<StepView>) -> HomePage {
        HomePage {
            user_name: "alice".into(),
            can_manage_users: true,
            csrf: "csrf-token-1".into(),
            notice: None,
            locked_count: None,
            recent: vec![RecentView {
                href: "/items/abc".into(),
                preview: Some("Plant the tomatoes".into()),
                created: "2026-05-01".into(),
            }],
            steps,
            vault_unlocked_for: Some("3 min".into()),
            index: None,
            insights: None,
        }
    }

    #[test]
    fn steps_follow_what_is_known_and_only_the_certificate_is_ticked_by_hand() {
        let all = steps(false, true, Some(false), Some(true));
        let done: Vec<(&str, bool)> = all.iter().map(|s| (s.href, s.done)).collect();
        assert_eq!(
            done,
            [
                ("/trust", false),
                ("/wireguard", false),
                ("/account/tokens", true),
                ("/users", true)
            ]
        );
        assert_eq!(all[0].tick, Some(STEP_TRUST));
        assert!(all[1..].iter().all(|s| s.tick.is_none()));
        // A member adds no VPN device and invites nobody.
        let member = steps(true, false, None, None);
        let hrefs: Vec<&str> = member.iter().map(|s| s.href).collect();
        assert_eq!(hrefs, ["/trust", "/account/tokens"]);
        assert_eq!(member[0].tick, None);
    }

    #[test]
    fn the_home_page_has_the_capture_box_recent_notes_and_the_list() {
        let html = page(steps(false, false, Some(true), Some(false)))
            .render()
            .unwrap();
        for text in [
            r#"action="/notes""#,
            r#"name="from" value="home""#,
            r#"<a href="/items/abc">Plant the tomatoes</a>"#,
            r#"href="/trust""#,
            r#"href="/account/tokens""#,
            r#"name="step" value="trust""#,
            r#"name="step" value="dismissed""#,
            r#"aria-current="page""#,
            "alice",
        ] {
            assert!(html.contains(text), "{text} missing in {html}");
        }
        let html = page(Vec::new()).render().unwrap();
        assert!(!html.contains("Getting started"), "{html}");
    }

    #[test]
    fn the_home_page_shows_themes_with_evidence_and_tasks_due() {
        let mut page = page(Vec::new());
        page.insights = Some(InsightsView {
            computed_ago: "3 min".into(),
            recent_days: 14,
            recent: 9,
            recent_with_meaning: 8,
            ai_on: true,
            themes: vec![ThemeCard {
                label: "garden <tomato>".into(),
                keywords: "garden, tomato, bed".into(),
                size: 4,
                evidence: vec![("/items/abc".into(), "Plant the tomatoes".into())],
            }],
            due_soon_days: 7,
            due_soon: vec![DueCard {
                href: "/items/def".into(),
                title: "Pay the insurance".into(),
                due: "2026-06-13".into(),
                overdue: true,
            }],
        });
        let html = page.render().unwrap();
        for text in [
            "Themes of the last 14 days",
            "<strong>garden &#60;tomato&#62;</strong>",
            "4 notes · garden, tomato, bed",
            r#"<a href="/items/abc">Plant the tomatoes</a>"#,
            r#"<a href="/items/def">Pay the insurance</a>"#,
            "overdue since 2026-06-13",
            "3 min ago",
        ] {
            assert!(html.contains(text), "{text} missing in {html}");
        }
        page.insights.as_mut().unwrap().themes.clear();
        page.insights.as_mut().unwrap().ai_on = false;
        let html = page.render().unwrap();
        assert!(html.contains("Themes need the local AI"));
    }

    #[test]
    fn a_preview_is_the_start_as_plain_text() {
        assert_eq!(
            preview("# Call Sam\n\nabout the **boat**"),
            "Call Sam about the boat"
        );
        assert_eq!(preview(&"é".repeat(100)), format!("{}…", "é".repeat(80)));
        assert_eq!(preview(""), "");
    }
}
