//! The plain-HTTP app: sends every request to the same place over HTTPS, except ACME
//! HTTP-01 checks.
//!
//! `308 Permanent Redirect` keeps the method and body (RFC 9110 §15.4.9), so even a
//! form posted over plain HTTP by mistake arrives intact, encrypted. The HTTPS app's
//! HSTS header then keeps browsers from trying plain HTTP again.
//!
//! `GET /.well-known/acme-challenge/<token>` is answered from the directory where the
//! supervisor publishes HTTP-01 key authorizations (RFC 8555 §8.3), as `text/plain`;
//! only a well-formed token with a published answer is served, and nothing else from
//! that directory. Everything else under that prefix is 404, never a redirect.

use std::path::PathBuf;

use actix_web::http::header;
use actix_web::middleware::DefaultHeaders;
use actix_web::{App, HttpRequest, HttpResponse, web};

use crate::access::AccessPolicy;
use crate::app::security_headers;
use crate::error::WebError;

/// Where HTTP-01 challenges are answered.
pub const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// Where the HTTP-01 answers are read from (`None`: ACME challenges are not answered).
#[derive(Debug, Clone)]
struct ChallengeDir(Option<PathBuf>);

/// The redirect app, for `HttpServer::new`.
pub fn redirect_app(
    https_port: u16,
    acme_http_dir: Option<PathBuf>,
    access: AccessPolicy,
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new()
        .app_data(web::Data::new(https_port))
        .app_data(web::Data::new(ChallengeDir(acme_http_dir)))
        .default_service(web::to(redirect))
        .wrap_fn(move |req, srv| crate::access::refuse_outsiders(&access, true, req, srv))
        .wrap(security_headers(DefaultHeaders::new()))
}

async fn redirect(
    req: HttpRequest,
    port: web::Data<u16>,
    challenges: web::Data<ChallengeDir>,
) -> Result<HttpResponse, WebError> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if let Some(token) = req.uri().path().strip_prefix(ACME_CHALLENGE_PREFIX) {
        let answer = match (&challenges.0, req.method() == actix_web::http::Method::GET) {
            (Some(dir), true) => cv_net::acme::http01_answer(dir, token),
            _ => None,
        };
        return match answer {
            Some(body) => Ok(HttpResponse::Ok()
                .content_type("text/plain")
                .insert_header((header::CACHE_CONTROL, "no-store"))
                .body(body)),
            None => Err(WebError::NotFound),
        };
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host());
    let target = https_target(host, **port, path)
        .ok_or_else(|| WebError::BadRequest("The request has no valid Host header.".into()))?;
    Ok(HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, target))
        .finish())
}

/// `https://<host without port>[:<port>]<path and query>`, with `:443` left out; `None`
/// when `host` is missing or not a plausible host name or IP literal (it ends up in a
/// `Location` header, so nothing else may pass).
pub fn https_target(host: Option<&str>, https_port: u16, path_and_query: &str) -> Option<String> {
    let name = host_without_port(host?)?;
    let path = if path_and_query.starts_with('/') {
        path_and_query
    } else {
        "/"
    };
    Some(if https_port == 443 {
        format!("https://{name}{path}")
    } else {
        format!("https://{name}:{https_port}{path}")
    })
}

/// The host part of a `Host` header: a DNS name, an IPv4 address, or a bracketed IPv6
/// literal, with an optional numeric port removed.
fn host_without_port(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        // [v6]:port or [v6]
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        if !(rest.is_empty() || valid_port(rest.strip_prefix(':')?)) {
            return None;
        }
        let inner = &host[1..end];
        inner.parse::<std::net::Ipv6Addr>().ok()?;
        &host[..=end]
    } else {
        let (name, port) = match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        if port.is_some_and(|p| !valid_port(p)) {
            return None;
        }
        let plausible = !name.is_empty()
            && name.len() <= 253
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !name.starts_with(['-', '.']);
        if !plausible {
            return None;
        }
        name
    };
    Some(name)
}

