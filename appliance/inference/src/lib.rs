//! Local AI: the text embedding engine.
//!
//! An [`Embedder`] turns texts into sentence embeddings — unit-length vectors of 384
//! floats whose cosine similarity measures how close two texts are in meaning — entirely
//! on this machine. It is the first piece of the appliance's local AI; the jailed worker
//! process, its protocol and semantic search will be built on it.
//!
//! **Files.** Three files, found in a models directory by [`ModelFiles::in_dir`]
//! (`<data-dir>/models` on the appliance, `var/models` in dev), downloaded and checked
//! against pinned SHA-256 sums by `scripts/fetch-model`: ONNX Runtime 1.31.1's shared
//! library ([`RUNTIME_FILE`], loaded at run time with `dlopen`, so nothing is linked or
//! downloaded at build time), the model ([`MODEL_FILE`]: all-MiniLM-L6-v2 with int8
//! weights) and its tokenizer ([`TOKENIZER_FILE`]).
//!
//! **What [`Embedder::embed`] does.** Each text is tokenized (WordPiece, lower-cased,
//! `[CLS] … [SEP]`, cut at [`MAX_TOKENS`]); the texts are sorted by token count and cut
//! into batches whose padded size stays within a token budget, so a short note is never
//! padded to the length of a long one (see the `batch` module); each batch runs through
//! the model (`input_ids`, `attention_mask` and all-zero `token_type_ids`, as `i64`
//! tensors, giving `last_hidden_state`, `[batch, sequence, 384]`); each text's vector is
//! the mean of its token vectors weighted by the attention mask, divided by its L2 norm
//! (sentence-transformers' pooling for this model); the vectors are returned in input
//! order. `tests/python_reference.rs` checks the result against the same model run by
//! the Python `onnxruntime` and `tokenizers` packages.
//!
//! **Logs.** ONNX Runtime's own log goes through `tracing` (target `ort`), filtered at
//! warnings by the runtime itself; this crate logs the model load and, at debug level,
//! the size of each `embed` call — counts and durations, never text. The tokenizers
//! crate would log each character of a text at TRACE (through `log`); the workspace caps
//! `log` at DEBUG at compile time, and `tests/logs.rs` checks that no line carries text.
//!
//! **Errors.** One [`EmbedError`] enum, carrying the path or stage that failed and never
//! the text being embedded (see its module). Nothing here panics on bad input.
//!
//! **Privacy.** Texts live only in memory for the duration of a call. No type of this
//! crate prints a text in its `Debug` output, and no error or log line contains one.

mod batch;
mod embedder;
mod error;
mod files;
mod pool;
mod runtime;

pub use crate::embedder::{
    Batching, DEFAULT_MAX_BATCH_TOKENS, EmbedOptions, Embedder, ExecutionProvider, MAX_TOKENS,
};
pub use crate::error::EmbedError;

/// Whether this build can run on an NVIDIA GPU (the `cuda` feature).
pub const CUDA_SUPPORT: bool = cfg!(feature = "cuda");
pub use crate::files::{CUDA_DIR, MODEL_FILE, ModelFiles, RUNTIME_FILE, TOKENIZER_FILE};
