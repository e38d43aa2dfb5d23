//! The shared spool's claiming side: waiting files listed by writer, each claimed by a
//! lease (one statement: `UPDATE … WHERE id = (SELECT … FOR UPDATE SKIP LOCKED)`, which
//! sets `lease_owner`, `lease_until` and raises the fencing token `fence`), opened by
//! streaming its text into an unlinked temporary file.
//!
//! A file whose lease expired (its instance died, or lost the database) is listed as
//! waiting again, and taken over by whichever instance claims it next, with a higher
//! fencing token: from then on the old holder's writes are refused.

use std::collections::HashMap;
use std::io::{self, Seek, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::{Db, Health, io_err};
use crate::spool::layout::{OpenError, Opened};
use crate::storage::source::SpoolSource;
use crate::storage::{FileId, Pending};

/// Files remembered from one listing.
const LISTING: i64 = 16_384;

/// The leases this instance holds, by file: renewed together by a timer.
#[derive(Clone, Default)]
pub struct Leases {
    held: Arc<Mutex<HashMap<FileId, Held>>>,
}

/// One lease held: the file's row and fencing token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub id: i64,
    pub fence: i64,
}

impl Leases {
    /// Takes note of a lease (the store's writes for `file` carry its token).
    pub fn hold(&self, file: FileId, held: Held) {
        if let Ok(mut h) = self.held.lock() {
            h.insert(file, held);
        }
    }

    /// The lease on `file`, when held.
    pub fn get(&self, file: &FileId) -> Option<Held> {
        self.held.lock().ok().and_then(|h| h.get(file).copied())
    }

    /// The lease on `file` is given up (finished, or lost).
    pub fn release(&self, file: &FileId, held: Held) {
        if let Ok(mut h) = self.held.lock()
            && h.get(file) == Some(&held)
        {
            h.remove(file);
        }
    }

    fn all(&self) -> Vec<(FileId, Held)> {
        (self.held.lock().ok())
            .map(|h| h.iter().map(|(f, l)| (f.clone(), *l)).collect())
            .unwrap_or_default()
    }

    /// Renews every lease held every third of `lease`, until the registry is dropped;
    /// a lease found lost is forgotten (CSM2603W).
    pub fn renew_every(&self, db: &Db, owner: String, lease: Duration) {
        let weak: Weak<Mutex<HashMap<FileId, Held>>> = Arc::downgrade(&self.held);
        let db2 = db.clone();
        db.spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                let Some(held) = weak.upgrade() else { return };
                let leases = Leases { held };
                let all = leases.all();
                if all.is_empty() {
                    continue;
                }
                match renew(&db2, &owner, lease, &all).await {
                    Ok(kept) => {
                        for (file, h) in &all {
                            if !kept.contains(&h.id) {
                                tracing::warn!(
                                    "CSM2603W The lease on spool file {file} was lost (it expired and another instance took the file over): this instance writes nothing more of it"
                                );
                                leases.release(file, *h);
                            }
                        }
                    }
                    Err(e) => tracing::warn!(
                        "CSM2604W The leases on {} spool file(s) cannot be renewed now: {e}",
                        all.len()
                    ),
                }
            }
        });
    }
}

