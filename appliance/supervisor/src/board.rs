//! The supervisor's view of its components, shared by its tasks and reported over the
//! control socket.

use std::sync::{Arc, Mutex};

use cv_control::{ApplianceStatus, ComponentState, ComponentStatus, DiskUsage};
use time::OffsetDateTime;

/// Components, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Postgres,
    Vault,
    /// The WireGuard VPN: optional (see [`Component::is_optional`]).
    Wireguard,
}

impl Component {
    pub const ALL: [Component; 3] = [Component::Postgres, Component::Vault, Component::Wireguard];

    pub fn name(self) -> &'static str {
        match self {
            Component::Postgres => "postgres",
            Component::Vault => "vault",
            Component::Wireguard => "wireguard",
        }
    }

    /// Whether the appliance serves without it. The vault works on the LAN without the
    /// VPN, so the VPN being off (on purpose, or impossible here) or failed does not hold
    /// back "all up": under systemd that would withhold `READY=1` until the start timed
    /// out and systemd killed the whole appliance. Its failure shows on the dashboard and
    /// in `/healthz` instead.
    pub fn is_optional(self) -> bool {
        self == Component::Wireguard
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Thread-safe status of every component.
#[derive(Debug, Clone)]
pub struct StatusBoard {
    inner: Arc<Mutex<ApplianceStatus>>,
}

impl StatusBoard {
    pub fn new(version: &str, mode: &str, now: OffsetDateTime) -> StatusBoard {
        let components = Component::ALL
            .iter()
            .map(|c| ComponentStatus {
                name: c.name().to_owned(),
                state: ComponentState::Starting,
                since: now,
                restarts: 0,
                pid: None,
                last_error: None,
            })
            .collect();
        StatusBoard {
            inner: Arc::new(Mutex::new(ApplianceStatus {
                version: version.to_owned(),
                mode: mode.to_owned(),
                started_at: now,
                components,
                disk: None,
            })),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut ApplianceStatus) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    pub fn snapshot(&self) -> ApplianceStatus {
        self.with(|s| s.clone())
    }

    pub fn state(&self, c: Component) -> ComponentState {
        self.with(|s| s.components[c.index()].state)
    }

    pub fn pid(&self, c: Component) -> Option<u32> {
        self.with(|s| s.components[c.index()].pid)
    }

    /// Moves a component to `state`; an error message is kept until the next `Up`.
    pub fn set(
        &self,
        c: Component,
        state: ComponentState,
        pid: Option<u32>,
        error: Option<String>,
    ) {
        self.with(|s| {
            let entry = &mut s.components[c.index()];
            if entry.state != state {
                entry.since = OffsetDateTime::now_utc();
            }
            if state == ComponentState::Restarting && entry.state != ComponentState::Restarting {
                entry.restarts += 1;
            }
            entry.state = state;
            entry.pid = pid;
            if state == ComponentState::Up {
                entry.last_error = None;
            }
            if error.is_some() {
                entry.last_error = error;
            }
        });
    }

    pub fn set_disk(&self, disk: DiskUsage) {
        self.with(|s| s.disk = Some(disk));
    }

    /// Whether every component is up, optional ones being settled instead: up, off or
    /// failed (not still starting).
    pub fn all_up(&self) -> bool {
        self.with(|s| {
            Component::ALL.iter().all(|c| {
                let state = s.components[c.index()].state;
                state.is_up()
                    || (c.is_optional()
                        && matches!(state, ComponentState::Off | ComponentState::Failed))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_count_each_death_once_and_errors_clear_when_up() {
        let board = StatusBoard::new("0.1.0", "dev", OffsetDateTime::now_utc());
        let c = Component::Postgres;
        board.set(c, ComponentState::Up, Some(1), None);
        board.set(c, ComponentState::Restarting, None, Some("killed".into()));
        board.set(c, ComponentState::Restarting, None, None);
        assert_eq!(board.snapshot().components[0].restarts, 1);
        assert_eq!(
            board.snapshot().components[0].last_error.as_deref(),
            Some("killed")
        );
        board.set(c, ComponentState::Up, Some(2), None);
        assert!(board.snapshot().components[0].last_error.is_none());
        assert!(!board.all_up());
        board.set(Component::Vault, ComponentState::Up, Some(3), None);
        assert!(!board.all_up(), "WireGuard is still starting");
        board.set(Component::Wireguard, ComponentState::Up, None, None);
        assert!(board.all_up());
    }

    #[test]
    fn an_optional_component_that_is_off_or_failed_does_not_hold_back_all_up() {
        let board = StatusBoard::new("0.1.0", "dev", OffsetDateTime::now_utc());
        board.set(Component::Postgres, ComponentState::Up, Some(1), None);
        board.set(Component::Vault, ComponentState::Up, Some(2), None);
        for state in [ComponentState::Off, ComponentState::Failed] {
            board.set(Component::Wireguard, state, None, Some("why".into()));
            assert!(board.all_up(), "{state:?}");
        }
        // A required component that is off or failed does.
        board.set(Component::Vault, ComponentState::Failed, None, None);
        assert!(!board.all_up());
        let wg = board.snapshot().components[2].clone();
        assert_eq!(
            (wg.name.as_str(), wg.last_error.as_deref()),
            ("wireguard", Some("why"))
        );
    }
}
