//! What every request handler shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use cv_control::{ApplianceStatus, ControlClient};
use cv_crypto::vault::{CapturePublicKey, CaptureSealer};
use cv_db::{DbConn, DbError, DbPool};
use cv_net::tls::PkiPaths;

use crate::error::WebError;
use crate::keyring::Keyring;
use crate::session::SessionPolicy;
use crate::throttle::Throttle;
use crate::tls::CertResolver;

/// State shared by the workers of the HTTPS app (behind `web::Data`).
pub(crate) struct AppState {
    pub pool: DbPool,
    pub status: StatusCache,
    pub pki: PkiPaths,
    pub tls: Arc<CertResolver>,
    pub throttle: Mutex<Throttle>,
    /// Unlocked vaults (RAM only).
    pub keyring: Keyring,
    /// Sealers of locked vaults (RAM only).
    pub sealers: Sealers,
    pub sessions: SessionPolicy,
    /// The jailed AI workers.
    pub ai: crate::ai::Ai,
    /// The `[insights]` settings.
    pub insights: cv_control::InsightSettings,
    /// The networks whose requests are answered.
    pub access: crate::access::AccessPolicy,
    /// The port HTTPS is served on as clients reach it (the one the plain-HTTP redirect
    /// names), for addresses shown to people.
    pub https_port: u16,
    /// The time zone pages show times in (`crate::zone`).
    pub zone: crate::zone::ZoneCache,
    /// From the handoff, for when the supervisor cannot be asked.
    pub version: String,
    pub mode: String,
}

/// Each person's capture sealer while their vault is locked: one X25519 exchange per
/// chain of captures (`cv_crypto::vault::CaptureSealer`). Forgotten when the vault
/// unlocks, so every locked spell starts a new chain.
#[derive(Default)]
pub(crate) struct Sealers(Mutex<HashMap<cv_db::UserId, Arc<Mutex<CaptureSealer>>>>);

impl Sealers {
    fn map(&self) -> MutexGuard<'_, HashMap<cv_db::UserId, Arc<Mutex<CaptureSealer>>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The person's sealer, started if there is none (or if it seals to another key).
    pub fn get(&self, user: cv_db::UserId, public: &CapturePublicKey) -> Arc<Mutex<CaptureSealer>> {
        let mut sealers = self.map();
        let sealer = sealers
            .entry(user)
            .or_insert_with(|| Arc::new(Mutex::new(CaptureSealer::new(public))));
        let current = sealer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recipient()
            == *public;
        if !current {
            *sealer = Arc::new(Mutex::new(CaptureSealer::new(public)));
        }
        sealer.clone()
    }

    pub fn forget(&self, user: cv_db::UserId) {
        self.map().remove(&user);
    }
}

impl AppState {
    /// A pooled connection, or the 503 "starting or recovering" error naming what the
    /// supervisor says PostgreSQL is doing.
    pub async fn conn(&self) -> Result<DbConn, WebError> {
        match cv_db::connect(&self.pool).await {
            Ok(conn) => Ok(conn),
            Err(e) => Err(self.db_error(e).await),
        }
    }

    /// Maps a database error, asking the supervisor for PostgreSQL's state when the
    /// database is unavailable.
    pub async fn db_error(&self, e: DbError) -> WebError {
        match e {
            DbError::Unavailable(reason) => {
                tracing::warn!(%reason, "database unavailable");
                let postgres = self
                    .status
                    .get()
                    .await
                    .ok()
                    .and_then(|s| s.component("postgres").map(|c| c.state.as_str()));
                WebError::DatabaseUnavailable { postgres }
            }
            other => WebError::from(other),
        }
    }

    /// Records an event in the account's audit log. A failure to record is logged, not
    /// shown: it must not turn a login or an export into an error page.
    pub async fn audit(
        &self,
        user: cv_db::UserId,
        event: cv_db::audit::Event,
        detail: &str,
        client: Option<std::net::IpAddr>,
    ) {
        let client = client.map(|ip| ip.to_string());
        let result = match cv_db::connect(&self.pool).await {
            Ok(mut conn) => {
                cv_db::audit::record(&mut conn, user, event, detail, client.as_deref()).await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            tracing::warn!(%user, event = event.as_str(), error = %e, "could not record an audit event");
        }
    }

    /// The person's unlocked vault, or the "vault locked" error.
    pub fn unlocked(&self, user: cv_db::UserId) -> Result<crate::keyring::Unlocked, WebError> {
        self.keyring
            .get(user, time::OffsetDateTime::now_utc())
            .ok_or(WebError::VaultLocked)
    }

    /// The appliance's time zone, for pages: the owner's choice (read from the database
    /// once), else the box's own. When the database cannot be read the box's zone is
    /// used for this page only, and the next page asks again.
    pub async fn time_zone(&self) -> jiff::tz::TimeZone {
        if let Some(tz) = self.zone.cached() {
            return tz;
        }
        let stored = match cv_db::connect(&self.pool).await {
            Ok(mut conn) => cv_db::settings::time_zone(&mut conn).await,
            Err(e) => Err(e),
        };
        match stored {
            Ok(stored) => {
                let tz = stored
                    .and_then(|name| {
                        crate::zone::parse(&name)
                            .map_err(|_| {
                                tracing::warn!(zone = %name, "the stored time zone is unknown; using the box's");
                            })
                            .ok()
                    })
                    .unwrap_or_else(crate::zone::system_default);
                self.zone.set(tz.clone());
                tz
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the time zone yet");
                crate::zone::system_default()
            }
        }
    }

    pub fn throttle(&self) -> MutexGuard<'_, Throttle> {
        // A panic while holding the lock cannot leave the counters inconsistent in a
        // way that matters; keep using them.
        self.throttle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How long a supervisor status answer is reused: a load test on `/healthz` or the
/// dashboard then costs the control socket at most one exchange a second.
pub(crate) const STATUS_TTL: Duration = Duration::from_secs(1);

/// The supervisor's last answer (or failure to answer), reused for [`STATUS_TTL`].
pub(crate) struct StatusCache {
    client: ControlClient,
    /// An async mutex held across the exchange, so concurrent requests wait for one
    /// answer instead of all asking at once.
    slot: tokio::sync::Mutex<Option<(Instant, StatusAnswer)>>,
}

/// The status, or why the supervisor could not be asked.
type StatusAnswer = Result<Arc<ApplianceStatus>, String>;

impl StatusCache {
    /// The supervisor's control socket, for requests other than status.
    pub fn control(&self) -> &ControlClient {
        &self.client
    }

    pub fn new(client: ControlClient) -> Self {
        StatusCache {
            client,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The appliance status, or why the supervisor could not be asked (for people who
    /// are logged in; never secret, but it names the socket path).
    pub async fn get(&self) -> StatusAnswer {
        let mut slot = self.slot.lock().await;
        if let Some((at, answer)) = slot.as_ref()
            && at.elapsed() < STATUS_TTL
        {
            return answer.clone();
        }
        let answer = self.client.status().await.map(Arc::new).map_err(|e| {
            tracing::warn!(error = %e, "cannot get the appliance status from the supervisor");
            e.to_string()
        });
        *slot = Some((Instant::now(), answer.clone()));
        answer
    }
}
