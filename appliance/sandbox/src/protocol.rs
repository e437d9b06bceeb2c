//! The jail's control socket: JSON lines between the spawner and the jail's two stages.
//!
//! The spawner sends one [`ToJail::Start`] to the keeper, the keeper one
//! [`ToJail::Stage2`] to the second stage; both stages answer with [`FromJail`] lines,
//! which the keeper relays to the spawner. The socket is the stages' stdin, moved to a
//! close-on-exec descriptor at once, so the spawner sees end-of-file exactly when the
//! worker's exec succeeded (or the stages died).

use std::io::{self, BufRead, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::plan::{Plan, Stage1};
use crate::report::{JailMode, Outcome};

/// The longest line either side reads: a plan with its environment, or a report.
const MAX_LINE: usize = 256 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub(crate) enum ToJail {
    Start { plan: Plan },
    Stage2 { plan: Plan, first: Stage1 },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub(crate) enum FromJail {
    Mode {
        mode: JailMode,
    },
    Outcomes {
        outcomes: Vec<Outcome>,
    },
    /// Something worth a log line that is not a protection.
    Warning {
        message: String,
    },
    /// The jail will not start the worker.
    Refused {
        reason: String,
    },
    /// The jail could not go on.
    Failed {
        error: String,
    },
    /// The second stage is about to exec the worker.
    Exec {
        program: PathBuf,
    },
    /// The exec failed.
    ExecFailed {
        error: String,
    },
}

pub(crate) fn send(mut to: &UnixStream, message: &impl Serialize) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    to.write_all(&line)
}

/// Reads one line; `None` at end of file.
pub(crate) fn receive<T: DeserializeOwned>(from: &mut impl BufRead) -> io::Result<Option<T>> {
    let mut line = Vec::new();
    let n = Read::take(&mut *from, MAX_LINE as u64).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control message too long or cut short",
        ));
    }
    serde_json::from_slice(&line).map(Some).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad control message: {e}"),
        )
    })
}

/// Reads one raw line (for the keeper's relay); `None` at end of file.
pub(crate) fn receive_raw(from: &mut impl BufRead) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let n = Read::take(&mut *from, MAX_LINE as u64).read_until(b'\n', &mut line)?;
    Ok((n > 0).then_some(line))
}
