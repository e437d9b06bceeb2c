//! Snapshots of the data directory, for the owner: the System page's card, the list,
//! a snapshot taken by hand, and a restore after the owner's passphrase is entered again.
//!
//! The supervisor takes, lists and restores snapshots (`appliance/supervisor/src/storage.rs`);
//! a restore stops this very process, so it is started in the background and the browser
//! gets a page that returns to the login page once the vault is back.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_control::{ControlError, SnapshotOverview, SnapshotSummary, StorageStatus};
use jiff::tz::TimeZone;
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::{FormError, render, see_other};
use crate::error::WebError;
use crate::format::{date_time, human_bytes};
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/system/snapshots", web::get().to(list_page))
        .route("/system/snapshots/create", web::post().to(create))
        .route(
            "/system/snapshots/{id}/restore",
            web::get().to(confirm_page),
        )
        .route("/system/snapshots/{id}/restore", web::post().to(restore));
}

/// The longest reason a snapshot taken by hand may carry (the supervisor cuts there too).
pub const REASON_LIMIT: usize = 200;

/// What the pages say about deleted items and snapshots.
pub const KEYS_NOTE: &str =
    "Deleting an item destroys its key, but snapshots taken before keep it until they expire.";

/// How long the "Restoring" page waits before it goes to the login page.
const RESTORE_REFRESH_SECS: u32 = 20;

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

const KINDS: [&str; 8] = [
    "hourly",
    "daily",
    "weekly",
    "monthly",
    "manual",
    "update",
    "migration",
    "restore",
];

/// Refuses anyone but the owner: "Only the owner can {what}."
fn require_owner(user: &CurrentUser, what: &str) -> Result<(), WebError> {
    if user.user.role == cv_db::Role::Owner {
        Ok(())
    } else {
        Err(WebError::Forbidden(format!("Only the owner can {what}.")))
    }
}

/// The time in a snapshot id (`20261207T150000Z-hourly.daily`), when it is one: a UTC
/// second, a dash and known kinds separated by dots.
pub(crate) fn id_time(id: &str) -> Option<OffsetDateTime> {
    if id.len() > 120 {
        return None;
    }
    let (time, kinds) = id.split_once('-')?;
    if kinds.is_empty() || !kinds.split('.').all(|k| KINDS.contains(&k)) {
        return None;
    }
    let at = jiff::fmt::strtime::parse(TIME_FORMAT, time)
        .and_then(|t| t.to_datetime())
        .and_then(|dt| dt.to_zoned(TimeZone::UTC))
        .ok()?
        .timestamp();
    if at.strftime(TIME_FORMAT).to_string() != time {
        return None;
    }
    OffsetDateTime::from_unix_timestamp(at.as_second()).ok()
}

/// Why a snapshot was taken, in words.
pub(crate) fn why(kinds: &[String], reason: &str) -> String {
    let has = |k: &str| kinds.iter().any(|x| x == k);
    let mut parts: Vec<String> = Vec::new();
    let scheduled: Vec<&str> = ["hourly", "daily", "weekly", "monthly"]
        .into_iter()
        .filter(|k| has(k))
        .collect();
    if !scheduled.is_empty() {
        parts.push(scheduled.join(", "));
    }
    if has("update") {
        parts.push("before an update".into());
    }
    if has("migration") {
        parts.push("before a migration".into());
    }
    if has("restore") {
        parts.push("before a restore".into());
    }
    if has("manual") {
        let reason = reason.trim();
        if reason.is_empty() || reason == "taken by hand" {
            parts.push("taken by hand".into());
        } else {
            parts.push(format!("taken by hand: {reason}"));
        }
    }
    if parts.is_empty() {
        kinds.join(", ")
    } else {
        parts.join("; ")
    }
}

/// The backend's name for people.
fn backend_name(backend: &str) -> String {
    match backend {
        "zfs" => "ZFS".to_owned(),
        "btrfs" => "btrfs".to_owned(),
        "plain" => "none".to_owned(),
        other => other.to_owned(),
    }
}

