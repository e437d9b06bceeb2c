//! Export (the whole vault, decrypted, as a zip; after re-entering the passphrase) and
//! import (such a zip, into an empty vault).
//!
//! Neither touches the disk: the archive is built and read in memory, so no plaintext
//! copy of the vault is ever left in a file on the appliance.

use std::io::Cursor;
use std::time::Instant;

use actix_multipart::Multipart;
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_archive::{ArchiveWriter, Limits};
use cv_crypto::Passphrase;
use cv_crypto::vault::VaultCryptoError;
use cv_db::audit::Event;
use futures_util::TryStreamExt as _;
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::vault::stored_bundle;
use super::{FormError, peer_ip, render};
use crate::error::WebError;
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/account/export", web::get().to(export_page))
        .route("/account/export", web::post().to(export))
        .route("/account/import", web::post().to(import));
}

/// The largest archive an import takes (it is held in memory while it is read).
pub const IMPORT_LIMIT: usize = 256 * 1024 * 1024;
/// Items decrypted per database round trip while exporting.
const EXPORT_PAGE: i64 = 1_000;

#[derive(Debug, Template)]
#[template(path = "export.html")]
pub(crate) struct ExportPage {
    pub csrf: String,
    pub can_manage_users: bool,
    pub items: i64,
    pub locked: bool,
    pub imported: Option<usize>,
    pub error: Option<FormError>,
    /// Items that failed their integrity check in a refused export.
    pub tampered: usize,
}

async fn show(
    state: &AppState,
    user: &CurrentUser,
    status: StatusCode,
    imported: Option<usize>,
    error: Option<&WebError>,
    tampered: usize,
) -> Result<HttpResponse, WebError> {
    let items = {
        let mut conn = state.conn().await?;
        cv_vault::count(&mut conn, user.user.id)
            .await
            .map_err(WebError::from)?
    };
    render(
        status,
        &ExportPage {
            csrf: user.csrf_token.clone(),
            can_manage_users: user.user.role.can_manage_users(),
            items,
            locked: state.keyring.peek(user.user.id).is_none(),
            imported,
            error: error.map(FormError::of),
            tampered,
        },
    )
}

async fn export_page(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    let imported = web::Query::<ImportedQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.imported);
    show(&state, &user, StatusCode::OK, imported, None, 0).await
}

#[derive(Deserialize)]
struct ImportedQuery {
    imported: Option<usize>,
}

#[derive(Deserialize)]
struct ExportForm {
    csrf: String,
    passphrase: String,
    /// "yes": leave out items that fail their integrity check instead of refusing.
    #[serde(default)]
    skip_damaged: String,
}

/// `POST /account/export`: checks the passphrase (throttled like a login), then sends
/// the whole vault as `contextvault-<name>-<date>.zip`.
async fn export(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<ExportForm>,
) -> Result<HttpResponse, WebError> {
    let ExportForm {
        csrf,
        passphrase,
        skip_damaged,
    } = form.into_inner();
    user.check_csrf(&csrf)?;
    let name = user.user.name.as_str();
    let ip = peer_ip(&req);
    if let Err(retry_after) = state.throttle().check(name, ip, Instant::now()) {
        return Err(WebError::Throttled { retry_after });
    }
    let wrong = |state: &AppState| {
        state.throttle().record_failure(name, ip, Instant::now());
        WebError::UnlockFailed
    };
    let Ok(passphrase) = Passphrase::for_login(passphrase) else {
        return show(
            &state,
            &user,
            StatusCode::UNAUTHORIZED,
            None,
            Some(&wrong(&state)),
            0,
        )
        .await;
    };
    let bundle = stored_bundle(&state, user.user.id).await?;
    let vault = match web::block(move || bundle.unlock(&passphrase)).await? {
        Ok(vault) => vault,
        Err(VaultCryptoError::WrongPassphrase) => {
            warn!(user = %name, %ip, "export refused: wrong passphrase");
            state
                .audit(
                    user.user.id,
                    Event::ExportFailed,
                    "wrong passphrase",
                    Some(ip),
                )
                .await;
            let e = wrong(&state);
            return show(&state, &user, StatusCode::UNAUTHORIZED, None, Some(&e), 0).await;
        }
        Err(e) => return Err(WebError::internal("opening a vault to export it", e)),
    };
    state.throttle().record_success(name);
    let vault = std::sync::Arc::new(vault);
    let now = OffsetDateTime::now_utc();
    let mut writer = ArchiveWriter::new(
        Cursor::new(Vec::new()),
        name,
        env!("CARGO_PKG_VERSION"),
        now,
    );
    let (mut after, mut count, mut tampered) = (None, 0usize, 0usize);
    loop {
        let (items, damaged) = {
            let mut conn = state.conn().await?;
            cv_vault::export::page(&mut conn, user.user.id, &vault, after, EXPORT_PAGE).await?
        };
        let last = items
            .iter()
            .map(|i| i.id)
            .chain(damaged.iter().map(|d| d.0))
            .max();
        tampered += damaged.len();
        let Some(last) = last else { break };
        after = Some(cv_db::items::ItemId(last));
        count += items.len();
        writer = web::block(move || -> Result<_, cv_archive::ArchiveError> {
            for item in &items {
                writer.add(item)?;
            }
            Ok(writer)
        })
        .await?
        .map_err(|e| WebError::internal("writing an export", e))?;
    }
    if tampered > 0 && skip_damaged != "yes" {
        state
            .audit(
                user.user.id,
                Event::ExportFailed,
                &format!("{tampered} damaged items"),
                Some(ip),
            )
            .await;
        let e = WebError::Conflict(format!(
            "{tampered} item(s) failed their integrity check (they were changed outside the appliance), so the export stopped rather than leave them out silently. Tick \"leave out damaged items\" to export everything else."
        ));
        return show(
            &state,
            &user,
            StatusCode::CONFLICT,
            None,
            Some(&e),
            tampered,
        )
        .await;
    }
    let bytes = web::block(move || writer.finish())
        .await?
        .map_err(|e| WebError::internal("finishing an export", e))?
        .into_inner();
    info!(user = %name, items = count, bytes = bytes.len(), "vault exported");
    state
        .audit(
            user.user.id,
            Event::Export,
            &format!(
                "{count} items{}",
                if tampered > 0 {
                    format!(", {tampered} damaged left out")
                } else {
                    String::new()
                }
            ),
            Some(ip),
        )
        .await;
    let date = crate::format::date(now, &state.time_zone().await);
    Ok(HttpResponse::Ok()
        .content_type("application/zip")
        .insert_header((
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"contextvault-{name}-{date}.zip\""),
        ))
        .body(bytes))
}

