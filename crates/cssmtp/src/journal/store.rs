//! The journal file: recovery at start, appends, group commit on a syncer thread,
//! compaction.
//!
//! Appends are plain `write(2)` calls on a file opened with `O_APPEND`, made by whoever
//! records something (a session before its final ".", a spool task): each record is one
//! write, so records from concurrent writers never interleave, and once the call
//! returns the record survives the process (kill -9, a panic, the OOM killer). Making
//! records survive the *system* (power failure, kernel crash) is the syncer's work: it
//! syncs the file when asked ([`Journal::sync`]; every request that arrives while a
//! sync runs is answered by the next one: group commit) and, while anything is written
//! and unsynced, every [`SYNC_INTERVAL`].
//!
//! **A journal that cannot be written** (its file system full, read-only, or failing)
//! is never written around: the failure is logged once (CSM2303E), intake claims no new
//! spool file, spool tasks hold their mails back, and a session whose `sent` record
//! could not be written sends no final "." (it drops the connection: the mail is tried
//! again). Every [`PROBE_INTERVAL`] the syncer tries again (a line feed, which also ends
//! any torn record, and a sync); once that works it says so (CSM2311I) and everything
//! resumes.
//!
//! The syncer thread and the probe of a failed journal are in `syncer.rs`, compaction
//! in `compact.rs`, recovery at start in `recover.rs`.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;

use super::COMPACT_AT;
use super::record::{self, Record};
use super::recover::{Recovered, recover};

/// While records are written and unsynced, the journal is synced at least this often:
/// the most a power failure can take from it.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(10);

/// While the journal cannot be written, it is tried again this often.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What the syncer thread is asked.
pub(super) enum Request {
    Sync(oneshot::Sender<()>),
}

/// The journal's state, shared by its handles and its syncer thread.
pub(super) struct Inner {
    pub(super) path: PathBuf,
    /// This boot of the system (recorded at the head of the journal).
    pub(super) boot: String,
    pub(super) file: RwLock<File>,
    pub(super) size: AtomicU64,
    /// Written since the last sync.
    pub(super) dirty: AtomicBool,
    /// The last write or sync failed: nothing that needs a record goes ahead until a
    /// probe succeeds.
    pub(super) failed: AtomicBool,
    /// Writable (false while `failed`), for those who wait for it.
    pub(super) writable: tokio::sync::watch::Sender<bool>,
    /// Sync before each mail's final "." (`ChkPointSync Mail`).
    pub(super) sync_each_mail: bool,
    /// Finished files whose records go at the next compaction.
    pub(super) forgotten: Mutex<HashSet<String>>,
    pub(super) requests: mpsc::Sender<Request>,
}

/// A handle on the journal (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    pub(super) inner: Arc<Inner>,
}

/// The journal's syncer thread. It ends, after a last sync, once every [`Journal`]
/// handle is dropped; [`JournalWriter::join`] waits for that.
pub struct JournalWriter {
    thread: std::thread::JoinHandle<()>,
    /// Held for the journal's life: one process uses a journal file.
    _lock: nix::fcntl::Flock<File>,
}

impl JournalWriter {
    /// Waits for the syncer to finish (blocking: call it where blocking is allowed).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// Options of [`Journal::open`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalOptions {
    /// Discard what the journal holds (cold start).
    pub cold: bool,
    /// Sync before each mail's final "." (`ChkPointSync Mail`).
    pub sync_each_mail: bool,
}

