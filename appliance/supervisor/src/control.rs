//! The `control-socket` task: answers the vault service's requests. Only root and the
//! service user may connect (file mode and group), and the peer's uid is checked again
//! on every connection.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use cv_control::{ComponentState, Request, Response, read_message, send_with_fd, write_message};
use cv_db::audit::Event;
use tokio::io::BufReader;
use tokio::net::{UnixListener, UnixStream};

use crate::board::Component;
use crate::{Context, Stop, SupervisorError, TaskResult, backup, storage, wireguard, workers};
use cv_storage::snapshot::Kind;

/// A connection that sends no request for this long is dropped.
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
        tokio::spawn(handle(stream, ctx));
    }
}

async fn handle(mut stream: UnixStream, ctx: Arc<Context>) {
    let peer_uid = stream.peer_cred().map(|c| c.uid()).ok();
    let allowed = peer_uid.is_some_and(|uid| {
        uid == 0
            || uid == ctx.users.service.uid.as_raw()
            || uid == nix::unistd::Uid::effective().as_raw()
    });
    if !allowed {
        tracing::warn!(
            ?peer_uid,
            "control connection from an unexpected user refused"
        );
        let refusal = Response::Error {
            message: "not allowed".into(),
        };
        let _ = write_message(&mut stream, &refusal).await;
        return;
    }
    let read = tokio::time::timeout(
        REQUEST_TIMEOUT,
        read_message::<Request, _>(&mut BufReader::new(&mut stream)),
    )
    .await;
    let request = match read {
        Ok(Ok(request)) => request,
        Ok(Err(e)) => {
            let bad = Response::Error {
                message: format!("bad request: {e}"),
            };
            let _ = write_message(&mut stream, &bad).await;
            return;
        }
        Err(_) => {
            tracing::debug!("control connection sent no request in time");
            return;
        }
    };
    match request {
        // Workers take a moment (a jail to build, a process to wait for): off the async
        // workers, and not bound by the request timeout (the jail has its own).
        Request::SpawnWorker {} => {
            let ctx2 = Arc::clone(&ctx);
            let spawned = tokio::task::spawn_blocking(move || workers::spawn(&ctx2)).await;
            let result = match spawned {
                Ok(Ok((started, fd))) => {
                    let id = started.id;
                    let sent = send_with_fd(&stream, &Response::WorkerStarted(started), &fd).await;
                    if let Err(e) = sent {
                        // Nobody holds the socket: end the worker rather than leak it.
                        tracing::warn!(id, error = %e, "could not hand a worker to the service");
                        drop(fd);
                        let _ = tokio::task::spawn_blocking(move || {
                            workers::stop(&ctx, id, Duration::ZERO)
                        })
                        .await;
                    }
                    return;
                }
                Ok(Err(message)) => message,
                Err(e) => format!("starting the worker failed: {e}"),
            };
            tracing::warn!(error = %result, "an AI worker could not be started");
            let _ = write_message(&mut stream, &Response::Error { message: result }).await;
        }
        Request::StopWorker { id, grace_ms } => {
            let ctx2 = Arc::clone(&ctx);
            let grace = Duration::from_millis(grace_ms);
            let stopped =
                tokio::task::spawn_blocking(move || workers::stop(&ctx2, id, grace)).await;
            let response = match stopped {
                Ok(Ok(ended)) => Response::WorkerEnded(ended),
                Ok(Err(message)) => Response::Error { message },
                Err(e) => Response::Error {
                    message: format!("stopping the worker failed: {e}"),
                },
            };
            let _ = write_message(&mut stream, &response).await;
        }
        // The interface and the registry files: off the async workers.
        request @ (Request::WgAddPeer { .. }
        | Request::WgListPeers {}
        | Request::WgRevokePeer { .. }
        | Request::WgSetEndpoint { .. }) => {
            let ctx2 = Arc::clone(&ctx);
            let response = match tokio::task::spawn_blocking(move || {
                wireguard::answer(&ctx2, request)
            })
            .await
            {
                Ok(response) => response,
                Err(e) => Response::Error {
                    message: format!("the WireGuard request failed: {e}"),
                },
            };
            let _ = write_message(&mut stream, &response).await;
        }
        Request::UpdateHint {
            id,
            timestamp,
            signature,
            body,
        } => {
            let hint = cv_update::hint::Hint {
                id: &id,
                timestamp: &timestamp,
                signature: &signature,
                body: body.as_bytes(),
            };
            let (status, message) = ctx.updates.hint(&hint);
            let _ = write_message(
                &mut stream,
                &Response::Hint {
                    status,
                    message: message.clone(),
                },
            )
            .await;
            // Every hint, taken or refused, goes into the owners' audit logs (the id is
            // the sender's, cut short; never the body).
            let id: String = id.chars().filter(|c| !c.is_control()).take(64).collect();
            let (event, detail) = if status == 202 {
                (Event::UpdateHint, format!("hint {id:?}: {message}"))
            } else {
                (
                    Event::UpdateHintRefused,
                    format!("hint {id:?} refused ({status}): {message}"),
                )
            };
            tracing::info!(status, %message, "update hint");
            crate::update::audit(&ctx, event, &detail).await;
        }
        request @ (Request::SnapshotCreate { .. }
        | Request::SnapshotList {}
        | Request::SnapshotRestore { .. }
        | Request::BackupInit {}
        | Request::BackupRun {}
        | Request::BackupList {}
        | Request::BackupCheck { .. }
        | Request::BackupRestore { .. }) => {
            let response = storage_answer(&ctx, request).await;
            let _ = write_message(&mut stream, &response).await;
        }
        other => {
            let response = answer(&ctx, other);
            let _ = write_message(&mut stream, &response).await;
        }
    }
}

