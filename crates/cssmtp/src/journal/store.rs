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

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::Duration;

use tokio::sync::oneshot;

use super::record::{self, Bad, Record};
use super::{COMPACT_AT, FileCheckpoint};

/// While records are written and unsynced, the journal is synced at least this often:
/// the most a power failure can take from it.
pub const SYNC_INTERVAL: Duration = Duration::from_millis(10);

/// While the journal cannot be written, it is tried again this often.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The files the journal knows that are still in `active/`.
    pub files: HashMap<String, FileCheckpoint>,
    /// Lines skipped because they failed their checksum or were not records.
    pub damaged: u64,
    /// Records read.
    pub records: u64,
    /// The journal was last written before the system restarted (a power failure or a
    /// system crash may have taken its last [`SYNC_INTERVAL`] of records).
    pub system_restarted: bool,
}

enum Request {
    Sync(oneshot::Sender<()>),
}

struct Inner {
    path: PathBuf,
    /// This boot of the system (recorded at the head of the journal).
    boot: String,
    file: RwLock<File>,
    size: AtomicU64,
    /// Written since the last sync.
    dirty: AtomicBool,
    /// The last write or sync failed: nothing that needs a record goes ahead until a
    /// probe succeeds.
    failed: AtomicBool,
    /// Writable (false while `failed`), for those who wait for it.
    writable: tokio::sync::watch::Sender<bool>,
    /// Sync before each mail's final "." (`ChkPointSync Mail`).
    sync_each_mail: bool,
    /// Finished files whose records go at the next compaction.
    forgotten: Mutex<HashSet<String>>,
    requests: mpsc::Sender<Request>,
}

/// A handle on the journal (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
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
            .spawn(move || run_syncer(&syncer, &rx))?;
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

impl Inner {
    fn fail(&self, e: &io::Error) {
        if !self.failed.swap(true, Ordering::AcqRel) {
            self.writable.send_replace(false);
            tracing::error!(
                "CSM2303E Cannot write the checkpoint journal {}: {e}; intake is paused and no mail's final \".\" is sent until it can be written again (tried every {} s)",
                self.path.display(),
                PROBE_INTERVAL.as_secs()
            );
        }
    }

    fn sync(&self) -> bool {
        self.dirty.store(false, Ordering::Release);
        let file = self
            .file
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match file.sync_data() {
            Ok(()) => true,
            Err(e) => {
                self.fail(&e);
                false
            }
        }
    }

    /// Tries the failed journal again: a line feed (ending any torn record) and a sync.
    fn probe(&self) {
        let written = {
            let file = self
                .file
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            (&*file).write_all(b"\n").and_then(|()| file.sync_data())
        };
        if written.is_ok() && self.failed.swap(false, Ordering::AcqRel) {
            self.size.fetch_add(1, Ordering::Relaxed);
            self.writable.send_replace(true);
            tracing::info!(
                "CSM2311I The checkpoint journal {} can be written again; intake resumes",
                self.path.display()
            );
        }
    }

