//! The person's own account: changing the passphrase, and recovering a vault whose
//! passphrase is lost with the recovery key (both re-wrap the vault key and replace the
//! login hash in one transaction; nothing in the vault is re-encrypted); a new recovery
//! key; renewing an account whose passphrase someone else chose (new keys for the whole
//! vault, `cv_vault::renew`); and deleting one's own account.

use std::str::FromStr as _;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_crypto::vault::{KeyBundle, RecoveryKey, UnlockedVault, VaultCryptoError};
use cv_crypto::{Passphrase, hash_password};
use cv_db::{SessionRecord, User, UserId, UserName};
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::vault::{RecoveryPage, show_recovery, stored_bundle};
use super::{FormError, peer_ip, render, render_prelogin, see_other};
use crate::error::WebError;
use actix_web::ResponseError as _;

use crate::session::{self, CurrentUser, check_prelogin_csrf};
use crate::state::AppState;
use cv_db::audit::Event;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/account", web::get().to(account_page))
        .route("/account/passphrase", web::post().to(change_passphrase))
        .route("/account/recovery-key", web::post().to(new_recovery_key))
        .route("/account/delete", web::post().to(delete_account))
        .route("/account/renew", web::get().to(renew_page))
        .route("/account/renew", web::post().to(renew_submit))
        .route("/recover", web::get().to(recover_page))
        .route("/recover", web::post().to(recover));
}

#[derive(Debug, Template)]
#[template(path = "account.html")]
pub(crate) struct AccountPage {
    pub csrf: String,
    pub user_name: String,
    pub can_manage_users: bool,
    /// The owner gets a link to the appliance's settings, and cannot delete their
    /// account (the household needs its owner).
    pub is_owner: bool,
    pub changed: bool,
    pub error: Option<FormError>,
}

#[derive(Deserialize)]
struct ChangedQuery {
    changed: Option<String>,
}

/// `GET /account` (`?changed=1` confirms a change).
async fn account_page(req: HttpRequest, user: CurrentUser) -> Result<HttpResponse, WebError> {
    let changed = web::Query::<ChangedQuery>::from_query(req.query_string())
        .ok()
        .is_some_and(|q| q.changed.is_some());
    show_account(&user, StatusCode::OK, changed, None)
}

fn show_account(
    user: &CurrentUser,
    status: StatusCode,
    changed: bool,
    error: Option<&WebError>,
) -> Result<HttpResponse, WebError> {
    render(
        status,
        &AccountPage {
            csrf: user.csrf_token.clone(),
            user_name: user.user.name.to_string(),
            can_manage_users: user.user.role.can_manage_users(),
            is_owner: user.user.role == cv_db::Role::Owner,
            changed,
            error: error.map(FormError::of),
        },
    )
}

#[derive(Deserialize)]
struct ChangeForm {
    current: String,
    passphrase: String,
    passphrase_confirm: String,
    csrf: String,
}

/// The new passphrase of a form, checked: the two copies match, the length rules hold.
pub(crate) fn new_passphrase(passphrase: String, confirm: &str) -> Result<Passphrase, WebError> {
    if passphrase != confirm {
        return Err(WebError::InvalidInput(
            "The two new passphrases do not match.".into(),
        ));
    }
    Passphrase::new(passphrase)
        .map_err(|e| WebError::InvalidInput(format!("Please choose another passphrase: {e}.")))
}

/// `POST /account/passphrase`.
async fn change_passphrase(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<ChangeForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    let name = user.user.name.as_str();
    let ip = peer_ip(&req);
    if let Err(retry_after) = state.throttle().check(name, ip, Instant::now()) {
        return Err(WebError::Throttled { retry_after });
    }
    let new = match new_passphrase(form.passphrase, &form.passphrase_confirm) {
        Ok(new) => new,
        Err(e) => return show_account(&user, StatusCode::BAD_REQUEST, false, Some(&e)),
    };
    // The current passphrase must open the vault: that is the check, and it yields the
    // vault key to re-wrap.
    let (bundle, unlocked) =
        match reopen(&req, &user, &state, form.current, "changing the passphrase").await? {
            Ok(opened) => opened,
            Err(e) => return show_account(&user, StatusCode::UNAUTHORIZED, false, Some(&e)),
        };
    store_new_passphrase(&state, user.user.id, &bundle, unlocked, new).await?;
    info!(user = %name, "passphrase changed");
    state
        .audit(user.user.id, Event::PassphraseChanged, "", Some(ip))
        .await;
    Ok(see_other("/account?changed=1").finish())
}

