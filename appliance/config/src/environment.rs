//! Checks of the machine against a valid [`Config`]: what a config file cannot promise.
//!
//! Only looks, never changes anything, so `contextvault config check` can run it as any
//! user. What it reports is what the supervisor would otherwise fail on later, with a
//! less helpful message.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::unistd::{AccessFlags, User, access};

use crate::{Config, Hostname, Mode, SystemUserName};

/// The PostgreSQL programs the supervisor runs from `postgres.bin_dir`.
const POSTGRES_PROGRAMS: [&str; 3] = ["initdb", "postgres", "pg_ctl"];

/// One way this machine does not fit the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvironmentProblem {
    /// The config key whose setting is the problem, e.g. `postgres.bin_dir`.
    pub key: &'static str,
    /// The file or directory concerned, if the problem is about one.
    pub path: Option<PathBuf>,
    /// What is wrong, as a sentence fragment.
    pub message: String,
}

impl fmt::Display for EnvironmentProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{} ({}): {}", self.key, path.display(), self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

pub(crate) fn check(config: &Config) -> Vec<EnvironmentProblem> {
    let mut problems = Vec::new();
    let mut problem = |key, path: Option<&Path>, message: String| {
        problems.push(EnvironmentProblem {
            key,
            path: path.map(Path::to_owned),
            message,
        });
    };

    // postgres.bin_dir
    let bin_dir = &config.postgres.bin_dir;
    if bin_dir.is_dir() {
        for program in POSTGRES_PROGRAMS {
            let path = bin_dir.join(program);
            if !is_executable_file(&path) {
                problem(
                    "postgres.bin_dir",
                    Some(&path),
                    format!("no executable `{program}` here; is PostgreSQL installed?"),
                );
            }
        }
    } else {
        problem(
            "postgres.bin_dir",
            Some(bin_dir),
            "is not a directory; point it at the `bin` directory of PostgreSQL 15".into(),
        );
    }

    // appliance.data_dir: exists and is a writable directory, or can be created.
    let data_dir = &config.data_dir;
    match fs::metadata(data_dir) {
        Ok(meta) if !meta.is_dir() => problem(
            "appliance.data_dir",
            Some(data_dir),
            "exists but is not a directory".into(),
        ),
        Ok(_) if !writable_dir(data_dir) => problem(
            "appliance.data_dir",
            Some(data_dir),
            "is not writable by this user".into(),
        ),
        Ok(_) => {}
        Err(_) => match data_dir.parent() {
            Some(parent) if !parent.is_dir() => problem(
                "appliance.data_dir",
                Some(parent),
                "the data directory's parent does not exist (or is not a directory), so \
                 the data directory cannot be created"
                    .into(),
            ),
            Some(parent) if !writable_dir(parent) => problem(
                "appliance.data_dir",
                Some(parent),
                "the data directory does not exist and its parent is not writable by this \
                 user, so it cannot be created"
                    .into(),
            ),
            _ => {}
        },
    }

    // storage.backend: what the data directory is on must be what the config asks for.
    if data_dir.is_dir()
        && let Err(e) = cv_storage::snapshot::detect(data_dir, storage_wanted(config))
    {
        problem("storage.backend", Some(data_dir), e.to_string());
    }

    if config.mode == Mode::Appliance {
        // appliance.hostname: unset means the machine's, which must then be usable.
        if config.hostname.is_none() && Hostname::from_machine().is_none() {
            problem(
                "appliance.hostname",
                None,
                "is not set, and the machine's hostname is not a DNS label; set it".into(),
            );
        }
        // The system users are created when missing; an existing one must not be root
        // under another name (a second uid-0 account).
        for (key, name) in [
            ("postgres.system_user", &config.postgres.system_user),
            ("service.system_user", &config.service.system_user),
        ] {
            if is_uid_zero(name) {
                problem(
                    key,
                    None,
                    format!("user `{name}` has uid 0; it must be an unprivileged user"),
                );
            }
        }
    }
    problems
}

