//! The JSON API for scripts and phone shortcuts, authenticated by bearer tokens
//! (`contextvault admin create-token`). Errors are JSON (`{"error", "message"}`) with
//! the same stable codes as the pages.

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, HttpResponse, web};
use cv_crypto::{API_SESSION_PREFIX, SecretToken, sha256};
use cv_db::audit::Event;
use cv_db::tokens::{self, TokenRecord};
use cv_vault::VaultError;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use time::OffsetDateTime;
use tracing::info;

use crate::error::WebError;
use crate::session::{self, Lookup};
use crate::state::AppState;

/// The largest JSON body: a note (16 KiB) plus tags, with room for JSON escaping.
pub const JSON_LIMIT: usize = 64 * 1024;

/// The longest text `POST /api/v1/capture` takes, in characters (Unicode scalar
/// values, what JSON Schema's `maxLength` counts).
///
/// The vault stores at most [`cv_vault::MAX_TEXT_BYTES`] (16 KiB) of UTF-8, and UTF-8
/// takes at most 4 bytes per character (RFC 3629 §3), so every text of up to 4,096
/// characters fits. The API counts characters rather than bytes so that its OpenAPI
/// document can state the limit exactly (`maxLength`, which counts characters): with
/// bytes, a schema-valid text of accented or CJK characters could be refused, and no
/// schema keyword can say "16 KiB of UTF-8". The form pages keep the byte limit.
pub const MAX_TEXT_CHARS: usize = cv_vault::MAX_TEXT_BYTES / 4;

pub(crate) fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .app_data(
                web::JsonConfig::default()
                    .limit(JSON_LIMIT)
                    .content_type_required(true)
                    .error_handler(json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(query_error))
            .route("/capture", web::post().to(capture))
            .route("/login", web::post().to(login))
            .route("/account/renew", web::post().to(renew))
            .route("/lock", web::post().to(lock))
            .route("/items/{id}", web::get().to(get_item))
            .route("/search", web::get().to(search))
            .route("/vault", web::get().to(vault_status))
            .route("/update", web::get().to(update_status))
            .route("/update/hint", web::post().to(update_hint))
            .route("/openapi.json", web::get().to(openapi)),
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
        // The payload error's text is actix's debug output (`Some(Custom { kind: … })`):
        // nothing for the client to act on, and internals it need not see.
        _ => WebError::BadRequest(
            "The request body could not be read: it ended early or its encoding is damaged.".into(),
        ),
    }
    .into()
}

/// Who is calling the API: an API token (`cvt_…`, with its scope) or a session from
/// `POST /api/v1/login` (`cvs_…`, which may do everything its account may).
pub(crate) struct ApiCaller {
    pub user: cv_db::User,
    pub scope: tokens::Scope,
    pub via: Via,
}

/// How an [`ApiCaller`] authenticated.
pub(crate) enum Via {
    Token(TokenRecord),
    Session,
}

impl ApiCaller {
    /// A name for logs: the token's label, or "session".
    pub fn label(&self) -> &str {
        match &self.via {
            Via::Token(t) => &t.name,
            Via::Session => "session",
        }
    }

    fn require_read(&self) -> Result<(), WebError> {
        if self.scope.may_read() {
            Ok(())
        } else {
            Err(WebError::Forbidden(format!(
                "A {} token cannot read the vault; use a read or full token, or log in.",
                self.scope
            )))
        }
    }
}

