//! The `wireguard` task: the appliance's VPN interface (`cv_net::wg`), and the peer
//! requests of the control socket.
//!
//! At start, when `[wireguard] enabled` and this process can (root; the kernel's
//! WireGuard or `wireguard-go`), the state directory is opened and the interface brought
//! up with the stored peers. Otherwise the component is **off** and says why: disabled in
//! the config, dev mode without root, WireGuard not available here. In an appliance the
//! last two are failures, since the appliance is built to run the VPN. A failure to come
//! up is shown (dashboard, `/healthz`, `wg list`), never fatal to the rest; it is tried
//! again with backoff, and so is an interface that stops while running (checked every
//! two seconds). At shutdown the interface is taken down and `wireguard-go` stopped.
//!
//! Peer requests are validated here again (`WgServer` parses the name and the
//! endpoint), whatever the asker checked. Adding needs the interface up; revoking and
//! setting the endpoint work whenever the registry could be read, so a lost phone can be
//! shut out even while the interface is down; listing always answers.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use cv_config::Mode;
use cv_control::{
    ComponentState, Request, Response, WgClientConfig, WgOverview, WgPeer, WgPeerAdded,
    WgPeerStatus, WgState,
};
use cv_net::wg::{PeerEntry, Tools, WgError, WgServer};
use time::OffsetDateTime;

use crate::backoff::Backoff;
use crate::board::Component;
use crate::{Context, Stop, TaskResult};

/// How often a running interface is checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The VPN as the supervisor holds it, shared by its task and the control socket.
#[derive(Debug)]
pub struct Wireguard {
    inner: Mutex<Vpn>,
}

#[derive(Debug)]
struct Vpn {
    state: WgState,
    /// Why it is off or failed.
    reason: Option<String>,
    /// Open once the state directory could be read (with the interface while up).
    server: Option<WgServer>,
}

impl Default for Wireguard {
    fn default() -> Self {
        Wireguard {
            inner: Mutex::new(Vpn {
                state: WgState::Starting,
                reason: None,
                server: None,
            }),
        }
    }
}

