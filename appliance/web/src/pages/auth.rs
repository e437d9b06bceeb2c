//! The start page, first-time setup, login and logout.

use std::str::FromStr as _;
use std::time::Instant;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use cv_crypto::password::dummy_hash;
use cv_crypto::token::normalize_human_code;
use cv_crypto::{Passphrase, hash_password, sha256, verify_password};
use cv_db::models::{CreateUserError, SetupCode, owner_exists};
use cv_db::{User, UserName};
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use super::vault::{Opened, RecoveryPage, new_vault, show_recovery};
use super::{FormError, peer_ip, render_prelogin, see_other};
use crate::error::WebError;
use crate::session::{self, CurrentUser, Lookup, check_prelogin_csrf};
use crate::state::AppState;
use cv_db::audit::Event;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(index))
        .route("/setup", web::get().to(setup_page))
        .route("/setup", web::post().to(setup_submit))
        .route("/setup/restore", web::post().to(setup_restore))
        .route("/setup/restoring", web::get().to(setup_restoring))
        .route("/login", web::get().to(login_page))
        .route("/login", web::post().to(login_submit))
        .route("/logout", web::post().to(logout));
}

/// `GET /`: setup while it is pending, else the dashboard or the login page.
async fn index(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    {
        let mut conn = state.conn().await?;
        match SetupCode::is_pending(&mut conn).await {
            Ok(true) => return Ok(see_other("/setup").finish()),
            Ok(false) => {}
            Err(e) => return Err(state.db_error(e).await),
        }
    }
    Ok(match session::load(&req, &state).await? {
        Lookup::Valid(_) => see_other(super::notes::home_for(&req)).finish(),
        Lookup::Expired => see_other("/login?expired=1")
            .cookie(session::removal_cookie(session::SESSION_COOKIE))
            .finish(),
        Lookup::None => see_other("/login").finish(),
    })
}

// ---------------------------------------------------------------------------------
// Setup

#[derive(Debug, Template)]
#[template(path = "setup.html")]
pub(crate) struct SetupPage {
    pub csrf: String,
    /// What was typed last time, when the form is re-shown (never the passphrases).
    pub typed: SetupTyped,
    pub error: Option<FormError>,
    /// The restore-from-a-backup form: what was typed (never the key), and its error.
    pub restore: RestoreTyped,
    pub restore_error: Option<FormError>,
}

/// The restore form's fields shown again after an error (never the backup key).
#[derive(Debug, Clone, Default)]
pub(crate) struct RestoreTyped {
    pub repository: String,
    pub snapshot: String,
}

/// The page shown while a backup is restored onto the box; it reloads itself.
#[derive(Debug, Template)]
#[template(path = "setup_restoring.html")]
pub(crate) struct RestoringPage;

/// The setup form's fields that are shown again after an error, so that a mistake in
/// one field does not mean typing the others again.
#[derive(Debug, Clone, Default)]
pub(crate) struct SetupTyped {
    pub setup_code: String,
    pub name: String,
    /// The time zone picked (an IANA name), or at first the box's own.
    pub time_zone: String,
}

impl SetupPage {
    /// The time zones to pick from.
    pub fn zones(&self) -> &'static [String] {
        crate::zone::names()
    }
}

#[derive(Deserialize)]
struct SetupForm {
    setup_code: String,
    name: String,
    passphrase: String,
    passphrase_confirm: String,
    /// Absent (a client of the form from before it had the field): the box's own zone.
    #[serde(default)]
    time_zone: Option<String>,
    csrf: String,
}

/// `GET /setup`: the form that creates the owner account, while there is none.
async fn setup_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, WebError> {
    if has_owner(&state).await? {
        return Ok(see_other("/login").finish());
    }
    let typed = SetupTyped {
        time_zone: crate::zone::name(&crate::zone::system_default()).to_owned(),
        ..SetupTyped::default()
    };
    // A restore that failed (the box restarted its vault meanwhile) is said here.
    let restore_error = state
        .status
        .control()
        .status()
        .await
        .ok()
        .and_then(|s| s.backup)
        .and_then(|b| b.restore_problem)
        .map(|problem| WebError::InvalidInput(capitalise(&problem)));
    render_prelogin(&req, StatusCode::OK, |csrf| SetupPage {
        csrf,
        typed,
        error: None,
        restore: RestoreTyped::default(),
        restore_error: restore_error.as_ref().map(FormError::of),
    })
}

