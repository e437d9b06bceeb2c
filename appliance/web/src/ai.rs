//! The vault service's side of the local AI: a pool of jailed workers (`cv_worker::pool`)
//! that the supervisor starts and stops on request, and what the dashboard and `/healthz`
//! say about them.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use cv_control::{ControlClient, WorkerSettings, WorkerStarted};
use cv_worker::pool::{Ended, Pool, PoolConfig, PoolStatus, SlotState, Spawned, Spawner};
use serde::Serialize;

/// Starts and stops workers through the supervisor's control socket.
#[derive(Debug, Clone)]
pub struct ControlSpawner {
    control: ControlClient,
}

impl ControlSpawner {
    pub fn new(control: ControlClient) -> ControlSpawner {
        ControlSpawner { control }
    }
}

impl Spawner for ControlSpawner {
    /// The supervisor's description: its host pid and its jail's report.
    type Info = WorkerStarted;

    async fn spawn(&self) -> Result<Spawned<WorkerStarted>, String> {
        // If the pool gives up on this future, the socket (once received) is dropped
        // and the worker exits on its closed connection; before that, the supervisor
        // stops a worker it could not hand over.
        let (started, fd) = self
            .control
            .spawn_worker()
            .await
            .map_err(|e| e.to_string())?;
        Ok(Spawned {
            id: started.id,
            stream: UnixStream::from(fd),
            info: started,
        })
    }

    async fn stop(&self, id: u64, grace: Duration) -> Result<Ended, String> {
        let ended = self
            .control
            .stop_worker(id, grace)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Ended {
            status: ended.status,
            oom_killed: ended.oom_killed,
        })
    }
}

/// The pool's settings from the config (`[workers]`, through the handoff).
pub fn pool_config(settings: &WorkerSettings) -> PoolConfig {
    PoolConfig {
        workers: settings.count as usize,
        request_timeout: Duration::from_secs(settings.request_timeout_secs),
        max_requests: settings.max_requests,
        max_age: Duration::from_secs(settings.max_age_secs),
        max_idle: Duration::from_secs(settings.max_idle_secs),
        ..PoolConfig::default()
    }
}

/// The local AI of this service: its worker pool, or none when `workers.count` is 0.
#[derive(Debug)]
pub(crate) struct Ai {
    pub pool: Option<Pool<ControlSpawner>>,
}

impl Ai {
    pub fn start(control: ControlClient, settings: &WorkerSettings) -> Ai {
        let pool = (settings.count > 0)
            .then(|| Pool::start(ControlSpawner::new(control), pool_config(settings)));
        Ai { pool }
    }

    pub async fn shutdown(&self) {
        if let Some(pool) = &self.pool {
            pool.shutdown().await;
        }
    }

    /// What `/healthz` says: states and names, never an error text.
    pub fn health(&self) -> AiHealth {
        let Some(pool) = &self.pool else {
            return AiHealth {
                state: "off",
                workers: 0,
                ready: 0,
                provider: None,
                restarts: 0,
                jail_missing: Vec::new(),
            };
        };
        let status = pool.status();
        let ready = ready(&status);
        let state = state_of(&status);
        let workers = status.slots.iter().filter_map(|s| s.worker.as_ref());
        let mut jail_missing: Vec<String> = workers
            .clone()
            .flat_map(|w| w.info.jail.missing().map(|p| p.name.clone()))
            .collect();
        jail_missing.sort();
        jail_missing.dedup();
        AiHealth {
            state,
            workers: status.slots.len(),
            ready,
            provider: workers.clone().find_map(|w| w.provider.clone()),
            restarts: status.restarts,
            jail_missing,
        }
    }
}

/// Slots whose worker is ready or answering.
fn ready(status: &PoolStatus<WorkerStarted>) -> usize {
    status
        .slots
        .iter()
        .filter(|s| matches!(s.state, SlotState::Ready | SlotState::Busy))
        .count()
}

fn state_of(status: &PoolStatus<WorkerStarted>) -> &'static str {
    if ready(status) > 0 {
        "up"
    } else if status
        .slots
        .iter()
        .all(|s| s.state == SlotState::BackingOff)
    {
        "failing"
    } else {
        "starting"
    }
}

/// The local AI in `/healthz`.
#[derive(Debug, Serialize, PartialEq)]
pub(crate) struct AiHealth {
    /// "off" (`workers.count` = 0), "starting", "up" (a worker is ready) or "failing"
    /// (no worker can start; the dashboard says why).
    pub state: &'static str,
    /// Workers configured, and ready.
    pub workers: usize,
    pub ready: usize,
    /// The execution provider in use ("cpu", "cuda").
    pub provider: Option<String>,
    pub restarts: u64,
    /// The jail protections missing in a running worker (empty on an appliance, which
    /// refuses to start a worker without them), by their stable names.
    pub jail_missing: Vec<String>,
}

