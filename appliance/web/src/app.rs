//! The HTTPS app: routes, extractor limits, security headers, error negotiation.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, header};
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, web};

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
    if req.resource_map().has_resource(req.path()) {
        Err(WebError::MethodNotAllowed)
    } else {
        Err(WebError::NotFound)
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
        !origin_allowed(origin, request_host(&req))
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
        if !wants_json {
            return Ok(res);
        }
        let json = res
            .response()
            .error()
            .and_then(|e| e.as_error::<WebError>())
            .map(WebError::json_response);
        Ok(match json {
            Some(json) => res.into_response(json),
            None => res,
        })
    }
}

/// The host the client asked for: `Host` (HTTP/1.1) or the URI's authority (HTTP/2
/// `:authority`). Not `connection_info()`, which believes `X-Forwarded-Host`: there is
/// no proxy in front of this service.
fn request_host(req: &ServiceRequest) -> &str {
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