impl Journal {
    /// Opens (creating) the journal at `path`: reads what it knows of the files whose
    /// keys are in `live` (the files in `active/`), rewrites it with only those, and
    /// starts its syncer.
    ///
    /// # Errors
    /// An I/O error creating or rewriting the journal, or another process holding it.
    pub fn open(
        path: &Path,
        live: &HashSet<String>,
        options: JournalOptions,
    ) -> io::Result<(Self, Recovered, JournalWriter)> {
        if let Some(dir) = path.parent() {
            crate::durable::create_dir(dir, 0o700)?;
        }
        let lock = lock(path)?;
        let boot = boot_id();
        let (recovered, mut kept) = if options.cold {
            (Recovered::default(), Vec::new())
        } else {
            recover(path, live, &boot)?
        };
        // Which boot of the system wrote what follows.
        kept.extend(record::encode(&Record::Start { boot: boot.clone() }));
        crate::durable::replace(path, &kept, 0o600)?;
        let file = open_append(path)?;
        let (requests, rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            path: path.to_owned(),
            boot,
            size: AtomicU64::new(file.metadata()?.len()),
            file: RwLock::new(file),
            dirty: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            writable: tokio::sync::watch::Sender::new(true),
            sync_each_mail: options.sync_each_mail,
            forgotten: Mutex::new(HashSet::new()),
            requests,
        });
        let syncer = Arc::downgrade(&inner);
        let thread = std::thread::Builder::new()
            .name("cssmtp-journal".into())
            .spawn(move || Inner::run_syncer(&syncer, &rx))?;
        Ok((
            Self { inner },
            recovered,
            JournalWriter {
                thread,
                _lock: lock,
            },
        ))
    }

    /// Appends a record: once this returns true, it survives the process; it survives
    /// the system after the next sync (at most [`SYNC_INTERVAL`] later). False: it could
    /// not be written (said once, CSM2303E; the journal is not writable until a probe
    /// succeeds).
    pub fn append(&self, record: &Record) -> bool {
        let mut line = record::encode(record);
        if self.inner.failed.load(Ordering::Acquire) {
            // A failed write may have left a torn line: end it first (an empty line is
            // skipped when read).
            line.insert(0, b'\n');
        }
        let written = {
            let file = self
                .inner
                .file
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (&*file).write_all(&line)
        };
        match written {
            Ok(()) => {
                self.inner.dirty.store(true, Ordering::Release);
                let size = self
                    .inner
                    .size
                    .fetch_add(line.len() as u64, Ordering::Relaxed);
                if size < COMPACT_AT && size + line.len() as u64 >= COMPACT_AT {
                    // The syncer compacts after its next sync; wake it.
                    drop(self.sync());
                }
                true
            }
            Err(e) => {
                self.inner.fail(&e);
                false
            }
        }
    }

    /// False while the journal cannot be written: nothing that needs a record (a new
    /// spool file, a mail's final ".") goes ahead.
    pub fn is_writable(&self) -> bool {
        !self.inner.failed.load(Ordering::Acquire)
    }

    /// Follows [`Journal::is_writable`].
    pub fn writable(&self) -> tokio::sync::watch::Receiver<bool> {
        self.inner.writable.subscribe()
    }

    /// Resolves once everything appended before the call is synced (or the journal
    /// failed, which it has said: CSM2303E).
    pub fn sync(&self) -> oneshot::Receiver<()> {
        let (ack, done) = oneshot::channel();
        let _ = self.inner.requests.send(Request::Sync(ack));
        done
    }

    /// Appends a record and resolves once it is synced.
    pub fn append_durable(&self, record: &Record) -> oneshot::Receiver<()> {
        self.append(record);
        self.sync()
    }

    /// Appends the `sent` record of a mail about to get its final "."; with
    /// `ChkPointSync Mail`, the "." must wait for the returned sync.
    ///
    /// # Errors
    /// The record could not be written: the "." must not be sent.
    pub fn append_before_dot(
        &self,
        record: &Record,
    ) -> Result<Option<oneshot::Receiver<()>>, NotWritten> {
        if !self.append(record) {
            return Err(NotWritten);
        }
        Ok(self.inner.sync_each_mail.then(|| self.sync()))
    }

    /// The file is finished and gone (durably): its records may go at the next
    /// compaction.
    pub fn forget(&self, file: &str) {
        if let Ok(mut forgotten) = self.inner.forgotten.lock() {
            forgotten.insert(file.to_owned());
        }
    }
}

/// A journal record could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotWritten;

