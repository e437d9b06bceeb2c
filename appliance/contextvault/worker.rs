//! `contextvault worker`: the jailed AI worker. The supervisor starts it inside its jail
//! with one end of a socket pair as a descriptor; it loads the embedding model from the
//! read-only model directory, says hello, and answers the vault service's requests until
//! the service closes the socket (`cv_worker::serve`).
//!
//! A model that cannot be loaded is reported over the socket (a `failed` message before
//! any hello) so that the service can show why, and the worker exits non-zero.

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use cv_inference::{EmbedOptions, Embedder, ExecutionProvider, ModelFiles};
use cv_worker::{FailReason, Message, Model};

#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// The inherited descriptor of the worker's socket.
    #[arg(long)]
    fd: i32,
    /// The model directory (bound read-only into the jail).
    #[arg(long)]
    models: PathBuf,
    /// Inference threads (0: ONNX Runtime's choice).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    #[arg(long, default_value = "json")]
    log_format: String,
    #[arg(long, default_value = "info")]
    log_level: String,
}

/// The embedding engine behind the worker protocol.
struct Engine(Embedder);

impl Model for Engine {
    fn provider(&self) -> &str {
        self.0.execution_provider()
    }

    fn provider_note(&self) -> &str {
        self.0.fallback_reason().unwrap_or_default()
    }

    fn dimensions(&self) -> usize {
        self.0.dimensions()
    }

    fn embed(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        // The engine's errors name the stage that failed, never a text.
        self.0.embed(texts).map_err(|e| e.to_string())
    }
}

pub fn run(args: &WorkerArgs) -> anyhow::Result<ExitCode> {
    crate::logging::init(&args.log_format, &args.log_level);
    let mut stream = socket_from_inherited_fd(args.fd)?;
    let options = EmbedOptions {
        intra_threads: args.threads,
        // Built with `--features cuda`: CUDA when it loads, else the CPU (logged).
        execution_provider: if cv_inference::CUDA_SUPPORT {
            ExecutionProvider::Cuda
        } else {
            ExecutionProvider::Cpu
        },
        ..EmbedOptions::default()
    };
    let files = if cv_inference::CUDA_SUPPORT {
        ModelFiles::in_dir_preferring_cuda(&args.models)
    } else {
        ModelFiles::in_dir(&args.models)
    };
    let engine = files.and_then(|files| Embedder::load(&files, &options));
    let mut engine = match engine {
        Ok(embedder) => Engine(embedder),
        Err(e) => {
            let message = format!("the worker could not load its model: {e}");
            let failed = Message::Failed {
                id: 0,
                reason: FailReason::Inference,
                message: message.clone(),
            };
            let _ = cv_worker::write_message(&mut stream, &failed);
            anyhow::bail!(message);
        }
    };
    tracing::info!(
        provider = engine.provider(),
        threads = args.threads,
        "worker ready"
    );
    let served = cv_worker::serve(&mut stream, &mut engine, std::process::id())
        .context("the worker's connection to the vault service failed")?;
    tracing::info!(served, "worker done: the vault service closed its socket");
    Ok(ExitCode::SUCCESS)
}

/// Takes ownership of the socket the supervisor handed over as descriptor `fd`, after
/// checking that it is an open socket (a wrong number must not adopt some other file).
fn socket_from_inherited_fd(fd: i32) -> anyhow::Result<UnixStream> {
    anyhow::ensure!(
        fd >= 3,
        "descriptor {fd} is a standard stream, not a socket"
    );
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .with_context(|| format!("descriptor {fd} is not open"))?;
    anyhow::ensure!(
        target.to_string_lossy().starts_with("socket:"),
        "descriptor {fd} is not a socket but {}",
        target.display()
    );
    Ok(adopt(fd))
}

#[allow(unsafe_code)]
fn adopt(fd: i32) -> UnixStream {
    use std::os::fd::FromRawFd as _;
    // SAFETY: `fd` was handed to this process by the supervisor (through the jail), which
    // keeps no use of it; `socket_from_inherited_fd` checked that it is an open socket,
    // and this is the only place that takes it, once, so the stream is its only owner.
    unsafe { UnixStream::from_raw_fd(fd) }
}
