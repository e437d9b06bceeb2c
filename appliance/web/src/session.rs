//! Sessions, the [`CurrentUser`] extractor, and CSRF protection.
//!
//! # Sessions
//!
//! The cookie [`SESSION_COOKIE`] carries a random [`SecretToken`]; the database keeps
//! only its SHA-256 digest, so a database dump holds no usable session. The `__Host-`
//! prefix makes browsers insist on `Secure`, `Path=/` and no `Domain`, so no other host
//! (a sibling name on the LAN) can set or shadow it.
//!
//! A session ends at `min(last_seen + idle, created + absolute)` (both timeouts from the
//! handoff). `last_seen` is refreshed at most once per [`TOUCH_INTERVAL`], not on every
//! request: a loaded dashboard must not turn every page view into a write.
//!
//! # CSRF
//!
//! `SameSite=Strict` already keeps the session cookie off cross-site requests; on top:
//!
//! - forms of a logged-in person carry the session's `csrf_token` in the hidden field
//!   `csrf`, compared in constant time ([`CurrentUser::check_csrf`]);
//! - forms before login (setup, login) use a double-submit cookie, [`CSRF_COOKIE`],
//!   whose value must equal the hidden field ([`check_prelogin_csrf`]);
//! - POSTs whose `Origin` header names another site are refused outright
//!   ([`origin_allowed`], applied to every request by the app).

use std::future::Future;
use std::pin::Pin;

use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::Payload;
use actix_web::http::Method;
use actix_web::{FromRequest, HttpRequest, web};
use cv_crypto::{SecretToken, constant_time_eq};
use cv_db::{SessionRecord, User, UserId};
use time::OffsetDateTime;

use crate::error::WebError;
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "__Host-cv_session";
/// The pre-login double-submit CSRF cookie's name.
pub const CSRF_COOKIE: &str = "__Host-cv_csrf";
/// The hidden form field holding the CSRF token in every form.
pub const CSRF_FIELD: &str = "csrf";
/// `last_seen` is written at most this often per session.
pub const TOUCH_INTERVAL: time::Duration = time::Duration::minutes(1);

/// The session lifetimes from the handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    /// Ends after this long without a request.
    pub idle: time::Duration,
    /// Ends this long after login, however active.
    pub absolute: time::Duration,
}

impl SessionPolicy {
    pub fn from_secs(idle: u64, absolute: u64) -> SessionPolicy {
        let secs = |s: u64| time::Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 2));
        SessionPolicy {
            idle: secs(idle),
            absolute: secs(absolute),
        }
    }

    /// When a session created at `created` and last used at `last_seen` ends.
    pub fn expires_at(&self, created: OffsetDateTime, last_seen: OffsetDateTime) -> OffsetDateTime {
        (last_seen + self.idle).min(created + self.absolute)
    }

    /// Whether a request at `now` should write the new `last_seen`.
    pub fn needs_touch(&self, last_seen: OffsetDateTime, now: OffsetDateTime) -> bool {
        now - last_seen >= TOUCH_INTERVAL
    }
}

/// The signed-in person, from a valid session. Extracting it answers GET requests with
/// no session with a redirect to `/login` (`/login?expired=1` for an expired one) and
/// other methods with a 401 page.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub user: User,
    /// The session's CSRF token, for the hidden `csrf` field of its forms.
    pub csrf_token: String,
    token_digest: [u8; 32],
}

impl CurrentUser {
    /// Checks a form's `csrf` field against the session's token.
    pub fn check_csrf(&self, given: &str) -> Result<(), WebError> {
        if csrf_matches(&self.csrf_token, given) {
            Ok(())
        } else {
            tracing::info!(user = %self.user.name, "refused a form with a wrong CSRF token");
            Err(WebError::CsrfInvalid)
        }
    }

    pub(crate) fn token_digest(&self) -> &[u8; 32] {
        &self.token_digest
    }

    #[cfg(test)]
    pub(crate) fn for_tests(user: User, csrf_token: String) -> CurrentUser {
        CurrentUser {
            user,
            csrf_token,
            token_digest: [0; 32],
        }
    }
}

impl FromRequest for CurrentUser {
    type Error = WebError;
    type Future = Pin<Box<dyn Future<Output = Result<CurrentUser, WebError>>>>;

    fn from_request(req: &HttpRequest, _payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let redirect = matches!(*req.method(), Method::GET | Method::HEAD);
            let state = req
                .app_data::<web::Data<AppState>>()
                .ok_or_else(|| WebError::internal("session", "AppState is not registered"))?;
            match load(&req, state).await? {
                Lookup::Valid(user) => Ok(user),
                Lookup::None => Err(WebError::LoginRequired { redirect }),
                Lookup::Expired => Err(WebError::SessionExpired { redirect }),
            }
        })
    }
}

/// What the session cookie of a request leads to.
pub(crate) enum Lookup {
    Valid(CurrentUser),
    None,
    Expired,
}