fn valid_port(port: &str) -> bool {
    !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test as web_test;

    #[test]
    fn targets_keep_path_and_query_and_drop_the_default_port() {
        assert_eq!(
            https_target(Some("nas.local:8080"), 8443, "/login?x=1").as_deref(),
            Some("https://nas.local:8443/login?x=1")
        );
        assert_eq!(
            https_target(Some("nas.local"), 443, "/").as_deref(),
            Some("https://nas.local/")
        );
        assert_eq!(
            https_target(Some("192.168.1.20:80"), 443, "/a").as_deref(),
            Some("https://192.168.1.20/a")
        );
        assert_eq!(
            https_target(Some("[fd00::1]:8080"), 8443, "/").as_deref(),
            Some("https://[fd00::1]:8443/")
        );
        assert_eq!(
            https_target(Some("[::1]"), 443, "*").as_deref(),
            Some("https://[::1]/")
        );
    }

    #[test]
    fn bad_hosts_are_refused() {
        for bad in [
            "",
            ":8080",
            "evil.example/path",
            "a b",
            "nas:port",
            "[::1",
            "[nothex]:80",
            "[::1]x",
            "-nas",
            "nas.local:123456",
            "user@nas",
        ] {
            assert_eq!(https_target(Some(bad), 443, "/"), None, "{bad:?}");
        }
        assert_eq!(https_target(None, 443, "/"), None);
    }

    fn lan() -> AccessPolicy {
        AccessPolicy::new(vec!["192.168.1.0/24".parse().unwrap()])
    }

    #[actix_web::test]
    async fn outsiders_are_refused_except_for_acme_answers() {
        let app = web_test::init_service(redirect_app(443, None, lan())).await;
        let from = |addr: &str, uri: &str| {
            web_test::TestRequest::get()
                .uri(uri)
                .peer_addr(addr.parse().unwrap())
                .insert_header((header::HOST, "nas.example"))
                .to_request()
        };
        let resp = web_test::call_service(&app, from("203.0.113.9:5000", "/")).await;
        assert_eq!(resp.status().as_u16(), 403);
        let page = String::from_utf8(web_test::read_body(resp).await.to_vec()).unwrap();
        assert!(page.contains("203.0.113.9 is in neither"), "{page}");
        let resp = web_test::call_service(&app, from("192.168.1.4:5000", "/")).await;
        assert_eq!(resp.status().as_u16(), 308);
        // A CA validating HTTP-01 comes from anywhere: it reaches the challenge route.
        let resp = web_test::call_service(
            &app,
            from("203.0.113.9:5000", "/.well-known/acme-challenge/abc"),
        )
        .await;
        assert_eq!(resp.status().as_u16(), 404);
    }

    #[actix_web::test]
    async fn the_app_redirects_with_308() {
        let app = web_test::init_service(redirect_app(8443, None, lan())).await;
        let req = web_test::TestRequest::post()
            .uri("/setup?a=b")
            .insert_header((header::HOST, "nas.local:8080"))
            .to_request();
        let resp = web_test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 308);
        assert_eq!(
            resp.headers().get(header::LOCATION).unwrap(),
            "https://nas.local:8443/setup?a=b"
        );
        assert_eq!(resp.headers().get("x-frame-options").unwrap(), "DENY");
        assert!(
            resp.headers()
                .get(header::STRICT_TRANSPORT_SECURITY)
                .is_none()
        );
    }

    #[actix_web::test]
    async fn acme_challenges_and_missing_hosts_are_not_redirected() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok_1-A"), "tok_1-A.thumb").unwrap();
        std::fs::write(dir.path().join("stray"), "not an answer").unwrap();
        let app =
            web_test::init_service(redirect_app(443, Some(dir.path().to_owned()), lan())).await;
        let get = |uri: &str| {
            web_test::TestRequest::get()
                .uri(uri)
                .insert_header((header::HOST, "vault.example.org"))
                .to_request()
        };
        let resp = web_test::call_service(&app, get("/.well-known/acme-challenge/tok_1-A")).await;
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(
            resp.headers().get(header::CONTENT_TYPE).unwrap(),
            "text/plain"
        );
        assert_eq!(web_test::read_body(resp).await, "tok_1-A.thumb");
        for uri in [
            "/.well-known/acme-challenge/stray",
            "/.well-known/acme-challenge/../../etc/passwd",
            "/.well-known/acme-challenge/%2e%2e%2fx",
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/missing",
        ] {
            let resp = web_test::call_service(&app, get(uri)).await;
            assert_eq!(resp.status().as_u16(), 404, "{uri}");
        }
        let post = web_test::TestRequest::post()
            .uri("/.well-known/acme-challenge/tok_1-A")
            .insert_header((header::HOST, "vault.example.org"))
            .to_request();
        assert_eq!(
            web_test::call_service(&app, post).await.status().as_u16(),
            404
        );
        let req = web_test::TestRequest::get()
            .uri("/.well-known/acme-challenge/abc")
            .insert_header((header::HOST, "nas.local"))
            .to_request();
        assert_eq!(
            web_test::call_service(&app, req).await.status().as_u16(),
            404
        );
        let req = web_test::TestRequest::get().uri("/").to_request();
        assert_eq!(
            web_test::call_service(&app, req).await.status().as_u16(),
            400
        );
    }
}