    /// Rewrites the journal without the records of forgotten files.
    ///
    /// Appends go on meanwhile: the records are read and the new journal written and
    /// synced without holding the append path; appends wait only while the few records
    /// appended in the meantime are copied over and the new file takes the old one's
    /// place (a rename). Runs on the syncer thread, so no sync is acknowledged while it
    /// runs: the copied records are synced, like any new one, by the next sync, after
    /// the rename is made durable here.
    fn compact(&self) {
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

/// The syncer: syncs on request (every request queued while it syncs shares the next
/// sync) and every [`SYNC_INTERVAL`] while something is unsynced; compacts past
/// [`COMPACT_AT`]. Ends with a last sync when every [`Journal`] is gone.
fn run_syncer(inner: &std::sync::Weak<Inner>, rx: &mpsc::Receiver<Request>) {
    let mut acks = Vec::new();
    let mut last_probe = std::time::Instant::now();
    loop {
        let first = match rx.recv_timeout(SYNC_INTERVAL) {
            Ok(request) => Some(request),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(inner) = inner.upgrade() {
                    inner.sync();
                }
                return;
            }
        };
        acks.extend(first.into_iter().chain(rx.try_iter()).map(|r| match r {
            Request::Sync(ack) => ack,
        }));
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.failed.load(Ordering::Acquire) && last_probe.elapsed() >= PROBE_INTERVAL {
            last_probe = std::time::Instant::now();
            inner.probe();
        }
        if !acks.is_empty() || inner.dirty.load(Ordering::Acquire) {
            inner.sync();
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if inner.size.load(Ordering::Relaxed) >= COMPACT_AT {
            inner.compact();
        }
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

/// Calls `each` with every line of the journal (without its newline) in its first
/// `limit` bytes.
fn each_line(path: &Path, limit: u64, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::with_capacity(256 * 1024, file.take(limit));
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        if !body.is_empty() {
            each(body);
        }
    }
}

/// Reads the journal in one pass: what it knows of `live` files (damaged lines are
/// counted and skipped), and those files' intact records as lines, for the rewrite.
fn recover(path: &Path, live: &HashSet<String>, boot: &str) -> io::Result<(Recovered, Vec<u8>)> {
    let mut recovered = Recovered::default();
    let mut kept = Vec::new();
    let mut last_boot = None;
    each_line(path, u64::MAX, |line| match record::decode(line) {
        Ok(Record::Start { boot }) => last_boot = Some(boot),
        Ok(rec) => {
            recovered.records += 1;
            if live.contains(rec.file()) {
                recovered
                    .files
                    .entry(rec.file().to_owned())
                    .or_default()
                    .apply(&rec);
                kept.extend_from_slice(line);
                kept.push(b'\n');
            }
        }
        Err(Bad::Checksum | Bad::Format) => recovered.damaged += 1,
    })?;
    recovered.system_restarted = last_boot.is_some_and(|b| b != boot);
    Ok((recovered, kept))
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
    use crate::journal::Outcome;

    fn sent(f: &str, m: u32, r: Vec<usize>) -> Record {
        Record::Sent { f: f.into(), m, r }
    }

    fn warm() -> JournalOptions {
        JournalOptions::default()
    }

    #[tokio::test]
    async fn recovery_skips_damage_and_keeps_live_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let live: HashSet<String> = ["a@1".to_string()].into();
        {
            let (journal, recovered, writer) = Journal::open(&path, &live, warm()).unwrap();
            assert_eq!(recovered.records, 0);
            assert!(!recovered.system_restarted);
            journal.append(&sent("a@1", 1, vec![0, 1]));
            journal.append(&Record::Result {
                f: "a@1".into(),
                m: 1,
                o: Outcome {
                    a: 1,
                    d: vec![0],
                    ..Outcome::default()
                },
            });
            journal.append(&sent("a@1", 2, vec![0]));
            journal.append(&sent("b@2", 1, vec![0]));
            journal
                .append_durable(&Record::Returned {
                    f: "a@1".into(),
                    m: 3,
                })
                .await
                .unwrap();
            drop(journal);
            writer.join();
        }
        // Damage: a torn last line and a corrupted one in the middle.
        let mut text = std::fs::read(&path).unwrap();
        let lines: Vec<usize> = (0..text.len()).filter(|&i| text[i] == b'\n').collect();
        text[lines[1] + 5] ^= 0x20;
        text.extend_from_slice(b"0badc0de {\"v\":1,\"t\":\"se");
        std::fs::write(&path, &text).unwrap();
        let (_journal, recovered, _writer) = Journal::open(&path, &live, warm()).unwrap();
        assert_eq!(recovered.damaged, 2);
        let file = &recovered.files["a@1"];
        // The Result line was damaged: mail 1 is in doubt for both recipients.
        assert_eq!(file.mails[&1].in_doubt, [0, 1].into());
        assert_eq!(file.mails[&2].in_doubt, [0].into());
        assert!(file.mails[&3].returned);
        assert!(
            !recovered.files.contains_key("b@2"),
            "files no longer in active/ are dropped"
        );
        let rewritten = std::fs::read_to_string(&path).unwrap();
        assert!(
            !rewritten.contains("b@2") && !rewritten.contains("0badc0de"),
            "compacted"
        );
    }

    #[tokio::test]
    async fn cold_start_discards_and_one_process_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let live: HashSet<String> = ["a@1".to_string()].into();
        let (journal, _, writer) = Journal::open(&path, &live, warm()).unwrap();
        journal
            .append_durable(&sent("a@1", 1, vec![0]))
            .await
            .unwrap();
        assert!(
            Journal::open(&path, &live, warm()).is_err(),
            "one process at a time"
        );
        drop(journal);
        writer.join();
        let cold = JournalOptions {
            cold: true,
            ..warm()
        };
        let (_j, recovered, _w) = Journal::open(&path, &live, cold).unwrap();
        assert!(recovered.files.is_empty());
    }

    #[tokio::test]
    async fn a_journal_written_before_a_system_restart_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let live: HashSet<String> = ["a@1".to_string()].into();
        let line = record::encode(&Record::Start {
            boot: "another-boot".into(),
        });
        std::fs::write(&path, line).unwrap();
        let (_j, recovered, _w) = Journal::open(&path, &live, warm()).unwrap();
        assert!(recovered.system_restarted);
    }

    #[tokio::test]
    async fn compaction_drops_forgotten_files_and_appends_go_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let (journal, _, writer) = Journal::open(&path, &HashSet::new(), warm()).unwrap();
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

    /// A compaction does not hold appends for its duration: while it is held between
    /// writing the new journal and putting it in place, an append from another thread
    /// goes through; the record lands in the compacted journal, the forgotten file's
    /// records do not. (Without a compaction in progress the bounded wait is never
    /// reached; it only turns a stalled append into a failure instead of a hang.)
    #[test]
    fn appends_go_on_while_a_compaction_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let (journal, _, writer) = Journal::open(&path, &HashSet::new(), warm()).unwrap();
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
        let (_journal, recovered, _writer) = Journal::open(&path, &live, warm()).unwrap();
        assert_eq!(recovered.damaged, 0);
        assert_eq!(recovered.files["kept@2"].mails.len(), 3);
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
        let (journal, _, writer) = Journal::open(&path, &HashSet::new(), warm()).unwrap();
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
        let (reopened, recovered, rewriter) = Journal::open(&path, &live, warm()).unwrap();
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