impl FromRequest for ApiCaller {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<ApiCaller, WebError>>>>;

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
            if let Some(session) = presented.strip_prefix(API_SESSION_PREFIX) {
                return match session::lookup(state, &SecretToken::from_client(session)).await? {
                    Lookup::Valid(user) => Ok(ApiCaller {
                        user: user.user,
                        scope: tokens::Scope::Full,
                        via: Via::Session,
                    }),
                    Lookup::Expired => Err(WebError::SessionExpired { redirect: false }),
                    Lookup::None => Err(WebError::TokenInvalid),
                };
            }
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
            // writing the same rows on every request.
            if record
                .last_used_at
                .is_none_or(|t| now - t >= time::Duration::minutes(1))
            {
                if let Err(e) = tokens::touch(&mut conn, record.id, now).await {
                    return Err(state.db_error(e).await);
                }
                drop(conn);
                state
                    .audit(
                        record.user.id,
                        Event::TokenUsed,
                        &record.name,
                        Some(crate::pages::peer_ip(&req)),
                    )
                    .await;
            }
            Ok(ApiCaller {
                user: record.user.clone(),
                scope: record.scope,
                via: Via::Token(record),
            })
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
    caller: ApiCaller,
    state: web::Data<AppState>,
    body: web::Json<CaptureRequest>,
) -> Result<HttpResponse, WebError> {
    if !caller.scope.may_capture() {
        return Err(WebError::Forbidden(format!(
            "A {} token cannot capture; use a capture or full token.",
            caller.scope
        )));
    }
    let CaptureRequest { text, tags } = body.into_inner();
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(WebError::TextTooLong {
            limit_chars: MAX_TEXT_CHARS,
        });
    }
    // As the OpenAPI document states them (before trimming, which the vault does): a
    // tag with a control character or over 64 characters anywhere is refused here,
    // where the vault would have accepted some after trimming them off the ends.
    if tags
        .iter()
        .any(|t| t.chars().count() > cv_vault::MAX_TAG_CHARS || t.chars().any(char::is_control))
    {
        return Err(WebError::BadRequest(format!(
            "`tags`: a tag is 1 to {} characters without control characters.",
            cv_vault::MAX_TAG_CHARS
        )));
    }
    let result = crate::pages::capture_into(&state, caller.user.id, &text, &tags).await?;
    match result {
        Ok((id, sealed)) => {
            info!(user = %caller.user.name, token = %caller.label(), sealed, "captured through the API");
            Ok(HttpResponse::Created().json(Created {
                id: id.0.to_string(),
            }))
        }
        Err(VaultError::Empty) => Err(WebError::BadRequest("`text` is empty.".into())),
        // Unreachable after the character count above; kept distinct from a body over
        // the JSON limit all the same.
        Err(VaultError::TooLong) => Err(WebError::TextTooLong {
            limit_chars: MAX_TEXT_CHARS,
        }),
        Err(VaultError::InvalidTags(why)) => Err(WebError::BadRequest(format!("`tags`: {why}."))),
        Err(VaultError::Db(e)) => Err(state.db_error(e).await),
        Err(e) => Err(WebError::from(e)),
    }
}

fn query_error(err: actix_web::error::QueryPayloadError, _req: &HttpRequest) -> actix_web::Error {
    WebError::BadRequest(format!("The query string is not valid: {err}.")).into()
}

/// The OpenAPI 3.1 description of this API (`api/openapi.json`).
pub const OPENAPI: &str = include_str!("../../../api/openapi.json");

/// `GET /api/v1/openapi.json`: the API's description, for anyone (it holds no data).
async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    user: String,
    passphrase: String,
}

#[derive(Serialize)]
struct LoginResponse {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    user: String,
}

