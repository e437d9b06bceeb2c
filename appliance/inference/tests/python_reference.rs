//! The Rust engine against an independent implementation of the same recipe: the PyPI
//! `onnxruntime` and `tokenizers` packages running the same model.onnx and tokenizer.json
//! (`scripts/embed-reference.py`: truncation at 256, mean pooling, L2 normalisation).
//! Agreement to 1e-4 means the tokenizer settings, the inputs, the pooling and the
//! batching here are right, not just self-consistent.
//!
//! The Python interpreter is `CV_PYTHON_REFERENCE`, else `target/pyref-venv/bin/python`
//! (made by `scripts/python-reference-env`), else `python3`. The test is skipped, with the
//! reason printed, when none has the packages — unless `CV_REQUIRE_PYTHON_REFERENCE=1`
//! (set by `scripts/test` once it has made the environment), which makes that a failure.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use common::{embedder, max_abs_diff, model_files, repository_root, varied_sentences};

fn python() -> Option<PathBuf> {
    let candidates: Vec<PathBuf> = match std::env::var_os("CV_PYTHON_REFERENCE") {
        Some(python) => vec![python.into()],
        None => vec![
            repository_root().join("target/pyref-venv/bin/python"),
            "python3".into(),
        ],
    };
    let found = candidates.iter().find(|python| {
        Command::new(python)
            .args(["-c", "import onnxruntime, tokenizers, numpy"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    });
    if found.is_none() {
        let reason = format!(
            "none of {candidates:?} runs with the Python packages onnxruntime, tokenizers and numpy \
             (scripts/python-reference-env installs them)"
        );
        if std::env::var("CV_REQUIRE_PYTHON_REFERENCE").is_ok_and(|v| v == "1") {
            panic!("CV_REQUIRE_PYTHON_REFERENCE=1, but {reason}");
        }
        eprintln!("skipped: {reason}");
    }
    found.cloned()
}

#[test]
fn rust_embeddings_match_the_python_reference() {
    let Some(files) = model_files() else { return };
    let Some(python) = python() else { return };
    let sentences = varied_sentences();

    let mut child = Command::new(&python)
        .arg(repository_root().join("scripts/embed-reference.py"))
        .arg("--model-dir")
        .arg(files.model.parent().unwrap())
        .args(["--threads", "2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = serde_json::json!({ "texts": sentences });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "embed-reference.py failed: {:?}",
        output.status
    );
    let reference: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let expected: Vec<Vec<f32>> = serde_json::from_value(reference["embeddings"].clone()).unwrap();

    let Some(mut embedder) = embedder() else {
        return;
    };
    let texts: Vec<&str> = sentences.iter().map(String::as_str).collect();
    let actual = embedder.embed(&texts).unwrap();

    let diff = max_abs_diff(&actual, &expected);
    eprintln!(
        "Rust vs Python reference ({} texts, {}): max abs diff {diff:e}",
        texts.len(),
        reference["versions"]
    );
    assert!(diff < 1e-4, "max abs diff {diff}");
}
