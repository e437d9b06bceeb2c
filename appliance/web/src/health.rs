//! `GET /healthz`: the whole stack's health, for the supervisor's update check, load
//! balancers and people with curl. Public: it names states, never secrets.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::{HttpResponse, web};
use cv_control::ApplianceStatus;
use serde::Serialize;

use crate::state::AppState;

/// How long the service's own database check may take before it counts as down.
pub(crate) const DB_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) fn config(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct Health {
    /// "ok" when every component the appliance needs is up, else "unavailable".
    pub status: &'static str,
    pub version: String,
    pub components: BTreeMap<String, ComponentHealth>,
    /// Names of the components that are not up, sorted; optional components (LAN
    /// discovery) are reported in `components` but never listed here. In appliance mode
    /// a local AI that cannot start is listed as `ai` (see [`Health::count_ai`]).
    pub failing: Vec<String>,
    /// The local AI's workers. In dev mode reported, but not counted in `failing`: notes,
    /// search by words and everything else work without them. In appliance mode a
    /// `failing` AI counts (see [`Health::count_ai`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ai: Option<crate::ai::AiHealth>,
    /// The ACME certificate. Reported, not counted in `failing`: while ACME fails the
    /// box keeps serving the certificate it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeHealth>,
}

/// The ACME certificate as `/healthz` shows it: states, dates and a fixed word for the
/// last error (the full message, which may name files, is on the dashboard).
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct AcmeHealth {
    /// `disabled`, `pending` (no certificate yet), `valid` or `failing` (the last
    /// attempt failed; a certificate may still be served).
    pub state: &'static str,
    pub names: Vec<String>,
    pub challenge: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub not_after: Option<time::OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub last_attempt: Option<time::OffsetDateTime>,
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub next_attempt: Option<time::OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AcmeHealth {
    pub(crate) fn from_status(acme: &cv_control::AcmeStatus) -> AcmeHealth {
        let state = if !acme.enabled {
            "disabled"
        } else if acme.last_error.is_some() {
            "failing"
        } else if acme.serial.is_some() {
            "valid"
        } else {
            "pending"
        };
        AcmeHealth {
            state,
            names: acme.names.clone(),
            challenge: acme.challenge.clone(),
            issuer: acme.issuer.clone(),
            serial: acme.serial.clone(),
            not_after: acme.not_after,
            last_attempt: acme.last_attempt,
            next_attempt: acme.next_attempt,
            error: acme.last_error_kind.clone(),
        }
    }
}

#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct ComponentHealth {
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restarts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
    /// The appliance works without it; written only when true.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let status = state.status.get().await;
    let database = check_database(&state).await;
    let mut health = build(&state.version, status.as_deref().map_err(|_| ()), database);
    health.count_ai(state.ai.health(), state.mode == "appliance");
    let code = if health.failing.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    HttpResponse::build(code)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(health)
}

impl Health {
    /// Adds the local AI. On an appliance (`contextvault run`) the box was set up to run
    /// its AI, so an AI that cannot start (`failing`: every worker is backing off after
    /// failed starts) is a failure of the box: it is listed in `failing` as `ai` and the
    /// status is `unavailable` (HTTP 503), like any other failing component, so the
    /// update check and the console do not call a box "ok" whose search by meaning and
    /// suggestions are gone. An AI that is `off` (`workers.count = 0`) or still
    /// `starting` does not count. In dev mode nothing changes: the AI is reported only.
    pub(crate) fn count_ai(&mut self, ai: crate::ai::AiHealth, appliance: bool) {
        if appliance && ai.state == "failing" {
            self.failing.push("ai".to_owned());
            self.failing.sort();
            self.status = "unavailable";
        }
        self.ai = Some(ai);
    }
}

/// `SELECT 1` on a pooled connection within [`DB_CHECK_TIMEOUT`]. The error is a fixed
/// word: the endpoint is public and connection errors can name hosts and paths.
async fn check_database(state: &AppState) -> Result<(), &'static str> {
    use diesel_async::RunQueryDsl as _;
    let check = async {
        let mut conn = cv_db::connect(&state.pool).await.map_err(|e| {
            tracing::debug!(error = %e, "health check: no database connection");
            "unreachable"
        })?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map(drop)
            .map_err(|e| {
                tracing::warn!(error = %e, "health check: SELECT 1 failed");
                "query failed"
            })
    };
    match tokio::time::timeout(DB_CHECK_TIMEOUT, check).await {
        Ok(result) => result,
        Err(_) => Err("timeout"),
    }
}

