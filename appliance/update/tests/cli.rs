//! The `contextvault-publish` binary end to end: keys, adding bundles (expiry in days,
//! negative included), rotating the root key, and one-line errors with a non-zero exit.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};

fn publish(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_contextvault-publish"))
        .args(args)
        .output()
        .unwrap()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn assert_one_line_error(out: &Output) {
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
}

#[test]
fn keys_add_rotate_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let repo = dir.path().join("repo");
    let bundle = dir.path().join("cv-1.0.0.raucb");
    std::fs::write(&bundle, b"bundle").unwrap();

    let out = publish(&["keys", "--dir", p(&keys)]);
    assert!(out.status.success(), "{out:?}");
    for f in [
        "root.pem",
        "targets.pem",
        "snapshot.pem",
        "timestamp.pem",
        "root.json",
    ] {
        assert!(keys.join(f).exists(), "{f}");
    }
    assert_one_line_error(&publish(&["keys", "--dir", p(&keys)]));

    let add = |version: &str, ts_days: &str| {
        publish(&[
            "add",
            "--repo",
            p(&repo),
            "--keys",
            p(&keys),
            "--bundle",
            p(&bundle),
            "--version",
            version,
            "--compatible",
            "contextvault-x86_64",
            "--timestamp-expires-days",
            ts_days,
        ])
    };
    let out = add("1.0.0", "-1");
    assert!(out.status.success(), "{out:?}");
    let out = add("1.0.1", "7");
    assert!(out.status.success(), "{out:?}");
    let timestamp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("metadata/timestamp.json")).unwrap())
            .unwrap();
    assert_eq!(timestamp["signed"]["version"], 2);
    assert!(repo.join("targets/cv-1.0.0.raucb").exists());

    let out = publish(&[
        "rotate-root",
        "--repo",
        p(&repo),
        "--keys",
        p(&keys),
        "--new-root-key",
        p(&dir.path().join("new-root.pem")),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(repo.join("metadata/2.root.json").exists());

    assert_one_line_error(&publish(&[
        "add",
        "--repo",
        p(&repo),
        "--keys",
        p(&keys),
        "--bundle",
        p(&dir.path().join("missing.raucb")),
        "--version",
        "1.0.2",
        "--compatible",
        "contextvault-x86_64",
    ]));
    assert_one_line_error(&publish(&[
        "add",
        "--repo",
        p(&repo),
        "--keys",
        p(&dir.path().join("no-keys")),
        "--bundle",
        p(&bundle),
        "--version",
        "1.0.2",
        "--compatible",
        "contextvault-x86_64",
    ]));
}
