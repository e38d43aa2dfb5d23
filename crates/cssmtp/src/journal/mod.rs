//! The checkpoint journal (CSSMTP's CHKPOINT data set): what a warm restart needs so that
//! it neither loses nor duplicates mail.
//!
//! **Store.** One append-only file per writer name, `<ChkPointDirectory>/<WRITER>.journal`
//! (several instances may share the directory: each has its own file, locked by the one
//! process using it). Records are lines, each versioned and checksummed ([`record`]), so
//! damage is found and skipped line by line, and an operator can read the file. An
//! append-only log was chosen over an embedded database: the access pattern is
//! append-then-read-once-at-start; a record is one `write(2)`, so it costs a few
//! microseconds and, once written, survives the process; one fsync (group commit, on a
//! syncer thread) covers every record written before it; and there is nothing to build
//! (no C library), nothing to tune and nothing to corrupt but a line.
//!
//! **Order.** Before the final "." of a mail goes out, a `sent` record naming the
//! recipients the server accepted is written; right after the reply is read, a `result`
//! record (the session acknowledges both to the queue, which records them through
//! [`crate::storage`]; the session never writes the journal; the `result` is written
//! before the connection's next mail's `sent`). Before a
//! spool file is deleted, a `done` record is synced. After a crash of the process (kill
//! -9, a panic, the OOM killer), every record written survives: recipients with a result
//! are skipped; a `sent` without a result means the final "." may have been sent and its
//! reply not read: those recipients are **possibly delivered**, flagged (CSM2301W) and,
//! by `PossiblyDelivered`, sent again (default, as CSSMTP users expect: never lose mail)
//! or held for the operator. No other recipient can be duplicated, and the flagged mails
//! are at most one per connection: at most `MaxConnections`.
//!
//! **System crashes.** A power failure or kernel crash also takes what was written and
//! not yet synced: at most the last [`SYNC_INTERVAL`] (the syncer syncs that often while
//! records are written). With `ChkPointSync Interval` (default) a mail whose final "."
//! went out in that interval may then be sent again without a flag; the next start says
//! so (CSM1014W: it compares the boot of the system that wrote the journal with its
//! own). With `ChkPointSync Mail` every `sent` record is synced before its "." (the
//! syncs of all connections shared): exact after a system crash too, at a cost in
//! throughput (see the README).
//!
//! **Size.** Records of finished spool files are dropped when the journal is rewritten:
//! at start, and when it grows past [`COMPACT_AT`] or [`FORGOTTEN_AT`] finished files
//! wait to be dropped.

mod compact;
pub mod record;
mod recover;
mod store;
mod syncer;

pub use record::{FailedRcpt, Outcome, Record};
pub use recover::Recovered;

/// A `sent` record (the unit tests of the journal's files write many).
#[cfg(test)]
fn sent(f: &str, m: u32, r: Vec<usize>) -> Record {
    Record::Sent { f: f.into(), m, r }
}
pub use store::{
    Journal, JournalOptions, JournalWriter, NotWritten, PROBE_INTERVAL, SYNC_INTERVAL,
};

/// The journal is rewritten (finished files dropped) when it grows past this size.
pub const COMPACT_AT: u64 = 64 * 1024 * 1024;
/// ... or when this many finished files wait to be dropped: their names are kept in
/// memory until then, so memory stays bounded however small their records are.
pub const FORGOTTEN_AT: usize = 65_536;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::domain::Finished;

/// A spool file's key in the journal: its name and inode, so that a new file under an
/// old name is never mistaken for it.
pub fn file_key(name: &str, inode: u64) -> String {
    format!("{name}@{inode}")
}

/// What the journal knows of one mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailCheckpoint {
    pub delivered: BTreeSet<usize>,
    pub extended: BTreeSet<usize>,
    pub failed: BTreeMap<usize, FailedRcpt>,
    /// Sent the final "." for these, no result recorded: possibly delivered.
    pub in_doubt: BTreeSet<usize>,
    /// Possibly delivered before an earlier restart, and held (`PossiblyDelivered Hold`).
    pub held: BTreeSet<usize>,
    pub returned: bool,
    pub attempts: u32,
}

/// What the journal knows of one spool file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCheckpoint {
    pub mails: HashMap<u32, MailCheckpoint>,
}

impl FileCheckpoint {
    /// Applies one record (in journal order).
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::Sent { m, r, .. } => {
                let mail = self.mails.entry(*m).or_default();
                mail.in_doubt = r
                    .iter()
                    .copied()
                    .filter(|i| !mail.delivered.contains(i))
                    .collect();
            }
            Record::Result {
                m,
                o:
                    Outcome {
                        a,
                        d,
                        x,
                        retry,
                        u,
                        h,
                    },
                ..
            } => {
                let mail = self.mails.entry(*m).or_default();
                mail.attempts = mail.attempts.max(*a);
                mail.delivered.extend(d);
                mail.extended.extend(x);
                mail.held.extend(h);
                for f in u {
                    mail.failed.insert(f.i, f.clone());
                }
                let failed = u.iter().map(|f| &f.i);
                for i in d.iter().chain(x).chain(retry).chain(h).chain(failed) {
                    mail.in_doubt.remove(i);
                }
            }
            Record::Returned { m, .. } => self.mails.entry(*m).or_default().returned = true,
            Record::Start { .. } => {}
            // Held files come back only when released: afresh. (`deleted` and `removed`
            // only make what came before durable: the records say every recipient is
            // final.)
            Record::Done {
                disp: Finished::Held,
                ..
            } => *self = Self::default(),
            Record::Done { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_doubt_until_a_result_and_a_held_file_comes_back_afresh() {
        let f = || "F@1".to_string();
        let mut file = FileCheckpoint::default();
        file.apply(&Record::Sent {
            f: f(),
            m: 1,
            r: vec![0, 1, 2],
        });
        file.apply(&Record::Result {
            f: f(),
            m: 1,
            o: Outcome {
                a: 0,
                d: vec![0],
                retry: vec![1],
                ..Outcome::default()
            },
        });
        let mail = &file.mails[&1];
        assert_eq!(
            mail.in_doubt,
            [2].into(),
            "no result for 2: possibly delivered"
        );
        assert_eq!(mail.delivered, [0].into());
        // Sent again to the one to retry: the delivered one is not in doubt again.
        file.apply(&Record::Sent {
            f: f(),
            m: 1,
            r: vec![0, 1],
        });
        assert_eq!(file.mails[&1].in_doubt, [1].into());
        // Held after a restart: final, not in doubt again.
        file.apply(&Record::Result {
            f: f(),
            m: 1,
            o: Outcome {
                a: 0,
                h: vec![1],
                ..Outcome::default()
            },
        });
        assert!(file.mails[&1].in_doubt.is_empty());
        assert_eq!(file.mails[&1].held, [1].into());
        file.apply(&Record::Done {
            f: f(),
            disp: Finished::Held,
        });
        assert_eq!(
            file,
            FileCheckpoint::default(),
            "a released file is a new file"
        );
    }
}
