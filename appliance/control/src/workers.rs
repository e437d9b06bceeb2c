//! AI workers over the control socket: what the supervisor says about a worker it started
//! or stopped, and how the service's end of a worker's socket travels with the answer.
//!
//! The supervisor (root) builds each worker's jail; the vault service (unprivileged)
//! talks to the worker. So the supervisor makes a socket pair, gives one end to the
//! worker, and sends the other to the service as `SCM_RIGHTS` ancillary data on the
//! control connection, attached to the first bytes of its JSON answer.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};
use serde::{Deserialize, Serialize};
use tokio::io::Interest;
use tokio::net::UnixStream;

use crate::{ControlError, MAX_MESSAGE_BYTES};

/// How long the service waits for a worker to be started (building a jail takes a
/// moment; the supervisor gives up on a jail after 20 s).
pub const SPAWN_TIMEOUT: Duration = Duration::from_secs(30);

/// One protection of a worker's jail, as the dashboard and `/healthz` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailProtection {
    /// Stable key (`network_namespace`, `memory_limit`, …).
    pub name: String,
    /// For people ("network namespace (no network)").
    pub label: String,
    pub applied: bool,
    /// How it is applied (the limit, the uid), or why it is not.
    pub detail: String,
}

/// What a worker's jail applied, and what it could not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerJail {
    /// "root" (the appliance) or "unprivileged" (dev mode as an ordinary user).
    pub mode: String,
    /// "v1", "v2", or none when no cgroup hierarchy was found.
    pub cgroup: Option<String>,
    /// Every protection, applied or not, in a fixed order.
    pub protections: Vec<JailProtection>,
}

impl WorkerJail {
    /// The protections that are not in force.
    pub fn missing(&self) -> impl Iterator<Item = &JailProtection> {
        self.protections.iter().filter(|p| !p.applied)
    }

    /// Whether every protection is in force.
    pub fn is_complete(&self) -> bool {
        self.missing().next().is_none()
    }
}

/// A worker the supervisor started for the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerStarted {
    /// The supervisor's number for it, used to stop it.
    pub id: u64,
    /// The worker's pid as the host sees it.
    pub pid: Option<u32>,
    pub jail: WorkerJail,
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerEnded {
    pub id: u64,
    /// For people: "exit status 0", "signal 9 (SIGKILL)".
    pub status: String,
    /// The kernel's OOM killer struck in the worker's cgroup.
    pub oom_killed: bool,
}

/// Writes `message` as one JSON line on `stream`, with `fd` attached to its first bytes.
pub async fn send_with_fd<T: Serialize>(
    stream: &UnixStream,
    message: &T,
    fd: impl AsFd,
) -> Result<(), ControlError> {
    let mut bytes = serde_json::to_vec(message)?;
    bytes.push(b'\n');
    let fds = [fd.as_fd()];
    let mut sent = 0;
    while sent < bytes.len() {
        stream.writable().await?;
        let result = stream.try_io(Interest::WRITABLE, || {
            let iov = [IoSlice::new(&bytes[sent..])];
            if sent == 0 {
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                control.push(SendAncillaryMessage::ScmRights(&fds));
                rustix::net::sendmsg(stream, &iov, &mut control, SendFlags::NOSIGNAL)
            } else {
                rustix::net::send(stream, &bytes[sent..], SendFlags::NOSIGNAL)
            }
            .map_err(std::io::Error::from)
        });
        match result {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Reads one JSON line from `stream`, and the descriptor sent with it, if any. A second
/// descriptor, or one sent after the first bytes, is closed and refused.
pub async fn receive_with_fd<T>(stream: &UnixStream) -> Result<(T, Option<OwnedFd>), ControlError>
where
    T: for<'de> Deserialize<'de>,
{
    let mut line = Vec::new();
    let mut fd = None;
    let mut extra_fds = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        stream.readable().await?;
        let result = stream.try_io(Interest::READABLE, || {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
            let mut control = RecvAncillaryBuffer::new(&mut space);
            let mut iov = [IoSliceMut::new(&mut buf)];
            let got = rustix::net::recvmsg(stream, &mut iov, &mut control, RecvFlags::CMSG_CLOEXEC)
                .map_err(std::io::Error::from)?;
            // Every received descriptor becomes an OwnedFd here, so none leaks.
            let mut received = Vec::new();
            for message in control.drain() {
                if let RecvAncillaryMessage::ScmRights(fds) = message {
                    received.extend(fds);
                }
            }
            Ok((got.bytes, received))
        });
        let (n, received) = match result {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e.into()),
        };
        for received in received {
            if fd.is_none() && line.is_empty() {
                fd = Some(received);
            } else {
                extra_fds = true;
            }
        }
        if n == 0 {
            return Err(ControlError::Closed);
        }
        line.extend_from_slice(&buf[..n]);
        if line.len() > MAX_MESSAGE_BYTES + 1 {
            return Err(ControlError::TooLarge);
        }
        if let Some(end) = line.iter().position(|&b| b == b'\n') {
            if extra_fds {
                return Err(ControlError::Refused(
                    "the supervisor sent more than one descriptor".into(),
                ));
            }
            return Ok((serde_json::from_slice(&line[..end])?, fd));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;
    use crate::Response;

    fn started() -> WorkerStarted {
        WorkerStarted {
            id: 3,
            pid: Some(77),
            jail: WorkerJail {
                mode: "root".into(),
                cgroup: Some("v1".into()),
                protections: vec![JailProtection {
                    name: "memory_limit".into(),
                    label: "memory limit".into(),
                    applied: false,
                    detail: "no cgroup".into(),
                }],
            },
        }
    }

    #[tokio::test]
    async fn a_socket_travels_with_the_answer_and_works() {
        let (a, b) = UnixStream::pair().unwrap();
        let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let answer = Response::WorkerStarted(started());
        send_with_fd(&a, &answer, &theirs).await.unwrap();
        drop(theirs);
        let (got, fd) = receive_with_fd::<Response>(&b).await.unwrap();
        assert_eq!(got, answer);
        let mut received = std::os::unix::net::UnixStream::from(fd.expect("a descriptor"));
        received.write_all(b"ping").unwrap();
        let mut four = [0u8; 4];
        ours.read_exact(&mut four).unwrap();
        assert_eq!(&four, b"ping");
        assert!(!started().jail.is_complete());
        assert_eq!(started().jail.missing().count(), 1);
    }

    #[tokio::test]
    async fn an_answer_without_a_descriptor_has_none() {
        let (mut a, b) = UnixStream::pair().unwrap();
        crate::write_message(&mut a, &Response::Ok).await.unwrap();
        let (got, fd) = receive_with_fd::<Response>(&b).await.unwrap();
        assert_eq!(got, Response::Ok);
        assert!(fd.is_none());
    }

    #[tokio::test]
    async fn endless_lines_and_hang_ups_are_errors() {
        let (a, b) = UnixStream::pair().unwrap();
        let writer = tokio::spawn(async move {
            let mut a = a;
            let junk = vec![b'x'; MAX_MESSAGE_BYTES + 100];
            let _ = tokio::io::AsyncWriteExt::write_all(&mut a, &junk).await;
        });
        let err = receive_with_fd::<Response>(&b).await.unwrap_err();
        assert!(matches!(err, ControlError::TooLarge), "{err}");
        writer.await.unwrap();

        let (a, b) = UnixStream::pair().unwrap();
        drop(a);
        let err = receive_with_fd::<Response>(&b).await.unwrap_err();
        assert!(matches!(err, ControlError::Closed), "{err}");
    }
}
