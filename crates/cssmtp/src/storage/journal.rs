//! The checkpoint journal as the [`StateStore`]: typed [`Change`]s and the session's
//! acknowledgements become journal records here, and nowhere else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};

use super::{FileId, FileStore, Finished, RecoveredFile, StateStore};
use crate::delivery::{DeliveryAck, NotRecorded};
use crate::journal::{FailedRcpt, FileCheckpoint, Journal, MailCheckpoint, Outcome, Record};
use crate::notify::FailedRecipient;
use crate::queue::state::{Change, Recovered, RecoveredFailure};

/// The checkpoint journal, and what it knew at start of the files left claimed.
pub struct JournalStore {
    journal: Journal,
    recovered: Mutex<HashMap<String, FileCheckpoint>>,
}

impl JournalStore {
    pub fn new(journal: Journal, recovered: HashMap<String, FileCheckpoint>) -> Self {
        Self {
            journal,
            recovered: Mutex::new(recovered),
        }
    }
}

impl StateStore for JournalStore {
    fn open(&self, file: &FileId) -> (RecoveredFile, Arc<dyn FileStore>) {
        let known = self
            .recovered
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(file.as_str())
            .unwrap_or_default();
        let recovered = known
            .mails
            .into_iter()
            .map(|(m, mail)| (m, recovered(mail)))
            .collect();
        let store = FileJournal {
            journal: self.journal.clone(),
            key: Arc::from(file.as_str()),
            id: file.clone(),
        };
        (recovered, Arc::new(store))
    }

    fn is_writable(&self) -> bool {
        self.journal.is_writable()
    }

    fn writable(&self) -> watch::Receiver<bool> {
        self.journal.writable()
    }
}

/// One spool file's records in the checkpoint journal.
struct FileJournal {
    journal: Journal,
    /// The file's key in the journal.
    key: Arc<str>,
    id: FileId,
}

impl FileStore for FileJournal {
    fn record(&self, change: &Change) -> bool {
        self.journal
            .append(&record_of(self.key.to_string(), change))
    }

    fn is_writable(&self) -> bool {
        self.journal.is_writable()
    }

    fn writable(&self) -> watch::Receiver<bool> {
        self.journal.writable()
    }

    fn ack(&self, mail: u32) -> Arc<dyn DeliveryAck> {
        Arc::new(MailAck {
            journal: self.journal.clone(),
            key: Arc::clone(&self.key),
            mail,
        })
    }

    fn finished(&self, how: Finished) {
        self.journal.append(&Record::Done {
            f: self.key.to_string(),
            disp: how,
        });
        if how == Finished::Held {
            // Deleted and removed files are forgotten by the reaper, once they are gone.
            self.journal.forget(&self.key);
        }
    }

    fn id(&self) -> &FileId {
        &self.id
    }
}

/// The journal records of one mail's transactions: `sent` before its final ".",
/// `result` right after the reply.
struct MailAck {
    journal: Journal,
    key: Arc<str>,
    mail: u32,
}

impl DeliveryAck for MailAck {
    fn before_dot(&self, rcpts: &[usize]) -> Result<Option<oneshot::Receiver<()>>, NotRecorded> {
        self.journal
            .append_before_dot(&Record::Sent {
                f: self.key.to_string(),
                m: self.mail,
                r: rcpts.to_vec(),
            })
            .map_err(|e| NotRecorded(e.to_string()))
    }

    fn after_dot(&self, rcpts: &[usize], delivered: bool) {
        // No longer in doubt: delivered, or to be sent again (as any mail whose reply
        // never came, RFC 5321 6.1).
        let (d, retry) = if delivered {
            (rcpts.to_vec(), Vec::new())
        } else {
            (Vec::new(), rcpts.to_vec())
        };
        self.journal.append(&Record::Result {
            f: self.key.to_string(),
            m: self.mail,
            o: Outcome {
                d,
                retry,
                ..Outcome::default()
            },
        });
    }
}

/// A change of state as the journal's record of it (`f`: the file's key).
pub(crate) fn record_of(f: String, change: &Change) -> Record {
    match change {
        Change::Attempted {
            mail,
            attempts,
            retry,
            failed,
        } => Record::Result {
            f,
            m: *mail,
            o: Outcome {
                a: *attempts,
                retry: retry.clone(),
                u: failed.iter().map(|(i, r)| failed_rcpt(*i, r)).collect(),
                ..Outcome::default()
            },
        },
        Change::Parked {
            mail,
            attempts,
            rcpts,
        } => Record::Result {
            f,
            m: *mail,
            o: Outcome {
                a: *attempts,
                x: rcpts.clone(),
                ..Outcome::default()
            },
        },
        Change::HeldInDoubt {
            mail,
            attempts,
            rcpts,
        } => Record::Result {
            f,
            m: *mail,
            o: Outcome {
                a: *attempts,
                h: rcpts.clone(),
                ..Outcome::default()
            },
        },
        Change::Returned { mail } => Record::Returned { f, m: *mail },
    }
}

/// What the journal knew of a mail, for the queue.
pub(crate) fn recovered(known: MailCheckpoint) -> Recovered {
    Recovered {
        attempts: known.attempts,
        returned: known.returned,
        delivered: known.delivered,
        parked: known.extended,
        held: known.held,
        failed: known
            .failed
            .into_iter()
            .map(|(i, f)| {
                (
                    i,
                    RecoveredFailure {
                        status: f.status,
                        diagnostic: f.diagnostic,
                        remote: f.remote,
                        reason: f.reason,
                    },
                )
            })
            .collect(),
        in_doubt: known.in_doubt,
    }
}

/// A failed recipient as the journal keeps it.
fn failed_rcpt(i: usize, f: &FailedRecipient) -> FailedRcpt {
    FailedRcpt {
        i,
        status: f.status,
        diagnostic: f.diagnostic.clone(),
        remote: f.remote_mta,
        reason: f.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::journal::{JournalOptions, JournalWriter};
    use crate::storage::conformance::{self, Harness};

    /// The journal in a temporary directory, started again on the same file.
    struct Dir {
        dir: tempfile::TempDir,
        writer: Option<JournalWriter>,
    }

    impl Harness for Dir {
        type Store = JournalStore;

        async fn start(&mut self, claimed: &[FileId]) -> JournalStore {
            let live: HashSet<String> = claimed.iter().map(|f| f.as_str().to_owned()).collect();
            let path = self.dir.path().join("W.journal");
            let (journal, recovered, writer) =
                Journal::open(&path, &live, JournalOptions::default()).expect("journal opens");
            self.writer = Some(writer);
            JournalStore::new(journal, recovered.files)
        }

        async fn crash(&mut self, store: JournalStore) {
            drop(store);
            if let Some(writer) = self.writer.take() {
                tokio::task::spawn_blocking(move || writer.join())
                    .await
                    .expect("the syncer ends");
            }
        }
    }

    #[tokio::test]
    async fn the_journal_passes_the_storage_conformance_suite() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        conformance::run(Dir { dir, writer: None }).await;
    }
}
