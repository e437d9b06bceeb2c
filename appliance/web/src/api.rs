//! The JSON API for scripts and phone shortcuts, authenticated by bearer tokens
//! (`contextvault admin create-token`). Errors are JSON (`{"error", "message"}`) with
//! the same stable codes as the pages.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use cv_crypto::sha256;
use cv_db::tokens::{self, TokenRecord};
use cv_vault::VaultError;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use time::OffsetDateTime;
use tracing::info;

use crate::error::WebError;
use crate::state::AppState;

/// The largest JSON body: a note (16 KiB) plus tags, with room for JSON escaping.
pub const JSON_LIMIT: usize = 64 * 1024;

pub(crate) fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(
                web::JsonConfig::default()
                    .limit(JSON_LIMIT)
                    .content_type_required(true)
                    .error_handler(json_error),
            )
            .route("/capture", web::post().to(capture)),
    );
}

fn json_error(err: actix_web::error::JsonPayloadError, _req: &HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as E;
    match err {
        E::Overflow { .. } | E::OverflowKnownLength { .. } => WebError::BodyTooLarge {
            limit_kib: JSON_LIMIT / 1024,
        },
        E::ContentType => {
            WebError::BadRequest("The body must be JSON (Content-Type: application/json).".into())
        }
        E::Deserialize(e) => WebError::BadRequest(format!("The JSON body is not valid: {e}.")),
        other => WebError::BadRequest(format!("The request body could not be read: {other}.")),
    }
    .into()
}

/// The token a request carries, checked: known, not revoked. Scopes are checked by
/// each handler.
pub(crate) struct BearerToken(pub TokenRecord);

impl FromRequest for BearerToken {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<BearerToken, WebError>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| WebError::internal("api", "AppState is not registered"))?;
            let presented = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .ok_or(WebError::TokenInvalid)?;
            let digest = sha256(presented.as_bytes());
            let mut conn = state.conn().await?;
            let record = match tokens::find(&mut conn, &digest).await {
                Ok(Some(record)) => record,
                Ok(None) => return Err(WebError::TokenInvalid),
                Err(e) => return Err(state.db_error(e).await),
            };
            if record.revoked_at.is_some() {
                info!(user = %record.user.name, token = %record.name, "a revoked token was used");
                return Err(WebError::TokenRevoked);
            }
            let now = OffsetDateTime::now_utc();
            // Recording use at most once a minute keeps a burst of captures from
            // writing the same row on every request.
            if record
                .last_used_at
                .is_none_or(|t| now - t >= time::Duration::minutes(1))
                && let Err(e) = tokens::touch(&mut conn, record.id, now).await
            {
                return Err(state.db_error(e).await);
            }
            Ok(BearerToken(record))
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaptureRequest {
    text: String,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Serialize)]
struct Created {
    id: String,
}

/// `POST /api/v1/capture` `{"text": "...", "tags": ["..."]}` → `201 {"id": "..."}`.
/// Works while the vault is locked: the note's key is then sealed to the owner's
/// capture key, so the box stores what it cannot read.
async fn capture(
    token: BearerToken,
    state: web::Data<AppState>,
    body: web::Json<CaptureRequest>,
) -> Result<HttpResponse, WebError> {
    let BearerToken(token) = token;
    if !token.scope.may_capture() {
        return Err(WebError::Forbidden(format!(
            "A {} token cannot capture; use a capture or full token.",
            token.scope
        )));
    }
    let CaptureRequest { text, tags } = body.into_inner();
    let result = crate::pages::capture_into(&state, token.user.id, &text, &tags).await?;
    match result {
        Ok((id, sealed)) => {
            info!(user = %token.user.name, token = %token.name, sealed, "captured through the API");
            Ok(HttpResponse::Created().json(Created {
                id: id.0.to_string(),
            }))
        }
        Err(VaultError::Empty) => Err(WebError::BadRequest("`text` is empty.".into())),
        Err(VaultError::TooLong) => Err(WebError::BodyTooLarge {
            limit_kib: cv_vault::MAX_TEXT_BYTES / 1024,
        }),
        Err(VaultError::InvalidTags(why)) => Err(WebError::BadRequest(format!("`tags`: {why}."))),
        Err(VaultError::Db(e)) => Err(state.db_error(e).await),
        Err(e @ VaultError::Crypto { .. }) => Err(WebError::internal("encrypting a capture", e)),
    }
}