/// Re-wraps the vault key under `new`, stores it with the new login hash, and leaves
/// the vault unlocked in the keyring.
async fn store_new_passphrase(
    state: &web::Data<AppState>,
    user: UserId,
    bundle: &KeyBundle,
    unlocked: UnlockedVault,
    new: Passphrase,
) -> Result<(), WebError> {
    let bundle = bundle.clone();
    let (rewrapped, hash, unlocked) = web::block(move || -> Result<_, String> {
        let rewrapped = bundle
            .rewrap_passphrase(&unlocked, &new)
            .map_err(|e| e.to_string())?;
        let hash = hash_password(&new).map_err(|e| e.to_string())?;
        Ok((rewrapped, hash, unlocked))
    })
    .await?
    .map_err(|e| WebError::internal("re-wrapping a vault key", e))?;
    let mut conn = state.conn().await?;
    if let Err(e) = User::set_passphrase(&mut conn, user, &hash, &rewrapped.to_bytes()).await {
        return Err(state.db_error(e).await);
    }
    drop(conn);
    super::vault::now_unlocked(state, user, unlocked, OffsetDateTime::now_utc()).await
}

// ---------------------------------------------------------------------------------
// Recovery

#[derive(Debug, Template)]
#[template(path = "recover.html")]
pub(crate) struct RecoverPage {
    pub csrf: String,
    pub name: String,
    pub error: Option<FormError>,
}

#[derive(Deserialize)]
struct RecoverForm {
    name: String,
    recovery_key: String,
    passphrase: String,
    passphrase_confirm: String,
    csrf: String,
}

/// The one answer to a wrong name or a wrong (well-formed) key: which one is no secret
/// worth giving away.
const RECOVERY_FAILED: &str = "Wrong user name or recovery key.";

async fn recover_page(req: HttpRequest) -> Result<HttpResponse, WebError> {
    show_recover(&req, StatusCode::OK, String::new(), None)
}

fn show_recover(
    req: &HttpRequest,
    status: StatusCode,
    name: String,
    error: Option<&WebError>,
) -> Result<HttpResponse, WebError> {
    render_prelogin(req, status, |csrf| RecoverPage {
        csrf,
        name,
        error: error.map(FormError::of),
    })
}

/// `POST /recover`: the recovery key opens the vault; a new passphrase is set, every
/// session of the account ends, and the person is logged in with the new one.
async fn recover(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<RecoverForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    check_prelogin_csrf(&req, &form.csrf)?;
    let ip = peer_ip(&req);
    if let Err(retry_after) = state.throttle().check(&form.name, ip, Instant::now()) {
        info!(%ip, "recovery throttled");
        return Err(WebError::Throttled { retry_after });
    }
    let retry = |status, err: WebError| show_recover(&req, status, form.name.clone(), Some(&err));
    let key = match RecoveryKey::parse(&form.recovery_key) {
        Ok(key) => key,
        Err(_) => {
            let err = WebError::InvalidInput(
                "That is not a valid recovery key: check it for a typo (14 groups of 4 characters).".into(),
            );
            return retry(StatusCode::BAD_REQUEST, err);
        }
    };
    let new = match new_passphrase(form.passphrase.clone(), &form.passphrase_confirm) {
        Ok(new) => new,
        Err(e) => return retry(StatusCode::BAD_REQUEST, e),
    };
    let failed = |state: &AppState| {
        state
            .throttle()
            .record_failure(&form.name, ip, Instant::now());
        info!(%ip, "recovery failed");
        retry(
            StatusCode::UNAUTHORIZED,
            WebError::InvalidInput(RECOVERY_FAILED.into()),
        )
    };
    let Ok(name) = UserName::from_str(&form.name) else {
        return failed(&state);
    };
    let found = {
        let mut conn = state.conn().await?;
        match User::find_for_login(&mut conn, &name).await {
            Ok(found) => found,
            Err(e) => return Err(state.db_error(e).await),
        }
    };
    let Some((user, _)) = found else {
        return failed(&state);
    };
    if user.renew_required {
        // Its recovery key was seen by whoever made the account: it must not reset the
        // passphrase. The holder logs in with the passphrase they were given and renews.
        return retry(StatusCode::FORBIDDEN, WebError::RenewRequired);
    }
    let bundle = stored_bundle(&state, user.id).await?;
    let unlocked = web::block({
        let bundle = bundle.clone();
        move || bundle.unlock_with_recovery(&key)
    })
    .await?;
    let unlocked = match unlocked {
        Ok(unlocked) => unlocked,
        Err(VaultCryptoError::WrongRecoveryKey) => return failed(&state),
        Err(e) => return Err(WebError::internal("opening a vault with a recovery key", e)),
    };
    state.throttle().record_success(&form.name);
    store_new_passphrase(&state, user.id, &bundle, unlocked, new).await?;
    {
        let mut conn = state.conn().await?;
        if let Err(e) = SessionRecord::delete_for_user(&mut conn, user.id).await {
            return Err(state.db_error(e).await);
        }
    }
    let cookie = session::start(&state, user.id).await?;
    info!(user = %user.name, %ip, "vault recovered with the recovery key; new passphrase set");
    state.audit(user.id, Event::Recovered, "", Some(ip)).await;
    Ok(see_other("/dashboard").cookie(cookie).finish())
}