/// `POST /api/v1/login {"user", "passphrase"}` → `{"token": "cvs_…"}`: a session token
/// (idle and absolute timeouts as for the web) whose login unlocked the vault.
/// Throttled like the login page.
async fn login(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, WebError> {
    use crate::pages::auth::{Verified, verify};
    let LoginRequest {
        user: typed,
        passphrase,
    } = body.into_inner();
    let ip = crate::pages::peer_ip(&req);
    if let Err(retry_after) = state
        .throttle()
        .check(&typed, ip, std::time::Instant::now())
    {
        return Err(WebError::Throttled { retry_after });
    }
    match verify(&state, &typed, passphrase).await? {
        Verified::Ok(user, _) if user.renew_required => {
            // Someone else chose this passphrase: nothing opens until the holder sets
            // their own with `POST /api/v1/account/renew`.
            state.throttle().record_success(&typed);
            info!(user = %user.name, %ip, "API login refused until the account is renewed");
            Err(WebError::RenewRequired)
        }
        Verified::Ok(user, passphrase) => {
            state.throttle().record_success(&typed);
            if !crate::pages::open_existing_at_login(&state, user.id, passphrase).await? {
                return Err(WebError::Conflict(
                    "This account has no vault yet: log in once in the browser to create it (and to see its recovery key).".into(),
                ));
            }
            let token = session::create(&state, user.id).await?;
            let now = OffsetDateTime::now_utc();
            info!(user = %user.name, %ip, "API login ok; vault unlocked");
            state.audit(user.id, Event::Login, "API", Some(ip)).await;
            Ok(HttpResponse::Ok().json(LoginResponse {
                token: format!("{API_SESSION_PREFIX}{}", token.expose()),
                expires_at: state.sessions.expires_at(now, now),
                user: user.name.to_string(),
            }))
        }
        failed => {
            state
                .throttle()
                .record_failure(&typed, ip, std::time::Instant::now());
            if let Verified::WrongPassphrase(user) = failed {
                info!(user = %user.name, %ip, "API login failed: wrong passphrase");
                state
                    .audit(user.id, Event::LoginFailed, "API", Some(ip))
                    .await;
            }
            Err(WebError::LoginFailed)
        }
    }
}

/// The longest new passphrase the API takes, in characters: the bound in bytes
/// (`cv_crypto::password::MAX_PASSPHRASE_BYTES`) over UTF-8's longest character.
const MAX_NEW_PASSPHRASE_CHARS: usize = cv_crypto::password::MAX_PASSPHRASE_BYTES / 4;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenewRequest {
    user: String,
    passphrase: String,
    new_passphrase: String,
}

#[derive(Serialize)]
struct RenewResponse {
    token: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: OffsetDateTime,
    user: String,
    /// The vault's new recovery key, shown only in this answer.
    recovery_key: String,
}

/// `POST /api/v1/account/renew {"user", "passphrase", "new_passphrase"}` → `200
/// {"token", "expires_at", "user", "recovery_key"}`: for an account whose passphrase
/// someone else chose (its login answers `403 renew_required`), sets the holder's own
/// passphrase, gives the vault new keys and a new recovery key (shown once, here), and
/// logs in as `POST /api/v1/login` does. Throttled like logins.
async fn renew(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Json<RenewRequest>,
) -> Result<HttpResponse, WebError> {
    let RenewRequest {
        user: typed,
        passphrase,
        new_passphrase,
    } = body.into_inner();
    // Counted in characters, as the OpenAPI document's `maxLength` counts them: any
    // schema-valid passphrase is accepted (256 characters of UTF-8 are at most the 1,024
    // bytes `Passphrase` allows) and any longer one refused.
    if new_passphrase.chars().count() > MAX_NEW_PASSPHRASE_CHARS {
        return Err(WebError::BadRequest(format!(
            "`new_passphrase`: at most {MAX_NEW_PASSPHRASE_CHARS} characters."
        )));
    }
    let new = cv_crypto::Passphrase::new(new_passphrase)
        .map_err(|e| WebError::BadRequest(format!("`new_passphrase`: {e}.")))?;
    let ip = crate::pages::peer_ip(&req);
    let renewal = crate::pages::renew_account(&state, &typed, passphrase, new, ip).await?;
    let token = session::create(&state, renewal.user.id).await?;
    let now = OffsetDateTime::now_utc();
    state
        .audit(
            renewal.user.id,
            Event::Login,
            "API, after renewing",
            Some(ip),
        )
        .await;
    Ok(HttpResponse::Ok().json(RenewResponse {
        token: format!("{API_SESSION_PREFIX}{}", token.expose()),
        expires_at: state.sessions.expires_at(now, now),
        user: renewal.user.name.to_string(),
        recovery_key: renewal.recovery.to_display().to_string(),
    }))
}

/// `POST /api/v1/lock`: locks the caller's vault now (a session, or a read or full
/// token; a capture token only captures, so a leaked one cannot lock its owner out of
/// their vault). Only a login unlocks.
async fn lock(
    req: HttpRequest,
    caller: ApiCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    if !caller.scope.may_read() {
        return Err(WebError::Forbidden(
            "A capture token can only capture; lock with a session or a read or full token.".into(),
        ));
    }
    let was_unlocked = state.keyring.lock(caller.user.id);
    if was_unlocked {
        info!(user = %caller.user.name, via = %caller.label(), "vault locked through the API");
        state
            .audit(
                caller.user.id,
                Event::Lock,
                &format!("API ({})", caller.label()),
                Some(crate::pages::peer_ip(&req)),
            )
            .await;
    }
    Ok(
        HttpResponse::Ok()
            .json(serde_json::json!({ "locked": true, "was_unlocked": was_unlocked })),
    )
}

/// An item as the API returns it.
#[derive(Serialize)]
pub(crate) struct ItemJson {
    id: String,
    version: i32,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    kind: &'static str,
    text: String,
    tags: Vec<String>,
    task: Option<cv_vault::Task>,
    pinned: bool,
    archived: bool,
}

/// `GET /api/v1/items/{id}`: one item, decrypted (read scope, unlocked vault). An item
/// that fails its integrity check is a 409 `item_tampered`, never garbage.
async fn get_item(
    path: web::Path<String>,
    caller: ApiCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    caller.require_read()?;
    let id = crate::pages::item_id(&path)?;
    let unlocked = state.unlocked(caller.user.id)?;
    let mut conn = state.conn().await?;
    let view = cv_vault::get(&mut conn, caller.user.id, &unlocked.vault, id).await?;
    let text = view.text.map_err(|_| WebError::ItemTampered)?;
    Ok(HttpResponse::Ok().json(ItemJson {
        id: view.id.0.to_string(),
        version: view.version,
        created_at: view.created_at,
        updated_at: view.updated_at,
        kind: if view.task.is_some() { "task" } else { "note" },
        text: text.to_string(),
        tags: view.tags,
        task: view.task,
        pinned: view.pinned,
        archived: view.archived,
    }))
}

/// `GET /api/v1/vault`: locked or not, how many items, and the search index's state.
async fn vault_status(
    caller: ApiCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    caller.require_read()?;
    let mut conn = state.conn().await?;
    let items = cv_vault::count(&mut conn, caller.user.id)
        .await
        .map_err(WebError::from)?;
    drop(conn);
    let unlocked = state.keyring.get(caller.user.id, OffsetDateTime::now_utc());
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "locked": unlocked.is_none(),
        "items": items,
        "index": crate::index::status_json(unlocked.as_ref(), state.ai.pool.is_some()),
    })))
}

