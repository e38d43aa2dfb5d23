//! The reaper of finished spool files: removed from `active/` in groups, each group's
//! journal records synced first.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

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
///
/// Removing a file can cost far more than sending its mail: on a file system mounted
/// with `discard`, each unlink of a file whose blocks reached the disk waits for the
/// device to discard them (3 ms here). So a large group is removed by several threads
/// at once (the waits overlap: the discard happens after the directory's lock is let
/// go), and no more than [`MAX_PENDING`] files wait for removal: intake takes no new
/// file until there is room ([`Reaper::has_room`], [`Reaper::room`]), so memory and
/// `active/` stay bounded however far the reaper falls behind.
#[derive(Clone)]
pub struct Reaper {
    tx: tokio::sync::mpsc::UnboundedSender<(PathBuf, Option<Arc<str>>)>,
    /// Files handed over and not yet removed.
    pending: Arc<AtomicUsize>,
    /// Told when a group has been removed.
    removed: Arc<tokio::sync::Notify>,
}

/// How long the reaper waits for more files to remove together.
const GROUP_WINDOW: std::time::Duration = std::time::Duration::from_millis(10);

/// Finished files waiting for removal at most before intake pauses.
pub const MAX_PENDING: usize = 4096;

/// Threads removing one group at most, and the files each takes at least.
const REMOVERS: usize = 8;
const PER_REMOVER: usize = 32;

impl Reaper {
    /// Starts the reaper of `dir`; once `stop` is cancelled it removes what it was given
    /// and ends.
    pub fn spawn(
        dir: PathBuf,
        journal: Option<crate::journal::Journal>,
        stop: tokio_util::sync::CancellationToken,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let removed = Arc::new(tokio::sync::Notify::new());
        let (counted, told) = (Arc::clone(&pending), Arc::clone(&removed));
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
                    let n = batch.len();
                    reap(&dir, journal.as_ref(), batch).await;
                    counted.fetch_sub(n, Ordering::AcqRel);
                    told.notify_waiters();
                }
                if stopping {
                    return;
                }
            }
        });
        (
            Self {
                tx,
                pending,
                removed,
            },
            task,
        )
    }

    /// Removes `path` soon; `key` is its journal key (when checkpointing).
    pub fn remove(&self, path: PathBuf, key: Option<Arc<str>>) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.send((path, key)).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Fewer than [`MAX_PENDING`] files wait for removal.
    pub fn has_room(&self) -> bool {
        self.pending.load(Ordering::Acquire) < MAX_PENDING
    }

    /// Returns once [`Reaper::has_room`].
    pub async fn room(&self) {
        loop {
            let removed = self.removed.notified();
            if self.has_room() {
                return;
            }
            removed.await;
        }
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
        let removers = (batch.len() / PER_REMOVER).clamp(1, REMOVERS);
        let mut keys = if removers == 1 {
            remove_all(batch)
        } else {
            // Several threads: their waits for the device overlap.
            let share = batch.len().div_ceil(removers);
            std::thread::scope(|scope| {
                let mut rest = batch;
                let mut threads = Vec::with_capacity(removers);
                while rest.len() > share {
                    let part = rest.split_off(rest.len().saturating_sub(share));
                    let spawned = std::thread::Builder::new()
                        .name("cssmtp-reaper".into())
                        .spawn_scoped(scope, move || remove_all(part));
                    match spawned {
                        Ok(thread) => threads.push(thread),
                        // No thread to be had: this one removes the rest.
                        Err(_) => break,
                    }
                }
                let mut keys = remove_all(rest);
                for thread in threads {
                    keys.extend(thread.join().unwrap_or_default());
                }
                keys
            })
        };
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

/// Removes `files`; the journal keys of those gone.
fn remove_all(files: Vec<(PathBuf, Option<Arc<str>>)>) -> Vec<Arc<str>> {
    let mut keys = Vec::new();
    for (path, key) in files {
        match fs::remove_file(&path) {
            Ok(()) => keys.extend(key),
            Err(e) if e.kind() == io::ErrorKind::NotFound => keys.extend(key),
            Err(e) => tracing::error!(
                "CSM2008E Cannot remove spool file {}: {e}; it stays in active/",
                escape::path(&path)
            ),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With MAX_PENDING files handed over and not removed, intake has no room; once the
    /// reaper has removed them, it has again, and `room` returns.
    #[tokio::test(start_paused = true)]
    async fn intake_pauses_while_too_many_files_wait_for_removal() {
        let dir = tempfile::tempdir().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let (reaper, task) = Reaper::spawn(dir.path().to_owned(), None, stop.clone());
        let files: Vec<PathBuf> = (0..MAX_PENDING)
            .map(|i| dir.path().join(format!("F.J{i}.1")))
            .collect();
        for file in &files {
            fs::write(file, b"x").unwrap();
        }
        assert!(reaper.has_room());
        for file in &files {
            reaper.remove(file.clone(), None);
        }
        // The reaper has not run yet (nothing has yielded): every file waits.
        assert!(!reaper.has_room());
        reaper.room().await;
        assert!(reaper.has_room());
        assert!(files.iter().all(|f| !f.exists()), "the group was removed");
        stop.cancel();
        task.await.unwrap();
    }

    /// A large group is split among several threads; every file goes.
    #[test]
    fn a_large_group_is_removed_by_several_threads() {
        let dir = tempfile::tempdir().unwrap();
        let group: Vec<(PathBuf, Option<Arc<str>>)> = (0..1000)
            .map(|i| {
                let path = dir.path().join(format!("F.J{i}.1"));
                fs::write(&path, b"x").unwrap();
                (path, Some(Arc::from(format!("F.J{i}.1@{i}").as_str())))
            })
            .collect();
        let paths: Vec<PathBuf> = group.iter().map(|(p, _)| p.clone()).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(reap(dir.path(), None, group));
        assert!(paths.iter().all(|p| !p.exists()));
    }
}
