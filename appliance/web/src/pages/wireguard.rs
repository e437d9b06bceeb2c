//! The VPN page (owner and admins): WireGuard's state, its peers with their last
//! handshake and traffic, adding a peer (its configuration shown once, as text, a
//! `.conf` download and a QR code) and revoking one. The supervisor owns the interface
//! and re-checks every request; this page only asks.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use askama::Template;
use base64::Engine as _;
use cv_control::{ControlError, WgOverview, WgPeerStatus};
use jiff::tz::TimeZone;
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::info;
use zeroize::Zeroizing;

use super::{FormError, render};
use crate::error::WebError;
use crate::format::{date, date_time, human_bytes, human_duration};
use crate::session::CurrentUser;
use crate::state::AppState;

pub(super) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/wireguard", web::get().to(show))
        .route("/wireguard/peers", web::post().to(add))
        .route("/wireguard/peers/revoke", web::post().to(revoke))
        .route("/wireguard/endpoint", web::post().to(set_endpoint));
}

#[derive(Debug, Template)]
#[template(path = "wireguard.html")]
pub(crate) struct WireguardPage {
    pub csrf: String,
    /// `None`: the supervisor could not be asked; `unreachable` says why.
    pub vpn: Option<VpnView>,
    pub unreachable: Option<String>,
    /// A confirmation after a revocation.
    pub notice: Option<String>,
    pub error: Option<FormError>,
    pub form_name: String,
    /// A refused endpoint, and the text typed for it.
    pub endpoint_error: Option<FormError>,
    pub form_endpoint: Option<String>,
    /// The new peer's configuration, shown this once.
    pub added: Option<AddedView>,
}

#[derive(Debug)]
pub(crate) struct VpnView {
    pub state: &'static str,
    pub tone: &'static str,
    pub reason: Option<String>,
    pub interface: String,
    pub backend: Option<String>,
    pub network: String,
    pub server_address: String,
    pub listen_port: u16,
    pub endpoint: Option<String>,
    /// The endpoint comes from the config file, which takes precedence: no form.
    pub endpoint_from_config: bool,
    pub server_public_key: Option<String>,
    pub peers: Vec<PeerView>,
}

#[derive(Debug)]
pub(crate) struct PeerView {
    pub name: String,
    pub address: String,
    pub public_key: String,
    pub handshake: String,
    pub received: String,
    pub sent: String,
    pub created: String,
}

/// A configuration that holds a private key: `Debug` prints nothing of it.
pub(crate) struct AddedView {
    pub name: String,
    pub address: String,
    pub text: Zeroizing<String>,
    /// `data:` URL of the `.conf`, for a download link that needs no second request
    /// (the configuration is kept nowhere to serve it from).
    pub download: Zeroizing<String>,
    pub file_name: String,
    pub qr_svg: Zeroizing<String>,
}

impl std::fmt::Debug for AddedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddedView")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct AddForm {
    name: String,
    csrf: String,
}

#[derive(Deserialize)]
struct EndpointForm {
    endpoint: String,
    csrf: String,
}

#[derive(Deserialize)]
struct RevokeForm {
    name: String,
    csrf: String,
}

/// What the supervisor said, for a person: its refusals are already worded for admins.
fn refusal(e: ControlError) -> WebError {
    match e {
        ControlError::Refused(message) => WebError::InvalidInput(message),
        other => {
            tracing::warn!(error = %other, "the supervisor could not be asked about the VPN");
            WebError::InvalidInput(format!(
                "The supervisor could not be asked ({other}). Try again in a moment."
            ))
        }
    }
}

