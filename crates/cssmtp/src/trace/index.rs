//! The trace files: the MAIL and MAIL_EVENT accounting records of each day (UTC) in
//! `<accounting directory>/trace/YYYY-MM-DD.jsonl`, and, once the day is over, its
//! index `YYYY-MM-DD.idx`: every searchable value of each record (spool file, job name,
//! job ID, owner, sender, recipients, Message-ID, the notification's Message-ID, the
//! dead letter), hashed, with the record's offset, sorted. `cssmtp trace` looks a value
//! up in a day's index with a binary search (a few reads), so that a year of a busy
//! host's records answers in milliseconds; the day being written (no index yet) is
//! scanned with `memchr::memmem`.
//!
//! Index file: `CSMTRIX1`, the number of entries (u64, little-endian), then each entry
//! as (hash u64, offset u64), little-endian, sorted. The hash is FNV-1a 64 of the value
//! in lower case without enclosing `<>`.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

const MAGIC: &[u8; 8] = b"CSMTRIX1";
const ENTRY: u64 = 16;
const HEADER: u64 = 16;

/// The trace directory of an accounting file: `trace/` beside it.
pub fn directory(accounting_file: &Path) -> PathBuf {
    accounting_file
        .parent()
        .unwrap_or(Path::new("."))
        .join("trace")
}

/// A day's name (`YYYY-MM-DD`, UTC) now.
pub fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// A value as it is looked up: trimmed, without enclosing `<>`, in lower case.
pub fn normalize(value: &str) -> String {
    let v = value.trim();
    let v = v
        .strip_prefix('<')
        .and_then(|v| v.strip_suffix('>'))
        .unwrap_or(v);
    v.to_ascii_lowercase()
}

/// FNV-1a, 64 bits.
pub fn hash(normalized: &str) -> u64 {
    normalized.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The searchable values of a record (normalized).
pub fn keys(record: &Value) -> Vec<String> {
    let mut keys = Vec::new();
    let mut add = |v: Option<&str>| {
        if let Some(v) = v.map(normalize).filter(|v| !v.is_empty()) {
            keys.push(v);
        }
    };
    for field in [
        "spool_file",
        "job_name",
        "job_id",
        "owner",
        "from",
        "message_id",
        "notification_id",
        "to",
    ] {
        add(record.get(field).and_then(Value::as_str));
    }
    if let Some(path) = record.get("dead_letter").and_then(Value::as_str) {
        add(Some(path));
        add(Path::new(path).file_name().and_then(|n| n.to_str()));
    }
    for r in record
        .get("recipients")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        add(r.get("address").and_then(Value::as_str));
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Whether a record is one `trace` keeps (MAIL and MAIL_EVENT).
pub fn is_traced(kind: &str) -> bool {
    kind == "mail" || kind == "mail_event"
}

/// Appends the traced records to the file of their day; when the day changes, the
/// finished day's index is built (on a thread of its own).
pub struct DayWriter {
    dir: PathBuf,
    day: String,
    out: Option<BufWriter<File>>,
}

impl DayWriter {
    /// Trace files in `dir`; the days before today left without an index get one now.
    pub fn new(dir: PathBuf) -> Self {
        let writer = Self {
            dir,
            day: String::new(),
            out: None,
        };
        let (dir, today) = (writer.dir.clone(), today());
        let _ = std::thread::Builder::new()
            .name("cssmtp-trace-index".into())
            .spawn(move || index_missing(&dir, &today));
        writer
    }

    /// Writes one record line (ending with a newline).
    ///
    /// # Errors
    /// An I/O error.
    pub fn write(&mut self, line: &[u8]) -> std::io::Result<()> {
        let day = today();
        if day != self.day || self.out.is_none() {
            self.flush()?;
            let finished = std::mem::replace(&mut self.day, day);
            if self.out.take().is_some() && !finished.is_empty() {
                let (dir, name) = (self.dir.clone(), finished);
                let _ = std::thread::Builder::new()
                    .name("cssmtp-trace-index".into())
                    .spawn(move || build(&dir, &name));
            }
            crate::durable::create_dir(&self.dir, 0o750)?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(self.dir.join(format!("{}.jsonl", self.day)))?;
            self.out = Some(BufWriter::with_capacity(64 * 1024, file));
        }
        match self.out.as_mut() {
            Some(out) => out.write_all(line),
            None => Ok(()),
        }
    }

    /// Writes out what is buffered.
    ///
    /// # Errors
    /// An I/O error.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.as_mut().map_or(Ok(()), BufWriter::flush)
    }
}

/// The day files in `dir` (their day names), oldest first.
pub fn days(dir: &Path) -> Vec<String> {
    let mut days: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let name = e.ok()?.file_name();
            let day = name.to_str()?.strip_suffix(".jsonl")?;
            (day.len() == 10).then(|| day.to_owned())
        })
        .collect();
    days.sort();
    days
}

