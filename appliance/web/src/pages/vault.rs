//! The person's vault: unlocking at login, "Lock now", unlocking again, and the
//! recovery key page shown once when a vault is created.

use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_crypto::Passphrase;
use cv_crypto::vault::{KeyBundle, RecoveryKey, VaultCryptoError, create_vault};
use cv_db::User;
use cv_db::models::VaultKeys;
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::{FormError, peer_ip, render, see_other};
use crate::error::WebError;
use crate::session::CurrentUser;
use crate::state::AppState;
use cv_db::audit::Event;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/vault/lock", web::post().to(lock))
        .route("/vault/unlock", web::post().to(unlock));
}

/// Shown once, right after a vault is created or gets a new recovery key; never stored,
/// never shown again.
#[derive(Debug, Template)]
#[template(path = "recovery.html")]
pub(crate) struct RecoveryPage {
    pub recovery_key: String,
    /// The key replaces an older one, which no longer opens the vault.
    pub replaced: bool,
    /// Where "continue" leads.
    pub next: String,
}

impl RecoveryPage {
    /// The recovery key of a new vault.
    pub fn new(key: &RecoveryKey, next: &str) -> RecoveryPage {
        RecoveryPage {
            recovery_key: key.to_display().to_string(),
            replaced: false,
            next: next.to_owned(),
        }
    }

    /// A new recovery key for an existing vault.
    pub fn renewed(key: &RecoveryKey, next: &str) -> RecoveryPage {
        RecoveryPage {
            replaced: true,
            ..RecoveryPage::new(key, next)
        }
    }
}

/// Creates a vault for a new account, off the async workers (Argon2id): the bundle to
/// store, the vault unlocked, and the recovery key to show once.
pub(crate) async fn new_vault(
    passphrase: Passphrase,
) -> Result<(KeyBundle, cv_crypto::vault::UnlockedVault, RecoveryKey), WebError> {
    web::block(move || create_vault(&passphrase))
        .await?
        .map_err(|e| WebError::internal("creating a vault", e))
}

/// What logging in did to the vault.
pub(crate) enum Opened {
    Unlocked,
    /// The account predates vaults: one was created now; its recovery key must be shown.
    Created(RecoveryKey),
}

/// Unlocks `user`'s vault with the passphrase they just logged in with. An account
/// without a vault (made before accounts had them) gets one now.
pub(crate) async fn open_at_login(
    state: &web::Data<AppState>,
    user: &User,
    passphrase: Passphrase,
) -> Result<Opened, WebError> {
    match stored_keys(state, user.id).await? {
        Some(bytes) => {
            unlock_stored(state, user.id, bytes, passphrase).await?;
            Ok(Opened::Unlocked)
        }
        None => {
            let now = OffsetDateTime::now_utc();
            let (bundle, vault, recovery) = new_vault(passphrase).await?;
            let mut conn = state.conn().await?;
            if let Err(e) = VaultKeys::insert(&mut conn, user.id, &bundle.to_bytes()).await {
                return Err(state.db_error(e).await);
            }
            now_unlocked(state, user.id, vault, now).await?;
            info!(user = %user.name, "created a vault for an account that had none");
            Ok(Opened::Created(recovery))
        }
    }
}

/// Puts a just-opened vault in the keyring; if it was locked until now, starts building
/// its search index, which also re-wraps the keys of what was captured meanwhile
/// (`crate::index`).
pub(crate) async fn now_unlocked(
    state: &web::Data<AppState>,
    user: cv_db::UserId,
    vault: cv_crypto::vault::UnlockedVault,
    now: OffsetDateTime,
) -> Result<(), WebError> {
    // Already open (another device, a passphrase change): its keys and index stay, and
    // no index is made only to be dropped.
    if state.keyring.get(user, now).is_some() {
        return Ok(());
    }
    let index = crate::index::VaultIndex::new()
        .map_err(|e| WebError::internal("creating a search index", e))?;
    let (unlocked, fresh) = state.keyring.unlock(user, vault, index, now);
    if fresh {
        state.sealers.forget(user);
        crate::index::start_build(state, user, unlocked);
    }
    Ok(())
}

