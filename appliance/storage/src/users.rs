//! System users the appliance's processes run as.

use std::fmt;

use nix::unistd::{Gid, Group, Uid, User};

/// A resolved system user: the processes started "as" it get this uid and gid.
#[derive(Clone, PartialEq, Eq)]
pub struct OsUser {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
}

impl fmt::Debug for OsUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}:{})", self.name, self.uid, self.gid)
    }
}

impl OsUser {
    /// The user this process runs as.
    pub fn current() -> std::io::Result<OsUser> {
        let uid = Uid::current();
        let user = User::from_uid(uid)
            .map_err(std::io::Error::from)?
            .ok_or_else(|| std::io::Error::other(format!("uid {uid} has no passwd entry")))?;
        Ok(OsUser {
            name: user.name,
            uid,
            gid: user.gid,
        })
    }

    /// Looks a user up by name; `None` when it does not exist.
    pub fn lookup(name: &str) -> std::io::Result<Option<OsUser>> {
        Ok(User::from_name(name)
            .map_err(std::io::Error::from)?
            .map(|u| OsUser {
                name: u.name,
                uid: u.uid,
                gid: u.gid,
            }))
    }

    /// The name of this user's primary group.
    pub fn group_name(&self) -> std::io::Result<String> {
        Ok(Group::from_gid(self.gid)
            .map_err(std::io::Error::from)?
            .map(|g| g.name)
            .unwrap_or_else(|| self.gid.to_string()))
    }

    pub fn is_current(&self) -> bool {
        self.uid == Uid::current()
    }
}

/// Returns the named system user, creating it (no home, no login shell, its own group)
/// when it is missing. Only root can create users; for anyone else a missing user is an
/// error that says so.
pub fn ensure_system_user(name: &str) -> std::io::Result<OsUser> {
    if let Some(user) = OsUser::lookup(name)? {
        return Ok(user);
    }
    if !Uid::effective().is_root() {
        return Err(std::io::Error::other(format!(
            "system user `{name}` does not exist, and only root can create it"
        )));
    }
    let output = std::process::Command::new("useradd")
        .args([
            "--system",
            "--user-group",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "Context Vault",
            name,
        ])
        .output()
        .map_err(|e| std::io::Error::other(format!("cannot run useradd for `{name}`: {e}")))?;
    // Two supervisors starting at once may race; the loser finds the user made.
    if let Some(user) = OsUser::lookup(name)? {
        tracing::info!(user = name, uid = %user.uid, "created system user");
        return Ok(user);
    }
    Err(std::io::Error::other(format!(
        "useradd {name} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    )))
}
