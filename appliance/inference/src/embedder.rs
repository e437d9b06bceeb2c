//! The embedding engine: tokenizer + ONNX Runtime session + pooling.

use std::fmt;
use std::time::Instant;

use ndarray::{ArrayView2, Ix3};
use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::TensorRef;
use tokenizers::{Tokenizer, TruncationParams};

use crate::batch::{self, Batch};
use crate::pool::{mean_pool, normalize};
use crate::{EmbedError, ModelFiles, runtime};

/// Texts are cut to this many tokens, `[CLS]` and `[SEP]` included. all-MiniLM-L6-v2 was
/// trained on sequences of up to 128 tokens and sentence-transformers cuts it at 256
/// (`sentence_bert_config.json`: `max_seq_length: 256`); its position table has 512.
pub const MAX_TOKENS: usize = 256;

/// Default token budget of one batch (`rows × longest ≤` this): 8 texts of the longest
/// kind, 64 of 32 tokens. Smaller batches waste less on padding (their lengths are closer)
/// and keep the attention tensors (`rows × 12 heads × width²` floats: 25 MB here at width
/// 256) in cache; measured on the benchmark's corpus with one thread, CPU time per text
/// grew steadily with the budget: 512 → 1.00, 1,024 → 1.03, 2,048 → 1.06, 4,096 → 1.13,
/// 8,192 → 1.30. 2,048 rather than 512 leaves each operator enough work to share between
/// several threads.
pub const DEFAULT_MAX_BATCH_TOKENS: usize = 2_048;

/// Where the model runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExecutionProvider {
    /// ONNX Runtime's CPU kernels (MLAS). Always available.
    #[default]
    Cpu,
    /// NVIDIA GPU through ONNX Runtime's CUDA execution provider. Needs this crate's `cuda`
    /// feature, an ONNX Runtime built with CUDA (the `onnxruntime-gpu` wheel, not the one
    /// `scripts/fetch-model` installs) and the CUDA and cuDNN libraries; when any is
    /// missing the engine logs why and runs on the CPU ([`Embedder::execution_provider`]
    /// says which is in use).
    Cuda,
}

impl ExecutionProvider {
    /// `"cpu"` or `"cuda"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionProvider::Cpu => "cpu",
            ExecutionProvider::Cuda => "cuda",
        }
    }
}

/// How texts are grouped into batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Batching {
    /// Sorted by token count and cut by [`EmbedOptions::max_batch_tokens`], so texts are
    /// padded only to texts of similar length. The right choice everywhere.
    #[default]
    ByLength,
    /// `batch_size` consecutive texts at a time, in input order, each batch padded to its
    /// longest text: what a simple script does. For comparison in the benchmark.
    InOrder {
        /// Texts per batch.
        batch_size: usize,
    },
}

/// How to load and run the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Threads ONNX Runtime uses inside one operator. 0 lets ONNX Runtime choose (one per
    /// physical core).
    pub intra_threads: usize,
    /// Token budget of one batch: `rows × longest row ≤ max_batch_tokens` (one text
    /// longer than the budget runs alone). Used by [`Batching::ByLength`].
    pub max_batch_tokens: usize,
    /// The preferred execution provider; the CPU is the fallback.
    pub execution_provider: ExecutionProvider,
    /// How texts are grouped into batches.
    pub batching: Batching,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            intra_threads: 0,
            max_batch_tokens: DEFAULT_MAX_BATCH_TOKENS,
            execution_provider: ExecutionProvider::Cpu,
            batching: Batching::ByLength,
        }
    }
}

/// Input and output names of a BERT-like encoder exported by Hugging Face Optimum or
/// `torch.onnx` (what sentence-transformers' models use).
const INPUT_IDS: &str = "input_ids";
const ATTENTION_MASK: &str = "attention_mask";
const TOKEN_TYPE_IDS: &str = "token_type_ids";
const LAST_HIDDEN_STATE: &str = "last_hidden_state";