/// The local AI on the dashboard.
#[derive(Debug, Clone)]
pub(crate) struct AiView {
    pub state: &'static str,
    /// CSS modifier: `ok`, `busy` or `bad`.
    pub tone: &'static str,
    pub workers: Vec<WorkerView>,
    pub served: u64,
    pub restarts: u64,
    pub recycled: u64,
    /// The last failure and how long ago it was.
    pub last_error: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub(crate) struct WorkerView {
    pub slot: usize,
    pub state: &'static str,
    pub tone: &'static str,
    /// The supervisor's number for the worker, and its pid on the host.
    pub id: Option<u64>,
    pub pid: Option<u32>,
    pub provider: Option<String>,
    /// Why the worker is not on the provider it prefers (a GPU it could not use).
    pub provider_note: Option<String>,
    pub served: u64,
    pub running_for: Option<String>,
    /// While backing off: when the next start is tried.
    pub next_try_in: Option<String>,
    /// `None` without a worker; else the protections not in force (label, why).
    pub jail_missing: Option<Vec<(String, String)>>,
    /// The device nodes reachable in the worker's jail, when they are more than the
    /// five every jail has (a GPU's), and those asked for but left out.
    pub devices: Option<String>,
}

/// The device protection's detail when the jail holds (or was asked for) devices beyond
/// the five every jail has: "/dev/null, …; asked for: /dev/nvidia0, …; left out: …".
fn extra_devices(jail: &cv_control::WorkerJail) -> Option<String> {
    jail.protections
        .iter()
        .find(|p| p.name == "device_nodes" && p.applied)
        .filter(|p| p.detail.contains("; "))
        .map(|p| p.detail.clone())
}

impl Ai {
    /// What the dashboard shows (people signed in: error texts included, never content;
    /// the pool's errors never carry texts).
    pub fn view(&self, now: time::OffsetDateTime) -> Option<AiView> {
        use crate::format::human_duration;
        let pool = self.pool.as_ref()?;
        let status = pool.status();
        let state = state_of(&status);
        let workers = status
            .slots
            .iter()
            .enumerate()
            .map(|(slot, s)| WorkerView {
                slot: slot + 1,
                state: s.state.as_str(),
                tone: match s.state {
                    SlotState::Ready | SlotState::Busy => "ok",
                    SlotState::Starting | SlotState::Stopping => "busy",
                    SlotState::BackingOff | SlotState::Stopped => "bad",
                },
                id: s.worker.as_ref().map(|w| w.id),
                pid: s.worker.as_ref().and_then(|w| w.info.pid),
                provider: s.worker.as_ref().and_then(|w| w.provider.clone()),
                provider_note: s.worker.as_ref().and_then(|w| w.provider_note.clone()),
                served: s.worker.as_ref().map_or(0, |w| w.served),
                running_for: s
                    .worker
                    .as_ref()
                    .map(|w| human_duration(now - w.started_at)),
                next_try_in: s.next_try_at.map(|at| human_duration(at - now)),
                jail_missing: s.worker.as_ref().map(|w| {
                    w.info
                        .jail
                        .missing()
                        .map(|p| (p.label.clone(), p.detail.clone()))
                        .collect()
                }),
                devices: s.worker.as_ref().and_then(|w| extra_devices(&w.info.jail)),
            })
            .collect();
        Some(AiView {
            state,
            tone: match state {
                "up" => "ok",
                "starting" => "busy",
                _ => "bad",
            },
            workers,
            served: status.served,
            restarts: status.restarts,
            recycled: status.recycled,
            last_error: status
                .last_error
                .map(|e| (e.message, human_duration(now - e.at))),
        })
    }
}

#[cfg(test)]
mod tests {
    use cv_control::{JailProtection, WorkerJail};

    use super::extra_devices;

    fn jail(detail: &str, applied: bool) -> WorkerJail {
        WorkerJail {
            mode: "root".into(),
            cgroup: Some("v2".into()),
            protections: vec![JailProtection {
                name: "device_nodes".into(),
                label: "device nodes".into(),
                applied,
                detail: detail.into(),
            }],
        }
    }

    #[test]
    fn devices_are_shown_only_beyond_the_five_every_jail_has() {
        let basic = "/dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom";
        assert_eq!(extra_devices(&jail(basic, true)), None);
        let gpu = format!("{basic}; asked for: /dev/nvidia0, /dev/nvidiactl");
        assert_eq!(extra_devices(&jail(&gpu, true)), Some(gpu));
        let left_out = format!("{basic}; left out: /dev/nvidia-uvm (not on this machine)");
        assert_eq!(extra_devices(&jail(&left_out, true)), Some(left_out));
        // Missing, it is among the missing protections instead.
        assert_eq!(
            extra_devices(&jail("no /dev of the jail's own: ENOMEM", false)),
            None
        );
    }
}
