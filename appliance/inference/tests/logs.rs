//! No log line ever carries the text being embedded, even with every log level on.
//!
//! Regression test: the tokenizers crate logs each character it normalizes at TRACE
//! through the `log` facade; the workspace caps `log` below TRACE at compile time. Its
//! own test binary, because it installs a process-wide subscriber at TRACE that also
//! receives `log` records (as `RUST_LOG=trace` would in the appliance).

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use cv_inference::{EmbedOptions, Embedder, ExecutionProvider};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_log_line_contains_the_text() {
    let Some(files) = common::model_files() else {
        return;
    };
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    // The CUDA path too, so its fallback warning is among the lines checked.
    let options = EmbedOptions {
        execution_provider: ExecutionProvider::Cuda,
        ..EmbedOptions::default()
    };
    let mut embedder = Embedder::load(&files, &options).unwrap();
    // 'ꙮ' is rare enough to appear nowhere else; "zebra" is a whole word.
    embedder
        .embed(&["ꙮ secret zebra ꙮ", "another ꙮ note"])
        .unwrap();

    let log = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    assert!(
        log.contains("embedding model loaded"),
        "the subscriber captured nothing:\n{log}"
    );
    assert!(log.contains("embedded"), "{log}");
    for forbidden in ["ꙮ", "zebra", "secret"] {
        let line = log.lines().find(|line| line.contains(forbidden));
        assert!(
            line.is_none(),
            "a log line contains {forbidden:?}: {line:?}"
        );
    }
}