/// The largest update hint body: a hint says nothing but "check now" (its body is the
/// sender's, signed, and otherwise ignored).
pub const HINT_LIMIT: usize = 4 * 1024;

/// `POST /api/v1/update/hint`: a signed hint (Standard Webhooks: `webhook-id`,
/// `webhook-timestamp`, `webhook-signature`, HMAC-SHA256 with the secret in
/// `update.hint_secret_file`) that makes the box check for an update now. No session or
/// token: the signature is the authentication, verified by the supervisor, which also
/// refuses replays (409), stale timestamps (401), and floods (429); 403 when the box has
/// no hint secret. Every hint is audited.
async fn update_hint(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, WebError> {
    let header = |name: &str| -> Result<String, WebError> {
        match req.headers().get(name) {
            None => Ok(String::new()),
            Some(value) => value.to_str().map(str::to_owned).map_err(|_| {
                WebError::BadRequest(format!("The `{name}` header is not plain text."))
            }),
        }
    };
    let (id, timestamp, signature) = (
        header("webhook-id")?,
        header("webhook-timestamp")?,
        header("webhook-signature")?,
    );
    if body.len() > HINT_LIMIT {
        return Err(WebError::BodyTooLarge {
            limit_kib: HINT_LIMIT / 1024,
        });
    }
    let body = std::str::from_utf8(&body)
        .map_err(|_| WebError::BadRequest("The hint body is not UTF-8 text.".into()))?;
    let (status, message) = state
        .status
        .control()
        .update_hint(&id, &timestamp, &signature, body)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "an update hint could not be handed to the supervisor");
            WebError::DatabaseUnavailable { postgres: None }
        })?;
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    let json = if code.is_success() {
        serde_json::json!({ "accepted": true, "message": message })
    } else {
        let error = match status {
            401 => "hint_unauthenticated",
            403 => "hints_refused",
            409 => "hint_replayed",
            429 => "too_many_hints",
            _ => "bad_request",
        };
        serde_json::json!({ "error": error, "message": message })
    };
    Ok(HttpResponse::build(code).json(json))
}

/// `GET /api/v1/update`: the self-update's state (for the owner and admins).
async fn update_status(
    caller: ApiCaller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    caller.require_read()?;
    if !caller.user.role.can_manage_users() {
        return Err(WebError::Forbidden(
            "Only the owner and admins can see the appliance's updates.".into(),
        ));
    }
    let status = state.status.get().await;
    match status.as_deref() {
        Ok(status) => match status.update.as_deref() {
            Some(update) => Ok(HttpResponse::Ok().json(update)),
            None => Err(WebError::DatabaseUnavailable { postgres: None }),
        },
        Err(_) => Err(WebError::DatabaseUnavailable { postgres: None }),
    }
}

/// `GET /api/v1/search`'s query string. Checked as strictly as the OpenAPI document
/// describes it (an empty `to` is not a date, `archived` is `true` or `false`), where
/// the search page is lenient (an empty form field there means "any").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiSearchParams {
    q: Option<String>,
    tag: Option<String>,
    kind: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    archived: Option<String>,
    limit: Option<String>,
    offset: Option<usize>,
}

/// The longest search text, in characters (the OpenAPI document's `maxLength`).
const MAX_QUERY_CHARS: usize = 1000;