fn show_setup(
    req: &HttpRequest,
    status: StatusCode,
    typed: SetupTyped,
    error: Option<&WebError>,
) -> Result<HttpResponse, WebError> {
    render_prelogin(req, status, |csrf| SetupPage {
        csrf,
        typed,
        error: error.map(FormError::of),
        restore: RestoreTyped::default(),
        restore_error: None,
    })
}

#[derive(Deserialize)]
struct RestoreForm {
    setup_code: String,
    repository: String,
    key: String,
    #[serde(default)]
    snapshot: String,
    csrf: String,
}

/// `POST /setup/restore`: a new box restores a backup instead of getting a new owner. The
/// setup code proves access to the box's console, as for setup; the repository and the
/// key are checked (the backups listed) before anything changes; then the supervisor
/// restores in the background (this process is stopped and started again meanwhile) and
/// the answer is a page that reloads itself until the vault is back.
async fn setup_restore(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<RestoreForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    let ip = unclaimed_box(&req, &state, &form.csrf, "restore").await?;
    let typed = RestoreTyped {
        repository: form.repository.trim().to_owned(),
        snapshot: form.snapshot.trim().to_owned(),
    };
    let retry = |status, err: WebError| {
        render_prelogin(&req, status, |csrf| SetupPage {
            csrf,
            typed: SetupTyped {
                time_zone: crate::zone::name(&crate::zone::system_default()).to_owned(),
                ..SetupTyped::default()
            },
            error: None,
            restore: typed.clone(),
            restore_error: Some(FormError::of(&err)),
        })
    };
    let code_hash = sha256(normalize_human_code(&form.setup_code).as_bytes());
    let code_ok = {
        let mut conn = state.conn().await?;
        match SetupCode::matches(&mut conn, code_hash).await {
            Ok(ok) => ok,
            Err(e) => return Err(state.db_error(e).await),
        }
    };
    if !code_ok {
        state.throttle().record_address_failure(ip, Instant::now());
        warn!(%ip, "restore refused: wrong setup code");
        return retry(StatusCode::FORBIDDEN, WebError::SetupCodeInvalid);
    }
    let key_text = form.key.trim().to_owned();
    if typed.repository.is_empty() || key_text.is_empty() {
        let err = WebError::InvalidInput("Give the backup's repository and its key.".into());
        return retry(StatusCode::BAD_REQUEST, err);
    }
    let key = |text: &str| cv_control::BackupKeyText::new(zeroize::Zeroizing::new(text.to_owned()));
    let backups = match state
        .status
        .control()
        .backup_check(&typed.repository, key(&key_text))
        .await
    {
        Ok(backups) => backups,
        Err(cv_control::ControlError::Refused(message)) => {
            let err = WebError::InvalidInput(capitalise(&message));
            return retry(StatusCode::BAD_REQUEST, err);
        }
        Err(e) => return Err(WebError::internal("checking the backup", e)),
    };
    let which = if typed.snapshot.is_empty() {
        "latest".to_owned()
    } else {
        typed.snapshot.clone()
    };
    let known = which == "latest" || backups.iter().any(|b| b.id == which || b.short_id == which);
    if backups.is_empty() || !known {
        let err = WebError::InvalidInput(if backups.is_empty() {
            "That repository holds no backup.".into()
        } else {
            format!("That repository has no backup {which}.")
        });
        return retry(StatusCode::BAD_REQUEST, err);
    }
    info!(%ip, "restoring a backup onto this box");
    let control = state.status.control().clone();
    let repository = typed.repository.clone();
    let key = key(&key_text);
    tokio::spawn(async move {
        if let Err(e) = control.backup_restore(&repository, key, &which).await {
            warn!(error = %e, "the restore of a backup failed");
        }
    });
    super::render(StatusCode::ACCEPTED, &RestoringPage)
}

