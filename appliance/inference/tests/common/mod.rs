//! What the tests with the real model share: finding the model and the Python reference.
//!
//! The model's files are large and downloaded (`scripts/fetch-model`), so a plain `cargo
//! test` on a machine without them skips these tests with the reason printed; `scripts/test`
//! downloads them, points `CV_MODEL_DIR` at them and sets `CV_REQUIRE_MODEL=1`, under which
//! their absence fails instead.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use cv_inference::{EmbedOptions, Embedder, ModelFiles};

/// The repository's root (this crate is `appliance/inference`).
pub fn repository_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn required(variable: &str) -> bool {
    std::env::var(variable).is_ok_and(|v| v == "1")
}

/// The model's files from `CV_MODEL_DIR` (default `target/models`), or `None` after
/// printing why the test is skipped. Panics instead when `CV_REQUIRE_MODEL=1`.
pub fn model_files() -> Option<ModelFiles> {
    let dir = std::env::var_os("CV_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repository_root().join("target/models"));
    match ModelFiles::in_dir(&dir) {
        Ok(files) => Some(files),
        Err(error) if required("CV_REQUIRE_MODEL") => {
            panic!("CV_REQUIRE_MODEL=1, but {error}")
        }
        Err(error) => {
            eprintln!("skipped: {error} (set CV_MODEL_DIR to a directory that has them)");
            None
        }
    }
}

/// One engine per test binary, loaded on first use (ONNX Runtime is process-wide anyway),
/// with two intra-op threads.
pub fn embedder() -> Option<MutexGuard<'static, Embedder>> {
    static EMBEDDER: OnceLock<Mutex<Embedder>> = OnceLock::new();
    let files = model_files()?;
    let embedder = EMBEDDER.get_or_init(|| {
        let options = EmbedOptions {
            intra_threads: 2,
            ..EmbedOptions::default()
        };
        Mutex::new(Embedder::load(&files, &options).expect("the model loads"))
    });
    Some(embedder.lock().unwrap_or_else(PoisonError::into_inner))
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

/// Sentences of every kind the engine must handle: short and long (past the 256-token
/// cut), empty and blank, accents, scripts other than Latin, emoji, numbers and links.
pub fn varied_sentences() -> Vec<String> {
    let long = "The quick brown fox jumps over the lazy dog near the riverbank while the \
                farmer counts his sheep and the children play in the meadow. "
        .repeat(12);
    [
        "",
        "   ",
        "Hello",
        "Buy oat milk and bread on the way home.",
        "Call the dentist on Monday to move the appointment to Thursday afternoon.",
        "Blood pressure 128/82 mmHg, pulse 64 bpm, measured at 07:45 before coffee.",
        "Crème brûlée, façade, naïve, Zürich, São Paulo — accents everywhere.",
        "東京で寿司を食べました。とても美味しかったです。",
        "Привет, как дела? Всё хорошо, спасибо.",
        "مرحبا بالعالم، هذه جملة باللغة العربية.",
        "Γειά σου κόσμε· αυτή είναι μια ελληνική πρόταση.",
        "Pizza night 🍕🎉 with friends, don't forget the 🍷!",
        "See https://example.org/notes?id=42&sort=desc for the 3rd draft (v1.2.3).",
        "UPPERCASE AND lowercase AND MiXeD CaSe words.",
        "a b c d e f g h i j k l m n o p q r s t u v w x y z",
        "Meeting notes: discussed the Q3 roadmap, hiring two engineers, and moving the \
         launch from September to October because the payments integration is late.",
        "My grandmother's recipe: two cups of flour, one egg, a pinch of salt, and milk \
         until the batter is smooth; rest for an hour, then fry in butter.",
        long.as_str(),
        "Tab\tseparated\tvalues and a\nnew line in the middle.",
        "!!!???...,,,;;;",
    ]
    .into_iter()
    .map(String::from)
    .collect()
}
