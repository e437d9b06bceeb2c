//! What a jail should be: identity, limits, what it may see.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::SandboxError;

/// The CFS period the CPU quota is expressed in: the kernel's default, 100 ms
/// (`Documentation/scheduler/sched-bwc.rst`).
pub const CPU_PERIOD_US: u64 = 100_000;

/// The system paths bound read-only into every jail when the host has them, so that a
/// dynamically linked program finds its loader and libraries. On a merged-/usr system
/// `/bin`, `/lib` and `/lib64` are symlinks into `/usr` and are recreated as symlinks.
/// `/etc/ld.so.cache` lets the loader find libraries outside its default directories; the
/// rest of `/etc` stays out.
pub const SYSTEM_PATHS: [&str; 6] = [
    "/usr",
    "/bin",
    "/lib",
    "/lib64",
    "/sbin",
    "/etc/ld.so.cache",
];

/// A host path made visible, read-only, inside the jail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    /// Absolute path on the host (resolved through symlinks when the jail is spawned).
    pub source: PathBuf,
    /// Absolute path inside the jail.
    pub target: PathBuf,
}

impl Bind {
    /// The same path inside as outside.
    pub fn same(path: impl Into<PathBuf>) -> Bind {
        let path = path.into();
        Bind {
            source: path.clone(),
            target: path,
        }
    }
}

/// What to do when a protection cannot be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Start the worker anyway; the report names what is missing (dev mode without root).
    ReportMissing,
    /// Refuse to start the worker unless every protection is applied: the worker never
    /// runs, even for a moment, with less.
    RequireAll,
}

/// The jail for one worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailSpec {
    /// Names the worker's cgroup (`<cgroup_parent>/<name>-<pid>-<n>`); lowercase letters,
    /// digits and `-`.
    pub name: String,
    /// The uid the worker runs as: as root, a real unprivileged host uid (the
    /// `contextvault-worker` system user; `nobody` in tests), never 0. In dev mode without
    /// root the worker runs as the developer's own uid on the host, and as this uid inside
    /// its user namespace.
    pub uid: u32,
    /// The worker's gid, likewise.
    pub gid: u32,
    /// The cgroup memory limit, in bytes.
    pub memory_bytes: u64,
    /// The most processes and threads at once, counting the jail's keeper process.
    pub pids_max: u64,
    /// CPU bandwidth in thousandths of one core (500: half a core, 2000: two cores).
    pub cpu_millicores: u64,
    /// Read-only binds (the model directory).
    pub binds: Vec<Bind>,
    /// Host device nodes made reachable at the same path, besides the five every jail has
    /// (a GPU's `/dev/nvidia*` nodes). Each must be a character device under `/dev/`; one
    /// that is not there is left out and named in the report, and the worker still starts.
    #[serde(default)]
    pub devices: Vec<PathBuf>,
    /// The size of the scratch tmpfs on `/tmp`, in bytes (charged to the memory limit as
    /// it fills).
    pub tmpfs_bytes: u64,
    /// The hostname inside the jail.
    pub hostname: String,
    /// Where the worker cgroups go, relative to the root of each cgroup hierarchy.
    pub cgroup_parent: PathBuf,
    pub enforcement: Enforcement,
    /// How long the jail may take to start before the spawn gives up.
    pub start_timeout: Duration,
}

impl JailSpec {
    /// A jail with the appliance's defaults: 2 GiB of memory, 64 processes, one core,
    /// 64 MiB of scratch, missing protections reported.
    pub fn new(name: impl Into<String>, uid: u32, gid: u32) -> JailSpec {
        JailSpec {
            name: name.into(),
            uid,
            gid,
            memory_bytes: 2 << 30,
            pids_max: 64,
            cpu_millicores: 1000,
            binds: Vec::new(),
            devices: Vec::new(),
            tmpfs_bytes: 64 << 20,
            hostname: "contextvault-worker".to_owned(),
            cgroup_parent: PathBuf::from("contextvault-workers"),
            enforcement: Enforcement::ReportMissing,
            start_timeout: Duration::from_secs(20),
        }
    }

    /// The CFS quota for [`Self::cpu_millicores`] over [`CPU_PERIOD_US`].
    pub fn cpu_quota_us(&self) -> u64 {
        self.cpu_millicores * CPU_PERIOD_US / 1000
    }