/// What both ways of claiming a new box check first: the form's CSRF token, the address's
/// attempts (throttled), and that the box has no owner yet. Returns the address.
async fn unclaimed_box(
    req: &HttpRequest,
    state: &AppState,
    csrf: &str,
    what: &str,
) -> Result<std::net::IpAddr, WebError> {
    check_prelogin_csrf(req, csrf)?;
    let ip = peer_ip(req);
    if let Err(retry_after) = state.throttle().check_address(ip, Instant::now()) {
        info!(%ip, "{what} attempt throttled");
        return Err(WebError::Throttled { retry_after });
    }
    if has_owner(state).await? {
        return Err(WebError::Conflict(
            "This appliance already has an owner. Log in instead.".into(),
        ));
    }
    Ok(ip)
}

/// `GET /setup/restoring`: while a backup is restored, this page again; once the vault
/// has its owner, the login page; after a failure, the setup page saying why.
async fn setup_restoring(state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    if has_owner(&state).await? {
        return Ok(see_other("/login?restored=1").finish());
    }
    let restoring = state
        .status
        .control()
        .status()
        .await
        .ok()
        .and_then(|s| s.backup)
        .is_some_and(|b| b.restoring);
    if restoring {
        return super::render(StatusCode::OK, &RestoringPage);
    }
    Ok(see_other("/setup").finish())
}

/// `POST /setup`: redeems the setup code and creates the owner, then logs them in.
async fn setup_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<SetupForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    let ip = unclaimed_box(&req, &state, &form.csrf, "setup").await?;

    let typed = SetupTyped {
        setup_code: form.setup_code.clone(),
        name: form.name.clone(),
        time_zone: form
            .time_zone
            .clone()
            .unwrap_or_else(|| crate::zone::name(&crate::zone::system_default()).to_owned()),
    };
    let retry = |status, err: WebError| show_setup(&req, status, typed.clone(), Some(&err));
    let time_zone = match form.time_zone.as_deref() {
        None => crate::zone::system_default(),
        Some(name) => match crate::zone::parse(name) {
            Ok(tz) => tz,
            Err(e) => return retry(StatusCode::BAD_REQUEST, e),
        },
    };
    let name = match UserName::from_str(&form.name) {
        Ok(name) => name,
        Err(e) => {
            return retry(
                StatusCode::BAD_REQUEST,
                WebError::InvalidInput(capitalise(&e)),
            );
        }
    };
    if form.passphrase != form.passphrase_confirm {
        let err = WebError::InvalidInput("The two passphrases do not match.".into());
        return retry(StatusCode::BAD_REQUEST, err);
    }
    let passphrase = match Passphrase::new(form.passphrase.clone()) {
        Ok(p) => p,
        Err(e) => {
            return retry(
                StatusCode::BAD_REQUEST,
                WebError::InvalidInput(capitalise(&e)),
            );
        }
    };

    // The supervisor stores sha256(normalize_human_code(code)).
    let code_hash = sha256(normalize_human_code(&form.setup_code).as_bytes());
    let for_hash = passphrase.clone();
    let password_hash = web::block(move || hash_password(&for_hash))
        .await?
        .map_err(|e| WebError::internal("hashing the owner's passphrase", e))?;
    let (bundle, vault, recovery) = new_vault(passphrase).await?;
    let redeemed = {
        let mut conn = state.conn().await?;
        SetupCode::redeem(&mut conn, code_hash, name, password_hash, bundle.to_bytes()).await
    };
    match redeemed {
        Ok(Some(user)) => {
            info!(user = %user.name, %ip, "setup complete: owner account created");
            store_time_zone(&state, &time_zone).await;
            super::vault::now_unlocked(&state, user.id, vault, OffsetDateTime::now_utc()).await?;
            let cookie = session::start(&state, user.id).await?;
            show_recovery(&RecoveryPage::new(&recovery, "/dashboard"), Some(cookie))
        }
        Ok(None) => {
            state.throttle().record_address_failure(ip, Instant::now());
            warn!(%ip, "setup failed: wrong setup code");
            retry(StatusCode::FORBIDDEN, WebError::SetupCodeInvalid)
        }
        Err(CreateUserError::OwnerExists) => Err(WebError::Conflict(
            "This appliance already has an owner. Log in instead.".into(),
        )),
        Err(CreateUserError::NameTaken(name)) => Err(WebError::Conflict(format!(
            "A user named {name} already exists."
        ))),
        Err(CreateUserError::Db(e)) => Err(state.db_error(e).await),
    }
}

