//! The HTTPS app: routes, extractor limits, security headers, error negotiation.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpMessage as _, web};
use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::error::{FORM_LIMIT, WebError, form_error};
use crate::session::origin_allowed;
use crate::state::AppState;

/// The Content-Security-Policy of every response: only this origin's stylesheet, images
/// and web app manifest, no scripts at all, forms only to this origin, never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; manifest-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// One year of HSTS: browsers then refuse plain HTTP to this host. No
/// `includeSubDomains`: other devices on the LAN may share the domain.
pub const STRICT_TRANSPORT_SECURITY: &str = "max-age=31536000";

/// The headers every response of both apps carries. `DefaultHeaders` only adds a
/// header a response does not set itself, so `/static` keeps its own `Cache-Control`.
pub(crate) fn security_headers(headers: DefaultHeaders) -> DefaultHeaders {
    headers
        .add((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .add((header::X_FRAME_OPTIONS, "DENY"))
        .add((header::REFERRER_POLICY, "no-referrer"))
        .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        // Pages show personal data: never store them in any cache.
        .add((header::CACHE_CONTROL, "no-store"))
}

/// The HTTPS app, for `HttpServer::new`. (No response compression: pages carry CSRF
/// tokens, and compressing secrets next to attacker-chosen text invites BREACH.)
pub(crate) fn https_app(
    state: web::Data<AppState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let access = state.access.clone();
    App::new()
        .app_data(state)
        .app_data(
            web::FormConfig::default()
                .limit(FORM_LIMIT)
                .error_handler(form_error),
        )
        .app_data(web::PayloadConfig::new(FORM_LIMIT))
        .configure(routes)
        .wrap_fn(body_deadline)
        .wrap_fn(negotiate_errors)
        .wrap_fn(move |req, srv| crate::access::refuse_outsiders(&access, false, req, srv))
        .wrap(
            security_headers(DefaultHeaders::new())
                .add((header::STRICT_TRANSPORT_SECURITY, STRICT_TRANSPORT_SECURITY)),
        )
}

/// Every route of the HTTPS app, and the 404 page for the rest.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    crate::assets::config(cfg);
    crate::health::config(cfg);
    crate::pages::config(cfg);
    crate::api::config(cfg);
    cfg.default_service(web::to(not_found));
}

/// Nothing matched: 405 when the path exists for another method (a POST to a page),
/// 404 otherwise.
async fn not_found(req: actix_web::HttpRequest) -> Result<actix_web::HttpResponse, WebError> {
    let map = req.resource_map();
    if map.has_resource(req.path()) {
        let allow = map
            .match_pattern(req.path())
            .and_then(|pattern| allowed_methods(&pattern));
        if allow.is_none() {
            tracing::warn!(path = %req.path(), "a route is missing from app::ALLOWED_METHODS");
        }
        Err(WebError::MethodNotAllowed { allow })
    } else {
        Err(WebError::NotFound)
    }
}

/// The methods each route answers, for the `Allow` header that a 405 must carry
/// (RFC 9110 §15.5.6). actix-web records this only in a private type, so it is listed
/// here; `every_route_is_in_the_allowed_methods_table` checks it against the routes the
/// sources register. HEAD is answered wherever GET is (see [`negotiate_errors`]).
const ALLOWED_METHODS: &[(&str, &str)] = &[
    ("/", GET),
    ("/account", GET),
    ("/account/activity", GET),
    ("/account/delete", POST),
    ("/account/export", GET_POST),
    ("/account/import", POST),
    ("/account/passphrase", POST),
    ("/account/recovery-key", POST),
    ("/account/renew", GET_POST),
    ("/account/tokens", GET_POST),
    ("/account/tokens/{id}/revoke", POST),
    ("/api/v1/account/renew", POST),
    ("/api/v1/capture", POST),
    ("/api/v1/items/{id}", GET),
    ("/api/v1/lock", POST),
    ("/api/v1/login", POST),
    ("/api/v1/openapi.json", GET),
    ("/api/v1/search", GET),
    ("/api/v1/update", GET),
    ("/api/v1/update/hint", POST),
    ("/api/v1/vault", GET),
    ("/ca.crt", GET),
    ("/ca.pem", GET),
    ("/capture", GET),
    ("/dashboard", GET),
    ("/favicon.ico", GET),
    ("/healthz", GET),
    ("/home", GET),
    ("/home/getting-started", POST),
    ("/invite/{id}", GET_POST),
    ("/items/{id}", GET),
    ("/items/{id}/delete", POST),
    ("/items/{id}/edit", POST),
    ("/items/{id}/flags", POST),
    ("/items/{id}/history", GET),
    ("/items/{id}/restore", POST),
    ("/items/{id}/suggestions/tag", POST),
    ("/items/{id}/suggestions/task", POST),
    ("/items/{id}/task", POST),
    ("/login", GET_POST),
    ("/logout", POST),
    ("/manifest.webmanifest", GET),
    ("/notes", GET_POST),
    ("/recover", GET_POST),
    ("/search", GET),
    ("/settings", GET_POST),
    ("/setup", GET_POST),
    ("/setup/restore", POST),
    ("/setup/restoring", GET),
    ("/static/app.css", GET),
    ("/static/icon-192.png", GET),
    ("/static/icon-512.png", GET),
    ("/static/icon-maskable-512.png", GET),
    ("/static/icon.svg", GET),
    ("/system", GET),
    ("/system/backup/run", POST),
    ("/system/snapshots", GET),
    ("/system/snapshots/create", POST),
    ("/system/snapshots/{id}/restore", GET_POST),
    ("/system/update/check", POST),
    ("/system/update/restart", POST),
    ("/system/update/retry", POST),
    ("/system/update/window", POST),
    ("/tasks", GET_POST),
    ("/tasks/{id}/status", POST),
    ("/trust", GET),
    ("/users", GET),
    ("/users/invitations/clear", POST),
    ("/users/invitations/revoke", POST),
    ("/users/invite", POST),
    ("/users/remove", POST),
    ("/users/role", POST),
    ("/vault/lock", POST),
    ("/vault/unlock", POST),
    ("/wireguard", GET),
    ("/wireguard/endpoint", POST),
    ("/wireguard/peers", POST),
    ("/wireguard/peers/revoke", POST),
];
const GET: &str = "GET, HEAD";
const POST: &str = "POST";
const GET_POST: &str = "GET, HEAD, POST";

/// The `Allow` value of a route pattern (as `ResourceMap::match_pattern` names it).
fn allowed_methods(pattern: &str) -> Option<&'static str> {
    ALLOWED_METHODS
        .iter()
        .find(|(p, _)| *p == pattern)
        .map(|(_, methods)| *methods)
}

