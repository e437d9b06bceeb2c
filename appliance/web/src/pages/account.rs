//! The person's own account: changing the passphrase, and recovering a vault whose
//! passphrase is lost with the recovery key. Both re-wrap the vault key and replace the
//! login hash in one transaction; nothing in the vault is re-encrypted.

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

use super::vault::stored_bundle;
use super::{FormError, peer_ip, render, render_prelogin, see_other};
use crate::error::WebError;
use crate::session::{self, CurrentUser, check_prelogin_csrf};
use crate::state::AppState;
use cv_db::audit::Event;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/account", web::get().to(account_page))
        .route("/account/passphrase", web::post().to(change_passphrase))
        .route("/recover", web::get().to(recover_page))
        .route("/recover", web::post().to(recover));
}

#[derive(Debug, Template)]
#[template(path = "account.html")]
pub(crate) struct AccountPage {
    pub csrf: String,
    pub user_name: String,
    pub can_manage_users: bool,
    /// The owner also gets a link to the appliance's settings.
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
            is_owner: matches!(user.user.role, cv_db::Role::Owner),
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
fn new_passphrase(passphrase: String, confirm: &str) -> Result<Passphrase, WebError> {
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
    let Ok(current) = Passphrase::for_login(form.current) else {
        return show_account(
            &user,
            StatusCode::UNAUTHORIZED,
            false,
            Some(&WebError::UnlockFailed),
        );
    };
    let bundle = stored_bundle(&state, user.user.id).await?;
    // The current passphrase must open the vault: that is the check, and it yields the
    // vault key to re-wrap.
    let unlocked = web::block({
        let bundle = bundle.clone();
        move || bundle.unlock(&current)
    })
    .await?;
    let unlocked = match unlocked {
        Ok(unlocked) => unlocked,
        Err(VaultCryptoError::WrongPassphrase) => {
            state.throttle().record_failure(name, ip, Instant::now());
            warn!(user = %name, %ip, "passphrase change refused: wrong current passphrase");
            state
                .audit(
                    user.user.id,
                    Event::UnlockFailed,
                    "changing the passphrase",
                    Some(ip),
                )
                .await;
            return show_account(
                &user,
                StatusCode::UNAUTHORIZED,
                false,
                Some(&WebError::UnlockFailed),
            );
        }
        Err(e) => {
            return Err(WebError::internal(
                "opening a vault to change its passphrase",
                e,
            ));
        }
    };
    state.throttle().record_success(name);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::vault::RecoveryPage;

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
        let page = RecoveryPage::new(&key, Some("max".into()), "/users?added=max");
        let html = rendered(&page);
        assert!(html.contains(key.to_display().as_str()));
        assert!(html.contains("Recovery key for max"));
        assert!(html.contains("only time it is shown"));
        assert!(html.contains(r#"href="/users?added=max""#));
    }
}