/// Stores the zone picked at setup. A failure is logged, not shown: the account exists
/// and its recovery key must be shown now; the zone can be set again in the settings.
async fn store_time_zone(state: &AppState, tz: &jiff::tz::TimeZone) {
    let name = crate::zone::name(tz);
    let stored = match cv_db::connect(&state.pool).await {
        Ok(mut conn) => cv_db::settings::set_time_zone(&mut conn, name).await,
        Err(e) => Err(e),
    };
    match stored {
        Ok(()) => {
            state.zone.set(tz.clone());
            info!(zone = name, "time zone set at setup");
        }
        Err(e) => warn!(zone = name, error = %e, "could not store the time zone chosen at setup"),
    }
}

async fn has_owner(state: &AppState) -> Result<bool, WebError> {
    let mut conn = state.conn().await?;
    match owner_exists(&mut conn).await {
        Ok(exists) => Ok(exists),
        Err(e) => Err(state.db_error(e).await),
    }
}

// ---------------------------------------------------------------------------------
// Login and logout

#[derive(Debug, Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage {
    pub csrf: String,
    pub name: String,
    /// Why the person is here (expired session, just logged out).
    pub notice: Option<&'static str>,
    pub error: Option<FormError>,
    /// Where to go after logging in (a local path), or empty.
    pub next: String,
}

/// `next` if it is a path on this appliance to go to after logging in: it must start
/// with one `/` (not `//host`, which browsers read as another site), hold no
/// backslash or control character, and not lead back to the login forms.
pub(crate) fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 2048
        && !next.contains('\\')
        && !next.chars().any(char::is_control)
        && !next.starts_with("/login")
        && !next.starts_with("/logout")
        && !next.starts_with("/setup");
    ok.then_some(next)
}

pub(crate) const NOTICE_EXPIRED: &str = "Your session expired; please log in again.";
pub(crate) const NOTICE_LOGGED_OUT: &str = "You are logged out.";
pub(crate) const NOTICE_DELETED: &str = "Your account and everything in your vault are deleted.";

#[derive(Deserialize)]
struct LoginQuery {
    expired: Option<String>,
    logged_out: Option<String>,
    deleted: Option<String>,
    next: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    passphrase: String,
    csrf: String,
    /// Where to go after logging in (checked by [`safe_next`]).
    #[serde(default)]
    next: String,
}

/// `GET /login` (`?expired=1`, `?logged_out=1` add a notice).
async fn login_page(req: HttpRequest) -> Result<HttpResponse, WebError> {
    // A malformed query string just means no notice.
    let query = web::Query::<LoginQuery>::from_query(req.query_string()).ok();
    let next = query
        .as_ref()
        .and_then(|q| q.next.as_deref())
        .and_then(safe_next)
        .unwrap_or_default()
        .to_owned();
    let notice = query.and_then(|q| {
        if q.expired.is_some() {
            Some(NOTICE_EXPIRED)
        } else if q.logged_out.is_some() {
            Some(NOTICE_LOGGED_OUT)
        } else if q.deleted.is_some() {
            Some(NOTICE_DELETED)
        } else {
            None
        }
    });
    show_login(&req, StatusCode::OK, String::new(), notice, None, next)
}

fn show_login(
    req: &HttpRequest,
    status: StatusCode,
    name: String,
    notice: Option<&'static str>,
    error: Option<&WebError>,
    next: String,
) -> Result<HttpResponse, WebError> {
    render_prelogin(req, status, |csrf| LoginPage {
        csrf,
        name,
        notice,
        error: error.map(FormError::of),
        next,
    })
}