/// `POST /account/import` (multipart: `csrf`, then `archive`): restores an export into
/// this account's vault, which must be unlocked and empty. All or nothing.
async fn import(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    mut form: Multipart,
) -> Result<HttpResponse, WebError> {
    let bad = |why: String| WebError::BadRequest(format!("The upload could not be read: {why}."));
    let mut csrf = None;
    let mut archive: Option<Vec<u8>> = None;
    while let Some(mut field) = form.try_next().await.map_err(|e| bad(e.to_string()))? {
        let name = field.name().unwrap_or_default().to_owned();
        let limit = match name.as_str() {
            "csrf" => 256,
            "archive" => IMPORT_LIMIT,
            other => {
                return Err(bad(format!(
                    "unexpected field `{}`",
                    other.chars().take(40).collect::<String>()
                )));
            }
        };
        let mut data = Vec::new();
        while let Some(chunk) = field.try_next().await.map_err(|e| bad(e.to_string()))? {
            if data.len() + chunk.len() > limit {
                return Err(if name == "archive" {
                    WebError::BodyTooLarge {
                        limit_kib: IMPORT_LIMIT / 1024,
                    }
                } else {
                    bad(format!("`{name}` is too long"))
                });
            }
            data.extend_from_slice(&chunk);
        }
        match name.as_str() {
            "csrf" => {
                csrf = Some(String::from_utf8(data).map_err(|_| bad("`csrf` is not text".into()))?)
            }
            _ => archive = Some(data),
        }
    }
    // The token must come first: nothing of the archive is looked at without it.
    user.check_csrf(csrf.as_deref().unwrap_or(""))?;
    let Some(archive) = archive.filter(|a| !a.is_empty()) else {
        let e = WebError::InvalidInput("Choose an export file (.zip) to import.".into());
        return show(&state, &user, StatusCode::BAD_REQUEST, None, Some(&e), 0).await;
    };
    let unlocked = state.unlocked(user.user.id)?;
    let existing = {
        let mut conn = state.conn().await?;
        cv_vault::count(&mut conn, user.user.id)
            .await
            .map_err(WebError::from)?
    };
    if existing > 0 {
        let e = WebError::Conflict(format!(
            "An import restores a vault into an empty one, and yours holds {existing} item(s): nothing was imported."
        ));
        return show(&state, &user, StatusCode::CONFLICT, None, Some(&e), 0).await;
    }
    let read =
        web::block(move || cv_archive::read_archive(Cursor::new(archive), &Limits::default()))
            .await?;
    let (manifest, items) = match read {
        Ok(read) => read,
        Err(e) => {
            let e = WebError::InvalidInput(format!("This file cannot be imported: {e}."));
            return show(&state, &user, StatusCode::BAD_REQUEST, None, Some(&e), 0).await;
        }
    };
    let fresh_ids = {
        let mut conn = state.conn().await?;
        cv_vault::export::ids_taken(&mut conn, &items).await?
    };
    let owner = user.user.id;
    let vault = unlocked.vault.clone();
    let sealed =
        web::block(move || cv_vault::export::seal_import(owner, &vault, &items, fresh_ids)).await?;
    let stored = match sealed {
        Ok(sealed) => {
            let mut conn = state.conn().await?;
            cv_vault::export::store_import(&mut conn, owner, sealed).await
        }
        Err(e) => Err(e),
    };
    let n = match stored {
        Ok(n) => n,
        Err(cv_vault::VaultError::Import(why)) => {
            let e = WebError::InvalidInput(format!(
                "This file cannot be imported ({why}): nothing was imported."
            ));
            let status = actix_web::ResponseError::status_code(&e);
            return show(&state, &user, status, None, Some(&e), 0).await;
        }
        Err(e) => return Err(e.into()),
    };
    info!(user = %user.user.name, items = n, from = %manifest.account, "vault imported");
    state
        .audit(
            owner,
            Event::Import,
            &format!(
                "{n} items, exported by {} on {}",
                manifest.account,
                crate::format::date(manifest.exported_at, &state.time_zone().await)
            ),
            Some(peer_ip(&req)),
        )
        .await;
    crate::index::rebuild(&state, owner);
    Ok(super::see_other(&format!("/account/export?imported={n}")).finish())
}