fn is_executable_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Whether this process may create entries in `dir` (write and search permission).
fn writable_dir(dir: &Path) -> bool {
    access(dir, AccessFlags::W_OK | AccessFlags::X_OK).is_ok()
}

fn is_uid_zero(name: &SystemUserName) -> bool {
    matches!(User::from_name(name.as_str()), Ok(Some(user)) if user.uid.is_root())
}

/// `[storage] backend` as the snapshot backends name it.
pub fn storage_wanted(config: &Config) -> cv_storage::snapshot::Wanted {
    use cv_storage::snapshot::Wanted;
    match config.storage.backend {
        crate::StorageBackend::Auto => Wanted::Auto,
        crate::StorageBackend::Zfs => Wanted::Zfs,
        crate::StorageBackend::Btrfs => Wanted::Btrfs,
        crate::StorageBackend::Plain => Wanted::Plain,
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::DevOverrides;

    fn fake_postgres(dir: &Path, programs: &[&str]) {
        for program in programs {
            let path = dir.join(program);
            fs::write(&path, "#!/bin/sh\n").expect("write program");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        }
    }

    fn config_with(bin_dir: &Path, data_dir: &Path) -> Config {
        let mut config = Config::dev(
            DevOverrides {
                data_dir: Some(data_dir.to_owned()),
                ..DevOverrides::default()
            },
            Path::new("/"),
        )
        .expect("dev config");
        config.postgres.bin_dir = bin_dir.to_owned();
        config
    }

    #[test]
    fn a_complete_installation_has_no_problems() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_postgres(tmp.path(), &POSTGRES_PROGRAMS);
        let config = config_with(tmp.path(), &tmp.path().join("var"));
        assert_eq!(config.check_environment(), []);
    }

    #[test]
    fn a_bin_dir_without_postgres_is_reported_with_key_and_path() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_postgres(tmp.path(), &["initdb", "pg_ctl"]);
        let config = config_with(tmp.path(), &tmp.path().join("var"));
        let problems = config.check_environment();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "postgres.bin_dir");
        assert_eq!(
            problems[0].path.as_deref(),
            Some(&*tmp.path().join("postgres"))
        );
        let text = problems[0].to_string();
        assert!(text.starts_with("postgres.bin_dir ("), "{text}");
        assert!(text.contains("no executable `postgres`"), "{text}");
    }

    #[test]
    fn a_program_without_execute_permission_does_not_count() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_postgres(tmp.path(), &POSTGRES_PROGRAMS);
        fs::set_permissions(tmp.path().join("pg_ctl"), fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let config = config_with(tmp.path(), &tmp.path().join("var"));
        let problems = config.check_environment();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            problems[0].path.as_deref(),
            Some(&*tmp.path().join("pg_ctl"))
        );
    }

    #[test]
    fn a_missing_bin_dir_is_one_problem() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let missing = tmp.path().join("nowhere");
        let config = config_with(&missing, &tmp.path().join("var"));
        let problems = config.check_environment();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "postgres.bin_dir");
        assert!(problems[0].message.contains("not a directory"));
    }

    #[test]
    fn a_data_dir_that_is_a_file_is_reported() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_postgres(tmp.path(), &POSTGRES_PROGRAMS);
        let file = tmp.path().join("data");
        fs::write(&file, "").expect("write");
        let problems = config_with(tmp.path(), &file).check_environment();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "appliance.data_dir");
        assert_eq!(problems[0].path.as_deref(), Some(&*file));
        assert!(problems[0].message.contains("not a directory"));
    }

    #[test]
    fn a_data_dir_whose_parent_is_missing_is_reported() {
        let tmp = tempfile::tempdir().expect("tempdir");
        fake_postgres(tmp.path(), &POSTGRES_PROGRAMS);
        let parent = tmp.path().join("missing");
        let problems = config_with(tmp.path(), &parent.join("data")).check_environment();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "appliance.data_dir");
        assert_eq!(problems[0].path.as_deref(), Some(&*parent));
        assert!(problems[0].message.contains("parent does not exist"));
    }
}