/// Looks up (and, when due, refreshes) the request's session. An expired session is
/// deleted here.
pub(crate) async fn load(req: &HttpRequest, state: &AppState) -> Result<Lookup, WebError> {
    let Some(cookie) = req.cookie(SESSION_COOKIE) else {
        return Ok(Lookup::None);
    };
    lookup(state, &SecretToken::from_client(cookie.value())).await
}

/// Looks up the session a token (from the cookie, or an API session token) names.
pub(crate) async fn lookup(state: &AppState, token: &SecretToken) -> Result<Lookup, WebError> {
    let digest = token.digest();
    let mut conn = state.conn().await?;
    let record = match SessionRecord::find(&mut conn, &digest).await {
        Ok(Some(record)) => record,
        Ok(None) => return Ok(Lookup::None),
        Err(e) => return Err(state.db_error(e).await),
    };
    let now = OffsetDateTime::now_utc();
    if record.expires_at <= now {
        if let Err(e) = SessionRecord::delete(&mut conn, &digest).await {
            return Err(state.db_error(e).await);
        }
        tracing::info!(user = %record.user.name, "session expired");
        return Ok(Lookup::Expired);
    }
    if state.sessions.needs_touch(record.last_seen_at, now) {
        let expires = state.sessions.expires_at(record.created_at, now);
        if let Err(e) = SessionRecord::touch(&mut conn, &digest, now, expires).await {
            return Err(state.db_error(e).await);
        }
    }
    // Any signed-in request is use of the vault: it keeps an unlocked vault from the
    // idle lock (and locks one that sat idle too long).
    let _ = state.keyring.get(record.user.id, now);
    Ok(Lookup::Valid(CurrentUser {
        user: record.user,
        csrf_token: record.csrf_token,
        token_digest: digest,
    }))
}

/// Creates a session for `user` and returns the cookie that carries it.
pub(crate) async fn start(state: &AppState, user: UserId) -> Result<Cookie<'static>, WebError> {
    let token = create(state, user).await?;
    Ok(session_cookie(&token, state.sessions.absolute))
}

/// Creates a session for `user`; returns its token (for the cookie, or the API).
pub(crate) async fn create(state: &AppState, user: UserId) -> Result<SecretToken, WebError> {
    let token = SecretToken::generate();
    let csrf = SecretToken::generate();
    let now = OffsetDateTime::now_utc();
    let expires = state.sessions.expires_at(now, now);
    let mut conn = state.conn().await?;
    if let Err(e) = SessionRecord::create(
        &mut conn,
        &token.digest(),
        user,
        csrf.expose(),
        now,
        expires,
    )
    .await
    {
        return Err(state.db_error(e).await);
    }
    Ok(token)
}

/// Ends the session of `user` (logout).
pub(crate) async fn end(state: &AppState, user: &CurrentUser) -> Result<(), WebError> {
    let mut conn = state.conn().await?;
    match SessionRecord::delete(&mut conn, user.token_digest()).await {
        Ok(()) => Ok(()),
        Err(e) => Err(state.db_error(e).await),
    }
}

/// `__Host-cv_session=<token>; Secure; HttpOnly; SameSite=Strict; Path=/; Max-Age=…`.
/// It lives as long as the absolute timeout so that the person learns their session
/// expired rather than silently finding themselves logged out.
pub(crate) fn session_cookie(token: &SecretToken, max_age: time::Duration) -> Cookie<'static> {
    hardened(Cookie::build(SESSION_COOKIE, token.expose().to_owned()))
        .max_age(max_age)
        .finish()
}

/// A cookie that makes the browser forget `name`.
pub(crate) fn removal_cookie(name: &'static str) -> Cookie<'static> {
    let mut cookie = hardened(Cookie::build(name, "")).finish();
    cookie.make_removal();
    cookie
}

fn hardened(
    builder: actix_web::cookie::CookieBuilder<'static>,
) -> actix_web::cookie::CookieBuilder<'static> {
    builder
        .secure(true)
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
}

/// Compares a submitted CSRF token with the expected one, in constant time. An empty
/// expected token never matches.
pub fn csrf_matches(expected: &str, given: &str) -> bool {
    !expected.is_empty() && constant_time_eq(expected.as_bytes(), given.as_bytes())
}

