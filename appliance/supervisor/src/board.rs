//! The supervisor's view of its components, shared by its tasks and reported over the
//! control socket.

use std::sync::{Arc, Mutex};

use cv_control::{AcmeStatus, ApplianceStatus, ComponentState, ComponentStatus, DiskUsage};
use time::OffsetDateTime;

/// Components, in start order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    Postgres,
    Vault,
    /// LAN discovery (`mdns` task).
    Mdns,
    /// The WireGuard VPN (`wireguard` task).
    Wireguard,
}

impl Component {
    pub const ALL: [Component; 4] = [
        Component::Postgres,
        Component::Vault,
        Component::Mdns,
        Component::Wireguard,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Postgres => "postgres",
            Component::Vault => "vault",
            Component::Mdns => "mdns",
            Component::Wireguard => "wireguard",
        }
    }

    /// Whether the appliance serves without it: an optional component that is off,
    /// failed, waiting or stopped shows on the dashboard, but the appliance is still
    /// "all up" (systemd's `READY=1`, `/healthz`). Phones that cannot find the box by
    /// name can still reach it by address; the vault works on the LAN without the VPN
    /// (and holding back `READY=1` for it would have systemd kill the whole appliance at
    /// its start timeout). Their failures show on the dashboard and in `/healthz`.
    pub fn is_optional(self) -> bool {
        matches!(self, Component::Mdns | Component::Wireguard)
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
                optional: c.is_optional(),
            })
            .collect();
        StatusBoard {
            inner: Arc::new(Mutex::new(ApplianceStatus {
                version: version.to_owned(),
                mode: mode.to_owned(),
                started_at: now,
                components,
                disk: None,
                acme: None,
                update: None,
                storage: None,
                backup: None,
            })),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut ApplianceStatus) -> R) -> R {
        let mut guard = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut guard)
    }

    /// The entry of `c`, if it is on the board.
    fn with_entry<R>(&self, c: Component, f: impl FnOnce(&mut ComponentStatus) -> R) -> Option<R> {
        self.with(|s| s.components.iter_mut().find(|e| e.name == c.name()).map(f))
    }

    /// Takes a component turned off in the config off the board: the dashboard lists only
    /// components that exist. Its state reads as `Stopped` from then on.
    pub fn remove(&self, c: Component) {
        self.with(|s| s.components.retain(|e| e.name != c.name()));
    }

    pub fn snapshot(&self) -> ApplianceStatus {
        self.with(|s| s.clone())
    }

    pub fn state(&self, c: Component) -> ComponentState {
        self.with_entry(c, |e| e.state)
            .unwrap_or(ComponentState::Stopped)
    }

    pub fn pid(&self, c: Component) -> Option<u32> {
        self.with_entry(c, |e| e.pid).flatten()
    }

    /// Why `c` last failed, if it is on the board.
    pub fn last_error(&self, c: Component) -> Option<String> {
        self.with_entry(c, |e| e.last_error.clone()).flatten()
    }

    /// Moves a component to `state`; an error message is kept until the next `Up`.
    pub fn set(
        &self,
        c: Component,
        state: ComponentState,
        pid: Option<u32>,
        error: Option<String>,
    ) {
        self.with_entry(c, |entry| {
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

    pub fn set_update(&self, update: cv_control::UpdateStatus) {
        self.with(|s| s.update = Some(Box::new(update)));
    }

    /// Changes the published update status in place (a setting changed from outside the
    /// `update` task).
    pub fn patch_update(&self, f: impl FnOnce(&mut cv_control::UpdateStatus)) {
        self.with(|s| {
            if let Some(update) = s.update.as_deref_mut() {
                f(update);
            }
        });
    }

    pub fn set_storage(&self, storage: cv_control::StorageStatus) {
        self.with(|s| s.storage = Some(storage));
    }

    /// Changes the published snapshot status in place.
    pub fn patch_storage(&self, f: impl FnOnce(&mut cv_control::StorageStatus)) {
        self.with(|s| {
            if let Some(storage) = s.storage.as_mut() {
                f(storage);
            }
        });
    }

    pub fn set_backup(&self, backup: cv_control::BackupStatus) {
        self.with(|s| s.backup = Some(Box::new(backup)));
    }

    /// Changes the published backup status in place (progress).
    pub fn patch_backup(&self, f: impl FnOnce(&mut cv_control::BackupStatus)) {
        self.with(|s| {
            if let Some(backup) = s.backup.as_deref_mut() {
                f(backup);
            }
        });
    }

    pub fn set_acme(&self, acme: AcmeStatus) {
        self.with(|s| s.acme = Some(Box::new(acme)));
    }

    /// Whether every component the appliance needs is up. Optional ones aside, except
    /// that the VPN must have settled (up, off or failed: not still starting), so that
    /// `READY=1` means a phone's tunnel works if it is going to.
    pub fn all_up(&self) -> bool {
        self.with(|s| {
            s.components.iter().all(|c| {
                c.state.is_up()
                    || (c.optional
                        && !(c.name == Component::Wireguard.name()
                            && c.state == ComponentState::Starting))
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
    fn optional_components_show_but_do_not_hold_back_all_up() {
        let board = StatusBoard::new("0.1.0", "appliance", OffsetDateTime::now_utc());
        board.set(Component::Postgres, ComponentState::Up, Some(1), None);
        board.set(Component::Vault, ComponentState::Up, Some(2), None);
        board.set(Component::Wireguard, ComponentState::Off, None, None);
        board.set(
            Component::Mdns,
            ComponentState::Failed,
            None,
            Some("no multicast".into()),
        );
        assert!(board.all_up());
        let mdns = board
            .snapshot()
            .components
            .into_iter()
            .find(|c| c.name == "mdns")
            .expect("mdns is on the board");
        assert!(mdns.optional);
        assert_eq!(mdns.state, ComponentState::Failed);
        assert_eq!(
            board.last_error(Component::Mdns).as_deref(),
            Some("no multicast")
        );

        // Turned off: off the board, and setting it is harmless.
        board.remove(Component::Mdns);
        board.set(Component::Mdns, ComponentState::Up, None, None);
        assert_eq!(board.snapshot().components.len(), 3);
        assert_eq!(board.state(Component::Mdns), ComponentState::Stopped);
        assert!(board.all_up());
        // Required components still count.
        board.set(Component::Vault, ComponentState::Restarting, None, None);
        assert!(!board.all_up());
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
        let wg = board
            .snapshot()
            .components
            .into_iter()
            .find(|c| c.name == "wireguard")
            .unwrap();
        assert_eq!(
            (wg.name.as_str(), wg.last_error.as_deref()),
            ("wireguard", Some("why"))
        );
    }
}