// ---------------------------------------------------------------------------------
// A new recovery key

#[derive(Deserialize)]
struct PassphraseForm {
    current: String,
    csrf: String,
}

/// Opens the signed-in person's vault with `typed` (their passphrase, re-entered for a
/// change that matters): the stored bundle and the vault, or the 401 form error,
/// throttled and audited like a failed unlock.
pub(crate) async fn reopen(
    req: &HttpRequest,
    user: &CurrentUser,
    state: &web::Data<AppState>,
    typed: String,
    why: &str,
) -> Result<Result<(KeyBundle, UnlockedVault), WebError>, WebError> {
    let name = user.user.name.as_str();
    let ip = peer_ip(req);
    if let Err(retry_after) = state.throttle().check(name, ip, Instant::now()) {
        return Err(WebError::Throttled { retry_after });
    }
    let Ok(current) = Passphrase::for_login(typed) else {
        return Ok(Err(WebError::UnlockFailed));
    };
    let bundle = stored_bundle(state, user.user.id).await?;
    let unlocked = web::block({
        let bundle = bundle.clone();
        move || bundle.unlock(&current)
    })
    .await?;
    match unlocked {
        Ok(unlocked) => {
            state.throttle().record_success(name);
            Ok(Ok((bundle, unlocked)))
        }
        Err(VaultCryptoError::WrongPassphrase) => {
            state.throttle().record_failure(name, ip, Instant::now());
            warn!(user = %name, %ip, why, "refused: wrong passphrase");
            state
                .audit(user.user.id, Event::UnlockFailed, why, Some(ip))
                .await;
            Ok(Err(WebError::UnlockFailed))
        }
        Err(e) => Err(WebError::internal("opening a vault", e)),
    }
}

/// `POST /account/recovery-key`: a new recovery key wraps the vault key and the old
/// wrapping is destroyed; the new key is shown once.
async fn new_recovery_key(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<PassphraseForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    let (bundle, unlocked) = match reopen(
        &req,
        &user,
        &state,
        form.current,
        "making a new recovery key",
    )
    .await?
    {
        Ok(opened) => opened,
        Err(e) => return show_account(&user, StatusCode::UNAUTHORIZED, false, Some(&e)),
    };
    let (rotated, recovery) = web::block(move || bundle.rewrap_recovery(&unlocked))
        .await?
        .map_err(|e| WebError::internal("making a new recovery key", e))?;
    {
        let mut conn = state.conn().await?;
        if let Err(e) = User::set_bundle(&mut conn, user.user.id, &rotated.to_bytes()).await {
            return Err(state.db_error(e).await);
        }
    }
    info!(user = %user.user.name, "new recovery key made; the old one no longer opens the vault");
    state
        .audit(
            user.user.id,
            Event::RecoveryKeyRotated,
            "",
            Some(peer_ip(&req)),
        )
        .await;
    show_recovery(&RecoveryPage::renewed(&recovery, "/account"), None)
}

// ---------------------------------------------------------------------------------
// Deleting one's own account

#[derive(Deserialize)]
struct DeleteForm {
    current: String,
    /// The account's name, typed again: deleting cannot be undone.
    confirm: String,
    csrf: String,
}

