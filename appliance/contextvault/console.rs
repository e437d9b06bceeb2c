//! `contextvault console`: the login-free status screen on tty1 and the serial console.
//!
//! It reads the supervisor's `console.json` (see `cv_supervisor::console`) every two
//! seconds and prints its block only when what it shows changed; before the file exists
//! it says "Context Vault is starting…" once, and a missing or garbled file never makes
//! it exit (it says so once and keeps looking). SIGTERM (systemd stopping the unit) and
//! SIGINT end it with status 0.

use std::io::{IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use cv_supervisor::console::{Changes, Screen, should_clear};
use tokio::signal::unix::{SignalKind, signal};

/// How often the file is read.
const READ_EVERY: Duration = Duration::from_secs(2);
/// Cursor home, then erase the whole screen.
const CLEAR: &str = "\x1b[H\x1b[2J";

#[derive(Debug, clap::Args)]
pub struct ConsoleArgs {
    /// Run as a terminal's status screen: clear it before each new block (not on a serial
    /// console, nor when TERM is dumb or stdout is not a terminal).
    #[arg(long)]
    pub tty: bool,
    /// The status file the supervisor writes.
    #[arg(long, default_value = cv_supervisor::console::DEFAULT_FILE)]
    pub file: PathBuf,
}

pub fn run(args: &ConsoleArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    // The terminal stdout is (systemd's TTYPath), to tell a serial console apart.
    let tty_path = std::fs::read_link("/proc/self/fd/1").ok();
    let clear = should_clear(
        args.tty,
        stdout.is_terminal(),
        std::env::var("TERM").ok().as_deref(),
        tty_path.as_deref(),
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(watch(&args.file, clear))?;
    Ok(ExitCode::SUCCESS)
}

async fn watch(file: &Path, clear: bool) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut changes = Changes::default();
    let mut ticker = tokio::time::interval(READ_EVERY);
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = ticker.tick() => {}
        }
        if let Some(text) = changes.next(Screen::read(file)) {
            let prefix = if clear { CLEAR } else { "" };
            let mut out = std::io::stdout().lock();
            // A console that went away (a hung-up tty) is no reason to stop: the next
            // change is tried again.
            let _ = out
                .write_all(prefix.as_bytes())
                .and_then(|()| out.write_all(text.as_bytes()))
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush());
        }
    }
}
