//! The HTML pages, one module per area, each registering its routes in `config`.
//! Template structs live beside their handlers.

pub(crate) mod account;
pub(crate) mod auth;
mod backups;
mod dashboard;
mod export;
mod home;
mod invite;
mod items;
mod notes;
pub(crate) mod search;
mod settings;
mod snapshots;
mod suggestions;
mod tokens;
mod trust;
mod users;
mod vault;
mod wireguard;

pub(crate) use account::renew as renew_account;
pub(crate) use items::item_id;
pub(crate) use search::percent_encode;
pub(crate) use vault::{capture_into, open_existing_at_login};

use std::net::{IpAddr, Ipv4Addr};

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use askama::Template;

use crate::error::WebError;

pub(crate) fn config(cfg: &mut web::ServiceConfig) {
    account::config(cfg);
    auth::config(cfg);
    backups::config(cfg);
    dashboard::config(cfg);
    export::config(cfg);
    invite::config(cfg);
    home::config(cfg);
    notes::config(cfg);
    items::config(cfg);
    search::config(cfg);
    settings::config(cfg);
    snapshots::config(cfg);
    suggestions::config(cfg);
    users::config(cfg);
    tokens::config(cfg);
    trust::config(cfg);
    vault::config(cfg);
    wireguard::config(cfg);
}

/// A form error shown above a re-displayed form: the message and its stable code, the
/// same pair an error page shows.
#[derive(Debug, Clone)]
pub(crate) struct FormError {
    pub message: String,
    pub code: &'static str,
}

impl FormError {
    pub fn of(err: &WebError) -> FormError {
        FormError {
            message: err.to_string(),
            code: err.code(),
        }
    }
}

/// Refuses anyone but the owner and admins: "Only the owner and admins can {what}."
pub(crate) fn require_admin(
    user: &crate::session::CurrentUser,
    what: &str,
) -> Result<(), WebError> {
    if user.user.role.can_manage_users() {
        Ok(())
    } else {
        Err(WebError::Forbidden(format!(
            "Only the owner and admins can {what}."
        )))
    }
}

/// Tags typed into one field, separated by commas ("work, Ideas, 2026").
pub(crate) fn parse_tags(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Renders `page` as an HTML response with `status`.
pub(crate) fn render<T: Template>(status: StatusCode, page: &T) -> Result<HttpResponse, WebError> {
    Ok(html(status).body(render_string(page)?))
}

/// Renders a page holding a pre-login form: the page gets the double-submit CSRF
/// token, the response the matching cookie.
pub(crate) fn render_prelogin<T: Template>(
    req: &HttpRequest,
    status: StatusCode,
    page: impl FnOnce(String) -> T,
) -> Result<HttpResponse, WebError> {
    let (csrf, cookie) = crate::session::prelogin_token(req);
    let mut resp = render(status, &page(csrf))?;
    resp.add_cookie(&cookie)
        .map_err(|e| WebError::internal("setting the CSRF cookie", e))?;
    Ok(resp)
}

pub(crate) fn render_string<T: Template>(page: &T) -> Result<String, WebError> {
    page.render()
        .map_err(|e| WebError::internal("rendering a page", e))
}

/// A response builder for an HTML page with `status`.
pub(crate) fn html(status: StatusCode) -> HttpResponseBuilder {
    let mut builder = HttpResponse::build(status);
    builder.content_type("text/html; charset=utf-8");
    builder
}

/// `303 See Other` to `location`: the answer to a successful form POST (so reloading
/// the next page does not resubmit the form), and to pages that live elsewhere.
pub(crate) fn see_other(location: &str) -> HttpResponseBuilder {
    let mut builder = HttpResponse::SeeOther();
    builder.insert_header((header::LOCATION, location));
    builder
}

/// The client's address as seen on the TCP connection (the service is never behind a
/// proxy). IPv4-mapped IPv6 addresses are reduced to IPv4 so one client has one key.
pub(crate) fn peer_ip(req: &HttpRequest) -> IpAddr {
    req.peer_addr()
        .map(|a| a.ip().to_canonical())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

/// `https://` and the host the client asked for (the `Host` header, or HTTP/2's
/// authority), for links a person sends to another device (an invitation). Only a host
/// name, an IPv4 address or a bracketed IPv6 address with an optional port is used; any
/// other value falls back to `localhost`, so a forged header cannot put markup or another
/// path into the link.
pub(crate) fn origin_of(req: &HttpRequest) -> String {
    let host = Some(crate::app::request_host(req))
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 300
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    format!("https://{host}")
}

/// `text` as an inline SVG QR code for a page (without the XML declaration, which HTML
/// would take for a bogus comment). The QR code holds a secret when `text` does.
pub(crate) fn qr_code_svg(text: &str) -> Result<zeroize::Zeroizing<String>, WebError> {
    let svg = zeroize::Zeroizing::new(
        cv_net::wg::qr_svg(text).map_err(|e| WebError::internal("drawing a QR code", e))?,
    );
    Ok(match svg.find("<svg") {
        Some(0) | None => svg,
        Some(at) => zeroize::Zeroizing::new(svg[at..].to_owned()),
    })
}