/// Builds the index of every day before `today` that has none (or an older one).
pub fn index_missing(dir: &Path, today: &str) {
    for day in days(dir) {
        if day.as_str() < today && !indexed(dir, &day) {
            build(dir, &day);
        }
    }
}

/// Whether the day's index is there and not older than its records.
fn indexed(dir: &Path, day: &str) -> bool {
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (
        modified(dir.join(format!("{day}.idx"))),
        modified(dir.join(format!("{day}.jsonl"))),
    ) {
        (Some(idx), Some(records)) => idx >= records,
        _ => false,
    }
}

/// Builds a day's index (written to a temporary file, then renamed).
pub fn build(dir: &Path, day: &str) {
    if let Err(e) = try_build(dir, day) {
        tracing::warn!(
            "CSM1087W Cannot index the trace records of {day} in {}: {e}; cssmtp trace reads them in full",
            dir.display()
        );
    }
}

fn try_build(dir: &Path, day: &str) -> std::io::Result<()> {
    let mut text = Vec::new();
    File::open(dir.join(format!("{day}.jsonl")))?.read_to_end(&mut text)?;
    let mut entries: Vec<(u64, u64)> = Vec::new();
    let mut offset = 0u64;
    for line in text.split_inclusive(|&b| b == b'\n') {
        if let Ok(record) = serde_json::from_slice::<Value>(line) {
            entries.extend(keys(&record).iter().map(|k| (hash(k), offset)));
        }
        offset += line.len() as u64;
    }
    entries.sort_unstable();
    entries.dedup();
    let tmp = dir.join(format!(".{day}.idx.tmp"));
    let mut out = BufWriter::new(
        OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o640)
            .open(&tmp)?,
    );
    out.write_all(MAGIC)?;
    out.write_all(&(entries.len() as u64).to_le_bytes())?;
    for (h, o) in &entries {
        out.write_all(&h.to_le_bytes())?;
        out.write_all(&o.to_le_bytes())?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("{day}.idx")))
}

/// The records of a day that hold `needle` (normalized) as one of their values.
///
/// # Errors
/// An I/O error reading the day's files.
pub fn lookup(dir: &Path, day: &str, needle: &str) -> std::io::Result<Vec<(u64, Value)>> {
    let records = File::open(dir.join(format!("{day}.jsonl")))?;
    let offsets = if indexed(dir, day) {
        match index_lookup(&dir.join(format!("{day}.idx")), hash(needle)) {
            Ok(offsets) => offsets,
            Err(_) => return scan(&records, needle),
        }
    } else {
        return scan(&records, needle);
    };
    let mut found = Vec::new();
    for offset in offsets {
        let line = read_line_at(&records, offset)?;
        if let Ok(record) = serde_json::from_slice::<Value>(&line)
            && keys(&record).iter().any(|k| k == needle)
        {
            found.push((offset, record));
        }
    }
    Ok(found)
}

