//! Where the engine's three files live.

use std::path::{Path, PathBuf};

use crate::EmbedError;

/// The ONNX Runtime shared library, under the versioned name it has in the `onnxruntime`
/// wheel. `ort` (with `api-31`) refuses a runtime older than 1.31.
pub const RUNTIME_FILE: &str = "libonnxruntime.so.1.31.1";
/// The embedding model: all-MiniLM-L6-v2 with int8 weights, 384 dimensions.
pub const MODEL_FILE: &str = "model.onnx";
/// The model's WordPiece tokenizer, in Hugging Face's `tokenizer.json` format.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// The paths of the files the [`Embedder`](crate::Embedder) loads. `scripts/fetch-model`
/// downloads all three into one directory and checks their pinned SHA-256 sums.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFiles {
    /// The ONNX Runtime shared library ([`RUNTIME_FILE`]).
    pub runtime: PathBuf,
    /// The ONNX model ([`MODEL_FILE`]).
    pub model: PathBuf,
    /// The tokenizer ([`TOKENIZER_FILE`]).
    pub tokenizer: PathBuf,
}

impl ModelFiles {
    /// Finds the three files in `dir` (the appliance's `<data-dir>/models`). Fails with
    /// [`EmbedError::FilesMissing`], naming every missing file and the command that
    /// fetches them, when any is absent. The paths are made absolute, because ONNX
    /// Runtime's loader would otherwise resolve a relative one against the executable's
    /// directory rather than the working directory.
    pub fn in_dir(dir: &Path) -> Result<ModelFiles, EmbedError> {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let missing: Vec<&'static str> = [RUNTIME_FILE, MODEL_FILE, TOKENIZER_FILE]
            .into_iter()
            .filter(|name| !dir.join(name).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(EmbedError::FilesMissing { dir, missing });
        }
        Ok(ModelFiles {
            runtime: dir.join(RUNTIME_FILE),
            model: dir.join(MODEL_FILE),
            tokenizer: dir.join(TOKENIZER_FILE),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_every_missing_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(MODEL_FILE), b"x").unwrap();
        let err = ModelFiles::in_dir(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains(RUNTIME_FILE), "{message}");
        assert!(message.contains(TOKENIZER_FILE), "{message}");
        assert!(!message.contains(MODEL_FILE), "{message}");
        assert!(message.contains("scripts/fetch-model"), "{message}");
    }

    #[test]
    fn finds_all_three() {
        let dir = tempfile::tempdir().unwrap();
        for name in [RUNTIME_FILE, MODEL_FILE, TOKENIZER_FILE] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let files = ModelFiles::in_dir(dir.path()).unwrap();
        assert_eq!(files.runtime, dir.path().join(RUNTIME_FILE));
        assert!(files.model.is_absolute());
    }
}