/// `POST /account/delete`: a member or admin erases their own account and vault
/// (crypto-shredding), after their passphrase and their name typed again. The owner's
/// account holds the household together and cannot be deleted this way.
async fn delete_account(
    req: HttpRequest,
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<DeleteForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    if user.user.role == cv_db::Role::Owner {
        return Err(WebError::Forbidden(
            "The owner's account cannot be deleted: it holds the household together. To erase everything, reset the appliance.".into(),
        ));
    }
    if UserName::from_str(&form.confirm).ok().as_ref() != Some(&user.user.name) {
        let err = WebError::InvalidInput(format!(
            "To delete your account, type your user name ({}) in the box: this cannot be undone.",
            user.user.name
        ));
        return show_account(&user, StatusCode::BAD_REQUEST, false, Some(&err));
    }
    if let Err(e) = reopen(&req, &user, &state, form.current, "deleting the account").await? {
        return show_account(&user, StatusCode::UNAUTHORIZED, false, Some(&e));
    }
    super::users::erase_account(&state, &user.user).await?;
    info!(user = %user.user.name, "account deleted by its holder");
    let owner = {
        let mut conn = state.conn().await?;
        match User::list(&mut conn).await {
            Ok(users) => users.into_iter().find(|u| u.role == cv_db::Role::Owner),
            Err(e) => return Err(state.db_error(e).await),
        }
    };
    if let Some(owner) = owner {
        state
            .audit(
                owner.id,
                Event::AccountDeleted,
                &format!("{} ({})", user.user.name, user.user.role),
                Some(peer_ip(&req)),
            )
            .await;
    }
    Ok(see_other("/login?deleted=1")
        .cookie(session::removal_cookie(session::SESSION_COOKIE))
        .finish())
}

// ---------------------------------------------------------------------------------
// Renewing an account whose passphrase someone else chose

/// What a renewal gives back: the account and its new recovery key, to show once.
pub(crate) struct Renewal {
    pub user: User,
    pub recovery: RecoveryKey,
}

/// Renews the account named `typed` (see `cv_vault::renew`): `current` is the passphrase
/// someone else chose, `new` the holder's own. The vault is left unlocked under its new
/// keys; the caller starts the session. The login page and `POST /api/v1/account/renew`
/// both come here.
pub(crate) async fn renew(
    state: &web::Data<AppState>,
    typed: &str,
    current: String,
    new: Passphrase,
    ip: std::net::IpAddr,
) -> Result<Renewal, WebError> {
    use super::auth::{Verified, verify};
    if let Err(retry_after) = state.throttle().check(typed, ip, Instant::now()) {
        return Err(WebError::Throttled { retry_after });
    }
    let (user, current) = match verify(state, typed, current).await? {
        Verified::Ok(user, current) => (user, current),
        failed => {
            state.throttle().record_failure(typed, ip, Instant::now());
            if let Verified::WrongPassphrase(user) = failed {
                state
                    .audit(user.id, Event::LoginFailed, "renewing", Some(ip))
                    .await;
            }
            return Err(WebError::LoginFailed);
        }
    };
    state.throttle().record_success(typed);
    if !user.renew_required {
        return Err(WebError::Conflict(
            "This account's passphrase is already its holder's own: change it on the account page."
                .into(),
        ));
    }
    if new.expose() == current.expose() {
        return Err(WebError::InvalidInput(
            "Choose a passphrase other than the one you were given.".into(),
        ));
    }
    let old_bundle = stored_bundle(state, user.id).await?;
    let (old_vault, hash, (bundle, new_vault, recovery)) =
        web::block(move || -> Result<_, String> {
            let old_vault = old_bundle.unlock(&current).map_err(|e| e.to_string())?;
            let hash = hash_password(&new).map_err(|e| e.to_string())?;
            let created = cv_crypto::vault::create_vault(&new).map_err(|e| e.to_string())?;
            Ok((old_vault, hash, created))
        })
        .await?
        .map_err(|e| WebError::internal("making a renewed vault's keys", e))?;
    // Nothing of the old keys may stay in this process either.
    state.keyring.lock(user.id);
    state.sealers.forget(user.id);
    let renewed = {
        let mut conn = state.conn().await?;
        cv_vault::renew::renew(
            &mut conn,
            user.id,
            &old_vault,
            &new_vault,
            &hash,
            &bundle.to_bytes(),
        )
        .await
    };
    drop(old_vault);
    let renewed = match renewed {
        Ok(Some(renewed)) => renewed,
        Ok(None) => {
            return Err(WebError::Conflict(
                "This account was renewed a moment ago: log in with the new passphrase.".into(),
            ));
        }
        Err(cv_vault::VaultError::Db(e)) => return Err(state.db_error(e).await),
        Err(e) => return Err(WebError::internal("renewing a vault", e)),
    };
    super::vault::now_unlocked(state, user.id, new_vault, OffsetDateTime::now_utc()).await?;
    info!(user = %user.name, %ip, items = renewed.items, "account renewed: own passphrase, new vault keys and recovery key");
    state
        .audit(
            user.id,
            Event::Renewed,
            &format!("{} items moved to new keys", renewed.items),
            Some(ip),
        )
        .await;
    Ok(Renewal {
        user: User {
            renew_required: false,
            ..user
        },
        recovery,
    })
}

#[derive(Debug, Template)]
#[template(path = "renew.html")]
pub(crate) struct RenewPage {
    pub csrf: String,
    pub name: String,
    pub error: Option<FormError>,
}