    /// Checks the values that would make a jail unsafe or impossible.
    pub fn validate(&self) -> Result<(), SandboxError> {
        let bad = |why: String| Err(SandboxError::InvalidSpec(why));
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad(format!(
                "name {:?}: use 1 to 64 lowercase letters, digits and -",
                self.name
            ));
        }
        if self.uid == 0 || self.gid == 0 {
            return bad("the worker must not run as uid or gid 0".to_owned());
        }
        // The keeper process and the worker itself count against the limit.
        if self.pids_max < 3 {
            return bad(format!("pids_max {} is below 3", self.pids_max));
        }
        // Below a few MiB not even the dynamic loader fits.
        if self.memory_bytes < 8 << 20 {
            return bad(format!("memory_bytes {} is below 8 MiB", self.memory_bytes));
        }
        // The kernel refuses quotas under 1 ms (`cpu.cfs_quota_us`).
        if self.cpu_quota_us() < 1000 {
            return bad(format!(
                "cpu_millicores {} is below 10 (1 ms every 100 ms)",
                self.cpu_millicores
            ));
        }
        if self.tmpfs_bytes == 0 {
            return bad("tmpfs_bytes is 0".to_owned());
        }
        // RFC 1123 labels, as sethostname(2) accepts up to 64 bytes.
        let host_ok = !self.hostname.is_empty()
            && self.hostname.len() <= 63
            && self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !host_ok {
            return bad(format!("hostname {:?} is not a valid name", self.hostname));
        }
        if !is_plain_relative(&self.cgroup_parent) {
            return bad(format!(
                "cgroup_parent {} must be a relative path without `..`",
                self.cgroup_parent.display()
            ));
        }
        for bind in &self.binds {
            for path in [&bind.source, &bind.target] {
                if !is_plain_absolute(path) {
                    return bad(format!(
                        "bind path {} must be absolute, without `..`",
                        path.display()
                    ));
                }
            }
            if bind.target == Path::new("/") {
                return bad("a bind cannot replace the jail's root".to_owned());
            }
            if bind.target.starts_with("/dev") {
                return bad(format!(
                    "bind target {}: /dev holds device nodes only (name them in devices)",
                    bind.target.display()
                ));
            }
        }
        for device in &self.devices {
            let under_dev = device
                .strip_prefix("/dev")
                .is_ok_and(|rest| rest.components().next().is_some());
            if !is_plain_absolute(device) || !under_dev {
                return bad(format!(
                    "device {} must be a path under /dev, without `..`",
                    device.display()
                ));
            }
        }
        Ok(())
    }
}

fn is_plain_absolute(path: &Path) -> bool {
    path.is_absolute()
        && path
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

fn is_plain_relative(path: &Path) -> bool {
    !path.as_os_str().is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        JailSpec::new("worker", 998, 998)
            .validate()
            .expect("defaults");
    }

    #[test]
    fn unsafe_or_impossible_values_are_refused() {
        let base = JailSpec::new("worker", 998, 998);
        type Change = Box<dyn Fn(&mut JailSpec)>;
        let cases: Vec<(&str, Change)> = vec![
            ("root uid", Box::new(|s| s.uid = 0)),
            ("root gid", Box::new(|s| s.gid = 0)),
            ("name", Box::new(|s| s.name = "../x".into())),
            ("pids", Box::new(|s| s.pids_max = 2)),
            ("memory", Box::new(|s| s.memory_bytes = 1024)),
            ("cpu", Box::new(|s| s.cpu_millicores = 5)),
            ("tmpfs", Box::new(|s| s.tmpfs_bytes = 0)),
            ("hostname", Box::new(|s| s.hostname = "a b".into())),
            ("cgroup", Box::new(|s| s.cgroup_parent = "/abs".into())),
            (
                "cgroup dots",
                Box::new(|s| s.cgroup_parent = "a/../b".into()),
            ),
            ("bind", Box::new(|s| s.binds.push(Bind::same("relative")))),
            (
                "bind dots",
                Box::new(|s| s.binds.push(Bind::same("/a/../etc"))),
            ),
            ("bind root", Box::new(|s| s.binds.push(Bind::same("/")))),
            (
                "bind into /dev",
                Box::new(|s| s.binds.push(Bind::same("/dev/shm"))),
            ),
            (
                "device outside /dev",
                Box::new(|s| s.devices.push("/etc/passwd".into())),
            ),
            ("device /dev", Box::new(|s| s.devices.push("/dev".into()))),
            (
                "device dots",
                Box::new(|s| s.devices.push("/dev/../etc/shadow".into())),
            ),
            (
                "device relative",
                Box::new(|s| s.devices.push("dev/nvidia0".into())),
            ),
        ];
        for (what, change) in cases {
            let mut spec = base.clone();
            change(&mut spec);
            assert!(
                matches!(spec.validate(), Err(SandboxError::InvalidSpec(_))),
                "{what} was accepted"
            );
        }
    }

    #[test]
    fn devices_under_dev_are_accepted() {
        let mut spec = JailSpec::new("worker", 998, 998);
        spec.devices = vec!["/dev/nvidia0".into(), "/dev/net/tun".into()];
        spec.validate().expect("devices under /dev");
    }

    #[test]
    fn cpu_quota_is_a_share_of_the_period() {
        let mut spec = JailSpec::new("worker", 998, 998);
        spec.cpu_millicores = 500;
        assert_eq!(spec.cpu_quota_us(), 50_000);
        spec.cpu_millicores = 2000;
        assert_eq!(spec.cpu_quota_us(), 200_000);
    }
}
