//! The systemd units are valid as systemd reads them.

use crate::support::exe;

/// `systemd-analyze verify` of `unit` (as `name` in a directory of its own, with the
/// binary pointed at the one cargo built: verify checks that ExecStart's binary exists).
fn verify(files: &[(&str, &str)], name: &str) {
    let dir = tempfile::tempdir().unwrap();
    for (file, text) in files {
        let text = text.replace("/usr/bin/contextvault", &exe().display().to_string());
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.path().join(name))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify {name}: {stderr}"
    );
}

fn have_systemd_analyze() -> bool {
    let found = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        println!("skipped: systemd-analyze is not installed");
    }
    found
}

#[test]
fn the_systemd_unit_verifies() {
    if !have_systemd_analyze() {
        return;
    }
    let unit = include_str!("../../systemd/contextvault.service");
    verify(&[("contextvault.service", unit)], "contextvault.service");
}

#[test]
fn the_console_unit_verifies_for_a_screen_and_a_serial_port() {
    if !have_systemd_analyze() {
        return;
    }
    let template = include_str!("../../systemd/contextvault-console@.service");
    for tty in ["tty1", "ttyS0"] {
        // An instance is verified through a file of its own name with the template's text.
        let instance = format!("contextvault-console@{tty}.service");
        verify(
            &[
                ("contextvault-console@.service", template),
                (&instance, template),
            ],
            &instance,
        );
    }
}

/// The unit runs the jail's system calls and namespaces, and delegates the cgroup subtree
/// the workers' cgroups are made in: without these the workers cannot start on an
/// appliance (each line was found missing by booting the image).
#[test]
fn the_unit_lets_the_supervisor_build_jails() {
    let unit = include_str!("../../systemd/contextvault.service");
    let value = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(value("Delegate"), ["yes"]);
    assert_eq!(value("ProtectControlGroups"), ["no"]);
    assert_eq!(value("ProtectHostname"), ["no"]);
    assert_eq!(value("RestrictNamespaces"), ["user pid net mnt ipc uts"]);
    let filter = value("SystemCallFilter").join(" ");
    for needed in ["@system-service", "@mount", "sethostname"] {
        assert!(filter.split(' ').any(|s| s == needed), "{needed}: {filter}");
    }
    let caps = value("CapabilityBoundingSet").join(" ");
    for needed in ["CAP_SYS_ADMIN", "CAP_SETPCAP"] {
        assert!(caps.split(' ').any(|s| s == needed), "{needed}: {caps}");
    }
    // Nothing writes /etc at run time: no ReadWritePaths there.
    assert!(
        !value("ReadWritePaths")
            .iter()
            .any(|p| p.starts_with("/etc")),
        "{:?}",
        value("ReadWritePaths")
    );
}
