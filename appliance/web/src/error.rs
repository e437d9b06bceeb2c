//! Errors of the web service, and the one place that turns them into HTTP responses.
//!
//! # Error policy
//!
//! - **Every handler returns `Result<_, WebError>`.** A [`WebError`] is what the person
//!   sees: each variant has a fixed HTTP status, a stable machine-readable code
//!   ([`WebError::code`], e.g. `csrf_invalid`; searchable in logs, tests and support
//!   requests; never renamed) and a message written for people.
//! - **Bad input is never a 500.** Malformed forms, missing fields, oversized bodies,
//!   forged tokens and unknown routes each have their own 4xx variant. Nothing in this
//!   crate panics on input.
//! - **Library errors are mapped, not wrapped.** `cv_db::DbError::Unavailable` becomes
//!   [`WebError::DatabaseUnavailable`] (503, retried automatically by the page); any
//!   other database, crypto or I/O error becomes [`WebError::Internal`] through
//!   [`WebError::internal`], which logs the cause with its context *at the point where
//!   it happened* and shows the person only that something went wrong. Details of
//!   internal errors never reach a response.
//! - **Forms that can be corrected are re-shown by their handler** (wrong passphrase,
//!   duplicate name, passphrase rules) with the same status a `WebError` would carry;
//!   everything else is rendered here as an error page in the base layout.
//! - **Content negotiation:** requests with `Accept: application/json` (and `/healthz`)
//!   get `{"error": code, "message": ...}` instead of the page; see
//!   [`crate::app::negotiate_errors`].
//! - **Secrets are never part of an error** (tokens, passphrases, setup codes).

use std::time::Duration;

use actix_web::error::{PayloadError, UrlencodedError};
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use askama::Template;

use crate::throttle::describe_wait;

/// How often the 503 page reloads itself (and the `Retry-After` it sends), in seconds.
pub const UNAVAILABLE_RETRY_SECS: u64 = 5;

/// The largest form accepted, in bytes: a few short fields, or a note of up to 16 KiB
/// (`cv_vault::MAX_TEXT_BYTES`) with room for URL-encoding.
pub const FORM_LIMIT: usize = 64 * 1024;

/// Everything a request can fail with; see the policy above.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "This form expired or did not come from this appliance. Go back, reload the page and try again."
    )]
    CsrfInvalid,
    #[error("Wrong user name or passphrase")]
    LoginFailed,
    #[error("Wrong passphrase: the vault stays locked.")]
    UnlockFailed,
    #[error(
        "Too many failed attempts. For your safety, try again in {}.",
        describe_wait(*retry_after)
    )]
    Throttled { retry_after: Duration },
    #[error(
        "That setup code is not right. The current code is printed in the appliance's log/console (`journalctl -u contextvault` on the appliance, the terminal running `contextvault dev` otherwise). Letter case and dashes do not matter."
    )]
    SetupCodeInvalid,
    #[error("The form is larger than 64 KiB")]
    FormTooLarge,
    #[error("The form could not be read: {0}")]
    FormInvalid(String),
    /// No session. `redirect`: answer a page load with a redirect to the login page
    /// (GET/HEAD) rather than a 401 page (POST: the form data cannot follow).
    #[error("Please log in first.")]
    LoginRequired { redirect: bool },
    #[error("Your session expired; please log in again.")]
    SessionExpired { redirect: bool },
    #[error("{0}")]
    Forbidden(String),
    /// The request came from a network outside `network.allowed_sources` (and not over
    /// the VPN); refused before any route runs.
    #[error(
        "This Context Vault answers only its home network and its own VPN, and {source_ip} is in neither. Connect through the appliance's WireGuard VPN, or ask its admin to add your network to `network.allowed_sources`."
    )]
    SourceRefused { source_ip: std::net::IpAddr },
    #[error("There is nothing at this address.")]
    NotFound,
    /// The account's passphrase was chosen by someone else (an admin at the command
    /// line): its holder must choose their own, and get a new recovery key, first.
    #[error(
        "This account's passphrase was set by someone else. Choose your own passphrase to continue: that also gives your vault a new recovery key, so that nobody else can open it."
    )]
    RenewRequired,
    /// An invitation link that is unknown, used, revoked or expired.
    #[error(
        "This invitation link does not work: it was already used, withdrawn, or it expired. Ask whoever invited you for a new one."
    )]
    InvitationInvalid,
    #[error("This request needs a valid API token: Authorization: Bearer cvt_…")]
    TokenInvalid,
    #[error("This API token was revoked.")]
    TokenRevoked,
    #[error("The request body is larger than {limit_kib} KiB.")]
    BodyTooLarge { limit_kib: usize },
    /// A note's text over the API's limit (a body within its own limit).
    #[error("The text is longer than {limit_chars} characters.")]
    TextTooLong { limit_chars: usize },
    /// The request body did not arrive in time (see `crate::app::body_deadline`).
    #[error("The request body arrived too slowly; the connection is closed. Please try again.")]
    RequestTimeout,
    /// The path exists for other methods; `allow` lists them for the `Allow` header
    /// (RFC 9110 §15.5.6), when known.
    #[error("This address does not accept that kind of request.")]
    MethodNotAllowed { allow: Option<&'static str> },
    #[error("{0}")]
    Conflict(String),
    #[error(
        "Your vault is locked, so its notes cannot be read or changed. Unlock it with your passphrase on the dashboard. (Captures are still accepted while it is locked.)"
    )]
    VaultLocked,
    #[error(
        "This item failed its integrity check: it was changed outside the appliance, so it is not shown."
    )]
    ItemTampered,
    /// PostgreSQL is starting, migrating or restarting. `postgres` is its state as the
    /// supervisor reports it, if the supervisor could be asked.
    #[error("Context Vault is starting or recovering")]
    DatabaseUnavailable { postgres: Option<&'static str> },
    #[error("Something went wrong on the appliance. It has been logged; please try again.")]
    Internal,
    #[error("{0}")]
    BadRequest(String),
    /// A well-formed form whose values break a rule (name shape, passphrase length,
    /// passphrases that differ); the form is re-shown with this message.
    #[error("{0}")]
    InvalidInput(String),
}