fn view(o: &WgOverview, now: OffsetDateTime, tz: &TimeZone) -> VpnView {
    let tone = match o.state {
        cv_control::WgState::Up => "ok",
        cv_control::WgState::Starting | cv_control::WgState::Off => "busy",
        cv_control::WgState::Failed => "bad",
    };
    VpnView {
        state: o.state.as_str(),
        tone,
        reason: o.reason.clone(),
        interface: o.interface.clone(),
        backend: o.backend.clone(),
        network: o.network.clone(),
        server_address: o.server_address.to_string(),
        listen_port: o.listen_port,
        endpoint: o.endpoint.clone(),
        endpoint_from_config: o.endpoint_from_config,
        server_public_key: o.server_public_key.clone(),
        peers: o.peers.iter().map(|p| peer_view(p, now, tz)).collect(),
    }
}

fn peer_view(p: &WgPeerStatus, now: OffsetDateTime, tz: &TimeZone) -> PeerView {
    PeerView {
        name: p.peer.name.clone(),
        address: p.peer.address.to_string(),
        public_key: p.peer.public_key.clone(),
        handshake: p.last_handshake.map_or_else(
            || "never".to_owned(),
            |at| format!("{} ago ({})", human_duration(now - at), date_time(at, tz)),
        ),
        received: human_bytes(p.rx_bytes),
        sent: human_bytes(p.tx_bytes),
        created: date(p.peer.created_at, tz),
    }
}

