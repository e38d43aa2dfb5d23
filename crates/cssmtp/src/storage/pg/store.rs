//! The queue's state in the shared spool: the typed records the checkpoint journal
//! writes ([`crate::journal::Record`], as JSON), one row each in
//! `cssmtp_spool_record`, in order. Every write carries the file's fencing token and
//! is one statement that inserts only while the token is current
//! (`INSERT … SELECT … WHERE fence = $token FOR SHARE`: a claim raising the token waits
//! for it, or it sees the raised token and writes nothing). A write refused for a stale
//! token is reported as not written (CSM2601E), and the file's handle stays not
//! writable: no final "." goes out for it. A write that fails because the database
//! cannot be reached makes the store not writable (CSM2602W) until it answers again
//! (CSM2606I, probed every second: [`Health`]).

use std::collections::{HashSet, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};

use super::source::{Held, Leases};
use super::{Db, Health, io_err};
use crate::delivery::{DeliveryAck, NotRecorded};
use crate::journal::{FileCheckpoint, Outcome, Record};
use crate::storage::journal::{record_of, recovered};
use crate::storage::{Change, FileId, FileStore, Finished, RecoveredFile, StateStore};

/// The queue's state in the database.
pub struct PgStore {
    shared: Arc<Shared>,
    /// Files opened by this store (recovered once).
    opened: Mutex<HashSet<FileId>>,
}

struct Shared {
    db: Db,
    leases: Leases,
    health: Arc<Health>,
}

impl PgStore {
    pub fn new(db: Db, leases: Leases, health: Arc<Health>) -> Self {
        Self {
            shared: Arc::new(Shared { db, leases, health }),
            opened: Mutex::new(HashSet::new()),
        }
    }
}

/// What a write came to.
enum Written {
    Yes,
    /// The token is stale: another instance holds the file now.
    Refused,
    Failed(io::Error),
}

impl Shared {
    /// Writes one record (JSON) under `held`'s token, waiting for the answer.
    fn write(self: &Arc<Self>, held: Held, text: &str) -> Written {
        let text = text.to_owned();
        let db = self.db.clone();
        let result = self.db.block(async move {
            db.timed(async {
                let client = db.client().await?;
                client
                    .execute(
                        "INSERT INTO cssmtp_spool_record (file_id, record)
                         SELECT id, $3 FROM cssmtp_spool_file
                         WHERE id = $1 AND fence = $2 AND state = 'claimed' FOR SHARE",
                        &[&held.id, &held.fence, &text],
                    )
                    .await
                    .map_err(io_err)
            })
            .await
        });
        match result {
            Ok(1) => Written::Yes,
            Ok(_) => Written::Refused,
            Err(e) => {
                self.health.unreachable(&e);
                Written::Failed(e)
            }
        }
    }
}

impl StateStore for PgStore {
    fn open(&self, file: &FileId) -> (RecoveredFile, Arc<dyn FileStore>) {
        let held = self.shared.leases.get(file);
        let first = self
            .opened
            .lock()
            .map(|mut o| o.insert(file.clone()))
            .unwrap_or(false);
        let mut known = FileCheckpoint::default();
        if let (Some(held), true) = (held, first) {
            let db = self.shared.db.clone();
            let rows = self.shared.db.block(async move {
                let client = db.client().await?;
                let rows = client
                    .query(
                        "SELECT record FROM cssmtp_spool_record WHERE file_id = $1 ORDER BY seq",
                        &[&held.id],
                    )
                    .await
                    .map_err(io_err)?;
                Ok(rows
                    .iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>())
            });
            match rows {
                Ok(rows) => {
                    for row in rows {
                        match serde_json::from_str::<Record>(&row) {
                            Ok(record) => known.apply(&record),
                            Err(e) => tracing::warn!(
                                "CSM2607W A recorded state of spool file {file} cannot be read ({e}); its recipients are treated as not yet final"
                            ),
                        }
                    }
                }
                Err(e) => {
                    // Unknown: the file is sent as if new (never lost), and said.
                    tracing::warn!(
                        "CSM2607W The recorded state of spool file {file} cannot be read ({e}); its recipients are treated as not yet final"
                    );
                    self.shared.health.unreachable(&e);
                }
            }
        }
        let recovered = known
            .mails
            .into_iter()
            .map(|(m, mail)| (m, recovered(mail)))
            .collect();
        let (tx, _) = watch::channel(self.shared.health.is_writable());
        let rec = Arc::new(Recorder {
            shared: Arc::clone(&self.shared),
            held,
            id: file.clone(),
            lost: AtomicBool::new(held.is_none()),
            pending: Mutex::new(VecDeque::new()),
            writable: tx,
        });
        rec.follow();
        (recovered, Arc::new(PgFile { rec }))
    }

    fn is_writable(&self) -> bool {
        self.shared.health.is_writable()
    }

    fn writable(&self) -> watch::Receiver<bool> {
        self.shared.health.subscribe()
    }
}

/// One claimed file's records, in order: written under its lease, each before it
/// returns. A record the database could not take (it is away) is kept, in order, and
/// written before the next one, or as soon as the database answers again: results that
/// came while it was away are recorded when it is back (a `sent` record, needed before
/// a final ".", is never kept: the "." then does not go out).
struct Recorder {
    shared: Arc<Shared>,
    /// Its lease (None: not claimed by this instance: nothing is written).
    held: Option<Held>,
    id: FileId,
    /// Its lease was lost: nothing more is written.
    lost: AtomicBool,
    /// Records not yet written, oldest first (JSON).
    pending: Mutex<VecDeque<String>>,
    writable: watch::Sender<bool>,
}