/// The health document from what the supervisor said (or `Err` if it could not be
/// asked) and the service's own database check.
pub(crate) fn build(
    version: &str,
    status: Result<&ApplianceStatus, ()>,
    database: Result<(), &'static str>,
) -> Health {
    let mut components = BTreeMap::new();
    match status {
        Ok(status) => {
            components.insert(
                "supervisor".to_owned(),
                ComponentHealth {
                    state: "up",
                    restarts: None,
                    error: None,
                    optional: false,
                },
            );
            for c in &status.components {
                components.insert(
                    c.name.clone(),
                    ComponentHealth {
                        state: c.state.as_str(),
                        restarts: Some(c.restarts),
                        error: None,
                        optional: c.optional,
                    },
                );
            }
        }
        Err(()) => {
            components.insert(
                "supervisor".to_owned(),
                ComponentHealth {
                    state: "down",
                    restarts: None,
                    error: Some("unreachable"),
                    optional: false,
                },
            );
        }
    }
    components.insert(
        "database".to_owned(),
        match database {
            Ok(()) => ComponentHealth {
                state: "up",
                restarts: None,
                error: None,
                optional: false,
            },
            Err(error) => ComponentHealth {
                state: "down",
                restarts: None,
                error: Some(error),
                optional: false,
            },
        },
    );
    // A component that is off (WireGuard disabled, or not possible here) is not failing.
    let failing: Vec<String> = components
        .iter()
        .filter(|(_, c)| c.state != "up" && c.state != "off" && !c.optional)
        .map(|(name, _)| name.clone())
        .collect();
    Health {
        status: if failing.is_empty() {
            "ok"
        } else {
            "unavailable"
        },
        version: status.map_or_else(|()| version.to_owned(), |s| s.version.clone()),
        components,
        failing,
        ai: None,
        acme: status
            .ok()
            .and_then(|s| s.acme.as_deref())
            .map(AcmeHealth::from_status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cv_control::{ComponentState, ComponentStatus};
    use time::macros::datetime;

    fn status(vault: ComponentState) -> ApplianceStatus {
        let component = |name: &str, state| ComponentStatus {
            name: name.into(),
            state,
            since: datetime!(2026-01-01 0:00 UTC),
            restarts: 1,
            pid: None,
            last_error: None,
            optional: name == "mdns",
        };
        ApplianceStatus {
            version: "9.9.9".into(),
            mode: "dev".into(),
            started_at: datetime!(2026-01-01 0:00 UTC),
            components: vec![
                component("postgres", ComponentState::Up),
                component("vault", vault),
                component("mdns", ComponentState::Failed),
            ],
            disk: None,
            acme: None,
            update: None,
            storage: None,
            backup: None,
        }
    }

    #[test]
    fn all_up_is_ok() {
        let s = status(ComponentState::Up);
        let h = build("0", Ok(&s), Ok(()));
        assert_eq!(h.status, "ok");
        assert!(h.failing.is_empty());
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["version"], "9.9.9");
        assert_eq!(json["components"]["supervisor"]["state"], "up");
        assert_eq!(json["components"]["postgres"]["restarts"], 1);
        assert_eq!(json["components"]["database"]["state"], "up");
        assert!(json["components"]["database"].get("error").is_none());
        // An optional component that is down is shown, and marked, but not failing.
        assert_eq!(json["components"]["mdns"]["state"], "failed");
        assert_eq!(json["components"]["mdns"]["optional"], true);
        assert!(json["components"]["postgres"].get("optional").is_none());
    }

    #[test]
    fn anything_down_is_listed() {
        let s = status(ComponentState::Starting);
        let h = build("0", Ok(&s), Err("timeout"));
        assert_eq!(h.status, "unavailable");
        assert_eq!(h.failing, ["database", "vault"]);
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["components"]["database"]["error"], "timeout");
        assert_eq!(json["components"]["vault"]["state"], "starting");
    }

    #[test]
    fn a_component_that_is_off_is_not_failing() {
        let mut s = status(ComponentState::Up);
        s.components.push(ComponentStatus {
            name: "wireguard".into(),
            state: ComponentState::Off,
            since: datetime!(2026-01-01 0:00 UTC),
            restarts: 0,
            pid: None,
            last_error: Some("disabled in the config".into()),
            optional: false,
        });
        let h = build("0", Ok(&s), Ok(()));
        assert_eq!(h.status, "ok");
        let json = serde_json::to_value(&h).unwrap();
        assert_eq!(json["components"]["wireguard"]["state"], "off");
        s.components[3].state = ComponentState::Failed;
        assert_eq!(build("0", Ok(&s), Ok(())).failing, ["wireguard"]);
    }

    fn ai(state: &'static str) -> crate::ai::AiHealth {
        crate::ai::AiHealth {
            state,
            workers: 1,
            ready: usize::from(state == "up"),
            provider: None,
            restarts: 3,
            jail_missing: Vec::new(),
        }
    }

    #[test]
    fn a_failing_ai_fails_an_appliance_but_not_dev_mode() {
        let s = status(ComponentState::Up);
        let mut dev = build("0", Ok(&s), Ok(()));
        dev.count_ai(ai("failing"), false);
        assert_eq!(dev.status, "ok");
        assert!(dev.failing.is_empty());

        let mut appliance = build("0", Ok(&s), Ok(()));
        appliance.count_ai(ai("failing"), true);
        assert_eq!(appliance.status, "unavailable");
        assert_eq!(appliance.failing, ["ai"]);
        // The document keeps its shape: the AI object is still there, in full.
        let json = serde_json::to_value(&appliance).unwrap();
        assert_eq!(json["ai"]["state"], "failing");
        assert_eq!(json["ai"]["restarts"], 3);
        assert_eq!(json["components"]["postgres"]["state"], "up");
        assert!(json["components"].get("ai").is_none());

        // Sorted in among the other failures.
        let down = status(ComponentState::Starting);
        let mut both = build("0", Ok(&down), Err("timeout"));
        both.count_ai(ai("failing"), true);
        assert_eq!(both.failing, ["ai", "database", "vault"]);
    }

    #[test]
    fn an_ai_that_is_off_starting_or_up_does_not_fail_an_appliance() {
        let s = status(ComponentState::Up);
        for state in ["off", "starting", "up"] {
            let mut h = build("0", Ok(&s), Ok(()));
            h.count_ai(ai(state), true);
            assert_eq!((h.status, h.failing.len()), ("ok", 0), "{state}");
            assert_eq!(h.ai.as_ref().map(|a| a.state), Some(state));
        }
    }

    #[test]
    fn an_unreachable_supervisor_is_a_failure() {
        let h = build("0.1.0", Err(()), Ok(()));
        assert_eq!(h.failing, ["supervisor"]);
        assert_eq!(h.version, "0.1.0");
    }
}