/// `POST /login`.
///
/// A wrong passphrase and an unknown name give the same answer, after the same work
/// (an Argon2id verification against a dummy hash), so neither the page nor its timing
/// tells which names exist.
async fn login_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> Result<HttpResponse, WebError> {
    let LoginForm {
        name: typed,
        passphrase,
        csrf,
        next,
    } = form.into_inner();
    check_prelogin_csrf(&req, &csrf)?;
    let ip = peer_ip(&req);
    if let Err(retry_after) = state.throttle().check(&typed, ip, Instant::now()) {
        info!(%ip, "login throttled");
        return Err(WebError::Throttled { retry_after });
    }
    match verify(&state, &typed, passphrase).await? {
        Verified::Ok(user, _) if user.renew_required => {
            // Someone else chose this passphrase: it opens nothing until its holder sets
            // their own (and the vault gets new keys).
            state.throttle().record_success(&typed);
            info!(user = %user.name, %ip, "login refused until the account is renewed");
            Ok(see_other(&format!("/account/renew?name={}", user.name)).finish())
        }
        Verified::Ok(user, passphrase) => {
            state.throttle().record_success(&typed);
            let opened = super::vault::open_at_login(&state, &user, passphrase).await?;
            let cookie = session::start(&state, user.id).await?;
            info!(user = %user.name, %ip, "login ok; vault unlocked");
            state.audit(user.id, Event::Login, "web", Some(ip)).await;
            let home = safe_next(&next).unwrap_or(super::notes::home_for(&req));
            match opened {
                Opened::Unlocked => Ok(see_other(home).cookie(cookie).finish()),
                Opened::Created(recovery) => {
                    show_recovery(&RecoveryPage::new(&recovery, home), Some(cookie))
                }
            }
        }
        failed => {
            state.throttle().record_failure(&typed, ip, Instant::now());
            match failed {
                Verified::WrongPassphrase(user) => {
                    info!(user = %user.name, %ip, "login failed: wrong passphrase");
                    state
                        .audit(user.id, Event::LoginFailed, "web", Some(ip))
                        .await;
                }
                // What was typed is not logged: people sometimes type their passphrase
                // into the name field.
                _ => info!(%ip, "login failed: no such account"),
            }
            show_login(
                &req,
                StatusCode::UNAUTHORIZED,
                typed,
                None,
                Some(&WebError::LoginFailed),
                safe_next(&next).unwrap_or_default().to_owned(),
            )
        }
    }
}

/// What a login attempt turned out to be (only ever shown to people as one message).
pub(crate) enum Verified {
    /// The passphrase comes back: it unlocks the vault next.
    Ok(User, Passphrase),
    WrongPassphrase(User),
    NoSuchAccount,
}

/// Checks `passphrase` against the account named `typed`; `Err` only for failures no
/// person could cause.
pub(crate) async fn verify(
    state: &AppState,
    typed: &str,
    passphrase: String,
) -> Result<Verified, WebError> {
    let Ok(passphrase) = Passphrase::for_login(passphrase) else {
        // Longer than any valid passphrase: cannot match, and hashing it would only
        // burn CPU. Its length is no secret.
        return Ok(Verified::NoSuchAccount);
    };
    let found = match UserName::from_str(typed) {
        Ok(name) => {
            let mut conn = state.conn().await?;
            match User::find_for_login(&mut conn, &name).await {
                Ok(found) => found,
                Err(e) => return Err(state.db_error(e).await),
            }
        }
        Err(_) => None,
    };
    let (user, stored) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    // Argon2id takes ~0.1-0.3 s of CPU: off the async workers.
    let candidate = passphrase.clone();
    let verified = web::block(move || match stored.as_deref() {
        Some(hash) => verify_password(&candidate, hash),
        None => verify_password(&candidate, dummy_hash()),
    })
    .await?;
    match (verified, user) {
        (Ok(true), Some(user)) => Ok(Verified::Ok(user, passphrase)),
        (Ok(_), Some(user)) => Ok(Verified::WrongPassphrase(user)),
        (Ok(_), None) => Ok(Verified::NoSuchAccount),
        (Err(e), _) => Err(WebError::internal("verifying a passphrase", e)),
    }
}

#[derive(Deserialize)]
struct LogoutForm {
    csrf: String,
}

/// `POST /logout`: ends the session and forgets the cookie.
async fn logout(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<LogoutForm>,
) -> Result<HttpResponse, WebError> {
    user.check_csrf(&form.csrf)?;
    session::end(&state, &user).await?;
    // Logging out locks the vault (on every device: the keys are per account).
    state.keyring.lock(user.user.id);
    info!(user = %user.user.name, "logged out");
    Ok(see_other("/login?logged_out=1")
        .cookie(session::removal_cookie(session::SESSION_COOKIE))
        .finish())
}

