//! What the jail did: every protection, applied or unavailable with the reason.
//!
//! A [`JailReport`] always lists every [`Protection`], in the same order: one that no step
//! reported (because the jail stopped before it) is unavailable with a reason saying so. A
//! missing protection is never left out, and never shown as applied: the dashboard and
//! `/healthz` print this list as it is.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ops::CgroupVersion;

/// One protection of the jail. The serialized names are stable: the dashboard and
/// `/healthz` show them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protection {
    /// The worker is in a user namespace of its own in which it holds no capability
    /// over any of its other namespaces.
    UserNamespace,
    /// A pid namespace: the worker sees and signals only its own processes.
    PidNamespace,
    /// A network namespace: no interface but its own loopback, so no network.
    NetworkNamespace,
    /// A mount namespace: the jail's mounts are its own.
    MountNamespace,
    /// An ipc namespace: no System V IPC or POSIX message queues shared with the host.
    IpcNamespace,
    /// A uts namespace, with its own hostname.
    UtsNamespace,
    /// The loopback interface is up (the only interface there is).
    Loopback,
    /// The root is a read-only tmpfs holding only read-only binds of the system's
    /// libraries (`/usr`, `/lib`, …) and a few device nodes: no host file is writable, and
    /// none outside those directories is visible.
    ReadOnlyRoot,
    /// `/dev` holds only the listed device nodes: the five every program expects, and the
    /// ones the spec asks for (a GPU's). The detail names each one.
    DeviceNodes,
    /// The requested binds (the model directory, the worker program) are read-only.
    ReadOnlyBinds,
    /// `/tmp` is a size-limited tmpfs, the only writable place.
    ScratchTmpfs,
    /// `/proc` belongs to the jail's pid namespace: it lists no host process.
    PrivateProc,
    /// A cgroup memory limit: the OOM killer stops the worker at the limit.
    MemoryLimit,
    /// A cgroup limit on processes and threads: a fork bomb stops at it.
    PidsLimit,
    /// A cgroup CPU bandwidth limit.
    CpuLimit,
    /// `no_new_privs`: no exec can grant privileges.
    NoNewPrivs,
    /// Every capability set is empty, the bounding set included.
    CapabilitiesDropped,
    /// The worker's uid, as the host sees it, is not root.
    UnprivilegedUid,
    /// `RLIMIT_CORE` is 0: a crash writes no core file holding the worker's memory.
    NoCoreDumps,
}

impl Protection {
    /// Every protection, in the order reports list them.
    pub const ALL: [Protection; 19] = [
        Protection::UserNamespace,
        Protection::PidNamespace,
        Protection::NetworkNamespace,
        Protection::MountNamespace,
        Protection::IpcNamespace,
        Protection::UtsNamespace,
        Protection::Loopback,
        Protection::ReadOnlyRoot,
        Protection::DeviceNodes,
        Protection::ReadOnlyBinds,
        Protection::ScratchTmpfs,
        Protection::PrivateProc,
        Protection::MemoryLimit,
        Protection::PidsLimit,
        Protection::CpuLimit,
        Protection::NoNewPrivs,
        Protection::CapabilitiesDropped,
        Protection::UnprivilegedUid,
        Protection::NoCoreDumps,
    ];

    /// A short human name, as the dashboard shows it.
    pub fn label(self) -> &'static str {
        match self {
            Protection::UserNamespace => "user namespace",
            Protection::PidNamespace => "pid namespace",
            Protection::NetworkNamespace => "network namespace (no network)",
            Protection::MountNamespace => "mount namespace",
            Protection::IpcNamespace => "ipc namespace",
            Protection::UtsNamespace => "uts namespace",
            Protection::Loopback => "loopback interface",
            Protection::ReadOnlyRoot => "read-only root",
            Protection::DeviceNodes => "device nodes",
            Protection::ReadOnlyBinds => "read-only binds",
            Protection::ScratchTmpfs => "scratch tmpfs",
            Protection::PrivateProc => "private /proc",
            Protection::MemoryLimit => "memory limit",
            Protection::PidsLimit => "pids limit",
            Protection::CpuLimit => "cpu limit",
            Protection::NoNewPrivs => "no_new_privs",
            Protection::CapabilitiesDropped => "capabilities dropped",
            Protection::UnprivilegedUid => "unprivileged uid",
            Protection::NoCoreDumps => "no core dumps",
        }
    }
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Whether a protection holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// In force; `detail` says how (the limit, the uid, the cgroup version).
    Applied { detail: String },
    /// Not in force; `reason` says why (the failing call and its error).
    Unavailable { reason: String },
}

impl Status {
    pub fn is_applied(&self) -> bool {
        matches!(self, Status::Applied { .. })
    }
}

/// One step's verdict on one protection, as the stages of the jail send them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub protection: Protection,
    pub status: Status,
}

impl Outcome {
    pub fn applied(protection: Protection, detail: impl Into<String>) -> Outcome {
        Outcome {
            protection,
            status: Status::Applied {
                detail: detail.into(),
            },
        }
    }

    pub fn unavailable(protection: Protection, reason: impl Into<String>) -> Outcome {
        Outcome {
            protection,
            status: Status::Unavailable {
                reason: reason.into(),
            },
        }
    }
}

