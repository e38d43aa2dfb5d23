//! The one-instance-per-writer lock: `active/.lock`, holding the pid of the instance
//! that serves the writer.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::escape;

/// Another instance holds the writer's lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "CSM1002E another cssmtp instance{pid} is already running for writer name {writer} \
         (lock {}); only one instance may serve a writer name",
        path.display()
    )]
    Held {
        writer: String,
        pid: String,
        path: PathBuf,
    },
    #[error("cannot create or lock {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Holds the writer's lock for as long as it lives.
#[derive(Debug)]
pub struct InstanceLock {
    _file: File,
}
/// Takes the writer's lock in `active` (see [`super::layout::SpoolLayout::lock`]).
pub(super) fn lock(active: &Path, writer: &str) -> Result<InstanceLock, LockError> {
    let path = active.join(".lock");
    let io_err = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(&path)
        .map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if !meta.file_type().is_file() || meta.nlink() != 1 {
        return Err(io_err(io::Error::other(
            "not a regular file with one link; remove it",
        )));
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = Read::by_ref(&mut file).take(64).read_to_string(&mut pid);
            let pid = pid.trim();
            return Err(LockError::Held {
                writer: writer.to_owned(),
                pid: if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {})", escape::data(pid))
                },
                path,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    file.set_len(0).map_err(io_err)?;
    file.rewind().map_err(io_err)?;
    writeln!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(InstanceLock { _file: file })
}
