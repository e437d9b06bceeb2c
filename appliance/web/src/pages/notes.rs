//! Notes: the capture box (the phone's start page), and the person's notes, decrypted
//! for them alone.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_vault::VaultError;
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::info;

use super::{FormError, parse_tags, render, see_other};
use crate::error::WebError;
use crate::format::date;
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/notes", web::get().to(notes_page))
        .route("/notes", web::post().to(capture))
        .route("/capture", web::get().to(capture_page));
}

/// How many notes the page shows.
const PAGE_SIZE: i64 = 100;

/// Where a person lands after logging in: the home page, whose first thing is the
/// capture box (capturing is what a phone is for), on a phone and elsewhere.
pub(crate) fn home_for(_req: &HttpRequest) -> &'static str {
    "/home"
}

#[derive(Debug, Template)]
#[template(path = "notes.html")]
pub(crate) struct NotesPage {
    pub csrf: String,
    pub can_manage_users: bool,
    /// `Some(n)`: the vault is locked and holds n notes.
    pub locked_count: Option<i64>,
    pub notes: Vec<NoteView>,
    pub notice: Option<&'static str>,
    pub error: Option<FormError>,
    /// What the capture form holds after a refused capture.
    pub text: String,
    pub tags: String,
}

#[derive(Debug, Template)]
#[template(path = "capture.html")]
pub(crate) struct CapturePage {
    pub csrf: String,
    pub can_manage_users: bool,
    pub locked: bool,
    pub notice: Option<&'static str>,
    pub error: Option<FormError>,
    pub text: String,
    pub tags: String,
}

#[derive(Debug)]
pub(crate) struct NoteView {
    pub id: String,
    /// `None`: the note failed its integrity check.
    pub text: Option<String>,
    pub tags: Vec<String>,
    pub pinned: bool,
    pub task: Option<&'static str>,
    pub created: String,
}

#[derive(Deserialize)]
struct NoticeQuery {
    captured: Option<String>,
    deleted: Option<String>,
    /// From the share target: what another app shared.
    text: Option<String>,
    title: Option<String>,
    url: Option<String>,
}

fn query(req: &HttpRequest) -> Option<NoticeQuery> {
    web::Query::<NoticeQuery>::from_query(req.query_string())
        .ok()
        .map(web::Query::into_inner)
}

fn notice(q: Option<&NoticeQuery>, locked: bool) -> Option<&'static str> {
    let q = q?;
    if q.captured.is_some() {
        Some(if locked {
            "Saved, sealed: your vault is locked, so even this appliance cannot read it until you unlock."
        } else {
            "Saved."
        })
    } else if q.deleted.is_some() {
        Some("Deleted, with its key.")
    } else {
        None
    }
}

async fn notes_page(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    show(
        &state,
        &user,
        StatusCode::OK,
        query(&req).as_ref(),
        None,
        None,
    )
    .await
}

async fn show(
    state: &AppState,
    user: &CurrentUser,
    status: StatusCode,
    q: Option<&NoticeQuery>,
    error: Option<&WebError>,
    typed: Option<(String, String)>,
) -> Result<HttpResponse, WebError> {
    let tz = state.time_zone().await;
    let mut conn = state.conn().await?;
    let unlocked = state.keyring.get(user.user.id, OffsetDateTime::now_utc());
    let (locked_count, notes) = match unlocked {
        Some(unlocked) => {
            let views = cv_vault::newest(&mut conn, user.user.id, &unlocked.vault, PAGE_SIZE)
                .await
                .map_err(WebError::from)?;
            let notes = views
                .into_iter()
                .map(|v| NoteView {
                    id: v.id.0.to_string(),
                    text: v.text.ok().map(|t| crate::markdown::to_plain(&t)),
                    tags: v.tags,
                    pinned: v.pinned,
                    task: v.task.map(|t| t.status.as_str()),
                    created: date(v.created_at, &tz),
                })
                .collect();
            (None, notes)
        }
        None => {
            let count = cv_vault::count(&mut conn, user.user.id)
                .await
                .map_err(WebError::from)?;
            (Some(count), Vec::new())
        }
    };
    let (text, tags) = typed.unwrap_or_default();
    render(
        status,
        &NotesPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            notice: notice(q, locked_count.is_some()),
            locked_count,
            notes,
            error: error.map(FormError::of),
            text,
            tags,
        },
    )
}

/// `GET /capture`: one text field, optional tags, one button. Also the web app's share
/// target: `?title=…&text=…&url=…` pre-fills the text.
async fn capture_page(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let q = query(&req);
    let shared = q.as_ref().map(|q| {
        [&q.title, &q.text, &q.url]
            .into_iter()
            .flatten()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n")
    });
    show_capture(
        &state,
        &user,
        StatusCode::OK,
        q.as_ref(),
        None,
        (shared.unwrap_or_default(), String::new()),
    )
}

fn show_capture(
    state: &AppState,
    user: &CurrentUser,
    status: StatusCode,
    q: Option<&NoticeQuery>,
    error: Option<&WebError>,
    (text, tags): (String, String),
) -> Result<HttpResponse, WebError> {
    let locked = state
        .keyring
        .get(user.user.id, OffsetDateTime::now_utc())
        .is_none();
    render(
        status,
        &CapturePage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            locked,
            notice: notice(q, locked),
            error: error.map(FormError::of),
            text,
            tags,
        },
    )
}

#[derive(Deserialize)]
struct CaptureForm {
    text: String,
    #[serde(default)]
    tags: String,
    csrf: String,
    /// `capture` or `home`: that page sent it, and gets the person back there.
    #[serde(default)]
    from: String,
}

/// `POST /notes`: encrypts and stores a note, also while the vault is locked (then the
/// note's key is sealed to the person's capture key: stored, unreadable until unlock).
async fn capture(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<CaptureForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    let tags = parse_tags(&form.tags);
    let result = super::vault::capture_into(&state, user.user.id, &form.text, &tags).await?;
    // A refused capture from the home page is shown in the capture box, which keeps
    // what was typed.
    let back_to_capture = form.from == "capture" || form.from == "home";
    match result {
        Ok((_, sealed)) => {
            info!(user = %user.user.name, sealed, "note captured");
            Ok(see_other(match form.from.as_str() {
                "capture" => "/capture?captured=1",
                "home" => "/home?captured=1",
                _ => "/notes?captured=1",
            })
            .finish())
        }
        Err(e @ (VaultError::Empty | VaultError::TooLong | VaultError::InvalidTags(_))) => {
            let e = WebError::from(e);
            let typed = (form.text, form.tags);
            if back_to_capture {
                show_capture(
                    &state,
                    &user,
                    StatusCode::BAD_REQUEST,
                    None,
                    Some(&e),
                    typed,
                )
            } else {
                show(
                    &state,
                    &user,
                    StatusCode::BAD_REQUEST,
                    None,
                    Some(&e),
                    Some(typed),
                )
                .await
            }
        }
        Err(e) => Err(e.into()),
    }
}
