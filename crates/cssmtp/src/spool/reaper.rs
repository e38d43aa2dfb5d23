//! The reaper of finished spool files: removed from `active/` in groups, each group's
//! journal records synced first.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::durable::sync_dir;
use crate::escape;

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
                    escape::path(&path)
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
