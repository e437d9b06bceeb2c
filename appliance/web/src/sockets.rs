//! Taking over the listening sockets the supervisor bound (as root, for ports 80/443)
//! and passed to this process as inherited file descriptors.

use std::collections::HashSet;
use std::net::TcpListener;

use crate::ServeError;

/// The HTTPS and plain-HTTP listeners from the handoff's descriptors.
pub(crate) fn take_all(
    https_fds: &[i32],
    http_fds: &[i32],
) -> Result<(Vec<TcpListener>, Vec<TcpListener>), ServeError> {
    let mut seen = HashSet::new();
    let https = take_listeners(https_fds, &mut seen)?;
    let http = take_listeners(http_fds, &mut seen)?;
    Ok((https, http))
}

/// Turns the handed-over descriptors into listeners, after checking that each one is
/// open, is a socket, and is named once in the whole handoff (two listeners owning one
/// descriptor would close it twice).
fn take_listeners(fds: &[i32], seen: &mut HashSet<i32>) -> Result<Vec<TcpListener>, ServeError> {
    let mut listeners = Vec::with_capacity(fds.len());
    for &fd in fds {
        check_fd(fd, seen)?;
        let listener = listener_from_inherited_fd(fd);
        let bad = |e: std::io::Error| ServeError::BadSocket {
            fd,
            reason: e.to_string(),
        };
        // Not a TCP socket (a unix socket, say) fails here rather than in the server.
        listener.local_addr().map_err(bad)?;
        // mio (under actix) requires non-blocking listeners.
        listener.set_nonblocking(true).map_err(bad)?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Checks a descriptor before anything takes ownership of it.
fn check_fd(fd: i32, seen: &mut HashSet<i32>) -> Result<(), ServeError> {
    let bad = |reason: &str| ServeError::BadSocket {
        fd,
        reason: reason.to_owned(),
    };
    // 0-2 are stdin/stdout/stderr: never a listening socket here.
    if fd < 3 {
        return Err(bad("descriptors 0-2 are the standard streams"));
    }
    if !seen.insert(fd) {
        return Err(bad("named twice in the handoff"));
    }
    // /proc/self/fd/N links to "socket:[inode]" for a socket; it is missing when the
    // descriptor is not open.
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map_err(|e| bad(&format!("not an open descriptor ({e})")))?;
    if !target.to_string_lossy().starts_with("socket:") {
        return Err(bad(&format!("not a socket but {}", target.display())));
    }
    Ok(())
}

#[allow(unsafe_code)]
fn listener_from_inherited_fd(fd: i32) -> TcpListener {
    use std::os::fd::FromRawFd as _;
    // SAFETY: `fd` was handed over by the supervisor, which started this process with it
    // open and keeps no use of it; `check_fd` verified it is an open socket and that no
    // other listener in this process was made from it, so the new `TcpListener` is its
    // only owner.
    unsafe { TcpListener::from_raw_fd(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_streams_and_duplicates_are_refused() {
        let mut seen = HashSet::new();
        assert!(check_fd(0, &mut seen).is_err());
        assert!(check_fd(2, &mut seen).is_err());
        // A descriptor number far above anything open in the test process.
        let err = check_fd(987_654, &mut seen).unwrap_err();
        assert!(err.to_string().contains("987654"), "{err}");
        assert!(
            check_fd(987_654, &mut seen)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }

    #[test]
    fn an_inherited_listener_is_taken_over() {
        use std::os::fd::IntoRawFd as _;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let fd = listener.into_raw_fd();
        let (https, http) = take_all(&[fd], &[]).unwrap();
        assert_eq!(https[0].local_addr().unwrap(), addr);
        assert!(http.is_empty());
    }

    #[test]
    fn a_file_is_not_a_socket() {
        use std::os::fd::IntoRawFd as _;
        let file = tempfile::tempfile().unwrap();
        let fd = file.into_raw_fd();
        let err = take_all(&[], &[fd]).unwrap_err();
        assert!(err.to_string().contains("not a socket"), "{err}");
    }
}
