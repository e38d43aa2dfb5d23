//! Compaction: the journal rewritten without the records of finished files, while
//! appends go on.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::record::{self, Record};
use super::recover::each_line;
use super::store::Inner;

impl Inner {
    /// Rewrites the journal without the records of forgotten files.
    ///
    /// Appends go on meanwhile: the records are read and the new journal written and
    /// synced without holding the append path; appends wait only while the few records
    /// appended in the meantime are copied over and the new file takes the old one's
    /// place (a rename). Runs on the syncer thread, so no sync is acknowledged while it
    /// runs: the copied records are synced, like any new one, by the next sync, after
    /// the rename is made durable here.
    pub(super) fn compact(&self) {
        self.compact_with(|| {});
    }

    /// [`compact`](Self::compact), calling `between` once the new journal is written and
    /// before it replaces the old one (tests hold a compaction there).
    fn compact_with(&self, between: impl FnOnce()) {
        let forgotten = std::mem::take(
            &mut *self
                .forgotten
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let result = self.rewrite(&forgotten).and_then(|(new, tmp, end)| {
            between();
            self.replace_with(new, &tmp, end)
        });
        match result {
            Ok(size) => {
                tracing::info!(
                    "CSM2304I Checkpoint journal {} compacted to {size} bytes",
                    self.path.display()
                );
            }
            Err(e) => {
                self.fail(&e);
                // Try again only after as much growth again.
                self.size.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The slow part of a compaction, appends going on: writes and syncs, under a
    /// temporary name, the records (up to the current end of the journal) of the files
    /// not `forgotten`, then a start record. Returns the new file (open for appending),
    /// its name and where the records it holds ended in the journal.
    fn rewrite(&self, forgotten: &HashSet<String>) -> io::Result<(File, PathBuf, u64)> {
        // The end, taken while no append is under way (each writes under the read
        // lock): a record boundary.
        let end = {
            let file = self
                .file
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            file.metadata()?.len()
        };
        let mut kept = compacted(&self.path, end, |key| !forgotten.contains(key))?;
        kept.extend(record::encode(&Record::Start {
            boot: self.boot.clone(),
        }));
        let mut name = std::ffi::OsString::from(".");
        name.push(self.path.file_name().unwrap_or_default());
        name.push(".compact");
        let tmp = self.path.with_file_name(name);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let written = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut new| {
                new.write_all(&kept)?;
                new.sync_data()?;
                Ok(new)
            });
        match written {
            Ok(new) => Ok((new, tmp, end)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// The short part, appends waiting: copies to `new` what was appended to the journal
    /// after `end`, renames it over the journal and appends to it from now on; then
    /// makes the rename durable. Returns the new size.
    fn replace_with(&self, mut new: File, tmp: &Path, end: u64) -> io::Result<u64> {
        let size = {
            let mut file = self
                .file
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // Once renamed, `new` is the journal: nothing may fail after the rename.
            let swapped = read_from(&self.path, end)
                .and_then(|tail| new.write_all(&tail))
                .and_then(|()| new.metadata())
                .and_then(|meta| std::fs::rename(tmp, &self.path).map(|()| meta.len()));
            let size = match swapped {
                Ok(size) => size,
                Err(e) => {
                    let _ = std::fs::remove_file(tmp);
                    return Err(e);
                }
            };
            *file = new;
            self.size.store(size, Ordering::Relaxed);
            // The copied records are synced with the next sync, like new ones.
            self.dirty.store(true, Ordering::Release);
            size
        };
        if let Some(dir) = self.path.parent() {
            crate::durable::sync_dir(dir)?;
        }
        Ok(size)
    }
}

/// The bytes of the file at `path` from `offset` to its end.
fn read_from(path: &Path, offset: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    let len = file.metadata()?.len();
    let mut tail = vec![0; usize::try_from(len.saturating_sub(offset)).unwrap_or(0)];
    file.read_exact_at(&mut tail, offset)?;
    Ok(tail)
}
/// The intact records, in the first `limit` bytes of the journal, of the files `keep`
/// says to keep, as lines.
fn compacted(path: &Path, limit: u64, keep: impl Fn(&str) -> bool) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    each_line(path, limit, |line| {
        if let Ok(rec) = record::decode(line)
            && !matches!(rec, Record::Start { .. })
            && keep(rec.file())
        {
            kept.extend_from_slice(line);
            kept.push(b'\n');
        }
    })?;
    Ok(kept)
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::sent;
    use crate::journal::{Journal, JournalOptions};
    use std::time::Duration;

    #[tokio::test]
    async fn compaction_drops_forgotten_files_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let (journal, _, writer) =
            Journal::open(&path, &HashSet::new(), JournalOptions::default()).unwrap();
        journal.append(&sent("gone@1", 1, vec![0]));
        journal.append(&sent("kept@2", 1, vec![0]));
        journal.forget("gone@1");
        journal.inner.compact();
        journal
            .append_durable(&sent("kept@2", 2, vec![0]))
            .await
            .unwrap();
        drop(journal);
        writer.join();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("gone@1"), "{text}");
        assert!(
            text.contains(r#""t":"start""#),
            "the boot is still recorded: {text}"
        );
        assert_eq!(text.matches("kept@2").count(), 2, "{text}");
    }

    /// However small the journal, once FORGOTTEN_AT finished files wait to be dropped
    /// the syncer compacts: the names kept in memory until then stay bounded.
    #[tokio::test]
    async fn many_forgotten_files_make_a_compaction_whatever_the_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let (journal, _, writer) =
            Journal::open(&path, &HashSet::new(), JournalOptions::default()).unwrap();
        journal.append(&sent("gone@1", 1, vec![0]));
        journal.forget("gone@1");
        for i in 1..crate::journal::FORGOTTEN_AT {
            journal.forget(&format!("other@{i}"));
        }
        // The first sync's turn compacts after acknowledging; the second's comes after.
        journal.sync().await.unwrap();
        journal.sync().await.unwrap();
        assert_eq!(journal.inner.forgotten.lock().unwrap().len(), 0);
        drop(journal);
        writer.join();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("gone@1"), "{text}");
    }

    /// A compaction does not hold appends for its duration: while it is held between
    /// writing the new journal and putting it in place, an append from another thread
    /// goes through; the record lands in the compacted journal, the forgotten file's
    /// records do not. (Without a compaction in progress the bounded wait is never
    /// reached; it only turns a stalled append into a failure instead of a hang.)
    #[test]
    fn appends_go_on_while_a_compaction_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let (journal, _, writer) =
            Journal::open(&path, &HashSet::new(), JournalOptions::default()).unwrap();
        journal.append(&sent("gone@1", 1, vec![0]));
        journal.append(&sent("kept@2", 1, vec![0]));
        journal.forget("gone@1");
        let (reached, in_progress) = std::sync::mpsc::channel();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let compacting = {
            let journal = journal.clone();
            std::thread::spawn(move || {
                journal.inner.compact_with(|| {
                    reached.send(()).unwrap();
                    let _ = wait.recv();
                });
            })
        };
        in_progress.recv().unwrap();
        let (done, appended) = std::sync::mpsc::channel();
        let appender = {
            let journal = journal.clone();
            std::thread::spawn(move || {
                let ok = journal.append(&sent("kept@2", 2, vec![0]));
                let _ = done.send(ok);
            })
        };
        let during = appended.recv_timeout(Duration::from_secs(60));
        go.send(()).unwrap();
        compacting.join().unwrap();
        appender.join().unwrap();
        assert_eq!(during, Ok(true), "the append waited for the compaction");
        journal.append(&sent("kept@2", 3, vec![0]));
        drop(journal);
        writer.join();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("gone@1"), "{text}");
        assert_eq!(text.matches("kept@2").count(), 3, "{text}");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "journal and lock, no temporary: {names:?}");
        let live: HashSet<String> = ["kept@2".to_string()].into();
        let (_journal, recovered, _writer) =
            Journal::open(&path, &live, JournalOptions::default()).unwrap();
        assert_eq!(recovered.damaged, 0);
        assert_eq!(recovered.files["kept@2"].mails.len(), 3);
    }
}
