//! Notes: the capture box and the person's notes, decrypted for them alone.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_vault::VaultError;
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::info;

use super::{FormError, render, see_other};
use crate::error::WebError;
use crate::format::date;
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/notes", web::get().to(notes_page))
        .route("/notes", web::post().to(capture));
}

/// How many notes the page shows.
const PAGE_SIZE: i64 = 100;

#[derive(Debug, Template)]
#[template(path = "notes.html")]
pub(crate) struct NotesPage {
    pub csrf: String,
    pub can_manage_users: bool,
    /// `Some(n)`: the vault is locked and holds n notes.
    pub locked_count: Option<i64>,
    pub notes: Vec<NoteView>,
    pub captured: bool,
    pub error: Option<FormError>,
}

#[derive(Debug)]
pub(crate) struct NoteView {
    /// `None`: the note failed its integrity check.
    pub text: Option<String>,
    pub created: String,
}

#[derive(Deserialize)]
struct CapturedQuery {
    captured: Option<String>,
}

async fn notes_page(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let captured = web::Query::<CapturedQuery>::from_query(req.query_string())
        .ok()
        .is_some_and(|q| q.captured.is_some());
    show(&state, &user, StatusCode::OK, captured, None).await
}

async fn show(
    state: &AppState,
    user: &CurrentUser,
    status: StatusCode,
    captured: bool,
    error: Option<&WebError>,
) -> Result<HttpResponse, WebError> {
    let mut conn = state.conn().await?;
    let unlocked = state.keyring.get(user.user.id, OffsetDateTime::now_utc());
    let (locked_count, notes) = match unlocked {
        Some(unlocked) => {
            let views = cv_vault::newest(&mut conn, user.user.id, &unlocked.vault, PAGE_SIZE)
                .await
                .map_err(vault_error)?;
            let notes = views
                .into_iter()
                .map(|v| NoteView {
                    text: v.text.ok().map(|t| t.to_string()),
                    created: date(v.created_at),
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
    render(
        status,
        &NotesPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            locked_count,
            notes,
            captured,
            error: error.map(FormError::of),
        },
    )
}

fn vault_error(e: VaultError) -> WebError {
    match e {
        VaultError::Db(e) => WebError::from(e),
        VaultError::Empty => WebError::InvalidInput("Please write something first.".into()),
        VaultError::TooLong => WebError::InvalidInput(format!(
            "A note can be at most {} KiB.",
            cv_vault::MAX_TEXT_BYTES / 1024
        )),
        VaultError::InvalidTags(why) => WebError::InvalidInput(format!("Tags: {why}.")),
        e @ VaultError::Crypto { .. } => WebError::internal("encrypting a note", e),
    }
}

#[derive(Deserialize)]
struct CaptureForm {
    text: String,
    csrf: String,
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
    let result = super::vault::capture_into(&state, user.user.id, &form.text, &[]).await?;
    match result {
        Ok((_, sealed)) => {
            info!(user = %user.user.name, sealed, "note captured");
            Ok(see_other("/notes?captured=1").finish())
        }
        Err(e @ (VaultError::Empty | VaultError::TooLong | VaultError::InvalidTags(_))) => {
            show(
                &state,
                &user,
                StatusCode::BAD_REQUEST,
                false,
                Some(&vault_error(e)),
            )
            .await
        }
        Err(e) => Err(vault_error(e)),
    }
}