/// Turns texts into unit-length vectors (sentence embeddings) with a local model.
///
/// One `Embedder` runs one batch at a time ([`embed`](Embedder::embed) takes `&mut self`,
/// as ONNX Runtime's sessions require); it is `Send`, so it can live on a worker thread.
pub struct Embedder {
    session: Session,
    tokenizer: Tokenizer,
    provider: ExecutionProvider,
    /// Why `provider` is not the one asked for.
    fallback: Option<String>,
    dimensions: usize,
    has_token_type_ids: bool,
    options: EmbedOptions,
}

impl fmt::Debug for Embedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Embedder")
            .field("execution_provider", &self.provider.as_str())
            .field("dimensions", &self.dimensions)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads ONNX Runtime (once per process; see the `runtime` module), the tokenizer and
    /// the model.
    pub fn load(files: &ModelFiles, options: &EmbedOptions) -> Result<Embedder, EmbedError> {
        let started = Instant::now();
        let environment = runtime::environment(&files.runtime)?;
        let tokenizer = load_tokenizer(files)?;

        let model_error = |reason: String| EmbedError::ModelLoad {
            path: files.model.clone(),
            reason,
        };
        let (session, provider, fallback) = match options.execution_provider {
            ExecutionProvider::Cpu => (
                build_session(&environment, files, options, false)?,
                ExecutionProvider::Cpu,
                None,
            ),
            ExecutionProvider::Cuda => match build_session(&environment, files, options, true) {
                Ok(session) => (session, ExecutionProvider::Cuda, None),
                Err(error) => {
                    tracing::warn!(%error, "CUDA is not usable; running on the CPU");
                    (
                        build_session(&environment, files, options, false)?,
                        ExecutionProvider::Cpu,
                        Some(format!("CUDA is not usable: {}", runtime_reason(&error))),
                    )
                }
            },
        };

        let input_names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        for required in [INPUT_IDS, ATTENTION_MASK] {
            if !input_names.contains(&required) {
                return Err(model_error(format!(
                    "it has no input {required} (inputs: {})",
                    input_names.join(", ")
                )));
            }
        }
        let has_token_type_ids = input_names.contains(&TOKEN_TYPE_IDS);
        let output = session
            .outputs()
            .iter()
            .find(|o| o.name() == LAST_HIDDEN_STATE)
            .ok_or_else(|| model_error(format!("it has no output {LAST_HIDDEN_STATE}")))?;
        let dimensions = match output.dtype().tensor_shape().map(|s| &s[..]) {
            Some(&[_, _, d]) if d > 0 => d as usize,
            other => {
                return Err(model_error(format!(
                    "its output {LAST_HIDDEN_STATE} has shape {other:?}, expected [batch, sequence, dimensions]"
                )));
            }
        };

        tracing::info!(
            model = %files.model.display(),
            execution_provider = provider.as_str(),
            dimensions,
            intra_threads = options.intra_threads,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedding model loaded"
        );
        Ok(Embedder {
            session,
            tokenizer,
            provider,
            fallback,
            dimensions,
            has_token_type_ids,
            options: options.clone(),
        })
    }

    /// The execution provider really in use: `"cpu"` or `"cuda"`.
    pub fn execution_provider(&self) -> &'static str {
        self.provider.as_str()
    }

    /// Why the execution provider is not the one [`EmbedOptions`] asked for (CUDA that
    /// could not be used); `None` when it is.
    pub fn fallback_reason(&self) -> Option<&str> {
        self.fallback.as_deref()
    }

    /// The length of every embedding (384 for all-MiniLM-L6-v2).
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Embeds `texts`: one L2-normalised vector of [`dimensions`](Embedder::dimensions)
    /// floats per text, in input order. Texts longer than [`MAX_TOKENS`] tokens are cut;
    /// an empty text is embedded as `[CLS] [SEP]`.
    pub fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let tokens = self.tokenize(texts)?;
        let lengths: Vec<usize> = tokens.iter().map(Vec::len).collect();
        let batches = match self.options.batching {
            Batching::ByLength => batch::by_length(&lengths, self.options.max_batch_tokens),
            Batching::InOrder { batch_size } => batch::in_order(&lengths, batch_size),
        };

        let mut embeddings = vec![Vec::new(); texts.len()];
        let mut padded = 0;
        for batch in &batches {
            padded += batch.indices.len() * batch.width;
            let vectors = self.run(&tokens, batch)?;
            for (&index, vector) in batch.indices.iter().zip(vectors) {
                embeddings[index] = vector;
            }
        }
        tracing::debug!(
            texts = texts.len(),
            batches = batches.len(),
            tokens = lengths.iter().sum::<usize>(),
            padded_tokens = padded,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "embedded"
        );
        Ok(embeddings)
    }

    /// Token ids of each text, truncated, with `[CLS]` and `[SEP]`, unpadded.
    fn tokenize(&self, texts: &[&str]) -> Result<Vec<Vec<i64>>, EmbedError> {
        texts
            .iter()
            .enumerate()
            .map(|(index, text)| {
                // encode_fast: no character offsets, which nothing here uses.
                let encoding = self
                    .tokenizer
                    .encode_fast(*text, true)
                    .map_err(|_| EmbedError::Tokenize { index })?;
                Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
            })
            .collect()
    }

    /// Runs one batch and returns its rows' embeddings, in the batch's row order.
    fn run(&mut self, tokens: &[Vec<i64>], batch: &Batch) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (rows, width) = (batch.indices.len(), batch.width);
        let mut ids = vec![0i64; rows * width]; // 0 is [PAD] in BERT's vocabulary
        let mut mask = vec![0i64; rows * width];
        for (row, &index) in batch.indices.iter().enumerate() {
            let text = &tokens[index];
            ids[row * width..row * width + text.len()].copy_from_slice(text);
            mask[row * width..row * width + text.len()].fill(1);
        }
        // One segment: every token type is 0.
        let types = vec![0i64; rows * width];

        let mut inputs = ort::inputs! {
            INPUT_IDS => TensorRef::from_array_view(([rows, width], ids.as_slice())).map_err(EmbedError::inference)?,
            ATTENTION_MASK => TensorRef::from_array_view(([rows, width], mask.as_slice())).map_err(EmbedError::inference)?,
        };
        if self.has_token_type_ids {
            inputs.push((
                TOKEN_TYPE_IDS.into(),
                TensorRef::from_array_view(([rows, width], types.as_slice()))
                    .map_err(EmbedError::inference)?
                    .into(),
            ));
        }
        let outputs = self.session.run(inputs).map_err(EmbedError::inference)?;
        let hidden = outputs
            .get(LAST_HIDDEN_STATE)
            .ok_or_else(|| {
                EmbedError::Inference(format!("the model returned no {LAST_HIDDEN_STATE}"))
            })?
            .try_extract_array::<f32>()
            .map_err(EmbedError::inference)?
            .into_dimensionality::<Ix3>()
            .map_err(EmbedError::inference)?;
        if hidden.shape() != [rows, width, self.dimensions] {
            return Err(EmbedError::Inference(format!(
                "{LAST_HIDDEN_STATE} has shape {:?}, expected [{rows}, {width}, {}]",
                hidden.shape(),
                self.dimensions
            )));
        }
        let mask = ArrayView2::from_shape((rows, width), &mask).map_err(EmbedError::inference)?;
        let mut vectors = mean_pool(hidden, mask);
        vectors.iter_mut().for_each(|v| normalize(v));
        Ok(vectors)
    }
}

