//! Static assets, compiled into the binary: an appliance has no asset directory to
//! lose, and nothing is ever fetched from elsewhere (no CDN).

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// The one stylesheet (`templates/static/app.css`).
pub(crate) const APP_CSS: &str = include_str!("../../../templates/static/app.css");
/// The icon (`templates/static/icon.svg`).
pub(crate) const ICON_SVG: &str = include_str!("../../../templates/static/icon.svg");

/// A year, the longest `max-age` worth sending (RFC 9111 §5.2.2.1 lets caches treat
/// larger values as this). Safe because pages link the stylesheet with a query string
/// that changes whenever its content does ([`css_href`]).
const CACHE_FOREVER: &str = "public, max-age=31536000, immutable";

/// The stylesheet's URL with a content fingerprint, so an update is never hidden by a
/// cached old copy.
pub(crate) fn css_href() -> &'static str {
    static HREF: LazyLock<String> = LazyLock::new(|| {
        let digest = cv_crypto::sha256(APP_CSS.as_bytes());
        let short: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("/static/app.css?v={short}")
    });
    &HREF
}

pub(crate) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/static/app.css", web::get().to(app_css))
        .route("/static/icon.svg", web::get().to(icon))
        .route("/favicon.ico", web::get().to(favicon))
        .route("/manifest.webmanifest", web::get().to(manifest));
}

async fn app_css() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, CACHE_FOREVER))
        .body(APP_CSS)
}

async fn icon() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/svg+xml"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(ICON_SVG)
}

/// The web app manifest: installed on a phone's home screen, Context Vault opens on the
/// capture box, and appears in the phone's share sheet (Web Share Target): what another
/// app shares arrives pre-filled in the capture box (`GET /capture?title=…&text=…&url=…`).
pub(crate) const MANIFEST: &str = r##"{
  "name": "Context Vault",
  "short_name": "Vault",
  "description": "Your private memory, on your own appliance",
  "id": "/capture",
  "start_url": "/capture",
  "scope": "/",
  "display": "standalone",
  "background_color": "#f5f6f8",
  "theme_color": "#2f5bd3",
  "icons": [
    { "src": "/static/icon.svg", "sizes": "any", "type": "image/svg+xml", "purpose": "any" }
  ],
  "share_target": {
    "action": "/capture",
    "method": "GET",
    "params": { "title": "title", "text": "text", "url": "url" }
  }
}
"##;

async fn manifest() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "application/manifest+json"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(MANIFEST)
}

/// Browsers ask for `/favicon.ico` on their own; pages name `/static/icon.svg`, so
/// this answers "nothing here" without an error page in the logs.
async fn favicon() -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_is_json_with_a_share_target_to_the_capture_box() {
        let m: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
        assert_eq!(m["start_url"], "/capture");
        assert_eq!(m["share_target"]["action"], "/capture");
        assert_eq!(m["share_target"]["method"], "GET");
        assert_eq!(m["share_target"]["params"]["text"], "text");
    }

    #[test]
    fn the_stylesheet_is_self_contained() {
        assert!(!APP_CSS.contains("http://") && !APP_CSS.contains("https://"));
        assert!(!APP_CSS.contains("@import"));
        assert!(APP_CSS.contains("prefers-color-scheme: dark"));
        assert!(css_href().starts_with("/static/app.css?v="));
        assert_eq!(css_href().len(), "/static/app.css?v=".len() + 12);
    }
}
