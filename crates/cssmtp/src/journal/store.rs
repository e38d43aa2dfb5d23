//! The journal file: recovery at start, appends with group commit on a writer thread,
//! compaction.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use super::record::{self, Bad, Record};
use super::{COMPACT_AT, FileCheckpoint};

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The files the journal knows that are still in `active/`.
    pub files: HashMap<String, FileCheckpoint>,
    /// Lines skipped because they failed their checksum or were not records.
    pub damaged: u64,
    /// Records read.
    pub records: u64,
}

enum Op {
    Append(Vec<u8>, Option<oneshot::Sender<()>>, String),
    Forget(String),
}

/// A handle on the journal (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    tx: mpsc::UnboundedSender<Op>,
    failed: Arc<Mutex<bool>>,
}

/// The journal's writer thread. It ends, after writing and syncing what it was given,
/// once every [`Journal`] handle is dropped; [`JournalWriter::join`] waits for that.
pub struct JournalWriter {
    thread: std::thread::JoinHandle<()>,
    /// Held for the writer's life: one process writes a journal file.
    _lock: nix::fcntl::Flock<File>,
}

impl JournalWriter {
    /// Waits for the writer to finish (blocking: call it where blocking is allowed).
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

impl Journal {
    /// Opens (creating) the journal at `path`: reads what it knows of the files whose
    /// keys are in `live` (the files in `active/`, a directory the writer syncs before
    /// it drops the records of files removed from it), rewrites it with only those,
    /// and starts its writer. With `cold`, the journal is discarded first.
    ///
    /// # Errors
    /// An I/O error creating or rewriting the journal, or another process holding it.
    pub fn open(
        path: &Path,
        active: &Path,
        live: &HashSet<String>,
        cold: bool,
    ) -> io::Result<(Self, Recovered, JournalWriter)> {
        if let Some(dir) = path.parent() {
            crate::durable::create_dir(dir, 0o750)?;
        }
        let mut lock_path = path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o640)
            .open(&lock_path)?;
        let lock = nix::fcntl::Flock::lock(lock_file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|(_, errno)| {
                io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!("the checkpoint journal is in use by another process ({errno})"),
                )
            })?;
        let mut recovered = Recovered::default();
        if cold {
            if path.exists() {
                std::fs::remove_file(path)?;
            }
        } else {
            recovered = recover(path, live)?;
        }
        compact(path, live)?;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        let size = file.metadata()?.len();
        let (tx, rx) = mpsc::unbounded_channel();
        let failed = Arc::new(Mutex::new(false));
        let writer = Writer {
            path: path.to_owned(),
            active: active.to_owned(),
            file,
            size,
            live: live.clone(),
            failed: Arc::clone(&failed),
        };
        let thread = std::thread::Builder::new()
            .name("cssmtp-journal".into())
            .spawn(move || writer.run(rx))?;
        Ok((
            Self { tx, failed },
            recovered,
            JournalWriter {
                thread,
                _lock: lock,
            },
        ))
    }

    /// Appends a record; it becomes durable with the next group commit.
    pub fn append(&self, record: &Record) {
        let _ = self.tx.send(Op::Append(
            record::encode(record),
            None,
            record.file().to_owned(),
        ));
    }

    /// Appends a record and resolves once it is durable (or the journal failed: see
    /// [`Journal::is_failing`]).
    pub fn append_durable(&self, record: &Record) -> oneshot::Receiver<()> {
        let (ack, done) = oneshot::channel();
        let _ = self.tx.send(Op::Append(
            record::encode(record),
            Some(ack),
            record.file().to_owned(),
        ));
        done
    }

    /// The file is finished and deleted: its records may go at the next compaction.
    pub fn forget(&self, file: &str) {
        let _ = self.tx.send(Op::Forget(file.to_owned()));
    }

    /// True once a write or sync failed (warm-restart guarantees are then lost).
    pub fn is_failing(&self) -> bool {
        *self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads the journal, keeping what concerns `live` files; damaged lines are counted and
/// skipped.
fn recover(path: &Path, live: &HashSet<String>) -> io::Result<Recovered> {
    let mut recovered = Recovered::default();
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(recovered),
        Err(e) => return Err(e),
    };
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        let body = line.strip_suffix(b"\n").unwrap_or(&line);
        if body.is_empty() {
            continue;
        }
        match record::decode(body) {
            Ok(rec) => {
                recovered.records += 1;
                if live.contains(rec.file()) {
                    recovered
                        .files
                        .entry(rec.file().to_owned())
                        .or_default()
                        .apply(&rec);
                }
            }
            Err(Bad::Checksum | Bad::Format) => recovered.damaged += 1,
        }
    }
    Ok(recovered)
}