/// Renders the page with the current overview (asked fresh: handshakes change).
async fn page(
    state: &AppState,
    user: &CurrentUser,
    status: StatusCode,
    parts: Parts,
) -> Result<HttpResponse, WebError> {
    let tz = state.time_zone().await;
    let (vpn, unreachable) = match state.status.control().wg_list_peers().await {
        Ok(o) => (Some(view(&o, OffsetDateTime::now_utc(), &tz)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    render(
        status,
        &WireguardPage {
            csrf: user.csrf_token.clone(),
            vpn,
            unreachable,
            notice: parts.notice,
            error: parts.error.as_ref().map(FormError::of),
            form_name: parts.form_name,
            endpoint_error: parts.endpoint_error.as_ref().map(FormError::of),
            form_endpoint: parts.form_endpoint,
            added: parts.added,
        },
    )
}

#[derive(Default)]
struct Parts {
    notice: Option<String>,
    error: Option<WebError>,
    form_name: String,
    endpoint_error: Option<WebError>,
    form_endpoint: Option<String>,
    added: Option<AddedView>,
}

/// `GET /wireguard`
async fn show(user: CurrentUser, state: web::Data<AppState>) -> Result<HttpResponse, WebError> {
    super::require_admin(&user, "manage the VPN")?;
    page(&state, &user, StatusCode::OK, Parts::default()).await
}

/// `POST /wireguard/peers`: adds a peer and shows its configuration once.
async fn add(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<AddForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    super::require_admin(&user, "manage the VPN")?;
    let name = form.name.trim().to_owned();
    let added = match state.status.control().wg_add_peer(&name).await {
        Ok(added) => added,
        Err(e) => {
            let parts = Parts {
                error: Some(refusal(e)),
                form_name: name,
                ..Parts::default()
            };
            return page(&state, &user, StatusCode::BAD_REQUEST, parts).await;
        }
    };
    let text = added.client_config.into_text();
    let qr_svg = super::qr_code_svg(&text)?;
    let download = Zeroizing::new(format!(
        "data:text/plain;charset=utf-8;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(text.as_bytes())
    ));
    info!(by = %user.user.name, peer = %added.peer.name, address = %added.peer.address, "VPN peer added");
    let parts = Parts {
        added: Some(AddedView {
            file_name: format!("{}.conf", added.peer.name),
            name: added.peer.name,
            address: added.peer.address.to_string(),
            text,
            download,
            qr_svg,
        }),
        ..Parts::default()
    };
    page(&state, &user, StatusCode::OK, parts).await
}

/// `POST /wireguard/endpoint`: sets where clients reach the appliance (`host:port`),
/// written into the configurations of the devices added from now on. The supervisor
/// checks it as it checks the config's `wireguard.endpoint`, and refuses while the
/// config file sets one (which takes precedence).
async fn set_endpoint(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<EndpointForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    super::require_admin(&user, "manage the VPN")?;
    let endpoint = form.endpoint.trim().to_owned();
    let (status, parts) = match state.status.control().wg_set_endpoint(&endpoint).await {
        Ok(o) => {
            info!(by = %user.user.name, endpoint = ?o.endpoint, "VPN endpoint set");
            let notice = format!(
                "The endpoint is {}: new devices get it in their configuration.",
                o.endpoint.as_deref().unwrap_or(&endpoint)
            );
            (
                StatusCode::OK,
                Parts {
                    notice: Some(notice),
                    ..Parts::default()
                },
            )
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Parts {
                endpoint_error: Some(refusal(e)),
                form_endpoint: Some(endpoint),
                ..Parts::default()
            },
        ),
    };
    page(&state, &user, status, parts).await
}

/// `POST /wireguard/peers/revoke`: removes a peer from the interface at once.
async fn revoke(
    user: CurrentUser,
    state: web::Data<AppState>,
    form: web::Form<RevokeForm>,
) -> Result<HttpResponse, WebError> {
    let form = form.into_inner();
    user.check_csrf(&form.csrf)?;
    super::require_admin(&user, "manage the VPN")?;
    let parts = match state.status.control().wg_revoke_peer(&form.name).await {
        Ok(peer) => {
            info!(by = %user.user.name, peer = %peer.name, "VPN peer revoked");
            Parts {
                notice: Some(format!(
                    "Revoked {}: its key no longer opens the tunnel.",
                    peer.name
                )),
                ..Parts::default()
            }
        }
        Err(e) => Parts {
            error: Some(refusal(e)),
            ..Parts::default()
        },
    };
    let status = if parts.error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    page(&state, &user, status, parts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn added() -> AddedView {
        let text = Zeroizing::new(
            "[Interface]\nPrivateKey = c2VjcmV0+/=\nAddress = 10.213.0.2/32\n".to_owned(),
        );
        AddedView {
            name: "alice-phone".into(),
            address: "10.213.0.2".into(),
            qr_svg: super::super::qr_code_svg(&text).unwrap(),
            download: Zeroizing::new("data:text/plain;charset=utf-8;base64,AAAA".into()),
            file_name: "alice-phone.conf".into(),
            text,
        }
    }

    #[test]
    fn a_new_peer_is_shown_once_with_its_qr_code_and_download() {
        let page = WireguardPage {
            csrf: "tok-1".into(),
            vpn: None,
            unreachable: Some("connection refused".into()),
            notice: None,
            error: None,
            form_name: String::new(),
            endpoint_error: None,
            form_endpoint: None,
            added: Some(added()),
        };
        let html = page.render().unwrap();
        assert!(!html.contains("style="), "inline styles break the CSP");
        assert!(!html.contains("<script"));
        assert!(!html.contains("<?xml"), "an XML declaration inside HTML");
        for text in [
            "alice-phone is added (10.213.0.2)",
            "shown only now",
            "<svg",
            r#"download="alice-phone.conf""#,
            r#"id="client-config""#,
            "PrivateKey = c2VjcmV0+",
            "The supervisor is not answering",
        ] {
            assert!(html.contains(text), "{text} missing in\n{html}");
        }
        // Nothing of the key leaks into logs through Debug.
        assert!(!format!("{page:?}").contains("c2VjcmV0"));
    }

    #[test]
    fn peers_are_listed_with_their_traffic_and_a_revoke_form() {
        let now = OffsetDateTime::now_utc();
        let overview = WgOverview {
            state: cv_control::WgState::Up,
            reason: None,
            interface: "cvwg0".into(),
            backend: Some("wireguard-go".into()),
            network: "10.213.0.0/24".into(),
            server_address: "10.213.0.1".parse().unwrap(),
            listen_port: 51820,
            endpoint: Some("vault.example.net:51820".into()),
            endpoint_from_config: false,
            server_public_key: Some("c2VydmVy".into()),
            dns: vec![],
            client_allowed_ips: vec!["10.213.0.0/24".into()],
            peers: vec![WgPeerStatus {
                peer: cv_control::WgPeer {
                    name: "alice-phone".into(),
                    address: "10.213.0.2".parse().unwrap(),
                    public_key: "cHVibGlj".into(),
                    created_at: now,
                },
                last_handshake: Some(now - time::Duration::seconds(90)),
                rx_bytes: 2048,
                tx_bytes: 10 * 1024 * 1024,
            }],
        };
        let page = WireguardPage {
            csrf: "tok-2".into(),
            vpn: Some(view(&overview, now, &TimeZone::UTC)),
            unreachable: None,
            notice: Some("Revoked bob: its key no longer opens the tunnel.".into()),
            error: Some(FormError::of(&WebError::InvalidInput(
                "a peer named alice-phone exists".into(),
            ))),
            form_name: "alice-phone".into(),
            endpoint_error: None,
            form_endpoint: None,
            added: None,
        };
        let html = page.render().unwrap();
        for text in [
            "wireguard-go",
            "vault.example.net:51820",
            "alice-phone",
            "10.213.0.2",
            "ago",
            r#"action="/wireguard/peers/revoke""#,
            r#"name="name" value="alice-phone""#,
            r#"name="csrf" value="tok-2""#,
            "Revoked bob",
            "a peer named alice-phone exists",
        ] {
            assert!(html.contains(text), "{text} missing in\n{html}");
        }
        assert!(!html.contains(">never<"));
    }

    #[test]
    fn the_endpoint_is_set_on_the_page_unless_the_config_sets_it() {
        let overview = |endpoint: Option<&str>, from_config| WgOverview {
            state: cv_control::WgState::Up,
            reason: None,
            interface: "cvwg0".into(),
            backend: Some("wireguard-go".into()),
            network: "10.213.0.0/24".into(),
            server_address: "10.213.0.1".parse().unwrap(),
            listen_port: 51820,
            endpoint: endpoint.map(str::to_owned),
            endpoint_from_config: from_config,
            server_public_key: Some("c2VydmVy".into()),
            dns: vec![],
            client_allowed_ips: vec![],
            peers: vec![],
        };
        let render = |o: &WgOverview, typed: Option<&str>, error: Option<WebError>| {
            WireguardPage {
                csrf: "tok".into(),
                vpn: Some(view(o, OffsetDateTime::now_utc(), &TimeZone::UTC)),
                unreachable: None,
                notice: None,
                error: None,
                form_name: String::new(),
                endpoint_error: error.as_ref().map(FormError::of),
                form_endpoint: typed.map(str::to_owned),
                added: None,
            }
            .render()
            .unwrap()
        };
        // Not set: a form to set it, saying why it matters.
        let html = render(&overview(None, false), None, None);
        assert!(html.contains(r#"action="/wireguard/endpoint""#), "{html}");
        assert!(html.contains("not set"), "{html}");
        // Refused: the message and the text typed.
        let html = render(
            &overview(None, false),
            Some("vault.example.net"),
            Some(WebError::InvalidInput(
                "invalid endpoint: has no port".into(),
            )),
        );
        assert!(html.contains("has no port"), "{html}");
        assert!(
            html.contains(r#"name="endpoint" type="text" value="vault.example.net""#),
            "{html}"
        );
        // Set here: shown in the field, to change.
        let html = render(&overview(Some("home.example.org:51820"), false), None, None);
        assert!(
            html.contains(r#"name="endpoint" type="text" value="home.example.org:51820""#),
            "{html}"
        );
        // From the config: shown, no form.
        let html = render(&overview(Some("vault.example.net:51820"), true), None, None);
        assert!(html.contains("vault.example.net:51820"), "{html}");
        assert!(!html.contains(r#"action="/wireguard/endpoint""#), "{html}");
        assert!(html.contains("config file"), "{html}");
    }
}
