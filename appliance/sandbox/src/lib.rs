//! The AI worker's jail: a process that cannot leak — no network, no disk, limited
//! memory — and a report that says, protection by protection, whether that holds.
//!
//! # What a jail is
//!
//! [`spawn`] starts a program (path, arguments, environment, descriptors to keep such as
//! a socket to the vault service) in:
//!
//! - new **user, pid, network, mount, ipc and uts namespaces**; the network namespace has
//!   only its loopback interface, brought up over rtnetlink;
//! - a **read-only root**: a tmpfs made `/` by `pivot_root`, holding read-only binds of
//!   the system's `/usr` and libraries ([`SYSTEM_PATHS`]), five device nodes, the
//!   requested read-only binds (the model directory) and the program itself; the host's
//!   root is detached; `/proc` is the jail's own; `/tmp` is a small tmpfs, the only place
//!   it can write (noexec);
//! - a **cgroup** with memory (swap included), pids and CPU limits, on cgroup v1 or v2
//!   (detected when the jail is built), at `<cgroup_parent>/<name>-<pid>-<n>` relative to
//!   the hierarchy's root. On v2 the spawner enables the controllers only in the
//!   `cgroup.subtree_control` files that lack them ([`cgroup2`]): under systemd the
//!   supervisor passes a parent inside its unit's delegated subtree
//!   (`system.slice/contextvault.service/workers`), and systemd's own cgroups above it
//!   are only read, never written;
//! - `no_new_privs`, every **capability set empty**, an **unprivileged uid**, and no
//!   core dumps.
//!
//! It returns a [`JailedWorker`] and its [`JailReport`], which lists every
//! [`Protection`] as applied or unavailable with the reason. Where a feature is missing
//! (dev mode without root has no cgroups, say) the worker still runs and the report names
//! what is missing — never silently — unless the spec says [`Enforcement::RequireAll`],
//! in which case the worker never runs at all. One protection is never traded: when the
//! jail is built as root and cannot change to the worker's uid, it refuses.
//!
//! # Processes, and why there is no `unsafe`
//!
//! The workspace denies `unsafe_code`, and namespaces are usually entered between `fork`
//! and `exec` (`CommandExt::pre_exec`, which is unsafe). Here the jail is applied by the
//! jailed process to itself instead, in a re-executed copy of the appliance's binary
//! (`contextvault jail-enter`, or the `jail-probe enter` test binary) that calls
//! [`enter_jail_and_exec`]:
//!
//! ```text
//! spawner (supervisor)          creates the cgroup, starts the keeper, moves it into the
//! │                             cgroup, then sends it the plan over a socket on its stdin
//! └── keeper                    [user ns when not root] unshare(pid); starts stage 2;
//!     │                         relays its report; forwards signals; exits as the worker
//!     └── stage 2 → worker      pid 1 of the new pid ns: mount/net/ipc/uts namespaces,
//!                               new root, hostname, lo up, uid, user ns, rlimit,
//!                               no_new_privs, capabilities, then exec of the worker
//! ```
//!
//! `unshare(2)` works on the calling process for every namespace except the pid
//! namespace, which only applies to the caller's next child: hence the keeper, which
//! stays the worker's parent outside the namespace. Processes are started with
//! `std::process::Command` (safe; the one `pre_exec` involved is inside the `command-fds`
//! crate the supervisor already uses to hand over sockets). Every system call goes through
//! nix, caps and cgroups-rs's safe APIs; the loopback interface is brought up with a
//! hand-built netlink message on an ordinary socket, not an ioctl.
//!
//! # Order, and why
//!
//! 1. *Spawner*: the cgroup and its limits, before the keeper does anything (it waits
//!    for the plan), so no process of the jail is ever outside the cgroup.
//! 2. *Keeper*, without root only: a **user namespace first**, mapping the caller to root
//!    inside — it is what grants the capabilities for every later step; an unprivileged
//!    process can map only its own id. Then the **pid namespace**.
//! 3. *Stage 2*: mount, network, ipc and uts namespaces (each separately, so the report
//!    names exactly the one that failed); the **file system** (mounts made private, a tmpfs
//!    root, `pivot_root` — not `chroot`, which a user namespace refuses to be created in
//!    and which can be escaped — binds taken from the old root, old root detached, `/`
//!    remounted read-only); `/proc` here, because procfs shows the pid namespace of the
//!    process that mounts it; hostname; loopback.
//! 4. *Identity*: as root, drop the capability bounding set (it needs `CAP_SETPCAP`,
//!    which the uid change takes away), then set groups, gid and uid to the worker's
//!    (which clears the host capabilities), and make the process dumpable again so it can
//!    write its own `/proc/self` id maps. Then — root or not — a **user namespace of the
//!    worker's own**, created after every other namespace so that it owns none of them:
//!    the capabilities it grants are over nothing. It maps only the worker's uid; host
//!    root is not mapped.
//! 5. *Last, just before exec*: `RLIMIT_CORE` 0, `no_new_privs`, then every capability
//!    set cleared (bounding first — entering the user namespace refilled it), and the
//!    parent-death signal (the uid change cleared it).
//!
//! A step that fails makes its protection unavailable and skips the steps that depend on
//! it: no mount is made without a mount namespace (it would change the host's), no
//! hostname set without a uts namespace, and no `/proc` mounted without a pid namespace
//! (it would list the host's processes).
//!
//! # Testing
//!
//! Every operation goes through [`JailOps`]: [`LinuxOps`] makes the calls,
//! [`RecordingOps`] records them and fails the ones a test names, so the sequencing and
//! the report are unit-tested without a kernel. `tests/jail.rs` runs the `jail-probe`
//! binary in real jails and checks from both sides that each protection holds.

pub mod cgroup2;
mod enter;
mod linux;
mod netlink;
mod ops;
mod plan;
mod protocol;
mod recording;
mod report;
mod spawn;
mod spec;

use std::io;

pub use enter::enter_jail_and_exec;
pub use linux::{LinuxOps, namespace_of};
pub use ops::{CgroupVersion, IdMap, JailOps, Namespace, PathKind};
pub use recording::{Call, RecordingOps};
pub use report::{JailMode, JailReport, Outcome, Protection, ProtectionStatus, Status};
pub use spawn::{JailedWorker, Launcher, WorkerCommand, spawn};
pub use spec::{Bind, CPU_PERIOD_US, Enforcement, JailSpec, SYSTEM_PATHS};

/// Why a jail could not be spawned.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid jail: {0}")]
    InvalidSpec(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// [`Enforcement::RequireAll`] and a protection is missing; the worker never ran.
    #[error("the jail refused to start the worker: {reason}")]
    Refused {
        reason: String,
        report: Box<JailReport>,
    },
    /// The jail or the worker's exec failed.
    #[error("the worker did not start: {reason}")]
    Start {
        reason: String,
        report: Box<JailReport>,
    },
}

#[cfg(test)]
mod tests;