/// Renews leases; returns the rows still held.
async fn renew(
    db: &Db,
    owner: &str,
    lease: Duration,
    all: &[(FileId, Held)],
) -> io::Result<Vec<i64>> {
    let ids: Vec<i64> = all.iter().map(|(_, h)| h.id).collect();
    let fences: Vec<i64> = all.iter().map(|(_, h)| h.fence).collect();
    db.timed(async {
        let client = db.client().await?;
        let rows = client
            .query(
                "UPDATE cssmtp_spool_file f SET lease_until = now() + make_interval(secs => $4)
                 FROM unnest($1::bigint[], $2::bigint[]) AS h(id, fence)
                 WHERE f.id = h.id AND f.fence = h.fence AND f.lease_owner = $3 AND f.state = 'claimed'
                 RETURNING f.id",
                &[&ids, &fences, &owner, &lease.as_secs_f64()],
            )
            .await
            .map_err(io_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
    .await
}

/// A file waiting in the database.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i64,
    pub name: String,
}

/// A claimed file: its row, name and fencing token.
#[derive(Debug, Clone)]
pub struct Lease {
    pub held: Held,
    pub name: String,
}

impl Lease {
    /// The file's identity in storage: its name and row.
    pub fn file_id(&self) -> FileId {
        file_id(&self.name, self.held.id)
    }
}

/// A file's identity: its (escaped) name and its row.
pub fn file_id(name: &str, id: i64) -> FileId {
    FileId::new(&format!(
        "{}@db{id}",
        crate::escape::name(std::ffi::OsStr::new(name))
    ))
}

/// The shared spool of one writer.
pub struct PgSource {
    db: Db,
    health: Arc<Health>,
    writer: String,
    owner: String,
    lease: Duration,
    leases: Leases,
    /// Where opened files' text is copied (unlinked at once).
    scratch: PathBuf,
}

impl PgSource {
    pub fn new(
        db: Db,
        health: Arc<Health>,
        writer: String,
        owner: String,
        lease: Duration,
        leases: Leases,
        scratch: PathBuf,
    ) -> Self {
        Self {
            db,
            health,
            writer,
            owner,
            lease,
            leases,
            scratch,
        }
    }

    fn register(&self, lease: &Lease) {
        self.leases.hold(lease.file_id(), lease.held);
    }
}

impl SpoolSource for PgSource {
    type Candidate = Candidate;
    type Claim = Lease;

    fn left_claimed(&self) -> Pending<'_, io::Result<Vec<Lease>>> {
        Box::pin(async move {
            let (db, writer, owner, secs) = (
                self.db.clone(),
                self.writer.clone(),
                self.owner.clone(),
                self.lease.as_secs_f64(),
            );
            let left = self
                .db
                .run(async move {
                    let client = db.client().await?;
                    let rows = client
                        .query(
                            "UPDATE cssmtp_spool_file SET lease_owner = $2,
                                 lease_until = now() + make_interval(secs => $3), fence = fence + 1
                             WHERE id IN (SELECT id FROM cssmtp_spool_file
                                 WHERE writer = $1 AND state = 'claimed' AND lease_owner = $2
                                 FOR UPDATE SKIP LOCKED)
                             RETURNING id, fence, name",
                            &[&writer, &owner, &secs],
                        )
                        .await
                        .map_err(io_err)?;
                    Ok(rows
                        .iter()
                        .map(|r| Lease {
                            held: Held {
                                id: r.get(0),
                                fence: r.get(1),
                            },
                            name: r.get(2),
                        })
                        .collect::<Vec<_>>())
                })
                .await;
            // The database away: nothing now; this instance's files come back as
            // waiting once their leases expire (never lost).
            let mut left = match left {
                Ok(left) => left,
                Err(e) => {
                    self.health.unreachable(&e);
                    Vec::new()
                }
            };
            left.sort_by_key(|l| l.held.id);
            for l in &left {
                self.register(l);
            }
            Ok(left)
        })
    }

    fn waiting(&self) -> Pending<'_, io::Result<Vec<Candidate>>> {
        let (db, writer) = (self.db.clone(), self.writer.clone());
        let listed = self.db.run(async move {
            let client = db.client().await?;
            // Newest first: a stack, the oldest popped first.
            let rows = client
                .query(
                    "SELECT id, name FROM cssmtp_spool_file
                     WHERE writer = $1 AND ready
                       AND (state = 'waiting' OR (state = 'claimed' AND lease_until < now()))
                     ORDER BY id DESC LIMIT $2",
                    &[&writer, &LISTING],
                )
                .await
                .map_err(io_err)?;
            Ok(rows
                .iter()
                .map(|r| Candidate {
                    id: r.get(0),
                    name: r.get(1),
                })
                .collect())
        });
        Box::pin(async move {
            // The database away: nothing waits for now (intake is paused until it is
            // back, and lists again then).
            Ok(listed.await.unwrap_or_else(|e| {
                self.health.unreachable(&e);
                Vec::new()
            }))
        })
    }

    fn claim(&self, candidate: &Candidate) -> io::Result<Option<Lease>> {
        let (db, owner, secs, id) = (
            self.db.clone(),
            self.owner.clone(),
            self.lease.as_secs_f64(),
            candidate.id,
        );
        let claimed = self.db.block(async move {
            let client = db.client().await?;
            let row = client
                .query_opt(
                    "UPDATE cssmtp_spool_file SET state = 'claimed', lease_owner = $2,
                         lease_until = now() + make_interval(secs => $3), fence = fence + 1
                     WHERE id = (SELECT id FROM cssmtp_spool_file WHERE id = $1 AND ready
                         AND (state = 'waiting' OR (state = 'claimed' AND lease_until < now()))
                         FOR UPDATE SKIP LOCKED)
                     RETURNING fence, name",
                    &[&id, &owner, &secs],
                )
                .await
                .map_err(io_err)?;
            Ok(row.map(|r| Lease {
                held: Held {
                    id,
                    fence: r.get(0),
                },
                name: r.get(1),
            }))
        })?;
        if let Some(l) = &claimed {
            self.register(l);
        }
        Ok(claimed)
    }

    fn open(&self, claim: &Lease) -> Result<Opened, OpenError> {
        let (db, held) = (self.db.clone(), claim.held);
        let file = tempfile::tempfile_in(&self.scratch)?;
        let mut copy = file.try_clone()?;
        let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lost2 = Arc::clone(&lost);
        let copied = self.db.block(async move {
            let client = db.client().await?;
            let ours = client
                .query_opt(
                    "SELECT 1 FROM cssmtp_spool_file WHERE id = $1 AND fence = $2",
                    &[&held.id, &held.fence],
                )
                .await
                .map_err(io_err)?;
            if ours.is_none() {
                lost2.store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(io::Error::other("another instance holds it now"));
            }
            // A chunk at a time: memory stays bounded whatever the file's size.
            let mut next = 0i32;
            let mut size = 0u64;
            while let Some(row) = client
                .query_opt(
                    "SELECT seq, data FROM cssmtp_spool_chunk WHERE file_id = $1 AND seq >= $2
                     ORDER BY seq LIMIT 1",
                    &[&held.id, &next],
                )
                .await
                .map_err(io_err)?
            {
                let seq: i32 = row.get(0);
                let data: &[u8] = row.get(1);
                size += data.len() as u64;
                if size > super::MAX_FILE {
                    return Err(io::Error::other(format!(
                        "it is larger than {} bytes",
                        super::MAX_FILE
                    )));
                }
                copy.write_all(data)?;
                next = seq.saturating_add(1);
                if seq == i32::MAX {
                    break;
                }
            }
            copy.flush()?;
            Ok(())
        });
        if let Err(e) = copied {
            if lost.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(OpenError::Refused(e.to_string()));
            }
            self.health.unreachable(&e);
            return Err(OpenError::NotNow(e));
        }
        let mut reader = file.try_clone()?;
        reader.rewind()?;
        let meta = file.metadata()?;
        let name = crate::escape::name(std::ffi::OsStr::new(&claim.name));
        Ok(Opened {
            path: PathBuf::from(format!("{}/{}", self.writer, claim.name)),
            id: claim.file_id(),
            name,
            file,
            reader,
            meta,
        })
    }

    fn set_aside(&self, claim: Lease, why: String) -> Pending<'_, ()> {
        Box::pin(async move {
            let text = format!(
                "Spool file {} was not read: {why}.\n",
                crate::escape::name(std::ffi::OsStr::new(&claim.name))
            );
            if let Err(e) = hold_row(&self.db, &self.writer, &claim, text.into_bytes()).await {
                tracing::warn!(
                    "CSM2605W Spool file {} is not taken here: {why} ({e})",
                    claim.file_id()
                );
            }
            self.leases.release(&claim.file_id(), claim.held);
        })
    }

    fn renew(&self, claim: &Lease) -> bool {
        let (db, owner, lease) = (self.db.clone(), self.owner.clone(), self.lease);
        let all = vec![(claim.file_id(), claim.held)];
        match self
            .db
            .block(async move { renew(&db, &owner, lease, &all).await })
        {
            Ok(kept) if kept.contains(&claim.held.id) => true,
            Ok(_) => {
                self.leases.release(&claim.file_id(), claim.held);
                false
            }
            // Not renewed now; it may still be held (the timer tries again).
            Err(_) => false,
        }
    }
}

/// Holds a claimed file's row (under its token) with `report` beside it.
///
/// # Errors
/// The database cannot be written, or the lease was lost.
pub async fn hold_row(db: &Db, writer: &str, lease: &Lease, report: Vec<u8>) -> io::Result<()> {
    let (db2, writer, held, name) = (
        db.clone(),
        writer.to_owned(),
        lease.held,
        lease.name.clone(),
    );
    db.run(async move {
        let client = db2.client().await?;
        let n = client
            .execute(
                "UPDATE cssmtp_spool_file SET state = 'held', lease_owner = NULL, lease_until = NULL
                 WHERE id = $1 AND fence = $2 AND state = 'claimed'",
                &[&held.id, &held.fence],
            )
            .await
            .map_err(io_err)?;
        if n == 0 {
            return Err(io::Error::other("another instance holds it now"));
        }
        if !report.is_empty() {
            client
                .execute(
                    "INSERT INTO cssmtp_held (writer, name, kind, data) VALUES ($1, $2, 'report', $3)",
                    &[&writer, &name, &report],
                )
                .await
                .map_err(io_err)?;
        }
        Ok(())
    })
    .await
}