impl Wireguard {
    fn lock(&self) -> MutexGuard<'_, Vpn> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Records a state for `wg list` and the board alike.
fn set(ctx: &Context, state: WgState, reason: Option<String>) {
    let board_state = match state {
        WgState::Starting => ComponentState::Starting,
        WgState::Up => ComponentState::Up,
        WgState::Off => ComponentState::Off,
        WgState::Failed => ComponentState::Failed,
    };
    ctx.board
        .set(Component::Wireguard, board_state, None, reason.clone());
    let mut vpn = ctx.wireguard.lock();
    vpn.state = state;
    vpn.reason = reason;
}

/// Why WireGuard cannot run here, if it cannot; `Off` or `Failed` by the mode.
fn precondition(ctx: &Context) -> Option<(WgState, String)> {
    if !ctx.config.wireguard.enabled {
        return Some((
            WgState::Off,
            "disabled in the config (wireguard.enabled = false)".into(),
        ));
    }
    let uid = nix::unistd::Uid::effective();
    if !uid.is_root() {
        return Some(match ctx.config.mode {
            Mode::Dev => (
                WgState::Off,
                format!(
                    "needs root: contextvault dev runs as uid {uid}; start it as root to run \
                     the VPN"
                ),
            ),
            Mode::Appliance => (
                WgState::Failed,
                format!("needs root, and the supervisor runs as uid {uid}"),
            ),
        });
    }
    None
}

pub async fn supervise(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    if let Some((state, reason)) = precondition(&ctx) {
        tracing::info!(state = state.as_str(), reason = %reason, "WireGuard is not running");
        set(&ctx, state, Some(reason));
        stop.requested().await;
        return Ok(());
    }
    let settings = ctx.config.wireguard.settings.clone();
    let dir = ctx.layout.wireguard_dir();
    match tokio::task::spawn_blocking(move || WgServer::open(settings, dir)).await {
        Ok(Ok(server)) => ctx.wireguard.lock().server = Some(server),
        Ok(Err(e)) => {
            // A damaged key or registry does not mend itself: no retry.
            tracing::error!(error = %e, "the WireGuard state cannot be used");
            set(&ctx, WgState::Failed, Some(e.to_string()));
            stop.requested().await;
            return Ok(());
        }
        Err(e) => return Err(format!("opening the WireGuard state panicked: {e}")),
    }

    let tools = Tools::find();
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let ctx2 = Arc::clone(&ctx);
        let tools2 = tools.clone();
        let up = tokio::task::spawn_blocking(move || {
            let mut vpn = ctx2.wireguard.lock();
            match vpn.server.as_mut() {
                Some(server) => server.bring_up(&tools2),
                None => Ok(()),
            }
        })
        .await
        .map_err(|e| format!("bringing WireGuard up panicked: {e}"))?;
        match up {
            Ok(()) => {
                set(&ctx, WgState::Up, None);
                // Watch it until it stops or the appliance does.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(CHECK_EVERY) => {}
                        _ = stop.requested() => return take_down(&ctx).await,
                    }
                    let ctx2 = Arc::clone(&ctx);
                    let checked = tokio::task::spawn_blocking(move || {
                        ctx2.wireguard
                            .lock()
                            .server
                            .as_mut()
                            .map_or(Ok(()), WgServer::check)
                    })
                    .await
                    .map_err(|e| format!("checking WireGuard panicked: {e}"))?;
                    if let Err(e) = checked {
                        tracing::error!(error = %e, "the WireGuard interface stopped");
                        ctx.board.set(
                            Component::Wireguard,
                            ComponentState::Restarting,
                            None,
                            Some(e.to_string()),
                        );
                        let mut vpn = ctx.wireguard.lock();
                        vpn.state = WgState::Failed;
                        vpn.reason = Some(e.to_string());
                        break;
                    }
                }
            }
            // Nothing to retry for: this machine cannot run WireGuard.
            Err(e @ (WgError::Unavailable { .. } | WgError::NoIpCommand))
                if ctx.config.mode == Mode::Dev =>
            {
                tracing::info!(reason = %e, "WireGuard is off");
                set(&ctx, WgState::Off, Some(e.to_string()));
                stop.requested().await;
                return Ok(());
            }
            Err(e) => {
                tracing::error!(error = %e, "the WireGuard interface could not be brought up");
                set(&ctx, WgState::Failed, Some(e.to_string()));
            }
        }
        let delay = backoff.after_run(started.elapsed());
        tracing::info!(?delay, "bringing WireGuard up again after a delay");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.requested() => return take_down(&ctx).await,
        }
    }
}

async fn take_down(ctx: &Arc<Context>) -> TaskResult {
    let ctx2 = Arc::clone(ctx);
    let result = tokio::task::spawn_blocking(move || {
        ctx2.wireguard
            .lock()
            .server
            .as_mut()
            .map_or(Ok(()), WgServer::take_down)
    })
    .await
    .map_err(|e| format!("taking WireGuard down panicked: {e}"))?;
    ctx.board
        .set(Component::Wireguard, ComponentState::Stopped, None, None);
    let mut vpn = ctx.wireguard.lock();
    vpn.state = WgState::Off;
    vpn.reason = Some("the appliance is stopping".into());
    result.map_err(|e| e.to_string())
}