/// The grace period before a request body must arrive at [`BODY_MIN_BYTES_PER_SEC`]:
/// 5 s, Kestrel's default (ASP.NET Core `KestrelServerLimits.MinRequestBodyDataRate`).
pub const BODY_GRACE: Duration = Duration::from_secs(5);

/// The slowest average rate a request body may arrive at after [`BODY_GRACE`]: 240
/// bytes/s, Kestrel's default. Any real client (a phone on a weak link sends kilobytes
/// a second) is far faster; a client trickling a body to hold a connection open is not.
pub const BODY_MIN_BYTES_PER_SEC: u64 = 240;

/// Middleware (for `wrap_fn`): request bodies must arrive by a deadline that starts at
/// [`BODY_GRACE`] after the headers and grows by one second per
/// [`BODY_MIN_BYTES_PER_SEC`] bytes received. actix-web bounds the time to read the
/// headers (`client_request_timeout`, set in `crate::serve`), not the body, so a client
/// could otherwise hold a connection (and a login handler) open indefinitely by sending
/// a byte now and then. A body that misses its deadline fails to read, and the response
/// becomes 408 `request_timeout` with the connection closed, whatever the handler made
/// of the failed read.
pub(crate) fn body_deadline<S, B>(
    mut req: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> + use<S, B>
where
    S: actix_web::dev::Service<
            ServiceRequest,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: MessageBody + 'static,
{
    let timed_out = Rc::new(Cell::new(false));
    let payload = req.take_payload();
    if matches!(payload, actix_web::dev::Payload::None) {
        req.set_payload(payload);
    } else {
        let stream: Pin<Box<dyn futures_util::Stream<Item = _>>> = Box::pin(DeadlineStream {
            inner: payload,
            started: actix_web::rt::time::Instant::now(),
            received: 0,
            sleep: Box::pin(actix_web::rt::time::sleep(BODY_GRACE)),
            timed_out: timed_out.clone(),
            done: false,
        });
        req.set_payload(actix_web::dev::Payload::from(stream));
    }
    let fut = service.call(req);
    async move {
        let res = fut.await?;
        if timed_out.get() {
            tracing::info!(path = %res.request().path(), "a request body arrived too slowly");
            let req = res.request().clone();
            return Ok(ServiceResponse::from_err(WebError::RequestTimeout, req));
        }
        Ok(res.map_into_boxed_body())
    }
}

/// A request body that fails once it misses its deadline; see [`body_deadline`].
struct DeadlineStream {
    inner: actix_web::dev::Payload,
    started: actix_web::rt::time::Instant,
    received: u64,
    sleep: Pin<Box<actix_web::rt::time::Sleep>>,
    timed_out: Rc<Cell<bool>>,
    done: bool,
}

impl futures_util::Stream for DeadlineStream {
    type Item = Result<web::Bytes, actix_web::error::PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                let this = &mut *self;
                this.received = this.received.saturating_add(chunk.len() as u64);
                let earned =
                    Duration::from_secs_f64(this.received as f64 / BODY_MIN_BYTES_PER_SEC as f64);
                this.sleep
                    .as_mut()
                    .reset(this.started + BODY_GRACE + earned);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => {
                    self.done = true;
                    self.timed_out.set(true);
                    Poll::Ready(Some(Err(actix_web::error::PayloadError::Io(
                        std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "the request body arrived too slowly",
                        ),
                    ))))
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Middleware (for `wrap_fn`): refuses POSTs from another origin before any handler
/// runs, and renders [`WebError`]s as JSON for clients that ask for JSON.
pub(crate) fn negotiate_errors<S, B>(
    req: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> + use<S, B>
where
    S: actix_web::dev::Service<
            ServiceRequest,
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
        >,
    B: MessageBody + 'static,
{
    // HEAD is GET without the body (RFC 9110 §9.3.2): uptime monitors and `curl -I`
    // use it. Routed as GET; the body is dropped below.
    let mut req = req;
    let is_head = req.method() == Method::HEAD;
    if is_head {
        req.head_mut().method = Method::GET;
    }
    let wants_json = wants_json(&req);
    let is_api = req.path().starts_with("/api/");
    let presented_credentials = req.headers().contains_key(header::AUTHORIZATION);
    // Where a page load was going, to come back to after logging in (a shared page
    // arriving at the capture box, a bookmarked search).
    let came_for = (req.method() == Method::GET && req.path() != "/")
        .then(|| req.uri().path_and_query().map(|p| p.as_str().to_owned()))
        .flatten();
    let foreign_post = req.method() == Method::POST && {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or("invalid"));
        !origin_allowed(origin, request_host(req.request()))
    };
    let outcome = if foreign_post {
        tracing::info!(
            origin = ?req.headers().get(header::ORIGIN),
            "refused a POST from another origin"
        );
        Err(req.error_response(WebError::CsrfInvalid))
    } else {
        Ok(service.call(req))
    };
    async move {
        let mut res = match outcome {
            Err(refused) => refused,
            Ok(fut) => fut.await?.map_into_boxed_body(),
        };
        if is_head {
            res = res.map_body(|_, _| BoxBody::new(()));
        }
        let code = res
            .response()
            .error()
            .and_then(|e| e.as_error::<WebError>())
            .map(WebError::code);
        if let Some(next) = came_for
            && res.status() == actix_web::http::StatusCode::SEE_OTHER
        {
            let to_login = res
                .headers()
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .filter(|l| *l == "/login" || l.starts_with("/login?"))
                .map(str::to_owned);
            if let Some(login) = to_login {
                let sep = if login.contains('?') { '&' } else { '?' };
                let location = format!("{login}{sep}next={}", crate::pages::percent_encode(&next));
                if let Ok(value) = header::HeaderValue::from_str(&location) {
                    res.headers_mut().insert(header::LOCATION, value);
                }
            }
        }
        if wants_json
            && let Some(json) = res
                .response()
                .error()
                .and_then(|e| e.as_error::<WebError>())
                .map(WebError::json_response)
        {
            res = res.into_response(json);
        }
        if res.status() == actix_web::http::StatusCode::UNAUTHORIZED
            && !res.headers().contains_key(header::WWW_AUTHENTICATE)
        {
            let challenge = www_authenticate(is_api, presented_credentials, code);
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static(challenge),
            );
        }
        Ok(res)
    }
}

/// The API's realm, in its `Bearer` challenges.
pub const API_REALM: &str = "Context Vault API";

/// The challenge a 401 carries: RFC 9110 §11.6.1 requires at least one in every 401.
///
/// - The API authenticates with bearer tokens: `Bearer realm="…"` (RFC 6750 §3), with
///   `error="invalid_token"` when a token was presented and refused (expired, revoked,
///   unknown); without credentials RFC 6750 §3.1 asks for no error code.
/// - The pages authenticate with a session cookie set by the login form, a scheme HTTP
///   never standardised. They use the `Cookie` scheme of draft-broyer-http-cookie-auth
///   (the form's address and the cookie's name): it says truthfully how to log in, and
///   browsers ignore a scheme they do not know, where `Basic` would make them pop up a
///   password dialog in front of the page.
fn www_authenticate(is_api: bool, presented_credentials: bool, code: Option<&str>) -> &'static str {
    let refused_token = matches!(
        code,
        Some("token_invalid" | "token_revoked" | "session_expired")
    );
    match (is_api, presented_credentials && refused_token) {
        (true, true) => r#"Bearer realm="Context Vault API", error="invalid_token""#,
        (true, false) => r#"Bearer realm="Context Vault API""#,
        (false, _) => {
            r#"Cookie realm="Context Vault", form-action="/login", cookie-name="__Host-cv_session""#
        }
    }
}