#[derive(Deserialize)]
struct RenewQuery {
    name: Option<String>,
}

/// `GET /account/renew?name=`: where a login of an account that must renew leads.
async fn renew_page(req: HttpRequest) -> Result<HttpResponse, WebError> {
    let name = web::Query::<RenewQuery>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.into_inner().name)
        .and_then(|n| UserName::from_str(&n).ok())
        .map(|n| n.to_string())
        .unwrap_or_default();
    show_renew(&req, StatusCode::OK, name, None)
}

fn show_renew(
    req: &HttpRequest,
    status: StatusCode,
    name: String,
    error: Option<&WebError>,
) -> Result<HttpResponse, WebError> {
    render_prelogin(req, status, |csrf| RenewPage {
        csrf,
        name,
        error: error.map(FormError::of),
    })
}

#[derive(Deserialize)]
struct RenewForm {
    name: String,
    current: String,
    passphrase: String,
    passphrase_confirm: String,
    csrf: String,
}

/// `POST /account/renew`: sets the holder's own passphrase, gives the vault new keys,
/// logs them in and shows the new recovery key once.
async fn renew_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<RenewForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    check_prelogin_csrf(&req, &form.csrf)?;
    let again = |status, err: &WebError| show_renew(&req, status, form.name.clone(), Some(err));
    let new = match new_passphrase(form.passphrase, &form.passphrase_confirm) {
        Ok(new) => new,
        Err(e) => return again(StatusCode::BAD_REQUEST, &e),
    };
    match renew(&state, &form.name, form.current, new, peer_ip(&req)).await {
        Ok(renewal) => {
            let cookie = session::start(&state, renewal.user.id).await?;
            show_recovery(
                &RecoveryPage::renewed(&renewal.recovery, super::notes::home_for(&req)),
                Some(cookie),
            )
        }
        Err(e @ (WebError::LoginFailed | WebError::InvalidInput(_) | WebError::Conflict(_))) => {
            again(e.status_code(), &e)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(page: &impl Template) -> String {
        let html = page.render().unwrap();
        assert!(!html.contains("style="), "inline style in {html}");
        assert!(!html.contains("<script"), "script in {html}");
        html
    }

    #[test]
    fn the_account_page_has_its_fields() {
        let html = rendered(&AccountPage {
            csrf: "tok".into(),
            user_name: "olivia".into(),
            can_manage_users: false,
            is_owner: false,
            changed: true,
            error: None,
        });
        for field in [
            r#"action="/account/passphrase""#,
            r#"name="current""#,
            r#"name="passphrase""#,
            r#"name="passphrase_confirm""#,
            r#"name="csrf" value="tok""#,
        ] {
            assert!(html.contains(field), "{field} missing");
        }
        assert!(html.contains("Your passphrase is changed"));
        // The title is text only; the links to the other account pages are in the body.
        assert!(html.contains("<title>Your account · Context Vault</title>"));
        let body = &html[html.find("<body").expect("a body")..];
        for link in [
            r#"href="/account/tokens""#,
            r#"href="/account/activity""#,
            r#"href="/account/export""#,
        ] {
            assert!(body.contains(link), "{link} missing from the body");
        }
    }

    #[test]
    fn the_recover_page_has_its_fields() {
        let html = rendered(&RecoverPage {
            csrf: "tok".into(),
            name: "<olivia>".into(),
            error: Some(FormError::of(&WebError::InvalidInput(
                RECOVERY_FAILED.into(),
            ))),
        });
        for field in [
            r#"action="/recover""#,
            r#"name="recovery_key""#,
            r#"name="passphrase_confirm""#,
            r#"name="csrf" value="tok""#,
        ] {
            assert!(html.contains(field), "{field} missing");
        }
        assert!(!html.contains("<olivia>"), "names are escaped");
        assert!(html.contains(RECOVERY_FAILED));
    }

    #[test]
    fn the_recovery_key_page_says_it_is_shown_once() {
        let pass = Passphrase::new("a test passphrase".into()).unwrap();
        let (_, _, key) = cv_crypto::vault::create_vault(&pass).unwrap();
        let page = RecoveryPage::new(&key, "/dashboard");
        let html = rendered(&page);
        assert!(html.contains(key.to_display().as_str()));
        assert!(html.contains("Your recovery key"));
        assert!(html.contains("only time it is shown"));
        assert!(html.contains(r#"href="/dashboard""#));
        assert!(!html.contains("no longer works"));
        let html = rendered(&RecoveryPage::renewed(&key, "/account"));
        assert!(html.contains("Your new recovery key"));
        assert!(html.contains("no longer works"));
    }
}