/// Who built the jail, which decides how the worker's identity is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JailMode {
    /// Built by root (the appliance): the worker runs as the configured system user.
    Root,
    /// Built by an ordinary user (`contextvault dev`): a user namespace maps that user to
    /// root for the set-up; the worker runs as that same user on the host.
    Unprivileged,
}

/// One protection and its status, as listed in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectionStatus {
    pub protection: Protection,
    #[serde(flatten)]
    pub status: Status,
}

/// Every protection of one jail, applied or unavailable, in [`Protection::ALL`] order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailReport {
    pub mode: JailMode,
    /// The cgroup hierarchy found, if any.
    pub cgroup: Option<CgroupVersion>,
    pub protections: Vec<ProtectionStatus>,
}

impl JailReport {
    /// Folds the outcomes of every step into one status per protection: one unavailable
    /// outcome makes the protection unavailable (the first reason is kept); several applied
    /// ones are joined; none at all means the jail never got to it.
    pub fn from_outcomes(
        mode: JailMode,
        cgroup: Option<CgroupVersion>,
        outcomes: &[Outcome],
    ) -> JailReport {
        let protections = Protection::ALL
            .iter()
            .map(|&protection| {
                let mine = outcomes.iter().filter(|o| o.protection == protection);
                let mut details = Vec::new();
                let mut failed = None;
                for o in mine {
                    match &o.status {
                        Status::Unavailable { reason } => {
                            failed.get_or_insert_with(|| reason.clone());
                        }
                        Status::Applied { detail } => details.push(detail.as_str()),
                    }
                }
                let status = match failed {
                    Some(reason) => Status::Unavailable { reason },
                    None if details.is_empty() => Status::Unavailable {
                        reason: "not reported: the jail stopped before this step".to_owned(),
                    },
                    None => Status::Applied {
                        detail: details.join("; "),
                    },
                };
                ProtectionStatus { protection, status }
            })
            .collect();
        JailReport {
            mode,
            cgroup,
            protections,
        }
    }

    /// The status of one protection.
    pub fn status(&self, protection: Protection) -> &Status {
        // Every report lists every protection (see `from_outcomes`); the fallback is only
        // there so that a report deserialized from elsewhere cannot make this panic.
        const NOT_LISTED: &Status = &Status::Unavailable {
            reason: String::new(),
        };
        self.protections
            .iter()
            .find(|p| p.protection == protection)
            .map_or(NOT_LISTED, |p| &p.status)
    }

    /// Whether every protection is applied.
    pub fn is_complete(&self) -> bool {
        self.protections.iter().all(|p| p.status.is_applied())
    }

    /// The protections that are not in force, with the reason.
    pub fn missing(&self) -> impl Iterator<Item = (Protection, &str)> {
        self.protections.iter().filter_map(|p| match &p.status {
            Status::Unavailable { reason } => Some((p.protection, reason.as_str())),
            Status::Applied { .. } => None,
        })
    }
}

impl fmt::Display for JailReport {
    /// One line per protection: `memory limit: applied (…)` or `memory limit: MISSING (…)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.protections {
            match &p.status {
                Status::Applied { detail } => writeln!(f, "{}: applied ({detail})", p.protection)?,
                Status::Unavailable { reason } => {
                    writeln!(f, "{}: MISSING ({reason})", p.protection)?
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_protection_nobody_reported_is_missing_not_applied() {
        let report = JailReport::from_outcomes(
            JailMode::Root,
            None,
            &[Outcome::applied(Protection::NoNewPrivs, "set")],
        );
        assert_eq!(report.protections.len(), Protection::ALL.len());
        assert!(report.status(Protection::NoNewPrivs).is_applied());
        let missing: Vec<_> = report.missing().map(|(p, _)| p).collect();
        assert_eq!(missing.len(), Protection::ALL.len() - 1);
        assert!(matches!(
            report.status(Protection::MemoryLimit),
            Status::Unavailable { reason } if reason.contains("stopped before")
        ));
    }

    #[test]
    fn one_failure_outweighs_any_success() {
        let report = JailReport::from_outcomes(
            JailMode::Root,
            None,
            &[
                Outcome::applied(Protection::ReadOnlyRoot, "tmpfs"),
                Outcome::unavailable(Protection::ReadOnlyRoot, "bind /usr: EPERM"),
                Outcome::unavailable(Protection::ReadOnlyRoot, "later"),
            ],
        );
        assert_eq!(
            report.status(Protection::ReadOnlyRoot),
            &Status::Unavailable {
                reason: "bind /usr: EPERM".into()
            }
        );
        assert!(
            report
                .to_string()
                .contains("read-only root: MISSING (bind /usr: EPERM)")
        );
    }

    #[test]
    fn the_report_serializes_with_stable_names() {
        let report = JailReport::from_outcomes(
            JailMode::Unprivileged,
            Some(CgroupVersion::V2),
            &[Outcome::applied(Protection::MemoryLimit, "64 MiB")],
        );
        let json = serde_json::to_value(&report).expect("json");
        assert_eq!(json["mode"], "unprivileged");
        assert_eq!(json["cgroup"], "v2");
        assert_eq!(json["protections"][12]["protection"], "memory_limit");
        assert_eq!(json["protections"][12]["state"], "applied");
        assert_eq!(json["protections"][12]["detail"], "64 MiB");
        let back: JailReport = serde_json::from_value(json).expect("round trip");
        assert_eq!(back, report);
    }
}