/// Rewrites the journal with only the intact records of `live` files.
fn compact(path: &Path, live: &HashSet<String>) -> io::Result<()> {
    let mut kept = Vec::new();
    if let Ok(file) = File::open(path) {
        let mut reader = BufReader::new(file);
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            if let Ok(rec) = record::decode(body)
                && live.contains(rec.file())
            {
                kept.extend_from_slice(body);
                kept.push(b'\n');
            }
        }
    } else {
        return Ok(());
    }
    crate::durable::replace(path, &kept, 0o640)
}

struct Writer {
    path: PathBuf,
    active: PathBuf,
    file: File,
    size: u64,
    /// Files with records that must survive compaction.
    live: HashSet<String>,
    failed: Arc<Mutex<bool>>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::UnboundedReceiver<Op>) {
        let mut batch = Vec::with_capacity(64 * 1024);
        let mut acks: Vec<oneshot::Sender<()>> = Vec::new();
        let mut forget: Vec<String> = Vec::new();
        while let Some(op) = rx.blocking_recv() {
            // Everything queued while the last sync ran joins this one (group commit).
            let mut next = Some(op);
            while let Some(op) = next.take().or_else(|| rx.try_recv().ok()) {
                match op {
                    Op::Append(bytes, ack, file) => {
                        batch.extend_from_slice(&bytes);
                        self.live.insert(file);
                        acks.extend(ack);
                    }
                    Op::Forget(file) => forget.push(file),
                }
                if batch.len() > 4 * 1024 * 1024 {
                    break;
                }
            }
            if !batch.is_empty() {
                let written = self
                    .file
                    .write_all(&batch)
                    .and_then(|()| self.file.sync_data());
                if let Err(e) = written {
                    self.fail(&e);
                }
                self.size += batch.len() as u64;
                batch.clear();
            }
            for ack in acks.drain(..) {
                let _ = ack.send(());
            }
            for file in forget.drain(..) {
                self.live.remove(&file);
            }
            if self.size > COMPACT_AT {
                self.compact();
            }
        }
    }

    fn fail(&self, e: &io::Error) {
        let mut failed = self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*failed {
            tracing::error!(
                "CSM2303E Cannot write the checkpoint journal {}: {e}; a restart may send mail again",
                self.path.display()
            );
        }
        *failed = true;
    }

    fn compact(&mut self) {
        // Records of a finished file go only once its removal from active/ is durable:
        // a file brought back by a power failure must still find them.
        let result = crate::durable::sync_dir(&self.active)
            .and_then(|()| compact(&self.path, &self.live))
            .and_then(|()| {
                let file = OpenOptions::new().append(true).open(&self.path)?;
                let size = file.metadata()?.len();
                Ok((file, size))
            });
        match result {
            Ok((file, size)) => {
                tracing::info!(
                    "CSM2304I Checkpoint journal {} compacted to {size} bytes",
                    self.path.display()
                );
                self.file = file;
                self.size = size;
            }
            Err(e) => self.fail(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(f: &str, m: u32, r: Vec<usize>) -> Record {
        Record::Sent { f: f.into(), m, r }
    }

    #[tokio::test]
    async fn recovery_skips_damage_and_keeps_live_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let live: HashSet<String> = ["a@1".to_string()].into();
        {
            let (journal, recovered, writer) =
                Journal::open(&path, dir.path(), &live, false).unwrap();
            assert_eq!(recovered.records, 0);
            journal.append(&sent("a@1", 1, vec![0, 1]));
            journal.append(&Record::Result {
                f: "a@1".into(),
                m: 1,
                a: 1,
                d: vec![0],
                x: vec![],
                retry: vec![],
                u: vec![],
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
        let second = text.iter().position(|&b| b == b'\n').unwrap() + 5;
        text[second] ^= 0x20;
        text.extend_from_slice(b"0badc0de {\"v\":1,\"t\":\"se");
        std::fs::write(&path, &text).unwrap();
        let (_journal, recovered, _writer) =
            Journal::open(&path, dir.path(), &live, false).unwrap();
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
    async fn cold_start_discards() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let live: HashSet<String> = ["a@1".to_string()].into();
        let (journal, _, writer) = Journal::open(&path, dir.path(), &live, false).unwrap();
        journal
            .append_durable(&sent("a@1", 1, vec![0]))
            .await
            .unwrap();
        assert!(
            Journal::open(&path, dir.path(), &live, false).is_err(),
            "one process at a time"
        );
        drop(journal);
        writer.join();
        let (_j, recovered, _w) = Journal::open(&path, dir.path(), &live, true).unwrap();
        assert!(recovered.files.is_empty());
    }
}
