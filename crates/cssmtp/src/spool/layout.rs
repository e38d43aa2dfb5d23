//! The writer's spool directory on disk, and the one-instance-per-writer lock.
//!
//! ```text
//! <SpoolDirectory>/<ExtWrtName>/          producers drop files here (rename into place)
//! <SpoolDirectory>/<ExtWrtName>/active/   files claimed by the running instance
//! <SpoolDirectory>/<ExtWrtName>/hold/     bad spool files kept for the operator
//! ```
//!
//! A file is claimed by renaming it into `active/` without replacing anything
//! (`renameat2(RENAME_NOREPLACE)`): the rename is atomic, so of two claimers exactly one
//! wins, whatever else is running. Names starting with `.` and ending in `.tmp` are
//! files still being written and are never read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::durable::{create_dir, move_no_replace};

/// The directories of one writer's spool.
#[derive(Debug, Clone)]
pub struct SpoolLayout {
    pub incoming: PathBuf,
    pub active: PathBuf,
    pub hold: PathBuf,
}

/// A file waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    pub modified: SystemTime,
    pub name: String,
}

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

/// True for a name a producer has finished writing.
pub fn is_ready_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.ends_with(".tmp")
}

impl SpoolLayout {
    pub fn new(writer_dir: PathBuf) -> Self {
        Self {
            active: writer_dir.join("active"),
            hold: writer_dir.join("hold"),
            incoming: writer_dir,
        }
    }

    /// Creates the directories. The writer directory is group-writable with the setgid
    /// bit, so producers in the spool's group can drop files and the daemon can read
    /// them; `active/` and `hold/` are for the daemon and its group to read.
    ///
    /// # Errors
    /// An I/O error creating a directory.
    pub fn create(&self) -> io::Result<()> {
        create_dir(&self.incoming, 0o2770)?;
        create_dir(&self.active, 0o750)?;
        create_dir(&self.hold, 0o750)
    }

    /// Takes the writer's lock (`active/.lock`), or says who holds it.
    ///
    /// # Errors
    /// [`LockError::Held`] when another instance runs for this writer.
    pub fn lock(&self, writer: &str) -> Result<InstanceLock, LockError> {
        let path = self.active.join(".lock");
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o640)
            .open(&path)
            .map_err(io_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(LockError::Held {
                    writer: writer.to_owned(),
                    pid: if pid.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {pid})")
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

    /// The oldest files waiting in the spool (at most `limit`), oldest first.
    ///
    /// # Errors
    /// An I/O error listing the directory.
    pub fn waiting(&self, limit: usize) -> io::Result<Vec<Candidate>> {
        let mut heap = std::collections::BinaryHeap::new();
        for entry in fs::read_dir(&self.incoming)? {
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if !is_ready_name(&name) {
                continue;
            }
            // Regular files only (not directories, not symbolic links).
            let Ok(meta) = entry.metadata() else { continue };
            if !meta.file_type().is_file() {
                continue;
            }
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            heap.push(Candidate { modified, name });
            if heap.len() > limit {
                heap.pop();
            }
        }
        Ok(heap.into_sorted_vec())
    }

    /// Files left in `active/` by an earlier run, oldest first.
    ///
    /// # Errors
    /// An I/O error listing the directory.
    pub fn left_active(&self) -> io::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.active)? {
            let Ok(entry) = entry else { continue };
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            if is_ready_name(&name) && meta.file_type().is_file() {
                found.push((meta.mtime(), name, entry.path()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, _, path)| path).collect())
    }

    /// Claims a waiting file by moving it into `active/`. Returns its new path, or
    /// `None` when it is gone (claimed by someone else, or withdrawn).
    ///
    /// # Errors
    /// An I/O error other than the file being gone.
    pub fn claim(&self, name: &str) -> io::Result<Option<PathBuf>> {
        move_no_replace(&self.incoming.join(name), &self.active, name)
    }

    /// Moves a claimed file to `hold/`; returns where it went.
    ///
    /// # Errors
    /// An I/O error.
    pub fn hold(&self, path: &Path) -> io::Result<PathBuf> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("spool");
        move_no_replace(path, &self.hold, name)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "spool file vanished"))
    }
}

pub use crate::durable::sync_dir;

/// Removes finished spool files from `active/`, in groups.
///
/// Spool tasks hand their finished files over and carry on. Every
/// [`GROUP_WINDOW`], the reaper syncs the checkpoint journal (so that the `done`
/// records of the files are durable before the files go), removes the files, syncs the
/// directory, and only then lets the journal forget them: one journal sync and one
/// directory sync per group instead of two per file, and a file a power failure brings
/// back still finds its records.
#[derive(Clone)]
pub struct Reaper {
    tx: tokio::sync::mpsc::UnboundedSender<(PathBuf, Option<std::sync::Arc<str>>)>,
}

/// How long the reaper waits for more files to remove together.
const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

impl Reaper {
    /// Starts the reaper of `dir`; once `stop` is cancelled it removes what it was given
    /// and ends.
    pub fn spawn(
        dir: PathBuf,
        journal: Option<crate::journal::Journal>,
        stop: tokio_util::sync::CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let first = tokio::select! {
                    biased;
                    first = rx.recv() => first,
                    () = stop.cancelled() => None,
                };
                let stopping = first.is_none();
                if !stopping {
                    // Let the files of the next few milliseconds join this group.
                    tokio::time::sleep(GROUP_WINDOW).await;
                }
                let mut batch: Vec<_> = first.into_iter().collect();
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                if !batch.is_empty() {
                    reap(&dir, journal.as_ref(), batch).await;
                }
                if stopping {
                    return;
                }
            }
        });
        (Self { tx }, task)
    }

    /// Removes `path` soon; `key` is its journal key (when checkpointing).
    pub fn remove(&self, path: PathBuf, key: Option<std::sync::Arc<str>>) {
        let _ = self.tx.send((path, key));
    }
}

async fn reap(
    dir: &Path,
    journal: Option<&crate::journal::Journal>,
    batch: Vec<(PathBuf, Option<std::sync::Arc<str>>)>,
) {
    if let Some(journal) = journal {
        let _ = journal.sync().await;
    }
    let dir = dir.to_owned();
    let removed = tokio::task::spawn_blocking(move || {
        let mut keys = Vec::new();
        for (path, key) in batch {
            match fs::remove_file(&path) {
                Ok(()) => keys.extend(key),
                Err(e) if e.kind() == io::ErrorKind::NotFound => keys.extend(key),
                Err(e) => tracing::error!(
                    "CSM2008E Cannot remove spool file {}: {e}; it stays in active/",
                    path.display()
                ),
            }
        }
        if let Err(e) = sync_dir(&dir) {
            tracing::warn!("CSM2011W Cannot sync the spool directory: {e}");
            keys.clear();
        }
        keys
    })
    .await;
    if let (Some(journal), Ok(keys)) = (journal, removed) {
        for key in keys {
            journal.forget(&key);
        }
    }
}
