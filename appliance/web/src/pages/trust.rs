//! Trusting the appliance's local certificate authority (public: needed before login).

use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpResponse, web};
use askama::Template;
use askama_web::WebTemplate;
use cv_net::tls::CertInfo;
use time::OffsetDateTime;

use crate::error::WebError;
use crate::format::date;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/trust", web::get().to(trust))
        .route("/ca.crt", web::get().to(ca_der))
        .route("/ca.pem", web::get().to(ca_pem));
}

#[derive(Debug, Template, WebTemplate)]
#[template(path = "trust.html")]
pub(crate) struct TrustPage {
    /// `None` when the CA certificate cannot be read (the page still explains).
    pub ca: Option<CaView>,
    /// The addresses to type: `https://` and each name the server certificate covers,
    /// with the port unless it is 443.
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct CaView {
    pub subject: String,
    pub fingerprint: String,
    pub expires: String,
}

fn ca_view(info: &CertInfo, tz: &jiff::tz::TimeZone) -> CaView {
    CaView {
        subject: info.subject.clone(),
        fingerprint: info.sha256_fingerprint.clone(),
        expires: date(info.not_after, tz),
    }
}

/// The local CA's certificate, summarised; `None` (logged) when it cannot be read. The
/// dashboard shows its fingerprint too, worded and formatted as here, so that a person
/// can compare the two.
pub(crate) fn ca_info(state: &AppState) -> Option<CertInfo> {
    let pem = read_ca_pem(state).ok()?;
    cv_net::tls::cert_info_from_pem(&pem)
        .map_err(|e| tracing::error!(error = %e, "cannot summarise the CA certificate"))
        .ok()
}

/// `https://name[:port]/`: an IPv6 address in brackets (RFC 3986 section 3.2.2), the
/// port left out when it is HTTPS's own, 443.
fn address(name: &str, https_port: u16) -> String {
    let host = if name.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{name}]")
    } else {
        name.to_owned()
    };
    if https_port == 443 {
        format!("https://{host}/")
    } else {
        format!("https://{host}:{https_port}/")
    }
}

/// `GET /trust`.
async fn trust(state: web::Data<AppState>) -> TrustPage {
    let tz = state.time_zone().await;
    let ca = ca_info(&state).map(|info| ca_view(&info, &tz));
    let addresses = state
        .tls
        .info()
        .filter(|i| i.not_after > OffsetDateTime::now_utc())
        .map(|i| i.names)
        .unwrap_or_default()
        .iter()
        .map(|name| address(name, state.https_port))
        .collect();
    TrustPage { ca, addresses }
}

fn read_ca_pem(state: &AppState) -> Result<Vec<u8>, WebError> {
    let path = state.pki.ca_cert();
    std::fs::read(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), "no CA certificate to offer");
            WebError::NotFound
        } else {
            WebError::internal(
                "reading the CA certificate",
                format!("{}: {e}", path.display()),
            )
        }
    })
}

fn download(content_type: &'static str, filename: &str, body: Vec<u8>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, content_type))
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(filename.to_owned())],
        })
        .body(body)
}

/// `GET /ca.crt`: DER, the form iOS and Android install.
async fn ca_der(state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    let der = cv_net::tls::ca_certificate_der(&state.pki).map_err(|e| match e {
        cv_net::tls::TlsError::Read { ref source, .. }
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            WebError::NotFound
        }
        other => WebError::internal("reading the CA certificate", other),
    })?;
    Ok(download(
        "application/x-x509-ca-cert",
        "contextvault-ca.crt",
        der,
    ))
}

/// `GET /ca.pem`: the same certificate in PEM, for desktops and command lines.
async fn ca_pem(state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    let pem = read_ca_pem(&state)?;
    Ok(download(
        "application/x-pem-file",
        "contextvault-ca.pem",
        pem,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trust_page_explains_both_platforms() {
        let page = TrustPage {
            ca: Some(CaView {
                subject: "CN=Context Vault local CA (nas)".into(),
                fingerprint: "AA:BB:CC".into(),
                expires: "2036-01-01".into(),
            }),
            addresses: vec![address("nas.local", 8443), address("fd00::1", 8443)],
        };
        let html = page.render().unwrap();
        assert!(!html.contains("style="));
        assert!(!html.contains("<script"));
        for text in [
            "AA:BB:CC",
            r#"href="/ca.crt""#,
            r#"href="/ca.pem""#,
            "iOS",
            "Android",
            "Profile Downloaded",
            "Certificate Trust Settings",
            "Encryption &amp; credentials",
            "CA certificate",
            "CA fingerprint (SHA-256)",
            "https://nas.local:8443/",
            "https://[fd00::1]:8443/",
        ] {
            assert!(html.contains(text), "{text} missing in {html}");
        }
    }

    #[test]
    fn addresses_carry_the_port_and_bracket_ipv6() {
        assert_eq!(address("nas.local", 8443), "https://nas.local:8443/");
        assert_eq!(address("192.168.1.20", 8443), "https://192.168.1.20:8443/");
        assert_eq!(address("fd00::1", 8443), "https://[fd00::1]:8443/");
        assert_eq!(address("fd00::1", 443), "https://[fd00::1]/");
        assert_eq!(address("nas.local", 443), "https://nas.local/");
    }

    #[test]
    fn a_missing_ca_is_explained() {
        let html = TrustPage {
            ca: None,
            addresses: vec![],
        }
        .render()
        .unwrap();
        assert!(html.contains("not available"), "{html}");
    }
}