/// The offsets an index holds for `h`.
fn index_lookup(path: &Path, h: u64) -> std::io::Result<Vec<u64>> {
    let file = File::open(path)?;
    let mut header = [0u8; HEADER as usize];
    file.read_exact_at(&mut header, 0)?;
    let (magic, count) = header.split_at(8);
    if magic != MAGIC {
        return Err(std::io::Error::other("not a cssmtp trace index"));
    }
    let count = u64::from_le_bytes(count.try_into().map_err(std::io::Error::other)?);
    let entry = |i: u64| -> std::io::Result<(u64, u64)> {
        let mut e = [0u8; ENTRY as usize];
        file.read_exact_at(&mut e, HEADER + i * ENTRY)?;
        let (h, o) = e.split_at(8);
        Ok((
            u64::from_le_bytes(h.try_into().map_err(std::io::Error::other)?),
            u64::from_le_bytes(o.try_into().map_err(std::io::Error::other)?),
        ))
    };
    // The first entry with a hash ≥ h.
    let (mut lo, mut hi) = (0u64, count);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if entry(mid)?.0 < h {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    let mut offsets = Vec::new();
    while lo < count {
        let (eh, offset) = entry(lo)?;
        if eh != h {
            break;
        }
        offsets.push(offset);
        lo += 1;
    }
    Ok(offsets)
}

/// The line that starts at `offset`.
fn read_line_at(file: &File, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let n = file.read_at(&mut chunk, offset + line.len() as u64)?;
        let got = chunk.get(..n).unwrap_or_default();
        if let Some(end) = memchr::memchr(b'\n', got) {
            line.extend_from_slice(got.get(..end).unwrap_or_default());
            return Ok(line);
        }
        line.extend_from_slice(got);
        if n == 0 || line.len() > 16 << 20 {
            return Ok(line);
        }
    }
}

/// A day without an index: every line holding the needle (case-insensitively, as JSON
/// writes it), checked value by value.
fn scan(file: &File, needle: &str) -> std::io::Result<Vec<(u64, Value)>> {
    let mut text = Vec::new();
    (&*file).read_to_end(&mut text)?;
    let lower = text.to_ascii_lowercase();
    let quoted = serde_json::to_string(needle).unwrap_or_default();
    let pattern = quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(needle);
    let mut found = Vec::new();
    let mut last_line = None;
    for at in memchr::memmem::find_iter(&lower, pattern.as_bytes()) {
        let start =
            memchr::memrchr(b'\n', lower.get(..at).unwrap_or_default()).map_or(0, |p| p + 1);
        if last_line == Some(start) {
            continue;
        }
        last_line = Some(start);
        let end = memchr::memchr(b'\n', text.get(at..).unwrap_or_default())
            .map_or(text.len(), |p| at + p);
        if let Some(line) = text.get(start..end)
            && let Ok(record) = serde_json::from_slice::<Value>(line)
            && keys(&record).iter().any(|k| k == needle)
        {
            found.push((start as u64, record));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(file: &str, rcpt: &str) -> String {
        serde_json::json!({
            "type": "mail", "spool_file": file, "job_name": "PAYROLL", "job_id": "J1",
            "from": "pay@example.com", "message_id": "<M1@Host>",
            "recipients": [{"address": rcpt, "fate": "delivered"}],
        })
        .to_string()
            + "\n"
    }

    #[test]
    fn an_index_finds_what_a_scan_finds() {
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..500 {
            text += &record(&format!("F{i}"), &format!("user{i}@example.com"));
        }
        std::fs::write(dir.path().join("2020-01-01.jsonl"), &text).unwrap();
        let before = lookup(dir.path(), "2020-01-01", "user7@example.com").unwrap();
        assert_eq!(before.len(), 1);
        assert_eq!(before[0].1["spool_file"], "F7");
        build(dir.path(), "2020-01-01");
        assert!(indexed(dir.path(), "2020-01-01"));
        let after = lookup(dir.path(), "2020-01-01", "user7@example.com").unwrap();
        assert_eq!(before, after);
        assert_eq!(
            lookup(dir.path(), "2020-01-01", &normalize("<m1@host>"))
                .unwrap()
                .len(),
            500
        );
        assert_eq!(
            lookup(dir.path(), "2020-01-01", "payroll").unwrap().len(),
            500
        );
        assert!(
            lookup(dir.path(), "2020-01-01", "user7@example")
                .unwrap()
                .is_empty()
        );
        assert!(
            lookup(dir.path(), "2020-01-01", "nobody")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn index_missing_skips_today() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("2020-01-01.jsonl"), record("A", "a@b")).unwrap();
        std::fs::write(dir.path().join("2020-01-02.jsonl"), record("B", "a@b")).unwrap();
        index_missing(dir.path(), "2020-01-02");
        assert!(indexed(dir.path(), "2020-01-01"));
        assert!(!indexed(dir.path(), "2020-01-02"));
        assert_eq!(days(dir.path()), ["2020-01-01", "2020-01-02"]);
    }
}