/// The host the client asked for: `Host` (HTTP/1.1) or the URI's authority (HTTP/2
/// `:authority`). Not `connection_info()`, which believes `X-Forwarded-Host`: there is
/// no proxy in front of this service.
pub(crate) fn request_host(req: &actix_web::HttpRequest) -> &str {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
}

/// Whether errors should be JSON: `/healthz`, the API, or an `Accept` header naming JSON.
pub(crate) fn wants_json(req: &ServiceRequest) -> bool {
    req.path() == "/healthz"
        || req.path().starts_with("/api/")
        || req
            .headers()
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/json"))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use actix_web::test;

    use super::*;
    use crate::session::SessionPolicy;
    use crate::state::StatusCache;
    use crate::throttle::Throttle;
    use crate::tls::CertResolver;

    /// A state whose database and supervisor do not exist: enough for every path that
    /// must answer without them.
    fn state(dir: &std::path::Path) -> web::Data<AppState> {
        let pki = cv_net::tls::PkiPaths::new(dir);
        let request = cv_net::tls::CertRequest {
            hostname: "nas".into(),
            extra_names: vec![],
            addresses: vec![],
        };
        let now = time::OffsetDateTime::now_utc();
        cv_net::tls::ensure_local_pki(&pki, &request, None, now).unwrap();
        web::Data::new(AppState {
            // Lazy: never connects in these tests.
            pool: cv_db::pool("host=/nonexistent dbname=none", 1).unwrap(),
            status: StatusCache::new(cv_control::ControlClient::new(dir.join("none.sock"))),
            pki: pki.clone(),
            tls: Arc::new(CertResolver::load(pki, None).unwrap()),
            throttle: Mutex::new(Throttle::default()),
            sealers: crate::state::Sealers::default(),
            keyring: crate::keyring::Keyring::new(time::Duration::minutes(30)),
            sessions: SessionPolicy::from_secs(1800, 43200),
            ai: crate::ai::Ai { pool: None },
            insights: cv_control::InsightSettings {
                interval_secs: 3600,
                recent_days: 14,
                due_soon_days: 7,
            },
            access: crate::access::AccessPolicy::new(vec!["192.168.1.0/24".parse().unwrap()]),
            https_port: 8443,
            zone: crate::zone::ZoneCache::default(),
            version: "0.0.0-test".into(),
            mode: "dev".into(),
        })
    }

    #[actix_web::test]
    async fn requests_from_outside_the_allowed_networks_are_refused_first() {
        let dir = tempfile::tempdir().unwrap();
        let app = test::init_service(https_app(state(dir.path()))).await;
        // A page: the explanation, as HTML.
        let req = test::TestRequest::get()
            .uri("/login")
            .peer_addr("198.51.100.7:40000".parse().unwrap())
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 403);
        assert_eq!(resp.headers().get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
        let page = body(resp).await;
        assert!(page.contains("Not reachable from here"), "{page}");
        assert!(page.contains("198.51.100.7"), "{page}");
        // The API and /healthz: JSON, even for a POST with a foreign origin.
        let req = test::TestRequest::post()
            .uri("/api/v1/capture")
            .peer_addr("198.51.100.7:40000".parse().unwrap())
            .insert_header((header::ORIGIN, "https://evil.example"))
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 403);
        let json: serde_json::Value = serde_json::from_str(&body(resp).await).unwrap();
        assert_eq!(json["error"], "source_refused");
        // From the LAN and from the box itself the page is served.
        for peer in ["192.168.1.30:40000", "127.0.0.1:40000", "[::1]:40000"] {
            let req = test::TestRequest::get()
                .uri("/login")
                .peer_addr(peer.parse().unwrap())
                .to_request();
            let resp = test::call_service(&app, req).await;
            assert_eq!(resp.status().as_u16(), 200, "{peer}");
        }
    }

    async fn body<B: MessageBody>(resp: ServiceResponse<B>) -> String {
        String::from_utf8(test::read_body(resp).await.to_vec()).unwrap()
    }

    #[actix_web::test]
    async fn pages_carry_the_security_headers() {
        let dir = tempfile::tempdir().unwrap();
        let app = test::init_service(https_app(state(dir.path()))).await;
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/login").to_request()).await;
        assert_eq!(resp.status().as_u16(), 200);
        let h = resp.headers();
        assert_eq!(
            h.get(header::CONTENT_SECURITY_POLICY).unwrap(),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(
            h.get(header::STRICT_TRANSPORT_SECURITY).unwrap(),
            "max-age=31536000"
        );
        assert_eq!(h.get(header::X_FRAME_OPTIONS).unwrap(), "DENY");
        assert_eq!(h.get(header::REFERRER_POLICY).unwrap(), "no-referrer");
        assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");
        assert_eq!(h.get(header::CACHE_CONTROL).unwrap(), "no-store");
        let cookie = h
            .get(header::SET_COOKIE)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cookie.starts_with("__Host-cv_csrf="), "{cookie}");
        let token = cookie["__Host-cv_csrf=".len()..]
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let html = body(resp).await;
        assert!(
            html.contains(&format!(r#"name="csrf" value="{token}""#)),
            "{html}"
        );
    }

    #[actix_web::test]
    async fn static_assets_are_cached_and_unknown_routes_are_404_pages() {
        let dir = tempfile::tempdir().unwrap();
        let app = test::init_service(https_app(state(dir.path()))).await;
        let resp = test::call_service(
            &app,
            test::TestRequest::get().uri("/static/app.css").to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 200);
        assert!(
            resp.headers()
                .get(header::CACHE_CONTROL)
                .unwrap()
                .to_str()
                .unwrap()
                .contains("max-age=31536000")
        );
        let resp = test::call_service(
            &app,
            test::TestRequest::get().uri("/favicon.ico").to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 204);
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
        assert_eq!(resp.status().as_u16(), 404);
        assert!(body(resp).await.contains("not_found"));
        let resp = test::call_service(
            &app,
            test::TestRequest::get()
                .uri("/nope")
                .insert_header((header::ACCEPT, "application/json"))
                .to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 404);
        let json: serde_json::Value = serde_json::from_str(&body(resp).await).unwrap();
        assert_eq!(json["error"], "not_found");
    }

    #[actix_web::test]
    async fn forged_and_foreign_forms_are_refused_before_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let app = test::init_service(https_app(state(dir.path()))).await;
        // No CSRF cookie.
        let req = test::TestRequest::post()
            .uri("/login")
            .set_form([("name", "alice"), ("passphrase", "x"), ("csrf", "forged")])
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 403);
        assert!(
            body(resp)
                .await
                .contains("This form expired or did not come from this appliance")
        );
        // Another origin.
        let req = test::TestRequest::post()
            .uri("/login")
            .insert_header((header::HOST, "nas.local:8443"))
            .insert_header((header::ORIGIN, "https://evil.example"))
            .set_form([("name", "alice")])
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 403);
        assert!(body(resp).await.contains("csrf_invalid"));
    }

    #[actix_web::test]
    async fn bad_forms_are_4xx_not_500() {
        let dir = tempfile::tempdir().unwrap();
        let app = test::init_service(https_app(state(dir.path()))).await;
        let req = test::TestRequest::post()
            .uri("/login")
            .set_form([("name", "alice")])
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 400);
        let html = body(resp).await;
        assert!(
            html.contains("form_invalid") && html.contains("missing field"),
            "{html}"
        );

        let big = "x".repeat(FORM_LIMIT + 1);
        let req = test::TestRequest::post()
            .uri("/login")
            .set_form([("name", big.as_str())])
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 413);
        assert!(body(resp).await.contains("larger than 64 KiB"));

        let req = test::TestRequest::post()
            .uri("/login")
            .insert_header((header::CONTENT_TYPE, "text/plain"))
            .set_payload("name=alice")
            .to_request();
        assert_eq!(test::call_service(&app, req).await.status().as_u16(), 400);
    }

    #[actix_web::test]
    async fn pages_needing_a_login_redirect_or_refuse_without_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let app = test::init_service(https_app(state(dir.path()))).await;
        for uri in ["/dashboard", "/users"] {
            let resp =
                test::call_service(&app, test::TestRequest::get().uri(uri).to_request()).await;
            assert_eq!(resp.status().as_u16(), 303, "{uri}");
            // The page asked for comes back after the login.
            assert_eq!(
                resp.headers()
                    .get(header::LOCATION)
                    .unwrap()
                    .to_str()
                    .unwrap(),
                format!("/login?next=%2F{}", &uri[1..])
            );
        }
        let req = test::TestRequest::post()
            .uri("/logout")
            .set_form([("csrf", "x")])
            .to_request();
        assert_eq!(test::call_service(&app, req).await.status().as_u16(), 401);
    }

    /// Every route the sources register, as (full path pattern, methods), read from the
    /// `route(path, web::get()…)` calls (the API's under its `/api/v1` scope), as
    /// `tests/it/authz.rs` reads them for its matrix.
    fn registered_routes() -> std::collections::BTreeMap<String, Vec<&'static str>> {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let re =
            regex::Regex::new(r#"\.route\(\s*"([^"]+)",\s*web::(get|post|put|delete|patch)\(\)"#)
                .unwrap();
        let mut files: Vec<_> = std::fs::read_dir(&src)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.extend(
            std::fs::read_dir(src.join("pages"))
                .unwrap()
                .map(|e| e.unwrap().path()),
        );
        let mut routes = std::collections::BTreeMap::<String, Vec<&'static str>>::new();
        for file in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        {
            let text = std::fs::read_to_string(file).unwrap();
            let prefix = if file.ends_with("api.rs") {
                "/api/v1"
            } else {
                ""
            };
            for c in re.captures_iter(&text) {
                let method = match &c[2] {
                    "get" => "GET",
                    "post" => "POST",
                    other => panic!("add {other} to ALLOWED_METHODS' values"),
                };
                routes
                    .entry(format!("{prefix}{}", &c[1]))
                    .or_default()
                    .push(method);
            }
        }
        routes
    }

    #[actix_web::test]
    async fn every_route_is_in_the_allowed_methods_table() {
        let routes = registered_routes();
        assert!(routes.len() > 30, "the scan found too little: {routes:?}");
        for (path, methods) in &routes {
            let want = match (methods.contains(&"GET"), methods.contains(&"POST")) {
                (true, true) => GET_POST,
                (true, false) => GET,
                _ => POST,
            };
            assert_eq!(allowed_methods(path), Some(want), "{path} {methods:?}");
        }
        for (path, _) in ALLOWED_METHODS {
            assert!(routes.contains_key(*path), "{path} is not a route any more");
        }
    }

    #[actix_web::test]
    async fn method_not_allowed_names_the_allowed_methods() {
        let dir = tempfile::tempdir().unwrap();
        let app = test::init_service(https_app(state(dir.path()))).await;
        for (pattern, allow) in ALLOWED_METHODS {
            let uri = pattern.replace("{id}", "00000000-0000-0000-0000-000000000000");
            let req = test::TestRequest::with_uri(&uri)
                .method(Method::PATCH)
                .to_request();
            let resp = test::call_service(&app, req).await;
            assert_eq!(resp.status().as_u16(), 405, "{uri}");
            assert_eq!(resp.headers().get(header::ALLOW).unwrap(), allow, "{uri}");
        }
    }

    #[actix_web::test]
    async fn unauthorized_answers_carry_a_challenge() {
        let dir = tempfile::tempdir().unwrap();
        let app = test::init_service(https_app(state(dir.path()))).await;
        let resp = test::call_service(
            &app,
            test::TestRequest::get().uri("/api/v1/vault").to_request(),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 401);
        assert_eq!(
            resp.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            r#"Bearer realm="Context Vault API""#
        );
        let req = test::TestRequest::post()
            .uri("/logout")
            .set_form([("csrf", "x")])
            .to_request();
        let resp = test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 401);
        assert!(
            resp.headers()
                .get(header::WWW_AUTHENTICATE)
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Cookie realm=")
        );
        assert_eq!(
            www_authenticate(true, true, Some("token_revoked")),
            r#"Bearer realm="Context Vault API", error="invalid_token""#
        );
        assert_eq!(
            www_authenticate(true, true, Some("login_failed")),
            r#"Bearer realm="Context Vault API""#
        );
    }

    #[actix_web::test]
    async fn the_ca_is_offered_for_download() {
        let dir = tempfile::tempdir().unwrap();
        let app = test::init_service(https_app(state(dir.path()))).await;
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/ca.crt").to_request()).await;
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/x-x509-ca-cert"
        );
        assert_eq!(
            resp.headers().get(header::CONTENT_DISPOSITION).unwrap(),
            r#"attachment; filename="contextvault-ca.crt""#
        );
        let der = test::read_body(resp).await;
        assert_eq!(der[0], 0x30, "DER starts with a SEQUENCE");
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/ca.pem").to_request()).await;
        assert!(body(resp).await.starts_with("-----BEGIN CERTIFICATE-----"));
        let resp =
            test::call_service(&app, test::TestRequest::get().uri("/trust").to_request()).await;
        assert_eq!(resp.status().as_u16(), 200);
        let html = body(resp).await;
        assert!(html.contains("SHA-256"), "{html}");
    }
}