/// The Snapshots card of the System page.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotCard {
    pub backend: String,
    /// Why there are no snapshots (`plain`).
    pub unavailable: Option<String>,
    pub count: usize,
    /// When the newest was taken and why.
    pub newest: Option<(String, String)>,
    /// The last snapshot's failure, until one succeeds.
    pub problem: Option<String>,
    /// What the supervisor is doing now, in words.
    pub busy: Option<&'static str>,
    /// The owner may take snapshots and restore them; admins only see the card.
    pub is_owner: bool,
    /// The snapshot just taken by hand (`/system?snapshot=ID`).
    pub taken: Option<String>,
}

pub(crate) fn card(
    s: &StorageStatus,
    tz: &TimeZone,
    is_owner: bool,
    taken: Option<String>,
) -> SnapshotCard {
    SnapshotCard {
        backend: backend_name(&s.backend),
        unavailable: s.unavailable.clone(),
        count: s.count,
        newest: s.newest.as_deref().and_then(|id| {
            let at = id_time(id)?;
            let kinds: Vec<String> = id
                .split_once('-')
                .map(|(_, k)| k.split('.').map(ToOwned::to_owned).collect())
                .unwrap_or_default();
            Some((date_time(at, tz), why(&kinds, "")))
        }),
        problem: s.problem.clone(),
        busy: match s.busy.as_deref() {
            Some("snapshot") => Some("A snapshot is being taken now."),
            Some("restore") => Some("A snapshot is being restored now."),
            _ => None,
        },
        is_owner,
        taken: taken.and_then(card_taken),
    }
}

/// The id of a snapshot just taken, from the query string, if it is one.
pub(crate) fn card_taken(id: String) -> Option<String> {
    id_time(&id).is_some().then_some(id)
}

/// One row of the list.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotRow {
    pub id: String,
    pub taken: String,
    pub why: String,
    pub size: String,
}

fn row(s: &SnapshotSummary, tz: &TimeZone) -> SnapshotRow {
    let at = s
        .taken_at
        .parse::<jiff::Timestamp>()
        .ok()
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t.as_second()).ok())
        .or_else(|| id_time(&s.id));
    SnapshotRow {
        id: s.id.clone(),
        taken: at.map_or_else(|| s.taken_at.clone(), |at| date_time(at, tz)),
        why: why(&s.kinds, &s.reason),
        size: s.size_bytes.map_or_else(|| "—".to_owned(), human_bytes),
    }
}

#[derive(Debug, Template)]
#[template(path = "snapshots.html")]
pub(crate) struct SnapshotsPage {
    pub can_manage_users: bool,
    pub csrf: String,
    pub backend: String,
    pub unavailable: Option<String>,
    /// Newest first.
    pub rows: Vec<SnapshotRow>,
    /// Set when the supervisor could not be asked.
    pub supervisor_error: Option<String>,
    pub keys_note: &'static str,
}

pub(crate) fn list_view(
    user: &CurrentUser,
    overview: Result<&SnapshotOverview, String>,
    tz: &TimeZone,
) -> SnapshotsPage {
    let (backend, unavailable, rows, supervisor_error) = match overview {
        Ok(o) => (
            backend_name(&o.backend),
            o.unavailable.clone(),
            o.snapshots.iter().rev().map(|s| row(s, tz)).collect(),
            None,
        ),
        Err(e) => (String::new(), None, Vec::new(), Some(e)),
    };
    SnapshotsPage {
        can_manage_users: user.user.role.can_manage_users(),
        csrf: user.csrf_token.clone(),
        backend,
        unavailable,
        rows,
        supervisor_error,
        keys_note: KEYS_NOTE,
    }
}

/// A failure to ask the supervisor, as an answer.
fn control_error(e: ControlError, doing: &str) -> WebError {
    match e {
        ControlError::Refused(message) => WebError::Conflict(message),
        e => {
            warn!(error = %e, doing, "the supervisor could not be asked about snapshots");
            WebError::DatabaseUnavailable { postgres: None }
        }
    }
}

