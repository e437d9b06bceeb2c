//! Static assets, compiled into the binary: an appliance has no asset directory to
//! lose, and nothing is ever fetched from elsewhere (no CDN).

use std::sync::LazyLock;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// The one stylesheet (`templates/static/app.css`).
pub(crate) const APP_CSS: &str = include_str!("../../../templates/static/app.css");
/// The icon (`templates/static/icon.svg`).
pub(crate) const ICON_SVG: &str = include_str!("../../../templates/static/icon.svg");

/// The home-screen icons, for phones that do not take an SVG icon (Android's installer
/// wants 192 and 512 px PNGs; a "maskable" one fills the whole square, its picture inside
/// the central circle of 80% of its width that every mask shape keeps, see
/// <https://www.w3.org/TR/appmanifest/#icon-masks>). Made once from the SVGs beside them
/// with `rsvg-convert` 2.54 (Debian's librsvg2-bin), in `templates/static`:
///
/// ```sh
/// rsvg-convert -w 192 -h 192 icon.svg -o icon-192.png
/// rsvg-convert -w 512 -h 512 icon.svg -o icon-512.png
/// rsvg-convert -w 512 -h 512 icon-maskable.svg -o icon-maskable-512.png
/// ```
const ICON_192_PNG: &[u8] = include_bytes!("../../../templates/static/icon-192.png");
const ICON_512_PNG: &[u8] = include_bytes!("../../../templates/static/icon-512.png");
const ICON_MASKABLE_512_PNG: &[u8] =
    include_bytes!("../../../templates/static/icon-maskable-512.png");

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
        .route("/static/icon-192.png", web::get().to(|| png(ICON_192_PNG)))
        .route("/static/icon-512.png", web::get().to(|| png(ICON_512_PNG)))
        .route(
            "/static/icon-maskable-512.png",
            web::get().to(|| png(ICON_MASKABLE_512_PNG)),
        )
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

async fn png(bytes: &'static [u8]) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/png"))
        .insert_header((header::CACHE_CONTROL, "public, max-age=86400"))
        .body(bytes)
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
    { "src": "/static/icon.svg", "sizes": "any", "type": "image/svg+xml", "purpose": "any" },
    { "src": "/static/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any" },
    { "src": "/static/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any" },
    { "src": "/static/icon-maskable-512.png", "sizes": "512x512", "type": "image/png", "purpose": "maskable" }
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

    /// The width and height in a PNG's header: the IHDR chunk follows the 8-byte
    /// signature, its length and type, and starts with them as big-endian u32s
    /// (<https://www.w3.org/TR/png-3/#11IHDR>).
    fn png_size(png: &[u8]) -> (u32, u32) {
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        assert_eq!(&png[12..16], b"IHDR");
        let be = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
        (be(16), be(20))
    }

    #[actix_web::test]
    async fn every_manifest_icon_is_served_with_its_type_and_size() {
        use actix_web::{App, test};
        let app = test::init_service(App::new().configure(config)).await;
        let m: serde_json::Value = serde_json::from_str(MANIFEST).unwrap();
        let icons = m["icons"].as_array().unwrap();
        let mut purposes = Vec::new();
        for icon in icons {
            let src = icon["src"].as_str().unwrap();
            let resp =
                test::call_service(&app, test::TestRequest::get().uri(src).to_request()).await;
            assert_eq!(resp.status(), 200, "{src}");
            let content_type = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            assert_eq!(content_type, icon["type"].as_str().unwrap(), "{src}");
            let body = test::read_body(resp).await;
            let sizes = icon["sizes"].as_str().unwrap();
            if content_type == "image/png" {
                let (w, h) = png_size(&body);
                assert_eq!(format!("{w}x{h}"), sizes, "{src}");
                purposes.push((
                    sizes.to_owned(),
                    icon["purpose"].as_str().unwrap().to_owned(),
                ));
            } else {
                assert_eq!(sizes, "any", "{src}");
            }
        }
        for wanted in [
            ("192x192", "any"),
            ("512x512", "any"),
            ("512x512", "maskable"),
        ] {
            assert!(
                purposes.contains(&(wanted.0.to_owned(), wanted.1.to_owned())),
                "no {wanted:?} PNG icon in {purposes:?}"
            );
        }
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