/// Unlocks, with the passphrase they just logged in with, the vault of an account that
/// has one; `false` (nothing done) for an account from before vaults existed.
pub(crate) async fn open_existing_at_login(
    state: &web::Data<AppState>,
    user: cv_db::UserId,
    passphrase: Passphrase,
) -> Result<bool, WebError> {
    match stored_keys(state, user).await? {
        Some(bytes) => {
            unlock_stored(state, user, bytes, passphrase).await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Opens a stored bundle with the login passphrase and puts the vault in the keyring.
async fn unlock_stored(
    state: &web::Data<AppState>,
    user: cv_db::UserId,
    bytes: Vec<u8>,
    passphrase: Passphrase,
) -> Result<(), WebError> {
    match unlock_bundle(bytes, passphrase).await? {
        Ok(vault) => now_unlocked(state, user, vault, OffsetDateTime::now_utc()).await,
        // The passphrase matched the account's hash but not its vault: the two were
        // changed apart. Logging in would leave a vault that never opens.
        Err(e) => Err(WebError::internal(
            "the vault does not open with the account's passphrase",
            e,
        )),
    }
}

/// The account's stored key bundle bytes; `None` for accounts from before vaults existed.
async fn stored_keys(state: &AppState, user: cv_db::UserId) -> Result<Option<Vec<u8>>, WebError> {
    let mut conn = state.conn().await?;
    match VaultKeys::get(&mut conn, user).await {
        Ok(stored) => Ok(stored),
        Err(e) => Err(state.db_error(e).await),
    }
}

/// The account's stored key bundle. Only accounts from before vaults existed have none;
/// logging in again creates theirs.
pub(crate) async fn stored_bundle(
    state: &AppState,
    user: cv_db::UserId,
) -> Result<KeyBundle, WebError> {
    let Some(bytes) = stored_keys(state, user).await? else {
        return Err(WebError::InvalidInput(
            "This account has no vault yet: log out and in again to create it.".into(),
        ));
    };
    KeyBundle::from_bytes(&bytes).map_err(|e| WebError::internal("reading a stored vault", e))
}

/// Captures into `owner`'s vault, from a form or the API: the note's key is wrapped by
/// the vault key when it is unlocked, sealed to the capture key otherwise. Returns the
/// new item's id and whether it was sealed; the inner error is the capture's own
/// (empty, too long, bad tags, database), for the caller to word.
pub(crate) async fn capture_into(
    state: &web::Data<AppState>,
    owner: cv_db::UserId,
    text: &str,
    tags: &[String],
) -> Result<Result<(cv_db::items::ItemId, bool), cv_vault::VaultError>, WebError> {
    use cv_vault::Access;
    let result = match state.keyring.get(owner, OffsetDateTime::now_utc()) {
        Some(unlocked) => {
            let mut conn = state.conn().await?;
            let captured = cv_vault::capture(
                &mut conn,
                owner,
                Access::Unlocked(&unlocked.vault),
                text,
                tags,
            )
            .await;
            if let Ok(id) = &captured {
                crate::index::captured(state, owner, *id, text, tags);
            }
            captured.map(|id| (id, false))
        }
        None => {
            let public = stored_bundle(state, owner).await?.capture_public();
            let sealer = state.sealers.get(owner, &public);
            let mut conn = state.conn().await?;
            cv_vault::capture(&mut conn, owner, Access::Locked(&sealer), text, tags)
                .await
                .map(|id| (id, true))
        }
    };
    Ok(result)
}

/// Parses and unlocks a stored bundle off the async workers.
async fn unlock_bundle(
    bytes: Vec<u8>,
    passphrase: Passphrase,
) -> Result<Result<cv_crypto::vault::UnlockedVault, VaultCryptoError>, WebError> {
    Ok(web::block(move || KeyBundle::from_bytes(&bytes)?.unlock(&passphrase)).await?)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// `POST /vault/lock`: "Lock now". The session stays; the keys go.
async fn lock(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    if state.keyring.lock(user.user.id) {
        info!(user = %user.user.name, "vault locked");
        state
            .audit(user.user.id, Event::Lock, "Lock now", Some(peer_ip(&req)))
            .await;
    }
    Ok(see_other("/dashboard").finish())
}

/// The unlock form again, after a wrong passphrase: the person can retry at once
/// instead of going back to the dashboard.
#[derive(Debug, Template)]
#[template(path = "unlock.html")]
pub(crate) struct UnlockPage {
    pub csrf: String,
    pub can_manage_users: bool,
    pub error: Option<FormError>,
}

fn unlock_again(user: &CurrentUser, error: &WebError) -> Result<HttpResponse, WebError> {
    let page = UnlockPage {
        csrf: user.csrf_token.clone(),
        can_manage_users: user.user.role.can_manage_users(),
        error: Some(FormError::of(error)),
    };
    render(actix_web::ResponseError::status_code(error), &page)
}

#[derive(Deserialize)]
struct UnlockForm {
    passphrase: String,
    csrf: String,
}

/// `POST /vault/unlock`: opens a locked vault again without logging out. Throttled
/// like logins: it is a passphrase oracle too.
async fn unlock(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<UnlockForm>,
) -> Result<HttpResponse, WebError> {
    let UnlockForm { passphrase, csrf } = form.into_inner();
    user.check_csrf(&csrf)?;
    let name = user.user.name.as_str();
    let ip = peer_ip(&req);
    if let Err(retry_after) = state.throttle().check(name, ip, Instant::now()) {
        // The error page, with its Retry-After: the form would only fail again now.
        return Err(WebError::Throttled { retry_after });
    }
    let Ok(passphrase) = Passphrase::for_login(passphrase) else {
        return unlock_again(&user, &WebError::UnlockFailed);
    };
    let bundle = stored_bundle(&state, user.user.id).await?;
    let unlocked = web::block(move || bundle.unlock(&passphrase)).await?;
    match unlocked {
        Ok(vault) => {
            state.throttle().record_success(name);
            now_unlocked(&state, user.user.id, vault, OffsetDateTime::now_utc()).await?;
            info!(user = %name, %ip, "vault unlocked");
            state.audit(user.user.id, Event::Unlock, "", Some(ip)).await;
            Ok(see_other("/dashboard").finish())
        }
        Err(VaultCryptoError::WrongPassphrase) => {
            state.throttle().record_failure(name, ip, Instant::now());
            warn!(user = %name, %ip, "unlock failed: wrong passphrase");
            state
                .audit(user.user.id, Event::UnlockFailed, "", Some(ip))
                .await;
            unlock_again(&user, &WebError::UnlockFailed)
        }
        Err(e) => Err(WebError::internal("unlocking a vault", e)),
    }
}

/// Renders the recovery key page (status 200) with `cookie` set, if any.
pub(crate) fn show_recovery(
    page: &RecoveryPage,
    cookie: Option<actix_web::cookie::Cookie<'static>>,
) -> Result<HttpResponse, WebError> {
    let mut resp = render(StatusCode::OK, page)?;
    if let Some(cookie) = cookie {
        resp.add_cookie(&cookie)
            .map_err(|e| WebError::internal("setting the session cookie", e))?;
    }
    Ok(resp)
}