/// Snapshots and backups. A restore and a backup run as tasks of their own: they go on
/// if the asker hangs up (a half-done restore would be worse than a late answer).
async fn storage_answer(ctx: &Arc<Context>, request: Request) -> Response {
    fn reply<T>(result: Result<T, String>, ok: impl FnOnce(T) -> Response) -> Response {
        match result {
            Ok(value) => ok(value),
            Err(message) => Response::Error { message },
        }
    }
    async fn detached<T: Send + 'static>(
        work: impl Future<Output = Result<T, String>> + Send + 'static,
    ) -> Result<T, String> {
        tokio::spawn(work)
            .await
            .unwrap_or_else(|e| Err(format!("it did not finish: {e}")))
    }
    let ctx = Arc::clone(ctx);
    match request {
        Request::SnapshotCreate { reason } => {
            let reason: String = reason
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            let reason = if reason.trim().is_empty() {
                "taken by hand".to_owned()
            } else {
                reason
            };
            reply(
                storage::take(&ctx, &[Kind::Manual], &reason).await,
                Response::Snapshot,
            )
        }
        Request::SnapshotList {} => reply(storage::list(&ctx).await, Response::Snapshots),
        Request::SnapshotRestore { id } => {
            tracing::warn!(%id, "restore of a snapshot requested");
            let restored = detached(async move { storage::restore(&ctx, &id).await }).await;
            reply(restored, |()| Response::Ok)
        }
        Request::BackupInit {} => {
            reply(backup::init(&ctx).await, |key| Response::BackupKey { key })
        }
        Request::BackupRun {} => {
            let made = detached(async move { backup::run_now(&ctx).await }).await;
            reply(made, Response::BackupDone)
        }
        Request::BackupList {} => reply(backup::list(&ctx).await, |backups| Response::Backups {
            backups,
        }),
        Request::BackupCheck { repository, key } => {
            reply(backup::check(&ctx, &repository, key).await, |backups| {
                Response::Backups { backups }
            })
        }
        Request::BackupRestore {
            repository,
            key,
            snapshot,
        } => {
            let restored =
                detached(async move { backup::restore(&ctx, &repository, key, &snapshot).await })
                    .await;
            reply(restored, |()| Response::Ok)
        }
        _ => Response::Error {
            message: "this request is answered elsewhere".into(),
        },
    }
}

/// Re-validates and answers one quick request.
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
        Request::AcmeRenew {} => {
            if !ctx.config.acme.enabled {
                return Response::Error {
                    message: "ACME is not enabled ([acme] enabled = false)".into(),
                };
            }
            tracing::info!("ACME renewal requested");
            ctx.acme_renew.notify_one();
            Response::Ok
        }
        Request::UpdateHint { .. } => Response::Error {
            message: "this request is answered elsewhere".into(),
        },
        Request::UpdateCheck {}
        | Request::UpdateRestart {}
        | Request::UpdateRetry { .. }
        | Request::UpdateSetWindow { .. }
            if !ctx.updates.is_enabled() =>
        {
            Response::Error {
                message: "this box does not update itself (see the dashboard for why)".into(),
            }
        }
        Request::UpdateCheck {} => {
            tracing::info!("update check requested");
            ctx.updates.check_now.notify_one();
            Response::Ok
        }
        Request::UpdateRestart {} => {
            tracing::info!("restart into the installed update requested");
            ctx.updates.restart_now.notify_one();
            Response::Ok
        }
        Request::UpdateSetWindow { window } => {
            match ctx
                .updates
                .set_window(&ctx.layout.root().join("update"), &window)
            {
                Ok(window) => {
                    let shown = window.map(|w| w.to_string());
                    tracing::info!(
                        window = shown.as_deref().unwrap_or("at once"),
                        "update restart window set"
                    );
                    ctx.board.patch_update(|u| u.reboot_window = shown);
                    Response::Ok
                }
                Err(message) => Response::Error { message },
            }
        }
        Request::UpdateRetry { version } => {
            tracing::info!(%version, "retry of a failed update requested");
            ctx.updates.retry(&version);
            Response::Ok
        }
        Request::SpawnWorker {}
        | Request::SnapshotCreate { .. }
        | Request::SnapshotList {}
        | Request::SnapshotRestore { .. }
        | Request::BackupInit {}
        | Request::BackupRun {}
        | Request::BackupList {}
        | Request::BackupCheck { .. }
        | Request::BackupRestore { .. }
        | Request::StopWorker { .. }
        | Request::WgAddPeer { .. }
        | Request::WgListPeers {}
        | Request::WgRevokePeer { .. }
        | Request::WgSetEndpoint { .. } => Response::Error {
            message: "this request is answered elsewhere".into(),
        },
    }
}
