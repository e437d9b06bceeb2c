//! The systemd unit is valid as systemd reads it.

use crate::support::exe;

#[test]
fn the_systemd_unit_verifies() {
    if std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("skipped: systemd-analyze is not installed");
        return;
    }
    let unit = include_str!("../../systemd/contextvault.service");
    // `verify` checks that ExecStart's binary exists: point it at the one cargo built.
    let unit = unit.replace("/usr/bin/contextvault", &exe().display().to_string());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contextvault.service");
    std::fs::write(&path, unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
}
