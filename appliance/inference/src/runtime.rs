//! The process-wide ONNX Runtime: loaded once, from one file.
//!
//! `ort` allows one ONNX Runtime library and one environment per process, for the life
//! of the process (a second `ort::init_from` with another path silently keeps the first
//! library; a second environment is refused even after the first is dropped). So the
//! first [`Embedder::load`](crate::Embedder::load) loads the library and builds the
//! environment, which is kept here for good; later loads share it, and a load that asks
//! for a different library file is refused rather than quietly given the first.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use ort::environment::Environment;
use ort::logging::LogLevel;

use crate::EmbedError;

struct Loaded {
    path: PathBuf,
    environment: Environment,
}

static RUNTIME: Mutex<Option<Loaded>> = Mutex::new(None);

/// The environment of the ONNX Runtime loaded from `path`, loading it on first use.
pub(crate) fn environment(path: &Path) -> Result<Environment, EmbedError> {
    let load_error = |reason: String| EmbedError::RuntimeLoad {
        path: path.to_path_buf(),
        reason,
    };
    let canonical = path.canonicalize().map_err(|e| load_error(e.to_string()))?;

    // A panic while holding the lock cannot leave `Loaded` half-built (it is assigned
    // whole), so a poisoned lock is still a consistent one.
    let mut runtime = RUNTIME.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(loaded) = runtime.as_ref() {
        if loaded.path != canonical {
            return Err(load_error(format!(
                "ONNX Runtime is already loaded in this process from {}; one process can load only one",
                loaded.path.display()
            )));
        }
        return Ok(loaded.environment.clone());
    }

    let environment = ort::init_from(&canonical)
        .map_err(|e| load_error(e.to_string()))?
        .with_name("contextvault")
        // Microsoft's builds can send usage events (on Windows); nothing leaves the box.
        .with_telemetry(false)
        .build()
        .map_err(|e| load_error(e.to_string()))?;
    // `ort` forwards ONNX Runtime's log to `tracing` at every level; its INFO level
    // reports every session's graph transformations. Only warnings and errors matter.
    environment.set_log_level(LogLevel::Warning);
    *runtime = Some(Loaded {
        path: canonical,
        environment: environment.clone(),
    });
    Ok(environment)
}
