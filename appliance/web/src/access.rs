//! Who may talk to the appliance at all.
//!
//! The dashboard and API listen on the LAN and on the WireGuard interface, but a box
//! whose port is forwarded by mistake, or a guest network routed to it, must not show a
//! login page to the world. Every request of both apps is checked against
//! `network.allowed_sources` (plus the WireGuard network, which the supervisor adds, and
//! loopback) before any route runs; a refusal is a 403 page (or JSON for the API) that
//! says why and what to do. The one exception is the plain-HTTP app's ACME HTTP-01
//! answers, which a certificate authority fetches from the internet.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use futures_util::future::LocalBoxFuture;
use ipnet::IpNet;

use crate::error::WebError;
use crate::redirect::ACME_CHALLENGE_PREFIX;

/// The networks whose requests are answered.
#[derive(Debug, Clone)]
pub struct AccessPolicy {
    allowed: Arc<[IpNet]>,
}

impl AccessPolicy {
    pub fn new(allowed: Vec<IpNet>) -> AccessPolicy {
        AccessPolicy {
            allowed: allowed.into(),
        }
    }

    /// Whether a request from `source` is answered: loopback always (a process on the
    /// box itself), otherwise when an allowed network contains it. An IPv4 address seen
    /// through an IPv6 socket (`::ffff:a.b.c.d`) is judged as the IPv4 address it is.
    pub fn allows(&self, source: IpAddr) -> bool {
        let source = source.to_canonical();
        source.is_loopback() || self.allowed.iter().any(|net| net.contains(&source))
    }
}

/// Middleware (for `wrap_fn`): refuses requests from outside the policy. With
/// `acme_exempt`, HTTP-01 challenge answers pass whatever their source. A request with
/// no peer address did not come over TCP (every listener is TCP), so it is not judged.
pub(crate) fn refuse_outsiders<S, B>(
    policy: &AccessPolicy,
    acme_exempt: bool,
    req: ServiceRequest,
    service: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let exempt = acme_exempt && req.path().starts_with(ACME_CHALLENGE_PREFIX);
    let refused = req
        .peer_addr()
        .map(|peer| peer.ip())
        .filter(|ip| !exempt && !policy.allows(*ip));
    if let Some(source_ip) = refused {
        // Debug, not info: a scanner on a forwarded port would otherwise fill the log.
        tracing::debug!(%source_ip, path = req.path(), "refused a request from outside the allowed networks");
        let error = WebError::SourceRefused { source_ip };
        let response = if crate::app::wants_json(&req) {
            error.json_response()
        } else {
            actix_web::ResponseError::error_response(&error)
        };
        let response = req.into_response(response);
        return Box::pin(async move { Ok(response) });
    }
    let call = service.call(req);
    Box::pin(async move { Ok(call.await?.map_into_boxed_body()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(nets: &[&str]) -> AccessPolicy {
        AccessPolicy::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn loopback_and_listed_networks_are_allowed_and_nothing_else() {
        let p = policy(&["192.168.1.0/24", "10.213.0.0/24", "fd00::/8"]);
        for ok in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "192.168.1.77",
            "10.213.0.2",
            "fd12::5",
            // IPv4 through an IPv6 socket.
            "::ffff:192.168.1.5",
            "::ffff:127.0.0.1",
        ] {
            assert!(p.allows(ok.parse().unwrap()), "{ok} should be allowed");
        }
        for refused in [
            "192.168.2.1",
            "10.214.0.2",
            "8.8.8.8",
            "2001:db8::1",
            "::ffff:8.8.8.8",
            "0.0.0.0",
        ] {
            assert!(
                !p.allows(refused.parse().unwrap()),
                "{refused} should be refused"
            );
        }
    }

    #[test]
    fn an_empty_policy_answers_only_loopback() {
        let p = policy(&[]);
        assert!(p.allows("127.0.0.1".parse().unwrap()));
        assert!(!p.allows("192.168.1.2".parse().unwrap()));
    }
}
