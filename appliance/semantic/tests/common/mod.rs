//! What the tests with the real model share: finding its files.
//!
//! The model's files are large and downloaded (`scripts/fetch-model`), so a plain `cargo
//! test` on a machine without them skips these tests with the reason printed;
//! `scripts/test` downloads them, points `CV_MODEL_DIR` at them and sets
//! `CV_REQUIRE_MODEL=1`, under which their absence fails instead.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::path::PathBuf;

use cv_inference::ModelFiles;

/// The repository's root (this crate is `appliance/semantic`).
pub fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The model's files from `CV_MODEL_DIR` (default `target/models`), or `None` after
/// printing why the test is skipped. Panics instead when `CV_REQUIRE_MODEL=1`.
pub fn model_files() -> Option<ModelFiles> {
    let dir = std::env::var_os("CV_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target/models"));
    match ModelFiles::in_dir(&dir) {
        Ok(files) => Some(files),
        Err(error) if std::env::var("CV_REQUIRE_MODEL").is_ok_and(|v| v == "1") => {
            panic!("CV_REQUIRE_MODEL=1, but {error}")
        }
        Err(error) => {
            eprintln!("skipped: {error} (set CV_MODEL_DIR to a directory that has them)");
            None
        }
    }
}