/// Records kept for one file while the database is away, at most (beyond, the oldest
/// are dropped: their recipients are treated as not final, never lost).
const MAX_PENDING: usize = 100_000;

impl Recorder {
    /// The file's writability follows the store's, until its lease is lost; when the
    /// store can be written again, what was kept is written.
    fn follow(self: &Arc<Self>) {
        if self.lost.load(Ordering::SeqCst) {
            self.writable.send_replace(false);
            return;
        }
        let mut store = self.shared.health.subscribe();
        let weak = Arc::downgrade(self);
        self.shared.db.spawn(async move {
            while store.changed().await.is_ok() {
                let Some(rec) = weak.upgrade() else { return };
                let now = *store.borrow_and_update() && !rec.lost.load(Ordering::SeqCst);
                if now {
                    let flushing = Arc::clone(&rec);
                    let _ = tokio::task::spawn_blocking(move || flushing.write_kept()).await;
                }
                rec.writable.send_replace(now);
            }
        });
    }

    /// Writes what was kept; true when nothing is left.
    fn write_kept(&self) -> bool {
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.flush(&mut pending).is_ok()
    }

    fn flush(&self, pending: &mut VecDeque<String>) -> Result<(), String> {
        while let Some(text) = pending.front() {
            self.write_text(text)?;
            pending.pop_front();
        }
        Ok(())
    }

    fn write_text(&self, text: &str) -> Result<(), String> {
        let held = (self.held)
            .filter(|_| !self.lost.load(Ordering::SeqCst))
            .ok_or_else(|| "this instance no longer holds the spool file".to_owned())?;
        match self.shared.write(held, text) {
            Written::Yes => Ok(()),
            Written::Refused => {
                if !self.lost.swap(true, Ordering::SeqCst) {
                    tracing::error!(
                        "CSM2601E Spool file {}: another instance holds it now (this instance's lease expired); nothing more is recorded or sent from it here",
                        self.id
                    );
                    self.shared.leases.release(&self.id, held);
                }
                self.writable.send_replace(false);
                Err("another instance holds the spool file now (the lease expired)".into())
            }
            Written::Failed(e) => Err(format!("the spool database cannot be written: {e}")),
        }
    }

    /// Writes `record` after what was kept; `keep`: kept for later when it cannot be
    /// written now.
    fn write(&self, record: &Record, keep: bool) -> Result<(), String> {
        let text = serde_json::to_string(record).map_err(|e| e.to_string())?;
        let mut pending = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = self
            .flush(&mut pending)
            .and_then(|()| self.write_text(&text));
        if result.is_err() {
            if self.lost.load(Ordering::SeqCst) {
                pending.clear();
            } else if keep {
                if pending.len() >= MAX_PENDING {
                    pending.pop_front();
                }
                pending.push_back(text);
            }
        }
        result
    }
}

/// One claimed file's state.
struct PgFile {
    rec: Arc<Recorder>,
}

impl PgFile {
    fn key(&self) -> String {
        self.rec.id.to_string()
    }
}

impl FileStore for PgFile {
    fn is_lost(&self) -> bool {
        self.rec.lost.load(Ordering::SeqCst)
    }

    fn record(&self, change: &Change) -> bool {
        self.rec.write(&record_of(self.key(), change), true).is_ok()
    }

    fn ack(&self, mail: u32) -> Arc<dyn DeliveryAck> {
        Arc::new(PgAck {
            rec: Arc::clone(&self.rec),
            mail,
        })
    }

    fn is_writable(&self) -> bool {
        *self.rec.writable.borrow()
    }

    fn writable(&self) -> watch::Receiver<bool> {
        self.rec.writable.subscribe()
    }

    fn finished(&self, how: Finished) {
        let _ = self.rec.write(
            &Record::Done {
                f: self.key(),
                disp: how,
            },
            true,
        );
    }

    fn id(&self) -> &FileId {
        &self.rec.id
    }
}

/// One mail's acknowledgements: `sent` before its final ".", `result` after the reply,
/// each written (under the lease) before it returns.
struct PgAck {
    rec: Arc<Recorder>,
    mail: u32,
}

impl DeliveryAck for PgAck {
    fn before_dot(&self, rcpts: &[usize]) -> Result<Option<oneshot::Receiver<()>>, NotRecorded> {
        self.rec
            .write(
                &Record::Sent {
                    f: self.rec.id.to_string(),
                    m: self.mail,
                    r: rcpts.to_vec(),
                },
                false,
            )
            .map(|()| None)
            .map_err(NotRecorded)
    }

    fn after_dot(&self, rcpts: &[usize], delivered: bool) {
        let (d, retry) = if delivered {
            (rcpts.to_vec(), Vec::new())
        } else {
            (Vec::new(), rcpts.to_vec())
        };
        // Kept while the database is away, written when it is back; with the lease lost,
        // the recipients stay in doubt and the new holder flags them.
        let _ = self.rec.write(
            &Record::Result {
                f: self.rec.id.to_string(),
                m: self.mail,
                o: Outcome {
                    d,
                    retry,
                    ..Outcome::default()
                },
            },
            true,
        );
    }
}
