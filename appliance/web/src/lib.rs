//! The vault service's web front: the unprivileged HTTPS service (`contextvault serve`).
//!
//! The supervisor (root) binds the listening sockets, starts this process as an
//! unprivileged user and writes a [`ServiceHandoff`] to its stdin. [`serve`] then, in
//! order:
//!
//! 1. takes over the inherited sockets ([`sockets`]);
//! 2. loads the TLS certificate into a resolver that reloads it on `SIGHUP` ([`tls`]);
//! 3. creates the database pool, which connects lazily, so the service starts (and shows
//!    a "starting or recovering" page) while PostgreSQL is still down;
//! 4. serves the HTTPS app ([`app`]) and the plain-HTTP redirect app ([`redirect`]),
//!    then tells the supervisor it is ready;
//! 5. runs the named background tasks (session cleanup, certificate reload) until
//!    `SIGTERM` or `SIGINT`, then stops both servers gracefully and returns `Ok(())`.
//!
//! Pages are server-rendered askama templates (`templates/` at the workspace root) that
//! work without JavaScript. Errors follow one policy, written at the top of [`error`].

// A failing `unwrap` in a test is the test failing, with its location: the right tool.

pub mod access;
pub mod ai;
pub mod api;
pub mod app;
mod assets;
mod diff;
pub mod error;
mod format;
mod health;
mod index;
mod insights;
mod keyring;
mod markdown;
mod pages;
pub mod redirect;
mod semantic;
pub mod session;
mod sockets;
mod state;
pub mod throttle;
pub mod tls;
mod zone;

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpServer, web};
use cv_control::{ControlClient, ServiceHandoff};
use tracing::{info, warn};

pub use crate::error::WebError;
use crate::session::SessionPolicy;
use crate::state::{AppState, StatusCache};
use crate::tls::CertResolver;

/// How long workers may finish in-flight requests after `SIGTERM` before they are
/// dropped. Well under systemd's default `TimeoutStopSec` of 90 s, so the supervisor
/// never has to escalate to `SIGKILL` for a slow client.
pub const SHUTDOWN_GRACE_SECS: u64 = 10;

/// How long a client has to send a request's headers (from the connection's start, or
/// the previous response on a kept-alive one) before it gets a 408 and is closed.
/// actix-web's default, stated here because it is what stops a client from holding a
/// connection open by sending headers slowly; bodies have their own deadline
/// (`app::body_deadline`).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a TLS handshake may take before the connection is dropped: actix-web's
/// default, stated for the same reason as [`HEADER_TIMEOUT`].
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(3);

/// How often expired sessions are removed from the database. Expired sessions are
/// already refused when used; the sweep only keeps the table small.
pub const SESSION_SWEEP_INTERVAL: Duration = Duration::from_secs(10 * 60);

/// Connections in the database pool; see `cv_db::pool` for the sizing argument.
pub const DB_POOL_SIZE: usize = 16;

/// Why the service could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the handoff names no HTTPS listening socket")]
    NoHttpsSocket,
    #[error("file descriptor {fd} is not a usable listening socket: {reason}")]
    BadSocket { fd: i32, reason: String },
    #[error("cannot load the TLS certificate: {0}")]
    Tls(#[from] tls::CertError),
    #[error("cannot create the database pool: {0}")]
    Database(#[from] cv_db::DbError),
    #[error("cannot install the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        source: std::io::Error,
    },
    #[error("the {server} server failed: {source}")]
    Server {
        server: &'static str,
        source: std::io::Error,
    },
}

/// Builds the async runtime (an actix `System`) and runs [`serve`] on it. For binaries
/// that do not already run inside one.
pub fn run_blocking(handoff: ServiceHandoff) -> Result<(), ServeError> {
    actix_web::rt::System::new().block_on(serve(handoff))
}

