//! The `control-socket` task: answers the vault service's requests. Only root and the
//! service user may connect (file mode and group), and the peer's uid is checked again
//! on every connection.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use cv_control::{ComponentState, Request, Response, read_message, write_message};
use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};

use crate::board::Component;
use crate::{Context, Stop, SupervisorError, TaskResult};

/// A connection that says nothing for this long is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub fn bind(ctx: &Context) -> Result<UnixListener, SupervisorError> {
    let path = ctx.layout.control_socket();
    let err = |source| SupervisorError::Prepare {
        path: path.clone(),
        source,
    };
    // A socket left by a crashed supervisor; the pid file already ruled out a live one.
    let _ = fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(err)?;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o660)).map_err(err)?;
    if nix::unistd::Uid::effective().is_root() {
        nix::unistd::chown(&path, None, Some(ctx.users.service.gid)).map_err(|e| err(e.into()))?;
    }
    Ok(listener)
}

pub async fn serve(listener: UnixListener, ctx: Arc<Context>, mut stop: Stop) -> TaskResult {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "control socket accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.requested() => {
                let _ = fs::remove_file(ctx.layout.control_socket());
                return Ok(());
            }
        };
        let ctx = Arc::clone(&ctx);
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &ctx)).await {
                tracing::debug!(error = %e, "control connection timed out");
            }
        });
    }
}

async fn handle(stream: UnixStream, ctx: &Context) {
    let peer_uid = stream.peer_cred().map(|c| c.uid()).ok();
    let allowed = peer_uid.is_some_and(|uid| {
        uid == 0
            || uid == ctx.users.service.uid.as_raw()
            || uid == nix::unistd::Uid::effective().as_raw()
    });
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let response = if !allowed {
        tracing::warn!(
            ?peer_uid,
            "control connection from an unexpected user refused"
        );
        Response::Error {
            message: "not allowed".into(),
        }
    } else {
        match read_message::<Request, _>(&mut reader).await {
            Ok(request) => answer(ctx, request),
            Err(e) => Response::Error {
                message: format!("bad request: {e}"),
            },
        }
    };
    let _ = write_message(&mut write, &response).await;
}

/// Re-validates and answers one request.
fn answer(ctx: &Context, request: Request) -> Response {
    match request {
        Request::Status {} => Response::Status(ctx.board.snapshot()),
        Request::ServiceReady { pid } => {
            if ctx.board.pid(Component::Vault) == Some(pid) {
                ctx.board
                    .set(Component::Vault, ComponentState::Up, Some(pid), None);
                tracing::info!(pid, "vault service is serving");
                Response::Ok
            } else {
                Response::Error {
                    message: format!("pid {pid} is not the vault service this supervisor started"),
                }
            }
        }
    }
}