/// Answers one WireGuard request. Blocking (files, the interface): call it off the
/// async workers.
pub fn answer(ctx: &Context, request: Request) -> Response {
    let refuse = |message: String| Response::Error { message };
    let mut vpn = ctx.wireguard.lock();
    match request {
        Request::WgAddPeer { name } => {
            if let Err(why) = usable(&vpn, true) {
                return refuse(why);
            }
            let Some(server) = vpn.server.as_mut() else {
                return refuse("WireGuard is not running".into());
            };
            match server.add_peer(&name, OffsetDateTime::now_utc()) {
                Ok((entry, config)) => Response::WgPeerAdded(WgPeerAdded {
                    peer: peer(&entry),
                    client_config: WgClientConfig::new(config.into_text()),
                }),
                Err(e) => refuse(e.to_string()),
            }
        }
        Request::WgRevokePeer { name } => {
            if let Err(why) = usable(&vpn, false) {
                return refuse(why);
            }
            let Some(server) = vpn.server.as_mut() else {
                return refuse("WireGuard is not running".into());
            };
            match server.revoke_peer(&name) {
                Ok(entry) => Response::WgPeerRevoked(peer(&entry)),
                Err(e) => refuse(e.to_string()),
            }
        }
        Request::WgSetEndpoint { endpoint } => {
            if let Err(why) = usable(&vpn, false) {
                return refuse(why);
            }
            let Some(server) = vpn.server.as_mut() else {
                return refuse("WireGuard is not running".into());
            };
            match server.set_endpoint(&endpoint) {
                Ok(_) => Response::WgPeers(overview(ctx, &mut vpn)),
                Err(e) => refuse(e.to_string()),
            }
        }
        Request::WgListPeers {} => Response::WgPeers(overview(ctx, &mut vpn)),
        _ => refuse("not a WireGuard request".into()),
    }
}

/// Whether peers can be changed now: added only while the interface runs; revoked
/// whenever the registry is open.
fn usable(vpn: &Vpn, needs_interface: bool) -> Result<(), String> {
    let why = || vpn.reason.clone().unwrap_or_default();
    match vpn.state {
        WgState::Up => Ok(()),
        WgState::Starting => Err("WireGuard is still starting; try again in a moment".into()),
        _ if !needs_interface && vpn.server.is_some() => Ok(()),
        WgState::Off => Err(format!("WireGuard is off: {}", why())),
        WgState::Failed => Err(format!("WireGuard is not running: {}", why())),
    }
}

fn peer(entry: &PeerEntry) -> WgPeer {
    WgPeer {
        name: entry.name.to_string(),
        address: entry.address,
        public_key: entry.public_key.to_base64(),
        created_at: entry.created_at,
    }
}

fn overview(ctx: &Context, vpn: &mut Vpn) -> WgOverview {
    let settings = &ctx.config.wireguard.settings;
    let mut backend = None;
    let mut server_public_key = None;
    let mut peers = Vec::new();
    // The config's endpoint until the state directory is open; then the server's, which
    // falls back to the one set on the VPN page.
    let mut endpoint = settings.endpoint.as_ref().map(ToString::to_string);
    if let Some(server) = vpn.server.as_mut() {
        endpoint = server.endpoint().map(ToString::to_string);
        backend = server.interface().map(|i| i.backend().as_str().to_owned());
        server_public_key = Some(server.public_key().to_base64());
        let status = server.status().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the WireGuard peers' traffic");
            server
                .peers()
                .iter()
                .map(|p| cv_net::wg::PeerStatus {
                    peer: p.clone(),
                    stats: None,
                })
                .collect()
        });
        peers = status
            .into_iter()
            .map(|s| {
                let stats = s.stats.unwrap_or_default();
                WgPeerStatus {
                    peer: peer(&s.peer),
                    last_handshake: stats.last_handshake.and_then(to_offset),
                    rx_bytes: stats.rx_bytes,
                    tx_bytes: stats.tx_bytes,
                }
            })
            .collect();
    }
    WgOverview {
        state: vpn.state,
        reason: vpn.reason.clone(),
        interface: settings.interface.to_string(),
        backend,
        network: settings.network.to_string(),
        server_address: settings.network.server_address(),
        listen_port: settings.listen_port,
        endpoint,
        endpoint_from_config: settings.endpoint.is_some(),
        server_public_key,
        dns: settings.dns.clone(),
        client_allowed_ips: settings
            .client_allowed_ips
            .iter()
            .map(ToString::to_string)
            .collect(),
        peers,
    }
}

fn to_offset(time: SystemTime) -> Option<OffsetDateTime> {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    OffsetDateTime::from_unix_timestamp(i64::try_from(since.as_secs()).ok()?).ok()
}