/// Serves until `SIGTERM`/`SIGINT`. Must run inside an actix `System` (see
/// [`run_blocking`], or `#[actix_web::main]`).
pub async fn serve(handoff: ServiceHandoff) -> Result<(), ServeError> {
    // 1. Sockets first: a bad handoff is reported before anything else happens.
    if handoff.https_fds.is_empty() {
        return Err(ServeError::NoHttpsSocket);
    }
    let (https_listeners, http_listeners) =
        sockets::take_all(&handoff.https_fds, &handoff.http_fds)?;

    // 2. TLS with a certificate that can be replaced while serving.
    let pki = cv_net::tls::PkiPaths::new(&handoff.tls_dir);
    let resolver = Arc::new(CertResolver::load(
        pki.clone(),
        handoff.acme_tls_alpn_dir.clone(),
    )?);
    let tls_config = tls::server_config(resolver.clone())?;

    // Logins for unknown names verify against a dummy hash so that they take as long
    // as real ones; computing it now keeps the first such login from standing out.
    actix_web::rt::task::spawn_blocking(|| {
        cv_crypto::password::dummy_hash();
    });

    // 3. The pool connects on first use: no PostgreSQL needed to start.
    let pool = cv_db::pool(&handoff.database, DB_POOL_SIZE)?;
    let control = ControlClient::new(&handoff.control_socket);
    let state = web::Data::new(AppState {
        pool,
        status: StatusCache::new(control.clone()),
        pki,
        tls: resolver.clone(),
        throttle: std::sync::Mutex::new(throttle::Throttle::default()),
        sealers: state::Sealers::default(),
        keyring: keyring::Keyring::new(time::Duration::seconds(
            i64::try_from(handoff.vault_lock_secs).unwrap_or(i64::MAX),
        )),
        sessions: SessionPolicy::from_secs(
            handoff.session_idle_timeout_secs,
            handoff.session_absolute_timeout_secs,
        ),
        ai: ai::Ai::start(control.clone(), &handoff.workers),
        insights: handoff.insights.clone(),
        access: access::AccessPolicy::new(handoff.allowed_sources.clone()),
        https_port: handoff.https_port,
        zone: zone::ZoneCache::default(),
        version: handoff.version.clone(),
        mode: handoff.mode.clone(),
    });

    // 4. Both servers. Signals are ours (below), so the two servers stop together.
    let mut https = {
        let state = state.clone();
        HttpServer::new(move || app::https_app(state.clone()))
            .disable_signals()
            .shutdown_timeout(SHUTDOWN_GRACE_SECS)
            .client_request_timeout(HEADER_TIMEOUT)
            .tls_handshake_timeout(TLS_HANDSHAKE_TIMEOUT)
    };
    for listener in https_listeners {
        let addr = listener.local_addr().ok();
        https = https
            .listen_rustls_0_23(listener, tls_config.clone())
            .map_err(|source| ServeError::Server {
                server: "HTTPS",
                source,
            })?;
        info!(?addr, "serving HTTPS");
    }
    let https = https.run();

    let https_port = handoff.https_port;
    let access = state.access.clone();
    let acme_http_dir = handoff.acme_http_dir.clone();
    let mut http = HttpServer::new(move || {
        redirect::redirect_app(https_port, acme_http_dir.clone(), access.clone())
    })
    .disable_signals()
    .shutdown_timeout(SHUTDOWN_GRACE_SECS)
    .client_request_timeout(HEADER_TIMEOUT)
    // Redirects are trivial; one worker is plenty.
    .workers(1);
    for listener in http_listeners {
        let addr = listener.local_addr().ok();
        http = http.listen(listener).map_err(|source| ServeError::Server {
            server: "HTTP redirect",
            source,
        })?;
        info!(?addr, "serving plain-HTTP redirects");
    }
    let http = http.run();

    // 5. Named background tasks.
    let stop = tasks::spawn_shutdown_on_signal(vec![https.handle(), http.handle()])?;
    tasks::spawn_cert_reload(resolver)?;
    tasks::spawn_session_sweep(state.clone());
    tasks::spawn_vault_lock(state.clone());
    insights::spawn(state.clone());

    // The sockets were listening before we started (the supervisor bound them), so
    // connections queue in the backlog until the workers accept: ready means ready.
    match control.service_ready(std::process::id()).await {
        Ok(()) => info!(pid = std::process::id(), "told the supervisor we are ready"),
        Err(e) => warn!(error = %e, "could not tell the supervisor we are ready"),
    }

    let (https_result, http_result) = futures_util::future::join(https, http).await;
    stop.abort();
    state.ai.shutdown().await;
    https_result.map_err(|source| ServeError::Server {
        server: "HTTPS",
        source,
    })?;
    http_result.map_err(|source| ServeError::Server {
        server: "HTTP redirect",
        source,
    })?;
    info!("stopped");
    Ok(())
}