impl ApiSearchParams {
    /// The search asked for; `None` when `from` is after `to` (nothing can match).
    fn check(self) -> Result<Option<cv_search::Query>, WebError> {
        let bad = |why: &str| WebError::BadRequest(format!("{why}."));
        let one_of = |field: &str, value: &Option<String>, allowed: &[&str]| match value {
            Some(v) if !allowed.contains(&v.as_str()) => {
                Err(bad(&format!("`{field}` is one of {}", allowed.join(", "))))
            }
            _ => Ok(()),
        };
        one_of("kind", &self.kind, &["note", "task"])?;
        one_of("status", &self.status, &["open", "doing", "done"])?;
        one_of("archived", &self.archived, &["true", "false"])?;
        let day = |field: &str, value: &Option<String>| match value {
            None => Ok(None),
            // Exactly YYYY-MM-DD (RFC 3339 full-date): no spaces, not empty.
            Some(v) => match cv_vault::iso_date::parse(v).filter(|_| v.trim() == v) {
                Some(d) => Ok(Some(d)),
                None => Err(bad(&format!("`{field}` is a date written YYYY-MM-DD"))),
            },
        };
        let (from, to) = (day("from", &self.from)?, day("to", &self.to)?);
        let limit_error = || {
            bad(&format!(
                "`limit` is an integer from 1 to {}",
                cv_search::MAX_LIMIT
            ))
        };
        let limit = match &self.limit {
            None => None,
            Some(l) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
                Some(l.parse::<usize>().map_err(|_| limit_error())?)
            }
            Some(_) => return Err(limit_error()),
        };
        let text = self.q.unwrap_or_default();
        if text.chars().count() > MAX_QUERY_CHARS {
            return Err(bad(&format!("`q` is at most {MAX_QUERY_CHARS} characters")));
        }
        if let (Some(from), Some(to)) = (from, to)
            && from > to
        {
            return Ok(None);
        }
        // The page's parser does the rest (its byte limit on the text aside: the text
        // is set afterwards, checked above in characters).
        let mut query = crate::pages::search::SearchParams {
            q: String::new(),
            tag: self.tag.unwrap_or_default(),
            kind: self.kind.unwrap_or_default(),
            status: self.status.unwrap_or_default(),
            from: self.from.unwrap_or_default(),
            to: self.to.unwrap_or_default(),
            archived: self.archived.unwrap_or_default(),
            limit,
            offset: self.offset,
        }
        .query()
        .map_err(|why| bad(&why))?;
        query.text = text;
        Ok(Some(query))
    }
}

#[derive(Serialize)]
struct SearchHit {
    id: String,
    /// BM25 by words only; the fused (reciprocal rank) score in hybrid mode.
    score: f32,
    /// Why it matched: "words", "meaning" or "both"; `None` for a listing without text.
    matched: Option<&'static str>,
    snippet: String,
    highlights: Vec<[usize; 2]>,
    kind: &'static str,
    tags: Vec<String>,
    status: Option<&'static str>,
    due: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    pinned: bool,
    archived: bool,
}

/// `GET /api/v1/search?q=&tag=&kind=&status=&from=&to=&archived=&limit=` → `{"results":
/// [{"id", "snippet", "score", "matched", …}], "total", "mode", "words_only_reason",
/// "indexing"}` (read scope, unlocked vault): by words and meaning when the local AI
/// can embed the query (`crate::semantic::search`), else by words, saying why.
async fn search(
    caller: ApiCaller,
    state: web::Data<AppState>,
    params: web::Query<ApiSearchParams>,
) -> Result<HttpResponse, WebError> {
    caller.require_read()?;
    // Bad parameters are a 400 whether or not the vault is locked.
    let checked = params.into_inner().check()?;
    let unlocked = state.unlocked(caller.user.id)?;
    let indexing = unlocked.index.is_building();
    let Some(query) = checked else {
        // `from` after `to`: a well-formed range that no day falls in.
        return Ok(HttpResponse::Ok().json(serde_json::json!({
            "results": [],
            "total": 0,
            "mode": "words",
            "words_only_reason": null,
            "indexing": indexing,
        })));
    };
    let outcome = crate::semantic::search(&state, unlocked.index.clone(), query).await?;
    let (total, mode) = (outcome.total, outcome.mode_str());
    let reason = outcome.reason().map(str::to_owned);
    let results: Vec<SearchHit> = outcome
        .hits
        .into_iter()
        .map(|(hit, matched)| SearchHit {
            id: hit.id.to_string(),
            score: hit.score,
            matched: matched.map(cv_semantic::Matched::as_str),
            highlights: hit
                .snippet
                .highlights
                .iter()
                .map(|r| [r.start, r.end])
                .collect(),
            snippet: hit.snippet.text,
            kind: hit.kind.as_str(),
            tags: hit.tags,
            status: hit.status.map(cv_search::TaskStatus::as_str),
            due: hit.due.map(cv_vault::iso_date::format),
            created_at: hit.created,
            pinned: hit.pinned,
            archived: hit.archived,
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "results": results,
        "total": total,
        "mode": mode,
        "words_only_reason": reason,
        "indexing": indexing,
    })))
}