/// The tokenizer file as published, with its fixed padding to 128 tokens (which would
/// pad every text of a batch to 128 and cost 4-5× the time on short notes) replaced by
/// none (batches are padded here, to their longest text) and truncation at
/// [`MAX_TOKENS`] instead of 128.
fn load_tokenizer(files: &ModelFiles) -> Result<Tokenizer, EmbedError> {
    let error = |reason: String| EmbedError::TokenizerLoad {
        path: files.tokenizer.clone(),
        reason,
    };
    let mut tokenizer = Tokenizer::from_file(&files.tokenizer).map_err(|e| error(e.to_string()))?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: MAX_TOKENS,
            ..TruncationParams::default()
        }))
        .map_err(|e| error(e.to_string()))?;
    Ok(tokenizer)
}

fn build_session(
    environment: &ort::environment::Environment,
    files: &ModelFiles,
    options: &EmbedOptions,
    cuda: bool,
) -> Result<Session, EmbedError> {
    let error = |e: ort::Error| EmbedError::ModelLoad {
        path: files.model.clone(),
        reason: e.to_string(),
    };
    let mut builder: SessionBuilder = Session::builder(environment)
        .map_err(error)?
        // All of ONNX Runtime's graph rewrites (attention, GELU, layer-norm fusions): the
        // default of its Python API, and what the reference comparison runs with.
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(|e| error(e.into()))?;
    if options.intra_threads > 0 {
        builder = builder
            .with_intra_threads(options.intra_threads)
            .map_err(|e| error(e.into()))?;
    }
    if cuda {
        builder = with_cuda(builder).map_err(error)?;
    }
    builder.commit_from_file(&files.model).map_err(error)
}

