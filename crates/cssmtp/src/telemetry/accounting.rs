//! Accounting records: CSSMTP's SMF type 119 records (subtypes 48 CONFIG, 49 CONNECT,
//! 50 MAIL, 51 SPOOL, 52 STATS) as JSON lines in `AccountingFile`, chosen by the
//! `SMF119` statement.
//!
//! Records are queued to a writer thread (bounded: delivery never waits for the
//! accounting file; a record that finds the queue full is counted as lost and said so)
//! and flushed whenever the queue is empty. `REFRESH` (and SIGHUP) reopens the file, so
//! logrotate can move it away.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use serde_json::{Map, Value, json};

use crate::trace::index::DayWriter;

use crate::config::Smf119;

/// A record type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Subtype 48: start, REFRESH, LOGLEVEL.
    Config,
    /// 49: the end of a target-server connection.
    Connect,
    /// 50: the end of a mail.
    Mail,
    /// 50 too (selected with MAIL), `mail_event`: what happens to a mail after it is
    /// final: kept for extended retry, delivered from there, returned (the
    /// notification), stored as a dead letter.
    MailEvent,
    /// 51: the end of a spool file.
    Spool,
    /// 52: every StatsInterval.
    Stats,
}

impl Kind {
    fn bit(self) -> u8 {
        match self {
            Self::Config => 1,
            Self::Connect => 2,
            Self::Mail | Self::MailEvent => 4,
            Self::Spool => 8,
            Self::Stats => 16,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Connect => "connect",
            Self::Mail => "mail",
            Self::MailEvent => "mail_event",
            Self::Spool => "spool",
            Self::Stats => "stats",
        }
    }

    fn subtype(self) -> u8 {
        match self {
            Self::Config => 48,
            Self::Connect => 49,
            Self::Mail | Self::MailEvent => 50,
            Self::Spool => 51,
            Self::Stats => 52,
        }
    }
}

fn mask(selection: Smf119) -> u8 {
    [
        (selection.config, Kind::Config),
        (selection.connect, Kind::Connect),
        (selection.mail, Kind::Mail),
        (selection.spool, Kind::Spool),
        (selection.stats, Kind::Stats),
    ]
    .iter()
    .filter(|(on, _)| *on)
    .fold(0, |m, (_, k)| m | k.bit())
}

enum Message {
    /// A record; `traced`: also one of the day's trace records (MAIL, MAIL_EVENT).
    Line {
        line: Vec<u8>,
        traced: bool,
    },
    Reopen,
}

struct Inner {
    mask: AtomicU8,
    tx: mpsc::SyncSender<Message>,
    lost: AtomicU64,
}

/// Where records go (cheap to clone; a disabled one does nothing).
#[derive(Clone, Default)]
pub struct Accounting {
    inner: Option<Arc<Inner>>,
}

/// The writer thread; [`AccountingWriter::join`] waits for it to write everything
/// queued, once every [`Accounting`] is dropped.
pub struct AccountingWriter(std::thread::JoinHandle<()>);

impl AccountingWriter {
    pub fn join(self) {
        let _ = self.0.join();
    }
}

/// Records queued at most; more are lost (and counted).
const QUEUE: usize = 65_536;

impl Accounting {
    /// No accounting.
    pub fn disabled() -> Self {
        Self::default()
    }

    /// Opens (creating, mode 0640) the accounting file and starts its writer.
    ///
    /// # Errors
    /// An I/O error opening the file.
    pub fn open(path: &Path, selection: Smf119) -> std::io::Result<(Self, AccountingWriter)> {
        if let Some(dir) = path.parent() {
            crate::durable::create_dir(dir, 0o750)?;
        }
        let file = open_file(path)?;
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let path = path.to_owned();
        let thread = std::thread::Builder::new()
            .name("cssmtp-accounting".into())
            .spawn(move || write_records(&path, file, &rx))?;
        let inner = Inner {
            mask: AtomicU8::new(mask(selection)),
            tx,
            lost: AtomicU64::new(0),
        };
        Ok((
            Self {
                inner: Some(Arc::new(inner)),
            },
            AccountingWriter(thread),
        ))
    }

    /// Changes which records are written (REFRESH).
    pub(super) fn select(&self, selection: Smf119) {
        if let Some(inner) = &self.inner {
            inner.mask.store(mask(selection), Ordering::Relaxed);
        }
    }