/// The service's long-running tasks, each named in its logs.
mod tasks {
    use std::sync::Arc;

    use actix_web::dev::ServerHandle;
    use actix_web::rt::task::JoinHandle;
    use actix_web::web;
    use tokio::signal::unix::{SignalKind, signal};
    use tracing::{debug, info, warn};

    use super::{SESSION_SWEEP_INTERVAL, ServeError};
    use crate::state::AppState;
    use crate::tls::CertResolver;

    /// Task `shutdown`: on SIGTERM (the supervisor, systemd) or SIGINT (a terminal),
    /// stops every server gracefully; `serve` then returns `Ok(())`, so the exit status
    /// is 0.
    pub(super) fn spawn_shutdown_on_signal(
        servers: Vec<ServerHandle>,
    ) -> Result<JoinHandle<()>, ServeError> {
        let mut term = signal(SignalKind::terminate()).map_err(|source| ServeError::Signal {
            signal: "SIGTERM",
            source,
        })?;
        let mut int = signal(SignalKind::interrupt()).map_err(|source| ServeError::Signal {
            signal: "SIGINT",
            source,
        })?;
        Ok(actix_web::rt::spawn(async move {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            info!(task = "shutdown", signal = name, "stopping gracefully");
            let stops = servers.iter().map(|s| s.stop(true));
            futures_util::future::join_all(stops).await;
        }))
    }

    /// Task `cert-reload`: on SIGHUP (sent by the supervisor after it renewed the
    /// certificate) re-reads `server.crt`/`server.key`; new connections get the new
    /// certificate, and a broken file keeps the old one in use.
    pub(super) fn spawn_cert_reload(resolver: Arc<CertResolver>) -> Result<(), ServeError> {
        let mut hup = signal(SignalKind::hangup()).map_err(|source| ServeError::Signal {
            signal: "SIGHUP",
            source,
        })?;
        actix_web::rt::spawn(async move {
            while hup.recv().await.is_some() {
                match resolver.reload() {
                    Ok(()) => info!(task = "cert-reload", "reloaded the TLS certificate"),
                    Err(e) => warn!(
                        task = "cert-reload",
                        error = %e,
                        "kept the previous TLS certificate: the new one could not be loaded"
                    ),
                }
            }
        });
        Ok(())
    }

    /// Task `vault-lock`: once a minute, locks the vaults nobody used for the configured
    /// idle time, so their keys leave memory even when no request comes.
    pub(super) fn spawn_vault_lock(state: web::Data<AppState>) {
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                let locked = state.keyring.lock_idle(time::OffsetDateTime::now_utc());
                if locked > 0 {
                    info!(task = "vault-lock", locked, "locked idle vaults");
                }
            }
        });
    }

    /// Task `session-sweep`: deletes expired sessions every
    /// [`SESSION_SWEEP_INTERVAL`]. While the database is unavailable it simply tries
    /// again next time.
    pub(super) fn spawn_session_sweep(state: web::Data<AppState>) {
        actix_web::rt::spawn(async move {
            let mut tick = tokio::time::interval(SESSION_SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let mut conn = match cv_db::connect(&state.pool).await {
                    Ok(conn) => conn,
                    Err(e) => {
                        debug!(task = "session-sweep", error = %e, "database unavailable; skipped");
                        continue;
                    }
                };
                let now = time::OffsetDateTime::now_utc();
                match cv_db::SessionRecord::delete_expired(&mut conn, now).await {
                    Ok(0) => {}
                    Ok(n) => info!(
                        task = "session-sweep",
                        removed = n,
                        "removed expired sessions"
                    ),
                    Err(cv_db::DbError::Unavailable(e)) => {
                        debug!(task = "session-sweep", error = %e, "database unavailable; skipped");
                    }
                    Err(e) => {
                        warn!(task = "session-sweep", error = %e, "could not remove expired sessions")
                    }
                }
            }
        });
    }
}