impl std::fmt::Display for NotWritten {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the checkpoint journal cannot be written")
    }
}

/// Journal files are the daemon's alone (0600) and never opened through a link.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
}

/// One process per journal: an exclusive lock on `<journal>.lock`.
fn lock(path: &Path) -> io::Result<nix::fcntl::Flock<File>> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&lock_path)?;
    nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(
        |(_, errno)| {
            io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("the checkpoint journal is in use by another process ({errno})"),
            )
        },
    )
}

/// This boot of the system (changes when the system restarts).
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::sent;

    #[tokio::test]
    async fn cold_start_discards_and_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let live: HashSet<String> = ["a@1".to_string()].into();
        let (journal, _, writer) = Journal::open(&path, &live, JournalOptions::default()).unwrap();
        journal
            .append_durable(&sent("a@1", 1, vec![0]))
            .await
            .unwrap();
        assert!(
            Journal::open(&path, &live, JournalOptions::default()).is_err(),
            "one process at a time"
        );
        drop(journal);
        writer.join();
        let cold = JournalOptions {
            cold: true,
            ..JournalOptions::default()
        };
        let (_j, recovered, _w) = Journal::open(&path, &live, cold).unwrap();
        assert!(recovered.files.is_empty());
    }
    /// A torn record (the file system filled up in the middle of it) costs that record
    /// only: the journal pauses, a probe resumes it once there is space, and the next
    /// record is intact. Needs root (a 64 KiB tmpfs); skipped otherwise.
    #[tokio::test]
    async fn a_full_file_system_tears_one_record_and_the_journal_resumes() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let fs = dir.path().join("fs");
        std::fs::create_dir(&fs).unwrap();
        let mounted = nix::unistd::Uid::effective().is_root()
            && std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(&fs)
                .status()
                .is_ok_and(|s| s.success());
        if !mounted {
            eprintln!("note: cannot mount a tmpfs (not root); test skipped");
            return;
        }
        // Unmounted however the test ends.
        struct Unmount(std::path::PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.0)
                    .status();
            }
        }
        let _unmount = Unmount(fs.clone());
        let path = fs.join("W.journal");
        let (journal, _, writer) =
            Journal::open(&path, &HashSet::new(), JournalOptions::default()).unwrap();
        assert!(journal.append(&sent("a@1", 1, vec![0])));
        // Fill the file system, then the journal's last page but 20 bytes.
        let filler = fs.join("filler");
        {
            let mut f = File::create(&filler).unwrap();
            while f
                .write_all(&[0u8; 4096])
                .and_then(|()| f.sync_all())
                .is_ok()
            {}
            let mut j = OpenOptions::new().append(true).open(&path).unwrap();
            let len = j.metadata().unwrap().len();
            let pad = (4096 - 20 - len % 4096 + 4096) % 4096;
            j.write_all(&vec![b'\n'; usize::try_from(pad).unwrap()])
                .unwrap();
        }
        let mut writable = journal.writable();
        assert!(!journal.append(&sent("torn@2", 1, vec![0])), "no space");
        assert!(!journal.is_writable());
        assert!(
            journal.append_before_dot(&sent("b@3", 1, vec![0])).is_err(),
            "no final \".\" without its record"
        );
        std::fs::remove_file(&filler).unwrap();
        writable.wait_for(|w| *w).await.unwrap();
        assert!(journal.append(&sent("c@4", 1, vec![0])));
        drop(journal);
        writer.join();
        let live: HashSet<String> = ["a@1", "c@4"].iter().map(|s| (*s).to_string()).collect();
        let (reopened, recovered, rewriter) =
            Journal::open(&path, &live, JournalOptions::default()).unwrap();
        assert_eq!(recovered.damaged, 1, "only the torn record");
        assert!(recovered.files.contains_key("a@1"));
        assert!(
            recovered.files.contains_key("c@4"),
            "the record after the tear is intact"
        );
        drop(reopened);
        rewriter.join();
    }
}
