//! The one error type of this crate.
//!
//! Every variant names the file it failed on, or the stage that failed, and carries the
//! library's own message where that message is about files or the model. None of them
//! ever carries a person's text, a token of it, or anything derived from it: the text
//! being embedded is someone's note. So a tokenizer failure while *encoding* keeps only
//! the position of the input in the batch, not the tokenizer's message (which is not
//! promised to leave the input out), and inference failures keep ONNX Runtime's message,
//! which speaks of shapes and nodes, never of values.

use std::path::PathBuf;

/// What went wrong while loading the embedding engine or embedding texts.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// Files the engine needs are not in the models directory.
    #[error(
        "the embedding model is not installed: {missing} missing in {dir}; run scripts/fetch-model {dir} to download and verify it",
        missing = missing.join(", "),
        dir = dir.display()
    )]
    FilesMissing {
        /// The models directory that was searched.
        dir: PathBuf,
        /// The file names that are not there.
        missing: Vec<&'static str>,
    },

    /// The ONNX Runtime shared library could not be loaded or initialised.
    #[error("could not load ONNX Runtime from {path}: {reason}", path = path.display())]
    RuntimeLoad {
        /// The library that was asked for.
        path: PathBuf,
        /// ONNX Runtime's or the dynamic loader's explanation.
        reason: String,
    },

    /// The model file could not be loaded into a session, or is not the kind of model
    /// this engine runs (a BERT-like encoder with `input_ids`, `attention_mask` and a
    /// `[batch, sequence, dimensions]` float output).
    #[error("could not load the embedding model {path}: {reason}", path = path.display())]
    ModelLoad {
        /// The model file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// The tokenizer file could not be read or configured.
    #[error("could not load the tokenizer {path}: {reason}", path = path.display())]
    TokenizerLoad {
        /// The tokenizer file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },

    /// The tokenizer failed on one of the inputs. The input itself is deliberately not
    /// described (see the module documentation).
    #[error("the tokenizer could not encode input {index} of the batch")]
    Tokenize {
        /// The position of the input in the slice given to `embed`.
        index: usize,
    },

    /// ONNX Runtime failed while running the model, or returned something unexpected.
    #[error("embedding inference failed: {0}")]
    Inference(String),
}

impl EmbedError {
    pub(crate) fn inference(error: impl std::fmt::Display) -> EmbedError {
        EmbedError::Inference(error.to_string())
    }
}
