//! The control socket's server side.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::{Control, Reply, Request, parse};

/// The longest request read.
const MAX_REQUEST: u64 = 8 * 1024;
/// How long a client has to send its request (and to read the reply).
const READ_WAIT: Duration = Duration::from_secs(10);
/// Connections served at once, at most (fewer when the descriptor limit is low: never
/// more than an eighth of it); more are told so and closed at once.
pub const MAX_CONNECTIONS: usize = 16;

/// Binds the control socket at `path` (mode 0600), replacing a stale one: the caller
/// holds the writer's instance lock, so no other daemon uses it.
///
/// # Errors
/// An I/O error creating the directory or the socket.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        crate::durable::create_dir(dir, 0o750)?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Answers requests until `stop`; removes the socket then.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    control: Arc<Control>,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(crate::listen::connection_cap(
        MAX_CONNECTIONS,
        8,
    )));
    let mut backoff = crate::listen::AcceptBackoff::new("control socket");
    loop {
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    backoff.failed(&e, &stop).await;
                    continue;
                }
            },
        };
        backoff.accepted();
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Full: told so (if its buffer takes it, which a new socket's does) and
            // closed at once, never waited for.
            let mut out = serde_json::to_vec(&Reply::error(
                "CSM5093E Too many control connections; try again",
            ))
            .unwrap_or_default();
            out.push(b'\n');
            let _ = stream.try_write(&out);
            drop(stream);
            continue;
        };
        let control = Arc::clone(&control);
        tokio::spawn(async move {
            let _slot = slot;
            let _ = answer(stream, &control).await;
        });
    }
    let _ = std::fs::remove_file(&path);
}

/// The peer may give commands: the daemon's own user, or root.
fn permitted(stream: &UnixStream) -> bool {
    let me = nix::unistd::getuid().as_raw();
    stream
        .peer_cred()
        .is_ok_and(|cred| cred.uid() == me || cred.uid() == 0)
}

async fn answer(stream: UnixStream, control: &Control) -> std::io::Result<()> {
    let allowed = permitted(&stream);
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read.take(MAX_REQUEST));
    let reply = if allowed {
        let mut line = String::new();
        match tokio::time::timeout(READ_WAIT, reader.read_line(&mut line)).await {
            Ok(Ok(_)) if line.ends_with('\n') => match serde_json::from_str::<Request>(&line) {
                Ok(request) => match parse(&request.command) {
                    Ok(command) => {
                        tracing::debug!("CSM5020I Operator command: {}", request.command);
                        control.execute(command).await
                    }
                    Err(e) => Reply::error(format!(
                        "CSM5090E {e}; the commands are:\n{}",
                        super::command::SYNTAX
                    )),
                },
                Err(e) => Reply::error(format!("CSM5091E The request is not valid: {e}")),
            },
            Ok(Ok(_)) => Reply::error("CSM5091E The request is too long or incomplete"),
            Ok(Err(e)) => Reply::error(format!("CSM5091E The request cannot be read: {e}")),
            Err(_) => Reply::error("CSM5091E No request came in time"),
        }
    } else {
        Reply::error(
            "CSM5092E Permission denied: only the daemon's user and root may give commands",
        )
    };
    let mut out = serde_json::to_vec(&reply).map_err(std::io::Error::other)?;
    out.push(b'\n');
    // A client that does not read its reply is not waited for.
    tokio::time::timeout(READ_WAIT, async {
        write.write_all(&out).await?;
        write.shutdown().await
    })
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    // Whatever else the client sent is read and dropped (briefly, and only so much):
    // closing with unread input would reset the connection before it read the reply.
    let mut rest = reader.into_inner().into_inner().take(DRAIN);
    let _ = tokio::time::timeout(
        READ_WAIT,
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
    Ok(())
}

/// Input read and dropped after a reply, at most.
const DRAIN: u64 = 1024 * 1024;