/// "The passphrase must …" from an error message that starts in lower case.
fn capitalise(e: &impl std::fmt::Display) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(page: &impl Template) -> String {
        let html = page.render().unwrap();
        assert!(!html.contains("style="), "inline style in {html}");
        assert!(!html.contains("<script"), "script in {html}");
        assert!(html.contains(r#"name="viewport""#));
        html
    }

    #[test]
    fn only_local_paths_are_followed_after_login() {
        for good in ["/capture?text=hi%20there", "/items/x", "/search?q=a&tag=b"] {
            assert_eq!(safe_next(good), Some(good));
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "javascript:alert(1)",
            "/login?next=/x",
            "/logout",
            "",
            "capture",
            "/a\nb",
        ] {
            assert_eq!(safe_next(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_login_page_has_its_fields_and_messages() {
        let html = rendered(&LoginPage {
            csrf: "tok123".into(),
            name: "<alice>".into(),
            notice: Some(NOTICE_EXPIRED),
            error: Some(FormError::of(&WebError::LoginFailed)),
            next: "/capture?text=hi".into(),
        });
        assert!(
            html.contains(r#"name="next" value="/capture?text=hi""#),
            "{html}"
        );
        assert!(html.contains(r#"name="csrf" value="tok123""#), "{html}");
        for field in [
            r#"name="name""#,
            r#"name="passphrase""#,
            r#"action="/login""#,
        ] {
            assert!(html.contains(field), "{field}");
        }
        assert!(
            html.contains("&#60;alice&#62;") || html.contains("&lt;alice&gt;"),
            "{html}"
        );
        assert!(html.contains("Your session expired; please log in again"));
        assert!(html.contains("Wrong user name or passphrase"));
        assert!(html.contains("login_failed"));
    }

    #[test]
    fn the_setup_page_has_its_fields() {
        let html = rendered(&SetupPage {
            csrf: "tok".into(),
            typed: SetupTyped {
                setup_code: "7KQ2-M9XD-4HTA".into(),
                name: "olivia".into(),
                time_zone: "Europe/Berlin".into(),
            },
            error: Some(FormError::of(&WebError::SetupCodeInvalid)),
            restore: RestoreTyped::default(),
            restore_error: None,
        });
        // What was typed is kept, so one mistake does not cost every field.
        assert!(html.contains(r#"value="7KQ2-M9XD-4HTA""#), "{html}");
        assert!(html.contains(r#"value="olivia""#), "{html}");
        assert!(
            html.contains(r#"<option value="Europe/Berlin" selected>"#),
            "{html}"
        );
        assert!(html.contains(r#"<option value="Asia/Tokyo">"#), "{html}");
        for field in [
            r#"name="setup_code""#,
            r#"name="name""#,
            r#"name="passphrase""#,
            r#"name="passphrase_confirm""#,
            r#"name="csrf" value="tok""#,
            r#"action="/setup""#,
        ] {
            assert!(html.contains(field), "{field} missing");
        }
        assert!(html.contains("That setup code is not right"));
    }

    #[test]
    fn the_setup_page_offers_a_restore_and_keeps_what_was_typed_but_the_key() {
        let html = rendered(&SetupPage {
            csrf: "tok".into(),
            typed: SetupTyped::default(),
            error: None,
            restore: RestoreTyped {
                repository: "rest:http://nas.local:8000/vault/".into(),
                snapshot: "latest".into(),
            },
            restore_error: Some(FormError::of(&WebError::InvalidInput(
                "The backup key does not open the repository.".into(),
            ))),
        });
        for field in [
            r#"action="/setup/restore""#,
            r#"name="repository" type="text" value="rest:http://nas.local:8000/vault/""#,
            r#"name="key" type="password""#,
            r#"value="latest""#,
            "The backup key does not open the repository.",
        ] {
            assert!(html.contains(field), "{field} missing: {html}");
        }
        // The key field never carries a value back.
        assert!(!html.contains(r#"name="key" type="password" value"#));
    }

    #[test]
    fn messages_are_capitalised() {
        assert_eq!(
            capitalise(&cv_crypto::PasswordError::TooShort),
            "The passphrase must be at least 8 characters long."
        );
    }
}
