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
/// The folder of the models directory that `scripts/fetch-model --gpu` fills: ONNX
/// Runtime built with its CUDA execution provider (under [`RUNTIME_FILE`]'s name), and
/// the CUDA libraries that provider loads. Those are found through the loader's search
/// path, read when a process starts: a process that uses them needs this folder in
/// `LD_LIBRARY_PATH` (the supervisor sets it for its workers).
pub const CUDA_DIR: &str = "cuda";

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

    /// Like [`in_dir`](Self::in_dir), but the runtime is the CUDA build in
    /// `<dir>/`[`CUDA_DIR`] when that is there (for [`ExecutionProvider::Cuda`]; it runs
    /// on the CPU as well). Without it, the CPU runtime, and CUDA will not load.
    ///
    /// [`ExecutionProvider::Cuda`]: crate::ExecutionProvider::Cuda
    pub fn in_dir_preferring_cuda(dir: &Path) -> Result<ModelFiles, EmbedError> {
        let mut files = ModelFiles::in_dir(dir)?;
        let cuda = files.model.with_file_name(CUDA_DIR).join(RUNTIME_FILE);
        if cuda.is_file() {
            files.runtime = cuda;
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A models directory with all three files (their contents do not matter here).
    fn complete_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for name in [RUNTIME_FILE, MODEL_FILE, TOKENIZER_FILE] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        dir
    }

    #[test]
    fn the_cuda_runtime_is_preferred_only_when_it_is_there() {
        let dir = complete_dir();
        let cpu = ModelFiles::in_dir_preferring_cuda(dir.path()).unwrap();
        assert_eq!(cpu, ModelFiles::in_dir(dir.path()).unwrap());
        std::fs::create_dir(dir.path().join(CUDA_DIR)).unwrap();
        std::fs::write(dir.path().join(CUDA_DIR).join(RUNTIME_FILE), b"x").unwrap();
        let cuda = ModelFiles::in_dir_preferring_cuda(dir.path()).unwrap();
        assert_eq!(cuda.runtime, dir.path().join(CUDA_DIR).join(RUNTIME_FILE));
        assert_eq!(cuda.model, cpu.model);
    }

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
        let dir = complete_dir();
        let files = ModelFiles::in_dir(dir.path()).unwrap();
        assert_eq!(files.runtime, dir.path().join(RUNTIME_FILE));
        assert!(files.model.is_absolute());
    }
}