    /// True when records of `kind` are written (so that records are built only then).
    pub fn wants(&self, kind: Kind) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.mask.load(Ordering::Relaxed) & kind.bit() != 0)
    }

    /// Writes a record of `kind` with `fields` (an object), adding `type`, `subtype`
    /// and `time`.
    fn record(&self, kind: Kind, fields: Value) {
        let Some(inner) = self.inner.as_ref().filter(|_| self.wants(kind)) else {
            return;
        };
        let mut object = Map::new();
        object.insert("type".into(), json!(kind.name()));
        object.insert("subtype".into(), json!(kind.subtype()));
        object.insert("time".into(), json!(now()));
        if let Value::Object(fields) = fields {
            object.extend(fields);
        }
        let mut line = serde_json::to_vec(&Value::Object(object)).unwrap_or_default();
        line.push(b'\n');
        let traced = crate::trace::index::is_traced(kind.name());
        if inner.tx.try_send(Message::Line { line, traced }).is_err()
            && inner.lost.fetch_add(1, Ordering::Relaxed) % 10_000 == 0
        {
            tracing::warn!(
                "CSM1041W Accounting records are being lost: the accounting file cannot keep up"
            );
        }
    }

    /// Writes a record of `kind` made by `fields`, when records of `kind` are written
    /// (built only then).
    pub(super) fn record_with(&self, kind: Kind, fields: impl FnOnce() -> Value) {
        if self.wants(kind) {
            self.record(kind, fields());
        }
    }

    /// Reopens the file (after logrotate moved it).
    pub(super) fn reopen(&self) {
        if let Some(inner) = &self.inner {
            let _ = inner.tx.try_send(Message::Reopen);
        }
    }

    /// Records lost because the queue was full.
    pub(super) fn lost(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.lost.load(Ordering::Relaxed))
    }
}

/// The time now, RFC 3339 in UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// A system time, RFC 3339 in UTC.
pub fn time(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn open_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

fn write_records(path: &Path, file: File, rx: &mpsc::Receiver<Message>) {
    let mut out = BufWriter::with_capacity(64 * 1024, file);
    let mut failing = false;
    let mut days = Days {
        writer: DayWriter::new(crate::trace::index::directory(path)),
        failing: false,
    };
    let handle =
        |out: &mut BufWriter<File>, days: &mut Days, message: Message| -> std::io::Result<()> {
            match message {
                Message::Line { line, traced } => {
                    if traced {
                        let written = days.writer.write(&line);
                        days.result(written);
                    }
                    out.write_all(&line)
                }
                Message::Reopen => {
                    out.flush()?;
                    *out = BufWriter::with_capacity(64 * 1024, open_file(path)?);
                    Ok(())
                }
            }
        };
    while let Ok(message) = rx.recv() {
        let mut result = handle(&mut out, &mut days, message);
        while result.is_ok() {
            match rx.try_recv() {
                Ok(message) => result = handle(&mut out, &mut days, message),
                Err(_) => break,
            }
        }
        let result = result.and_then(|()| out.flush());
        let flushed = days.writer.flush();
        days.result(flushed);
        match result {
            Err(e) if !failing => {
                failing = true;
                tracing::error!(
                    "CSM1040E Cannot write the accounting file {}: {e}",
                    path.display()
                );
            }
            Err(_) => {}
            Ok(()) => failing = false,
        }
    }
    let _ = out.flush();
    let _ = days.writer.flush();
}

/// The day's trace records (`cssmtp trace`), written beside the accounting file.
struct Days {
    writer: DayWriter,
    failing: bool,
}

impl Days {
    /// Says once that the trace records cannot be written.
    fn result(&mut self, result: std::io::Result<()>) {
        match result {
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!(
                    "CSM1088E Cannot write the trace records (cssmtp trace will not find the mail): {e}"
                );
            }
            Err(_) => {}
            Ok(()) => self.failing = false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selected_records_only_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acct.jsonl");
        let selection = Smf119 {
            mail: true,
            spool: true,
            ..Smf119::default()
        };
        let (acct, writer) = Accounting::open(&path, selection).unwrap();
        assert!(acct.wants(Kind::Mail) && !acct.wants(Kind::Connect));
        acct.record(Kind::Connect, json!({"target": "x"}));
        acct.record(Kind::Mail, json!({"mail": 1}));
        acct.select(Smf119 {
            connect: true,
            ..Smf119::default()
        });
        acct.record(Kind::Mail, json!({"mail": 2}));
        acct.record(Kind::Connect, json!({"target": "y"}));
        drop(acct);
        writer.join();
        let text = std::fs::read_to_string(&path).unwrap();
        let records: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(records.len(), 2, "{text}");
        assert_eq!(records[0]["type"], "mail");
        assert_eq!(records[0]["subtype"], 50);
        assert_eq!(records[0]["mail"], 1);
        assert_eq!(records[1]["target"], "y");
        assert!(Accounting::disabled().lost() == 0 && !Accounting::disabled().wants(Kind::Stats));
    }
}