/// ONNX Runtime's own words from an error, without the source location and status code
/// it puts first (`/onnxruntime_src/…/provider_bridge_ort.cc:2043 … [ONNXRuntimeError] :
/// 1 : FAIL : Failed to load library …`), for a line on the dashboard.
fn runtime_reason(error: &EmbedError) -> String {
    let text = match error {
        EmbedError::ModelLoad { reason, .. } => reason.clone(),
        other => other.to_string(),
    };
    match text.rsplit_once("[ONNXRuntimeError] : ") {
        // "<code> : <status> : <message>"
        Some((_, rest)) => rest.splitn(3, " : ").nth(2).unwrap_or(rest).to_owned(),
        None => text,
    }
}

/// Registers the CUDA execution provider, failing (rather than falling back silently, as
/// `ort` would) when ONNX Runtime cannot use it, so the caller knows what runs.
#[cfg(feature = "cuda")]
fn with_cuda(builder: SessionBuilder) -> Result<SessionBuilder, ort::Error> {
    Ok(builder.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])?)
}

#[cfg(not(feature = "cuda"))]
fn with_cuda(_: SessionBuilder) -> Result<SessionBuilder, ort::Error> {
    Err(ort::Error::new(
        "this build has no CUDA support (cv-inference's cuda feature is off)",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_are_cut_to_their_message() {
        let error = EmbedError::ModelLoad {
            path: "/models/model.onnx".into(),
            reason: "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043 \
                     onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() \
                     [ONNXRuntimeError] : 1 : FAIL : Failed to load library \
                     /models/cuda/libonnxruntime_providers_cuda.so with error: libcuda.so.1: \
                     cannot open shared object file: No such file or directory"
                .into(),
        };
        assert_eq!(
            runtime_reason(&error),
            "Failed to load library /models/cuda/libonnxruntime_providers_cuda.so with error: \
             libcuda.so.1: cannot open shared object file: No such file or directory"
        );
        let plain = EmbedError::ModelLoad {
            path: "/models/model.onnx".into(),
            reason: "this build has no CUDA support".into(),
        };
        assert_eq!(runtime_reason(&plain), "this build has no CUDA support");
    }

    #[test]
    fn embedder_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Embedder>();
    }

    #[test]
    fn default_options_sort_by_length() {
        let options = EmbedOptions::default();
        assert_eq!(options.batching, Batching::ByLength);
        assert_eq!(options.execution_provider.as_str(), "cpu");
        assert!(
            options.max_batch_tokens >= MAX_TOKENS,
            "the longest text fits a batch"
        );
    }
}
