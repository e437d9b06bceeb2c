//! `contextvault config check` on good and bad files.

use crate::support::exe;

fn check(text: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, text).unwrap();
    std::process::Command::new(exe())
        .args(["config", "check", "--config"])
        .arg(&path)
        .output()
        .unwrap()
}

#[test]
fn an_unknown_key_is_named_with_its_line() {
    let out =
        check("version = 1\n[appliance]\ndata_dir = \"/tmp/x\"\n[network]\nhtps_port = 8443\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("network.htps_port"), "{err}");
    assert!(err.contains("line 5"), "{err}");
}

#[test]
fn a_bad_port_is_named() {
    let out = check("version = 1\n[appliance]\ndata_dir = \"/tmp/x\"\n[network]\nhttps_port = 0\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("network.https_port"));
}

#[test]
fn an_unreadable_file_is_an_error_not_a_panic() {
    let out = std::process::Command::new(exe())
        .args(["config", "check", "--config", "/nonexistent/config.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/config.toml"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn the_example_config_passes() {
    let out = check(cv_config_example());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

fn cv_config_example() -> &'static str {
    include_str!("../../appliance/config/contextvault.example.toml")
}

#[test]
fn the_storage_backend_is_checked_against_the_data_directory() {
    let fs = cv_testkit::scratch_fs::BtrfsScratch::new(256);
    let config = |backend: &str| {
        format!(
            "version = 1\n[appliance]\ndata_dir = \"{}\"\n[storage]\nbackend = \"{backend}\"\n",
            fs.mount.display()
        )
    };
    let out = check(&config("btrfs"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("snapshots: btrfs"), "{stdout}");
    let out = check(&config("zfs"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("storage.backend") && err.contains("is on btrfs"),
        "{err}"
    );
}
