//! # The local control API: a Unix socket for `bcpctl`
//!
//! The agent listens on `[control] socket` (default `/run/bcp/agent.sock`, in the unit's
//! `RuntimeDirectory`). The socket has mode 0660 and, where the group `[control] group`
//! (default `bcp-tech`) exists, that group: root and the technicians in it may use it, nobody
//! else. The agent can only hand the socket to a group it is a member of, hence the unit's
//! `SupplementaryGroups=bcp-tech`; without it the socket stays the agent's own, with a warning.
//! A stale socket left by a crash is removed at start; a live one (another agent answers on
//! it) stops the start, and a path that is not a socket is never removed.
//!
//! ## Protocol
//! Line-delimited JSON over the stream: the client writes one request object per line, the
//! agent answers each with one response object per line, in order, on the same connection.
//! Requests (see [`protocol::Request`]): `{"cmd":"status"}`, `{"cmd":"devices"}`,
//! `{"cmd":"lanes"}`, `{"cmd":"events_tail"}`, `{"cmd":"sync_now"}`, `{"cmd":"reload"}` (as
//! SIGHUP: re-read the config; answered `reloaded` or `error`). Every response has a
//! `"type"`: `status`, `devices`, `lanes`, `sync_requested`, or `error` with a `message` (a bad
//! request is answered, not dropped; a line over [`protocol::MAX_REQUEST_BYTES`] is answered
//! and the connection closed). `events_tail` turns the connection into a feed: `subscribed`,
//! then a `crossing` (`seq`, `crossing`) for each record as it is committed to the outbox,
//! `lagged` (`missed`) if the client reads too slowly; it ends when the client hangs up or the
//! agent stops. Clients ignore fields they do not know. Example:
//!
//! ```text
//! $ printf '{"cmd":"sync_now"}\n' | socat - UNIX-CONNECT:/run/bcp/agent.sock
//! {"type":"sync_requested","depth":0,"connected":true}
//! ```
//!
//! The server only reads the agent through [`AgentView`]; at most [`MAX_CLIENTS`] connections
//! are served at once.

pub mod protocol;

use std::io::ErrorKind;
use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context as _, Result};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, watch, Semaphore};

use crate::config::ControlConfig;
use crate::view::AgentView;
use protocol::{decode_request, encode_line, ProtocolError, Request, Response, MAX_REQUEST_BYTES};

/// Connections served at once; more are told so and closed.
pub const MAX_CLIENTS: usize = 32;

/// The bound control socket; the file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(socket = %self.path.display(), error = %e, "cannot remove the control socket");
            }
        }
    }
}

/// Creates the socket as the module documentation says. Must run inside a tokio runtime.
pub fn bind(cfg: &ControlConfig) -> Result<ControlSocket> {
    let path = &cfg.socket;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("control socket: creating {}", dir.display()))?;
    }
    remove_stale(path)?;
    let listener = UnixListener::bind(path).with_context(|| {
        format!(
            "control socket: cannot listen on {} (set [control] socket in the config)",
            path.display()
        )
    })?;
    let socket = ControlSocket {
        listener,
        path: path.clone(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("control socket: chmod 0660 {}", path.display()))?;
    hand_to_group(path, &cfg.group);
    Ok(socket)
}

/// Removes a socket nobody answers on; refuses a live one or something that is not a socket.
fn remove_stale(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| format!("control socket: checking {}", path.display()))
        }
    };
    if !meta.file_type().is_socket() {
        bail!(
            "control socket: {} exists and is not a socket; not removing it (move it away or set [control] socket)",
            path.display()
        );
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => bail!(
            "control socket: another process answers on {} (is another bcp-agent running? systemctl status bcp-agent)",
            path.display()
        ),
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
            tracing::info!(socket = %path.display(), "removing a stale control socket");
            std::fs::remove_file(path)
                .with_context(|| format!("control socket: removing the stale {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "control socket: {} exists and cannot be checked",
                path.display()
            )
        }),
    }
}

/// Gives the socket to `group` if it exists; a failure is a warning (root can still use it).
fn hand_to_group(path: &Path, group: &str) {
    let groups = match std::fs::read_to_string("/etc/group") {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(%error, "control socket: cannot read /etc/group; the socket keeps the agent's group");
            return;
        }
    };
    let Some(gid) = gid_of(&groups, group) else {
        tracing::info!(socket = %path.display(), group, "control socket: no such group; only root and the agent's own user and group can use the socket");
        return;
    };
    match std::os::unix::fs::chown(path, None, Some(gid)) {
        Ok(()) => {
            tracing::info!(socket = %path.display(), group, "control socket ready (mode 0660)")
        }
        Err(error) => tracing::warn!(
            socket = %path.display(), group, %error,
            "control socket: cannot give it to the group (is the agent a member? SupplementaryGroups={group} in the unit); only root and the agent's own group can use it"
        ),
    }
}

/// The gid of `name` in the text of `/etc/group` (`name:x:gid:members`).
pub fn gid_of(etc_group: &str, name: &str) -> Option<u32> {
    etc_group.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next()? == name)
            .then(|| fields.nth(1)?.trim().parse().ok())
            .flatten()
    })
}