/// `GET /system/snapshots`.
async fn list_page(
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    require_owner(&user, "see and restore snapshots")?;
    let overview = state.status.control().snapshot_list().await.map_err(|e| {
        warn!(error = %e, "cannot list the snapshots");
        e.to_string()
    });
    let tz = state.time_zone().await;
    render(
        StatusCode::OK,
        &list_view(&user, overview.as_ref().map_err(Clone::clone), &tz),
    )
}

#[derive(Deserialize)]
struct CreateForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /system/snapshots/create`: the "Take a snapshot now" button; back to the card,
/// which names the new snapshot.
async fn create(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<CreateForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    require_owner(&user, "take a snapshot")?;
    let reason = form.reason.trim();
    if reason.chars().count() > REASON_LIMIT || reason.chars().any(char::is_control) {
        return Err(WebError::InvalidInput(format!(
            "The reason must be one line of at most {REASON_LIMIT} characters."
        )));
    }
    let taken = state
        .status
        .control()
        .snapshot_create(reason)
        .await
        .map_err(|e| control_error(e, "taking a snapshot"))?;
    info!(user = %user.user.name, id = %taken.id, "snapshot taken from the System page");
    Ok(see_other(&format!("/system?snapshot={}#snapshots", taken.id)).finish())
}

#[derive(Debug, Template)]
#[template(path = "snapshot_restore.html")]
pub(crate) struct RestoreConfirmPage {
    pub can_manage_users: bool,
    pub csrf: String,
    pub id: String,
    pub taken: String,
    pub why: String,
    pub error: Option<FormError>,
    pub keys_note: &'static str,
}

#[derive(Debug, Template)]
#[template(path = "snapshot_restoring.html")]
pub(crate) struct RestoringPage {
    pub taken: String,
    pub refresh_secs: u32,
}

/// The snapshot `id` names, if it is one the supervisor lists; else 404.
async fn find(state: &AppState, id: &str) -> Result<SnapshotSummary, WebError> {
    if id_time(id).is_none() {
        return Err(WebError::NotFound);
    }
    let overview = state
        .status
        .control()
        .snapshot_list()
        .await
        .map_err(|e| control_error(e, "listing snapshots"))?;
    overview
        .snapshots
        .into_iter()
        .find(|s| s.id == id)
        .ok_or(WebError::NotFound)
}

fn confirm_view(
    user: &CurrentUser,
    s: &SnapshotSummary,
    tz: &TimeZone,
    error: Option<FormError>,
) -> RestoreConfirmPage {
    let row = row(s, tz);
    RestoreConfirmPage {
        can_manage_users: user.user.role.can_manage_users(),
        csrf: user.csrf_token.clone(),
        id: row.id,
        taken: row.taken,
        why: row.why,
        error,
        keys_note: KEYS_NOTE,
    }
}

/// `GET /system/snapshots/{id}/restore`: what a restore does, and the passphrase.
async fn confirm_page(
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, WebError> {
    require_owner(&user, "restore a snapshot")?;
    let snapshot = find(&state, &id).await?;
    let tz = state.time_zone().await;
    render(StatusCode::OK, &confirm_view(&user, &snapshot, &tz, None))
}

#[derive(Deserialize)]
struct RestoreForm {
    csrf: String,
    passphrase: String,
}

/// `POST /system/snapshots/{id}/restore`: after the owner's passphrase (throttled like a
/// login), the supervisor is asked to restore in the background, and the browser gets a
/// page that goes to the login page once the vault is back.
async fn restore(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<RestoreForm>,
) -> Result<HttpResponse, WebError> {
    let RestoreForm { csrf, passphrase } = form.into_inner();
    user.check_csrf(&csrf)?;
    require_owner(&user, "restore a snapshot")?;
    let snapshot = find(&state, &id).await?;
    let tz = state.time_zone().await;
    if super::account::reopen(&req, &user, &state, passphrase, "restoring a snapshot")
        .await?
        .is_err()
    {
        let error = FormError {
            message: "Wrong passphrase: nothing was restored.".into(),
            code: WebError::UnlockFailed.code(),
        };
        return render(
            StatusCode::UNAUTHORIZED,
            &confirm_view(&user, &snapshot, &tz, Some(error)),
        );
    }
    warn!(user = %user.user.name, id = %snapshot.id, "restore of a snapshot requested from the System page");
    // The supervisor stops this process during the restore: the request must not wait
    // for the answer, which this process will not be there to receive.
    let control = state.status.control().clone();
    let wanted = snapshot.id.clone();
    tokio::spawn(async move {
        if let Err(e) = control.snapshot_restore(&wanted).await {
            warn!(id = %wanted, error = %e, "the restore did not report success");
        }
    });
    render(
        StatusCode::OK,
        &RestoringPage {
            taken: row(&snapshot, &tz).taken,
            refresh_secs: RESTORE_REFRESH_SECS,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use cv_db::{Role, User, UserId, UserName};
    use std::str::FromStr as _;
    use time::macros::datetime;

    fn user(role: Role) -> CurrentUser {
        CurrentUser::for_tests(
            User {
                id: UserId(uuid::Uuid::nil()),
                name: UserName::from_str("olivia").unwrap(),
                role,
                created_at: datetime!(2026-05-01 12:00 UTC),
                renew_required: false,
            },
            "csrf-token-1".into(),
        )
    }

    fn check(html: &str) {
        assert!(!html.contains("style="), "inline style");
        assert!(!html.contains("<script"), "script");
    }

    fn summary(id: &str, kinds: &[&str], reason: &str, size: Option<u64>) -> SnapshotSummary {
        let at = id_time(id).unwrap();
        SnapshotSummary {
            id: id.into(),
            taken_at: jiff::Timestamp::from_second(at.unix_timestamp())
                .unwrap()
                .to_string(),
            kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
            reason: reason.into(),
            size_bytes: size,
        }
    }

    #[test]
    fn ids_are_checked_before_anything_is_asked() {
        assert!(id_time("20261207T150000Z-hourly.daily").is_some());
        assert!(id_time("20261207T150000Z-manual").is_some());
        for bad in [
            "",
            "nonsense",
            "20261207T150000Z",
            "20261207T150000Z-",
            "20261207T150000Z-sometimes",
            "20261307T150000Z-manual",
            "2026-12-07T15:00:00Z-manual",
            "20261207T150000Z-manual/../x",
        ] {
            assert!(id_time(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn kinds_are_said_in_words() {
        let k = |ks: &[&str]| ks.iter().map(|k| (*k).to_owned()).collect::<Vec<_>>();
        assert_eq!(why(&k(&["hourly"]), "scheduled (hourly)"), "hourly");
        assert_eq!(why(&k(&["hourly", "daily"]), ""), "hourly, daily");
        assert_eq!(why(&k(&["update"]), ""), "before an update");
        assert_eq!(why(&k(&["migration"]), ""), "before a migration");
        assert_eq!(why(&k(&["restore"]), ""), "before a restore");
        assert_eq!(
            why(&k(&["manual"]), "before the big import"),
            "taken by hand: before the big import"
        );
        assert_eq!(why(&k(&["manual"]), "taken by hand"), "taken by hand");
    }

    #[test]
    fn the_card_names_the_backend_the_newest_and_a_problem() {
        let status = StorageStatus {
            backend: "btrfs".into(),
            unavailable: None,
            newest: Some("20261207T150000Z-hourly.daily".into()),
            count: 3,
            problem: Some("btrfs: no space left on device".into()),
            busy: None,
        };
        let c = card(
            &status,
            &TimeZone::get("Europe/Berlin").unwrap(),
            true,
            Some("20261207T151500Z-manual".into()),
        );
        assert_eq!(c.backend, "btrfs");
        assert_eq!(
            c.newest,
            Some((
                "2026-12-07 16:00 CET".to_owned(),
                "hourly, daily".to_owned()
            ))
        );
        assert_eq!(c.taken.as_deref(), Some("20261207T151500Z-manual"));
        let c = card(&status, &TimeZone::UTC, true, Some("<b>".into()));
        assert_eq!(c.taken, None, "only an id is echoed");
    }

    #[test]
    fn the_list_is_newest_first_with_sizes_and_restore_links() {
        let overview = SnapshotOverview {
            backend: "zfs".into(),
            unavailable: None,
            snapshots: vec![
                summary(
                    "20261207T140000Z-hourly",
                    &["hourly"],
                    "scheduled (hourly)",
                    None,
                ),
                summary(
                    "20261207T150000Z-manual",
                    &["manual"],
                    "<before> the import",
                    Some(3 * 1024 * 1024),
                ),
            ],
        };
        let html = list_view(&user(Role::Owner), Ok(&overview), &TimeZone::UTC)
            .render()
            .unwrap();
        check(&html);
        let newer = html.find("2026-12-07 15:00 UTC").unwrap();
        let older = html.find("2026-12-07 14:00 UTC").unwrap();
        assert!(newer < older, "newest first");
        for text in [
            "ZFS",
            "taken by hand: &#60;before&#62; the import",
            "3.0 MiB",
            "—",
            r#"href="/system/snapshots/20261207T150000Z-manual/restore""#,
            r#"href="/system/snapshots/20261207T140000Z-hourly/restore""#,
            KEYS_NOTE,
        ] {
            assert!(html.contains(text), "{text} missing: {html}");
        }
        assert!(!html.contains("<before>"));
    }

    #[test]
    fn the_list_on_a_plain_data_directory_says_why_and_offers_no_restore() {
        let overview = SnapshotOverview {
            backend: "plain".into(),
            unavailable: Some(
                "/var/lib/contextvault is on ext4, which cannot take snapshots".into(),
            ),
            snapshots: vec![],
        };
        let html = list_view(&user(Role::Owner), Ok(&overview), &TimeZone::UTC)
            .render()
            .unwrap();
        check(&html);
        assert!(html.contains("is on ext4, which cannot take snapshots"));
        assert!(!html.contains("/restore"));
        let html = list_view(
            &user(Role::Owner),
            Err("cannot reach the supervisor".into()),
            &TimeZone::UTC,
        )
        .render()
        .unwrap();
        assert!(html.contains("cannot reach the supervisor"));
    }

    #[test]
    fn the_confirmation_says_what_a_restore_does_and_asks_for_the_passphrase() {
        let s = summary("20261207T150000Z-update", &["update"], "", None);
        let error = FormError {
            message: "Wrong passphrase: nothing was restored.".into(),
            code: "unlock_failed",
        };
        let html = confirm_view(&user(Role::Owner), &s, &TimeZone::UTC, Some(error))
            .render()
            .unwrap();
        check(&html);
        for text in [
            "2026-12-07 15:00 UTC",
            "before an update",
            "offline for about a minute",
            "logged out",
            "undone",
            "snapshot of the present is taken first",
            r#"action="/system/snapshots/20261207T150000Z-update/restore""#,
            r#"type="password""#,
            r#"name="csrf" value="csrf-token-1""#,
            "Wrong passphrase: nothing was restored.",
            KEYS_NOTE,
        ] {
            assert!(html.contains(text), "{text} missing: {html}");
        }
    }

    #[test]
    fn the_restoring_page_returns_to_the_login_page_without_a_script() {
        let html = RestoringPage {
            taken: "2026-12-07 15:00 UTC".into(),
            refresh_secs: RESTORE_REFRESH_SECS,
        }
        .render()
        .unwrap();
        check(&html);
        assert!(html.contains(r#"<meta http-equiv="refresh" content="20; url=/login">"#));
        assert!(html.contains("back in a minute"));
        assert!(html.contains(r#"href="/login""#));
    }
}