/// The pre-login CSRF token for a form being rendered: the one already in the
/// request's cookie if it looks like ours (so two open tabs both keep working), else a
/// new one. The cookie must be (re)set on the response.
pub(crate) fn prelogin_token(req: &HttpRequest) -> (String, Cookie<'static>) {
    let token = req
        .cookie(CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .filter(|v| looks_like_token(v))
        .unwrap_or_else(|| SecretToken::generate().expose().to_owned());
    let cookie = hardened(Cookie::build(CSRF_COOKIE, token.clone())).finish();
    (token, cookie)
}

/// Checks a pre-login form's `csrf` field against the double-submit cookie.
pub(crate) fn check_prelogin_csrf(req: &HttpRequest, given: &str) -> Result<(), WebError> {
    let cookie = req.cookie(CSRF_COOKIE);
    let expected = cookie.as_ref().map(|c| c.value()).unwrap_or("");
    if looks_like_token(expected) && csrf_matches(expected, given) {
        Ok(())
    } else {
        Err(WebError::CsrfInvalid)
    }
}

/// 43 base64url characters: the shape of a [`SecretToken`].
fn looks_like_token(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a POST's `Origin` header (if any) is this site. Browsers send it on every
/// cross-origin POST, so a form posted from another site is refused here.
///
/// `Origin: null` is treated like no header: under `Referrer-Policy: no-referrer`
/// (which every page sets) the Fetch standard ("append a request `Origin` header")
/// makes browsers send `null` even on this site's own form POSTs. Those requests still
/// need the CSRF token, and the session cookie is `SameSite=Strict`.
///
/// `host` is the request's `Host` (or HTTP/2 `:authority`).
pub fn origin_allowed(origin: Option<&str>, host: &str) -> bool {
    let Some(origin) = origin.filter(|o| *o != "null") else {
        return true;
    };
    let Some(origin_host) = origin.strip_prefix("https://") else {
        return false;
    };
    without_default_port(origin_host).eq_ignore_ascii_case(without_default_port(host))
}

fn without_default_port(host: &str) -> &str {
    host.strip_suffix(":443").unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn expiry_is_the_earlier_of_idle_and_absolute() {
        let policy = SessionPolicy::from_secs(30 * 60, 12 * 3600);
        let created = datetime!(2026-01-01 08:00 UTC);
        assert_eq!(
            policy.expires_at(created, created),
            datetime!(2026-01-01 08:30 UTC)
        );
        assert_eq!(
            policy.expires_at(created, datetime!(2026-01-01 19:50 UTC)),
            datetime!(2026-01-01 20:00 UTC)
        );
    }

    #[test]
    fn sessions_are_touched_at_most_once_a_minute() {
        let policy = SessionPolicy::from_secs(1800, 3600);
        let seen = datetime!(2026-01-01 08:00 UTC);
        assert!(!policy.needs_touch(seen, seen + time::Duration::seconds(59)));
        assert!(policy.needs_touch(seen, seen + time::Duration::seconds(60)));
    }

    #[test]
    fn absurd_timeouts_do_not_overflow() {
        let policy = SessionPolicy::from_secs(u64::MAX, u64::MAX);
        assert!(policy.idle.is_positive());
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        assert!(csrf_matches("abc", "abc"));
        assert!(!csrf_matches("abc", "abd"));
        assert!(!csrf_matches("abc", ""));
        assert!(!csrf_matches("", ""));
    }

    #[test]
    fn cookies_are_hardened() {
        let cookie = session_cookie(&SecretToken::generate(), time::Duration::hours(1));
        let text = cookie.to_string();
        for attr in [
            "Secure",
            "HttpOnly",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(text.contains(attr), "{attr} missing in {text}");
        }
        assert!(text.starts_with("__Host-cv_session="));
        let removal = removal_cookie(CSRF_COOKIE).to_string();
        assert!(removal.contains("Max-Age=0"), "{removal}");
    }

    #[test]
    fn prelogin_tokens_are_reused_only_when_well_formed() {
        let token = SecretToken::generate().expose().to_owned();
        let req = actix_web::test::TestRequest::default()
            .cookie(Cookie::new(CSRF_COOKIE, token.clone()))
            .to_http_request();
        let (reused, cookie) = prelogin_token(&req);
        assert_eq!(reused, token);
        assert_eq!(cookie.value(), token);
        assert!(check_prelogin_csrf(&req, &token).is_ok());
        assert!(check_prelogin_csrf(&req, "forged").is_err());

        let req = actix_web::test::TestRequest::default()
            .cookie(Cookie::new(CSRF_COOKIE, "short"))
            .to_http_request();
        let (fresh, _) = prelogin_token(&req);
        assert_ne!(fresh, "short");
        assert!(check_prelogin_csrf(&req, "short").is_err());

        let req = actix_web::test::TestRequest::default().to_http_request();
        assert!(check_prelogin_csrf(&req, "").is_err());
    }

    #[test]
    fn origins_must_be_this_host() {
        assert!(origin_allowed(None, "nas.local:8443"));
        assert!(origin_allowed(
            Some("https://nas.local:8443"),
            "nas.local:8443"
        ));
        assert!(origin_allowed(Some("https://NAS.local"), "nas.local:443"));
        assert!(!origin_allowed(
            Some("http://nas.local:8443"),
            "nas.local:8443"
        ));
        assert!(!origin_allowed(Some("https://evil.example"), "nas.local"));
        // Sent by browsers on same-origin POSTs under Referrer-Policy: no-referrer.
        assert!(origin_allowed(Some("null"), "nas.local"));
        assert!(!origin_allowed(Some(""), "nas.local"));
        assert!(!origin_allowed(
            Some("https://nas.local.evil.example"),
            "nas.local"
        ));
    }
}
