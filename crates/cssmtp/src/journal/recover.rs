//! Recovery at start: the journal read in one pass, what it knows of the files still
//! in `active/` kept for the rewrite, damaged lines counted and skipped.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::FileCheckpoint;
use super::record::{self, Bad, Record};

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
    /// system crash may have taken its last [`SYNC_INTERVAL`](super::SYNC_INTERVAL) of records).
    pub system_restarted: bool,
}

/// Calls `each` with every line of the journal (without its newline) in its first
/// `limit` bytes.
pub(super) fn each_line(path: &Path, limit: u64, mut each: impl FnMut(&[u8])) -> io::Result<()> {
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
pub(super) fn recover(
    path: &Path,
    live: &HashSet<String>,
    boot: &str,
) -> io::Result<(Recovered, Vec<u8>)> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::sent;
    use crate::journal::{Journal, JournalOptions, Outcome};

    #[tokio::test]
    async fn recovery_skips_damage_and_keeps_live_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let live: HashSet<String> = ["a@1".to_string()].into();
        {
            let (journal, recovered, writer) =
                Journal::open(&path, &live, JournalOptions::default()).unwrap();
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
        let (_journal, recovered, _writer) =
            Journal::open(&path, &live, JournalOptions::default()).unwrap();
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
    async fn a_journal_written_before_a_system_restart_is_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("W.journal");
        let live: HashSet<String> = ["a@1".to_string()].into();
        let line = record::encode(&Record::Start {
            boot: "another-boot".into(),
        });
        std::fs::write(&path, line).unwrap();
        let (_j, recovered, _w) = Journal::open(&path, &live, JournalOptions::default()).unwrap();
        assert!(recovered.system_restarted);
    }
}
