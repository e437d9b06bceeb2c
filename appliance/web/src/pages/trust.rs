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
    /// The names the server certificate covers: the addresses to type.
    pub server_names: Vec<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct CaView {
    pub subject: String,
    pub fingerprint: String,
    pub expires: String,
}

fn ca_view(info: &CertInfo) -> CaView {
    CaView {
        subject: info.subject.clone(),
        fingerprint: info.sha256_fingerprint.clone(),
        expires: date(info.not_after),
    }
}

/// `GET /trust`.
async fn trust(state: web::Data<AppState>) -> TrustPage {
    let ca = match read_ca_pem(&state) {
        Ok(pem) => match cv_net::tls::cert_info_from_pem(&pem) {
            Ok(info) => Some(ca_view(&info)),
            Err(e) => {
                tracing::error!(error = %e, "cannot summarise the CA certificate");
                None
            }
        },
        Err(_) => None,
    };
    let server_names = state
        .tls
        .info()
        .filter(|i| i.not_after > OffsetDateTime::now_utc())
        .map(|i| i.names)
        .unwrap_or_default();
    TrustPage { ca, server_names }
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
            server_names: vec!["nas.local".into()],
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
            "nas.local",
        ] {
            assert!(html.contains(text), "{text} missing in {html}");
        }
    }

    #[test]
    fn a_missing_ca_is_explained() {
        let html = TrustPage {
            ca: None,
            server_names: vec![],
        }
        .render()
        .unwrap();
        assert!(html.contains("not available"), "{html}");
    }
}