impl WebError {
    /// Logs `error` with `context` (what was being done) and returns the opaque 500.
    pub fn internal(context: &str, error: impl std::fmt::Display) -> WebError {
        tracing::error!(context, error = %error, "internal error");
        WebError::Internal
    }

    /// The stable code of this error: part of the interface, never renamed.
    pub fn code(&self) -> &'static str {
        match self {
            WebError::CsrfInvalid => "csrf_invalid",
            WebError::LoginFailed => "login_failed",
            WebError::UnlockFailed => "unlock_failed",
            WebError::Throttled { .. } => "throttled",
            WebError::SetupCodeInvalid => "setup_code_invalid",
            WebError::FormTooLarge => "form_too_large",
            WebError::FormInvalid(_) => "form_invalid",
            WebError::LoginRequired { .. } => "login_required",
            WebError::SessionExpired { .. } => "session_expired",
            WebError::Forbidden(_) => "forbidden",
            WebError::SourceRefused { .. } => "source_refused",
            WebError::NotFound => "not_found",
            WebError::RenewRequired => "renew_required",
            WebError::InvitationInvalid => "invitation_invalid",
            WebError::TokenInvalid => "token_invalid",
            WebError::TokenRevoked => "token_revoked",
            WebError::BodyTooLarge { .. } => "body_too_large",
            WebError::TextTooLong { .. } => "text_too_long",
            WebError::RequestTimeout => "request_timeout",
            WebError::MethodNotAllowed { .. } => "method_not_allowed",
            WebError::Conflict(_) => "conflict",
            WebError::VaultLocked => "vault_locked",
            WebError::ItemTampered => "item_tampered",
            WebError::DatabaseUnavailable { .. } => "database_unavailable",
            WebError::Internal => "internal",
            WebError::BadRequest(_) => "bad_request",
            WebError::InvalidInput(_) => "invalid_input",
        }
    }

    /// A short title for the page.
    fn title(&self) -> &'static str {
        match self {
            WebError::CsrfInvalid => "Form expired",
            WebError::LoginFailed => "Login failed",
            WebError::UnlockFailed => "Vault still locked",
            WebError::Throttled { .. } => "Too many attempts",
            WebError::SetupCodeInvalid => "Wrong setup code",
            WebError::FormTooLarge => "Form too large",
            WebError::FormInvalid(_) | WebError::BadRequest(_) => "Bad request",
            WebError::InvalidInput(_) => "Please correct the form",
            WebError::LoginRequired { .. } => "Login required",
            WebError::SessionExpired { .. } => "Session expired",
            WebError::Forbidden(_) => "Not allowed",
            WebError::SourceRefused { .. } => "Not reachable from here",
            WebError::NotFound => "Not found",
            WebError::RenewRequired => "Choose your own passphrase",
            WebError::InvitationInvalid => "Invitation not valid",
            WebError::TokenInvalid | WebError::TokenRevoked => "Token refused",
            WebError::BodyTooLarge { .. } => "Request too large",
            WebError::TextTooLong { .. } => "Text too long",
            WebError::RequestTimeout => "Request too slow",
            WebError::MethodNotAllowed { .. } => "Method not allowed",
            WebError::Conflict(_) => "Conflict",
            WebError::VaultLocked => "Vault locked",
            WebError::ItemTampered => "Integrity check failed",
            WebError::DatabaseUnavailable { .. } => "Starting or recovering",
            WebError::Internal => "Something went wrong",
        }
    }

    /// Where a page load is sent instead of seeing this error.
    fn redirect_to(&self) -> Option<&'static str> {
        match self {
            WebError::LoginRequired { redirect: true } => Some("/login"),
            WebError::SessionExpired { redirect: true } => Some("/login?expired=1"),
            _ => None,
        }
    }

    /// The error as `{"error": code, "message": ...}`, with the same status and headers.
    pub fn json_response(&self) -> HttpResponse {
        let mut builder = self.response_builder();
        builder.json(serde_json::json!({
            "error": self.code(),
            "message": self.to_string(),
        }))
    }

    /// Status and headers common to both renderings.
    fn response_builder(&self) -> actix_web::HttpResponseBuilder {
        let mut builder = HttpResponse::build(self.status_code());
        builder.insert_header((header::CACHE_CONTROL, "no-store"));
        match self {
            WebError::Throttled { retry_after } => {
                // Round up: retrying a second early would only fail again.
                let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                builder.insert_header((header::RETRY_AFTER, secs.max(1)));
            }
            WebError::DatabaseUnavailable { .. } => {
                builder.insert_header((header::RETRY_AFTER, UNAVAILABLE_RETRY_SECS));
            }
            WebError::MethodNotAllowed { allow: Some(allow) } => {
                builder.insert_header((header::ALLOW, *allow));
            }
            WebError::RequestTimeout => {
                // The rest of the body may still be trickling in: do not wait for it.
                builder.force_close();
            }
            WebError::SessionExpired { .. } => {
                builder.cookie(crate::session::removal_cookie(
                    crate::session::SESSION_COOKIE,
                ));
            }
            _ => {}
        }
        if let Some(to) = self.redirect_to() {
            builder.insert_header((header::LOCATION, to));
        }
        builder
    }

    fn page(&self) -> ErrorPage {
        let detail = match self {
            WebError::DatabaseUnavailable { postgres } => Some(match postgres {
                // "up" but unreachable (a restart the supervisor has not noticed yet)
                // reads better as the generic message.
                Some(state) if *state != "up" => format!(
                    "The database (PostgreSQL) is {state}. This page reloads itself every {UNAVAILABLE_RETRY_SECS} seconds."
                ),
                _ => format!(
                    "The database is not answering yet. This page reloads itself every {UNAVAILABLE_RETRY_SECS} seconds."
                ),
            }),
            _ => None,
        };
        let link = match self {
            WebError::LoginRequired { .. }
            | WebError::SessionExpired { .. }
            | WebError::CsrfInvalid => Some(("/login", "Go to the login page")),
            WebError::DatabaseUnavailable { .. } | WebError::SourceRefused { .. } => None,
            WebError::VaultLocked => Some(("/dashboard", "Unlock it on the dashboard")),
            _ => Some(("/", "Back to the start page")),
        };
        ErrorPage {
            title: self.title(),
            message: self.to_string(),
            detail,
            code: self.code(),
            status: self.status_code().as_u16(),
            refresh: matches!(self, WebError::DatabaseUnavailable { .. }),
            link,
        }
    }
}

