//! The `mdns` task: LAN discovery. Once the ports are bound it announces
//! `<hostname>.local` and the `_https._tcp` service ([`cv_net::mdns`]), re-reads the box's
//! addresses every [`RECHECK_INTERVAL`] (announcing again when they change) and says
//! goodbye when shutdown begins.
//!
//! LAN discovery is an optional component ([`Component::is_optional`]): a responder that
//! cannot start is logged and shown on the dashboard (`failed`, with why) and tried again
//! at the next check, and never stops the appliance; it is reachable by address all the
//! same.

use std::sync::Arc;

use cv_config::Hostname;
use cv_control::ComponentState;
use cv_net::mdns::{Advertisement, RECHECK_INTERVAL, Responder};

use crate::board::Component;
use crate::{Context, Stop, TaskResult, prepare};

/// Shown while nothing qualifies to be announced.
const NO_ADDRESS: &str = "no LAN address to announce yet: no interface that is up and \
    multicast-capable has an address that `network.bind` covers";

pub async fn announce(ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    let advertisement = match advertisement(&ctx) {
        Ok(advertisement) => advertisement,
        Err(why) => {
            tracing::warn!(task = "mdns", error = %why, "LAN discovery is off");
            ctx.board
                .set(Component::Mdns, ComponentState::Stopped, None, Some(why));
            stop.requested().await;
            return Ok(());
        }
    };
    let mut responder: Option<Responder> = None;
    loop {
        match responder.as_mut() {
            None => {
                let ad = advertisement.clone();
                match tokio::task::spawn_blocking(move || Responder::start(ad)).await {
                    Ok(Ok(started)) => {
                        tracing::info!(
                            task = "mdns",
                            name = %started.advertisement().host_name(),
                            service = %started.advertisement().instance_fullname(),
                            addresses = ?started.announced(),
                            "announcing the box on the LAN"
                        );
                        show(&ctx, responder.insert(started), None);
                    }
                    Ok(Err(e)) => failed(&ctx, e.to_string()),
                    Err(e) => failed(&ctx, format!("the start panicked: {e}")),
                }
            }
            Some(running) => {
                let problem = match running.refresh() {
                    Ok(true) => {
                        tracing::info!(
                            task = "mdns",
                            addresses = ?running.announced(),
                            "the LAN addresses changed; announced again"
                        );
                        None
                    }
                    Ok(false) => None,
                    Err(e) => {
                        tracing::warn!(task = "mdns", error = %e, "announcing the new addresses failed");
                        Some(e.to_string())
                    }
                };
                show(&ctx, running, problem);
            }
        }
        tokio::select! {
            _ = stop.requested() => break,
            _ = tokio::time::sleep(RECHECK_INTERVAL) => {}
        }
    }
    if let Some(running) = responder {
        match tokio::task::spawn_blocking(move || running.stop()).await {
            Ok(Ok(())) => tracing::info!(task = "mdns", "said goodbye on the LAN"),
            Ok(Err(e)) => tracing::warn!(task = "mdns", error = %e, "stopping the responder"),
            Err(e) => tracing::warn!(task = "mdns", error = %e, "stopping the responder panicked"),
        }
    }
    ctx.board
        .set(Component::Mdns, ComponentState::Stopped, None, None);
    Ok(())
}

/// What to announce, from the config; `Err` with the reason when nothing can be.
fn advertisement(ctx: &Context) -> Result<Advertisement, String> {
    let name = prepare::hostname(&ctx.config);
    let hostname: Hostname = name
        .parse()
        .map_err(|e| format!("the host name {name:?} cannot be announced: {e}"))?;
    let advertisement = Advertisement {
        hostname: hostname.to_string(),
        https_port: ctx.config.network.https_port,
        bind: ctx.config.network.bind.clone(),
        // The VPN's own interface: a device there reaches the box through the tunnel by
        // its VPN address; a LAN phone given that address could not use it. (WireGuard
        // interfaces also lack the MULTICAST flag, which excludes them already; the name
        // makes it explicit.)
        exclude_interfaces: vec![ctx.config.wireguard.settings.interface.to_string()],
    };
    if !advertisement.reachable_from_lan() {
        return Err(
            "`network.bind` lists only loopback addresses, so the box cannot be reached \
             from the LAN: nothing to announce (set `network.mdns = false` to hide this)"
                .to_owned(),
        );
    }
    Ok(advertisement)
}

fn failed(ctx: &Context, why: String) {
    tracing::warn!(
        task = "mdns",
        error = %why,
        retry_in = ?RECHECK_INTERVAL,
        "LAN discovery could not start; the box is still reachable by address"
    );
    ctx.board
        .set(Component::Mdns, ComponentState::Failed, None, Some(why));
}

/// Puts the responder's state on the board: up while it announces an address, starting
/// while it waits for one; the latest problem (its own or `problem`) as the last error.
fn show(ctx: &Context, responder: &mut Responder, problem: Option<String>) {
    let mut problems: Vec<String> = problem.into_iter().collect();
    for notice in responder.notices() {
        tracing::warn!(task = "mdns", %notice, "LAN discovery");
        problems.push(notice.to_string());
    }
    if responder.announced().is_empty() {
        problems.push(NO_ADDRESS.to_owned());
    }
    let state = if responder.announced().is_empty() {
        ComponentState::Starting
    } else {
        ComponentState::Up
    };
    ctx.board.set(Component::Mdns, state, None, problems.pop());
}