/// Serves the control API until `shutdown` turns true; the socket file goes with it.
pub async fn serve(
    socket: ControlSocket,
    view: Arc<AgentView>,
    mut shutdown: watch::Receiver<bool>,
) {
    let clients = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        tokio::select! {
            accepted = socket.listener.accept() => match accepted {
                Ok((stream, _)) => match clients.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let (view, shutdown) = (view.clone(), shutdown.clone());
                        tokio::spawn(async move {
                            session(stream, view, shutdown).await;
                            drop(permit);
                        });
                    }
                    Err(_) => {
                        let mut stream = stream;
                        let busy = Response::Error { message: format!("too many clients (at most {MAX_CLIENTS}); try again") };
                        let _ = stream.write_all(&encode_line(&busy)).await;
                    }
                },
                Err(error) => {
                    tracing::warn!(socket = %socket.path.display(), %error, "control socket: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
            }
        }
    }
}

/// One client: requests in, responses out, until it hangs up.
async fn session(stream: UnixStream, view: Arc<AgentView>, mut shutdown: watch::Receiver<bool>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let limit = (MAX_REQUEST_BYTES + 1) as u64;
        let mut limited = (&mut read).take(limit);
        let got = tokio::select! {
            got = limited.read_until(b'\n', &mut line) => got,
            _ = shutdown.changed() => return,
        };
        match got {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let too_long = !line.ends_with(b"\n") && line.len() > MAX_REQUEST_BYTES;
        let request = if too_long {
            Err(ProtocolError::TooLong)
        } else {
            decode_request(&line)
        };
        let response = match request {
            Ok(Request::EventsTail) => {
                tail(&mut read, &mut write, &view, &mut shutdown).await;
                return;
            }
            Ok(request) => answer(request, &view).await,
            Err(e) => Response::Error {
                message: e.to_string(),
            },
        };
        if write.write_all(&encode_line(&response)).await.is_err() || too_long {
            return;
        }
    }
}

/// The answer to every request but `events_tail`.
async fn answer(request: Request, view: &Arc<AgentView>) -> Response {
    match request {
        Request::Status => {
            let view = view.clone();
            off_thread(move || Response::Status(Box::new(view.status(chrono::Utc::now())))).await
        }
        Request::Devices => Response::Devices {
            devices: view.devices(),
        },
        Request::Lanes => Response::Lanes {
            lanes: view.lanes(),
        },
        Request::SyncNow => {
            let connected = view.wake_uplink();
            tracing::info!(connected, "sync requested on the control socket");
            let view = view.clone();
            off_thread(move || Response::SyncRequested {
                depth: view.outbox_depth(),
                connected,
            })
            .await
        }
        Request::Reload => match view.reload().await {
            Ok(report) => {
                tracing::info!("config reloaded on the control socket");
                Response::Reloaded(report)
            }
            Err(message) => Response::Error { message },
        },
        Request::EventsTail => Response::Error {
            message: "events_tail is answered by the session".to_owned(),
        },
    }
}

/// Runs `f` (which reads the outbox) off the async threads.
async fn off_thread(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Response::Error {
            message: format!("the agent failed to answer: {e}"),
        })
}

/// `events_tail`: committed crossings until the client hangs up or the agent stops.
async fn tail(
    read: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    write: &mut OwnedWriteHalf,
    view: &AgentView,
    shutdown: &mut watch::Receiver<bool>,
) {
    let mut feed = view.subscribe();
    if write
        .write_all(&encode_line(&Response::Subscribed))
        .await
        .is_err()
    {
        return;
    }
    let mut ignored = [0u8; 256];
    loop {
        let message = tokio::select! {
            got = feed.recv() => match got {
                Ok(r) => Response::Crossing { seq: r.seq, crossing: Box::new((*r.crossing).clone()) },
                Err(broadcast::error::RecvError::Lagged(missed)) => Response::Lagged { missed },
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // Anything the client sends now is ignored; end of stream means it hung up.
            got = read.read(&mut ignored) => match got {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            _ = shutdown.changed() => return,
        };
        if write.write_all(&encode_line(&message)).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_group_id_by_name() {
        let etc_group =
            "root:x:0:\ndialout:x:20:bcp\nbcp-tech:x:998:ana,ivan\nbcp-tech2:x:997:\nbroken\n";
        assert_eq!(gid_of(etc_group, "bcp-tech"), Some(998));
        assert_eq!(gid_of(etc_group, "dialout"), Some(20));
        assert_eq!(gid_of(etc_group, "bcp"), None);
        assert_eq!(gid_of(etc_group, "broken"), None);
        assert_eq!(gid_of("bcp-tech:x:notanumber:\n", "bcp-tech"), None);
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_a_live_one_or_a_file_never() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cfg = |name: &str| ControlConfig {
            socket: dir.path().join("run").join(name),
            group: "no-such-group-here".to_owned(),
        };

        // Left behind by a crash: nobody answers on it.
        let stale = cfg("stale.sock");
        std::fs::create_dir_all(dir.path().join("run"))?;
        drop(std::os::unix::net::UnixListener::bind(&stale.socket)?);
        let bound = bind(&stale)?;
        let mode = std::fs::metadata(&stale.socket)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);

        // Live: another agent answers; its socket is left alone.
        let e = format!("{:#}", bind(&stale).expect_err("live socket"));
        assert!(e.contains("another process answers"), "{e}");
        assert!(stale.socket.exists());
        drop(bound);
        assert!(!stale.socket.exists(), "removed when the server goes");

        // Not a socket: refused, kept.
        let file = cfg("agent.sock");
        std::fs::write(&file.socket, "precious")?;
        let e = format!("{:#}", bind(&file).expect_err("a regular file"));
        assert!(e.contains("is not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&file.socket)?, "precious");

        // The folder is made when missing.
        let fresh = ControlConfig {
            socket: dir.path().join("new/dir/agent.sock"),
            ..cfg("x")
        };
        let _bound = bind(&fresh)?;
        assert!(fresh.socket.exists());
        Ok(())
    }
}