impl ResponseError for WebError {
    fn status_code(&self) -> StatusCode {
        match self {
            WebError::CsrfInvalid
            | WebError::SetupCodeInvalid
            | WebError::Forbidden(_)
            | WebError::SourceRefused { .. }
            | WebError::RenewRequired => StatusCode::FORBIDDEN,
            WebError::LoginFailed | WebError::UnlockFailed => StatusCode::UNAUTHORIZED,
            WebError::LoginRequired { redirect } | WebError::SessionExpired { redirect } => {
                if *redirect {
                    StatusCode::SEE_OTHER
                } else {
                    StatusCode::UNAUTHORIZED
                }
            }
            WebError::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            WebError::FormTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::FormInvalid(_) | WebError::BadRequest(_) | WebError::InvalidInput(_) => {
                StatusCode::BAD_REQUEST
            }
            WebError::NotFound | WebError::InvitationInvalid => StatusCode::NOT_FOUND,
            WebError::TokenInvalid | WebError::TokenRevoked => StatusCode::UNAUTHORIZED,
            WebError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            // Not 413: the body is within its limit, and well-formed; one value breaks a
            // rule (RFC 9110 §15.5.21).
            WebError::TextTooLong { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            WebError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::VaultLocked => StatusCode::LOCKED,
            WebError::ItemTampered => StatusCode::CONFLICT,
            WebError::DatabaseUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut builder = self.response_builder();
        match self.page().render() {
            Ok(html) => builder
                .insert_header((
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ))
                .body(html),
            Err(e) => {
                tracing::error!(error = %e, "cannot render the error page");
                builder
                    .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
                    .body(format!("{} ({})", self, self.code()))
            }
        }
    }
}

impl From<cv_db::DbError> for WebError {
    /// Without access to the supervisor's status: prefer `AppState::db_error`, which
    /// also names PostgreSQL's state.
    fn from(e: cv_db::DbError) -> Self {
        match e {
            cv_db::DbError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                WebError::DatabaseUnavailable { postgres: None }
            }
            other => WebError::internal("database", other),
        }
    }
}

impl From<cv_vault::VaultError> for WebError {
    /// The vault's refusals, worded for people; failures of the machinery are opaque.
    fn from(e: cv_vault::VaultError) -> Self {
        use cv_vault::VaultError as V;
        match e {
            V::Db(e) => WebError::from(e),
            V::Empty => WebError::InvalidInput("Please write something first.".into()),
            V::TooLong => WebError::InvalidInput(format!(
                "A note can be at most {} KiB.",
                cv_vault::MAX_TEXT_BYTES / 1024
            )),
            V::InvalidTags(why) => WebError::InvalidInput(format!("Tags: {why}.")),
            V::NotFound => WebError::NotFound,
            V::Stale { current } => WebError::Conflict(format!(
                "This note was changed elsewhere since you opened it (it is at version {current} now). Your text is kept below: compare, then save again."
            )),
            V::Tampered => WebError::Conflict(
                "This note failed its integrity check (it was changed outside the appliance), so it cannot be edited.".into(),
            ),
            V::Import(why) => WebError::InvalidInput(why),
            e @ V::Crypto { .. } => WebError::internal("encrypting", e),
        }
    }
}

impl From<actix_web::error::BlockingError> for WebError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        WebError::internal("blocking task", e)
    }
}

/// The error page: base layout, the message, the code in small print.
#[derive(Debug, Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage {
    pub title: &'static str,
    pub message: String,
    pub detail: Option<String>,
    pub code: &'static str,
    pub status: u16,
    /// Reload by itself (`<meta http-equiv="refresh">`, no script needed).
    pub refresh: bool,
    pub link: Option<(&'static str, &'static str)>,
}

/// `FormConfig::error_handler`: turns form extraction failures into [`WebError`]s.
pub(crate) fn form_error(err: UrlencodedError, _req: &HttpRequest) -> actix_web::Error {
    let web = match err {
        UrlencodedError::Overflow { .. } | UrlencodedError::Payload(PayloadError::Overflow) => {
            WebError::FormTooLarge
        }
        UrlencodedError::ContentType => {
            WebError::FormInvalid("it was not sent as application/x-www-form-urlencoded".into())
        }
        UrlencodedError::Encoding => WebError::FormInvalid("it is not valid UTF-8".into()),
        UrlencodedError::Parse(e) => WebError::FormInvalid(e.to_string()),
        other => WebError::FormInvalid(format!("it was not received completely ({other})")),
    };
    web.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody as _;

    fn body(resp: HttpResponse) -> String {
        let bytes = resp.into_body().try_into_bytes().unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn every_error_has_its_status_and_code() {
        let cases = [
            (WebError::CsrfInvalid, 403, "csrf_invalid"),
            (WebError::LoginFailed, 401, "login_failed"),
            (WebError::UnlockFailed, 401, "unlock_failed"),
            (
                WebError::Throttled {
                    retry_after: Duration::from_secs(90),
                },
                429,
                "throttled",
            ),
            (WebError::SetupCodeInvalid, 403, "setup_code_invalid"),
            (WebError::FormTooLarge, 413, "form_too_large"),
            (WebError::VaultLocked, 423, "vault_locked"),
            (WebError::ItemTampered, 409, "item_tampered"),
            (WebError::FormInvalid("x".into()), 400, "form_invalid"),
            (
                WebError::LoginRequired { redirect: true },
                303,
                "login_required",
            ),
            (
                WebError::LoginRequired { redirect: false },
                401,
                "login_required",
            ),
            (
                WebError::SessionExpired { redirect: true },
                303,
                "session_expired",
            ),
            (
                WebError::SessionExpired { redirect: false },
                401,
                "session_expired",
            ),
            (WebError::Forbidden("no".into()), 403, "forbidden"),
            (WebError::NotFound, 404, "not_found"),
            (WebError::RenewRequired, 403, "renew_required"),
            (WebError::InvitationInvalid, 404, "invitation_invalid"),
            (WebError::TokenInvalid, 401, "token_invalid"),
            (WebError::TokenRevoked, 401, "token_revoked"),
            (
                WebError::BodyTooLarge { limit_kib: 64 },
                413,
                "body_too_large",
            ),
            (
                WebError::MethodNotAllowed { allow: Some("GET") },
                405,
                "method_not_allowed",
            ),
            (
                WebError::TextTooLong { limit_chars: 4096 },
                422,
                "text_too_long",
            ),
            (WebError::RequestTimeout, 408, "request_timeout"),
            (WebError::Conflict("dup".into()), 409, "conflict"),
            (
                WebError::DatabaseUnavailable { postgres: None },
                503,
                "database_unavailable",
            ),
            (WebError::Internal, 500, "internal"),
            (WebError::BadRequest("host".into()), 400, "bad_request"),
            (WebError::InvalidInput("short".into()), 400, "invalid_input"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status_code().as_u16(), status, "{code}");
            assert_eq!(err.code(), code);
            let resp = err.error_response();
            assert_eq!(resp.status().as_u16(), status);
            let html = body(resp);
            assert!(html.contains(code), "{code}: {html}");
            assert!(!html.contains("style="), "{code}");
            assert!(!html.contains("<script"), "{code}");
        }
    }

    #[test]
    fn redirects_point_at_the_login_page() {
        let resp = WebError::SessionExpired { redirect: true }.error_response();
        assert_eq!(
            resp.headers().get(header::LOCATION).unwrap(),
            "/login?expired=1"
        );
        let cookie = resp
            .headers()
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cookie.starts_with("__Host-cv_session=;"), "{cookie}");
        let resp = WebError::LoginRequired { redirect: true }.error_response();
        assert_eq!(resp.headers().get(header::LOCATION).unwrap(), "/login");
    }

    #[test]
    fn unavailable_pages_refresh_themselves_and_name_the_state() {
        let resp = WebError::DatabaseUnavailable {
            postgres: Some("migrating"),
        }
        .error_response();
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "5");
        let html = body(resp);
        assert!(
            html.contains(r#"<meta http-equiv="refresh" content="5">"#),
            "{html}"
        );
        assert!(html.contains("starting or recovering"));
        assert!(html.contains("PostgreSQL) is migrating"));
    }

    #[test]
    fn throttled_responses_say_when_to_retry() {
        let err = WebError::Throttled {
            retry_after: Duration::from_millis(61_500),
        };
        let resp = err.error_response();
        assert_eq!(resp.headers().get(header::RETRY_AFTER).unwrap(), "62");
        assert!(body(resp).contains("try again in 2 min"));
    }

    #[test]
    fn json_errors_carry_code_and_message() {
        let resp = WebError::CsrfInvalid.json_response();
        assert_eq!(resp.status().as_u16(), 403);
        let value: serde_json::Value = serde_json::from_str(&body(resp)).unwrap();
        assert_eq!(value["error"], "csrf_invalid");
        assert!(value["message"].as_str().unwrap().contains("form expired"));
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let err = WebError::internal("testing", "secret detail: password=hunter2");
        let html = body(err.error_response());
        assert!(!html.contains("hunter2"));
        assert!(html.contains("Something went wrong"));
    }
}
