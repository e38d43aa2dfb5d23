//! Parked mail (extended retry) in the shared spool, driven by the cluster: a
//! [`ParkedStore`] on `cssmtp_parked` (schema version 2).
//!
//! A mail is parked ([`park`], from [`super::claim::PgClaim`]) as one row with its copy
//! in `cssmtp_parked_chunk`, in the MailDirectory's own batch-SMTP format
//! ([`crate::retry::extended`]), in one transaction. Every instance serving the writer
//! lists the writer's parked mail (at start, and again every [`RELIST`]), so that mail
//! parked by an instance that died is driven by the others.
//!
//! **A turn is leased.** Reading a mail back for its turn takes its lease (one
//! statement: `lease_owner`, `lease_until`, and the fencing token `fence` raised), when
//! nobody else holds it; a mail leased by another instance reads as
//! [`ParkedRead::Busy`]. The lease is renewed while the turn lasts (every third of
//! `SpoolDatabaseLease`), and after the turn it stays with the instance until the next
//! turn is due (`tried` + `Interval`): exactly one instance gives each turn, and the
//! others take the mail over only once its holder let a turn pass (it died, or lost
//! the database). The turn's outcome (the recipients kept, the time of the turn) and
//! the removal carry the token: a holder whose lease expired changes nothing.

use std::collections::HashMap;
use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;

use super::{CHUNK, Db, io_err};
use crate::notify::deadletter::FullMail;
use crate::retry::extended::{self, Meta};
use crate::storage::parked::{Parked, ParkedId, ParkedRead, ParkedStore};
use crate::storage::{MailCopy, Pending};

/// How often the parked mail of the writer is listed again.
pub const RELIST: Duration = Duration::from_secs(60);

/// The prefix of a parked mail's id (its row follows).
const PREFIX: &str = "cssmtp_parked/";

/// The parked mail of one writer in the database.
pub struct PgParked {
    db: Db,
    writer: String,
    /// This instance's name in leases.
    owner: String,
    lease: Duration,
    /// ExtendedRetry's Interval: a lease stays this long after a turn.
    interval: Duration,
    /// Where copies are read back (unlinked temporary files).
    scratch: PathBuf,
    /// This host's name (in rewritten copies' heads).
    host: String,
    /// Turns in progress: row → fencing token.
    turns: Arc<Mutex<HashMap<i64, i64>>>,
}

/// A parked mail's id in the database.
pub fn parked_id(row: i64) -> ParkedId {
    ParkedId::new(format!("{PREFIX}{row}"))
}

fn row_of(id: &ParkedId) -> Option<i64> {
    id.as_os_str().to_str()?.strip_prefix(PREFIX)?.parse().ok()
}

fn stale() -> io::Error {
    io::Error::other("another instance gives this mail its turns now (its lease was lost)")
}

/// Writes `head`, `text` and the transaction's tail into an unlinked temporary file in
/// `scratch`: a parked mail's copy, the text copied a chunk at a time.
async fn copy_file(
    scratch: &std::path::Path,
    head: Vec<u8>,
    text: &FullMail,
) -> io::Result<std::fs::File> {
    let file = tempfile::tempfile_in(scratch)?;
    let mut writing = tokio::fs::File::from_std(file.try_clone()?);
    writing.write_all(&head).await?;
    let ended = text.copy_to(&mut writing).await?;
    let mut tail = Vec::new();
    cssmtp_batch::write::transaction_tail(&mut tail, ended);
    writing.write_all(&tail).await?;
    writing.flush().await?;
    Ok(file)
}

/// Inserts `file`'s content as the chunks of parked mail `row`, in `tx`.
async fn insert_chunks(
    tx: &tokio_postgres::Transaction<'_>,
    row: i64,
    mut file: std::fs::File,
) -> io::Result<()> {
    file.rewind()?;
    let insert = tx
        .prepare("INSERT INTO cssmtp_parked_chunk (parked_id, seq, data) VALUES ($1, $2, $3)")
        .await
        .map_err(io_err)?;
    let mut buf = vec![0u8; CHUNK];
    let mut seq = 0i32;
    loop {
        // Fill a whole chunk (a read may return less).
        let mut filled = 0;
        while filled < buf.len() {
            let Some(rest) = buf.get_mut(filled..) else {
                break;
            };
            let n = file.read(rest)?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(());
        }
        let data = buf.get(..filled).unwrap_or_default();
        tx.execute(&insert, &[&row, &seq, &data])
            .await
            .map_err(io_err)?;
        seq = seq
            .checked_add(1)
            .ok_or_else(|| io::Error::other("too many chunks"))?;
    }
}

/// Parks a mail of a claimed file of `writer` for `copy.rcpts`: its row and its copy
/// in one transaction (on a connection of its own), leased to `owner` until its first
/// turn; returns its id.
///
/// # Errors
/// The copy cannot be written or the database cannot be: nothing is parked.
pub async fn park(
    db: &Db,
    writer: &str,
    owner: &str,
    host: &str,
    interval: Duration,
    scratch: &std::path::Path,
    copy: &MailCopy<'_>,
) -> io::Result<ParkedId> {
    let meta = Meta {
        spool_file: copy.job.file_name.clone(),
        job_name: copy.job.job_name.clone(),
        job_id: copy.job.job_id.clone(),
        mail: copy.mail,
        line: copy.line,
        first_attempt: copy.first_attempt,
        rcpt_lines: copy.rcpts.iter().map(|(_, line)| *line).collect(),
    };
    let rcpts: Vec<String> = copy.rcpts.iter().map(|(a, _)| a.clone()).collect();
    let head = extended::mail_file_head(host, &meta, copy.needs_tls, copy.reverse_path, &rcpts);
    let file = copy_file(scratch, head, copy.text).await?;
    let (writer, owner, config) = (writer.to_owned(), owner.to_owned(), db.config());
    let mail = i32::try_from(meta.mail).unwrap_or(i32::MAX);
    let secs = interval.as_secs_f64();
    let row = db
        .run(async move {
            let (mut client, conn) = super::connect(&config).await?;
            let result = async {
                let tx = client.transaction().await.map_err(io_err)?;
                let row: i64 = tx
                    .query_one(
                        "INSERT INTO cssmtp_parked (writer, spool_file, job_name, job_id, mail,
                             parked_by, first_attempt, lease_owner, lease_until)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $6, now() + make_interval(secs => $8))
                         RETURNING id",
                        &[
                            &writer,
                            &meta.spool_file,
                            &meta.job_name,
                            &meta.job_id,
                            &mail,
                            &owner,
                            &meta.first_attempt,
                            &secs,
                        ],
                    )
                    .await
                    .map_err(io_err)?
                    .get(0);
                insert_chunks(&tx, row, file).await?;
                tx.commit().await.map_err(io_err)?;
                Ok(row)
            }
            .await;
            drop(client);
            let _ = conn.await;
            result
        })
        .await?;
    Ok(parked_id(row))
}

/// How long a finished parked mail's removal is tried again while the database is
/// away (seconds).
const REMOVE_TRIES: u32 = 600;

/// Removes parked mail `row` under its token; the rows removed.
async fn delete_parked(db: &Db, row: i64, fence: i64) -> io::Result<u64> {
    let db2 = db.clone();
    db.run(async move {
        db2.timed(async {
            db2.client()
                .await?
                .execute(
                    "DELETE FROM cssmtp_parked WHERE id = $1 AND fence = $2",
                    &[&row, &fence],
                )
                .await
                .map_err(io_err)
        })
        .await
    })
    .await
}

impl PgParked {
    pub fn new(
        db: Db,
        writer: String,
        owner: String,
        lease: Duration,
        interval: Duration,
        scratch: PathBuf,
        host: String,
    ) -> Self {
        let store = Self {
            db,
            writer,
            owner,
            lease,
            interval,
            scratch,
            host,
            turns: Arc::default(),
        };
        store.renew_turns();
        store
    }

    /// Renews the leases of the turns in progress every third of the lease, until the
    /// store is dropped.
    fn renew_turns(&self) {
        let weak: Weak<Mutex<HashMap<i64, i64>>> = Arc::downgrade(&self.turns);
        let (db, owner, lease) = (self.db.clone(), self.owner.clone(), self.lease);
        self.db.spawn(async move {
            let every = (lease / 3).max(Duration::from_millis(100));
            loop {
                tokio::time::sleep(every).await;
                let Some(turns) = weak.upgrade() else { return };
                let (ids, fences): (Vec<i64>, Vec<i64>) = (turns.lock().ok())
                    .map(|t| t.iter().map(|(r, f)| (*r, *f)).unzip())
                    .unwrap_or_default();
                drop(turns);
                if ids.is_empty() {
                    continue;
                }
                let renewed = db
                    .timed(async {
                        db.client()
                            .await?
                            .execute(
                                "UPDATE cssmtp_parked p SET lease_until = now() + make_interval(secs => $4)
                                 FROM unnest($1::bigint[], $2::bigint[]) AS h(id, fence)
                                 WHERE p.id = h.id AND p.fence = h.fence AND p.lease_owner = $3",
                                &[&ids, &fences, &owner, &lease.as_secs_f64()],
                            )
                            .await
                            .map_err(io_err)
                    })
                    .await;
                if let Err(e) = renewed {
                    tracing::warn!(
                        "CSM2604W The leases on {} parked mail(s) cannot be renewed now: {e}",
                        ids.len()
                    );
                }
            }
        });
    }

    fn turn(&self, row: i64) -> Option<i64> {
        self.turns.lock().ok()?.get(&row).copied()
    }

    fn end_turn(&self, row: i64) {
        if let Ok(mut t) = self.turns.lock() {
            t.remove(&row);
        }
    }

    /// Takes the lease of parked mail `row` for a turn: its token, or why not.
    async fn take(&self, row: i64) -> io::Result<Option<(i64, SystemTime)>> {
        let (db, owner, secs) = (
            self.db.clone(),
            self.owner.clone(),
            self.lease.as_secs_f64(),
        );
        self.db
            .run(async move {
                db.timed(async {
                    let client = db.client().await?;
                    let taken = client
                        .query_opt(
                            "UPDATE cssmtp_parked SET lease_owner = $2,
                                 lease_until = now() + make_interval(secs => $3), fence = fence + 1
                             WHERE id = (SELECT id FROM cssmtp_parked WHERE id = $1
                                 AND (lease_owner = $2 OR lease_until IS NULL OR lease_until < now())
                                 FOR UPDATE SKIP LOCKED)
                             RETURNING fence, first_attempt",
                            &[&row, &owner, &secs],
                        )
                        .await
                        .map_err(io_err)?;
                    Ok(taken.map(|r| (r.get(0), r.get(1))))
                })
                .await
            })
            .await
    }

    /// Whether parked mail `row` is still there.
    async fn exists(&self, row: i64) -> io::Result<bool> {
        let db = self.db.clone();
        self.db
            .run(async move {
                db.timed(async {
                    let client = db.client().await?;
                    let found = client
                        .query_opt("SELECT 1 FROM cssmtp_parked WHERE id = $1", &[&row])
                        .await
                        .map_err(io_err)?;
                    Ok(found.is_some())
                })
                .await
            })
            .await
    }

    /// Copies parked mail `row`'s copy into an unlinked temporary file, a chunk at a
    /// time.
    async fn read_copy(&self, row: i64) -> io::Result<std::fs::File> {
        let file = tempfile::tempfile_in(&self.scratch)?;
        let mut copy = file.try_clone()?;
        let db = self.db.clone();
        self.db
            .run(async move {
                let client = db.client().await?;
                let mut next = 0i32;
                while let Some(chunk) = client
                    .query_opt(
                        "SELECT seq, data FROM cssmtp_parked_chunk WHERE parked_id = $1 AND seq >= $2
                         ORDER BY seq LIMIT 1",
                        &[&row, &next],
                    )
                    .await
                    .map_err(io_err)?
                {
                    let seq: i32 = chunk.get(0);
                    let data: &[u8] = chunk.get(1);
                    copy.write_all(data)?;
                    let Some(after) = seq.checked_add(1) else {
                        break;
                    };
                    next = after;
                }
                copy.flush()
            })
            .await?;
        Ok(file)
    }

    /// Records a turn that kept every recipient: the time of the turn, the lease kept
    /// until the next.
    async fn touch(&self, row: i64, fence: i64) -> io::Result<()> {
        let (db, secs) = (self.db.clone(), self.interval.as_secs_f64());
        let n = self
            .db
            .run(async move {
                db.timed(async {
                    db.client()
                        .await?
                        .execute(
                            "UPDATE cssmtp_parked SET tried = now(),
                                 lease_until = now() + make_interval(secs => $3)
                             WHERE id = $1 AND fence = $2",
                            &[&row, &fence, &secs],
                        )
                        .await
                        .map_err(io_err)
                })
                .await
            })
            .await?;
        if n == 1 { Ok(()) } else { Err(stale()) }
    }

    /// Rewrites a parked mail's copy for fewer recipients, in one transaction under its
    /// token.
    async fn rewrite(
        &self,
        row: i64,
        fence: i64,
        parked: &Parked,
        keep: &[usize],
    ) -> io::Result<()> {
        let (meta, mail) = (&parked.meta, &parked.mail);
        let rcpts: Vec<String> = (keep.iter())
            .filter_map(|&i| mail.recipients.get(i).map(|r| r.address.clone()))
            .collect();
        let meta = Meta {
            rcpt_lines: (keep.iter())
                .map(|&i| meta.rcpt_lines.get(i).copied().unwrap_or(meta.line))
                .collect(),
            ..meta.clone()
        };
        let head =
            extended::mail_file_head(&self.host, &meta, mail.starttls, &mail.reverse_path, &rcpts);
        let text = FullMail {
            headers: Arc::from(Vec::new()),
            text: parked.text.clone(),
        };
        let file = copy_file(&self.scratch, head, &text).await?;
        let (config, secs) = (self.db.config(), self.interval.as_secs_f64());
        self.db
            .run(async move {
                let (mut client, conn) = super::connect(&config).await?;
                let result = async {
                    let tx = client.transaction().await.map_err(io_err)?;
                    let n = tx
                        .execute(
                            "UPDATE cssmtp_parked SET tried = now(),
                                 lease_until = now() + make_interval(secs => $3)
                             WHERE id = $1 AND fence = $2",
                            &[&row, &fence, &secs],
                        )
                        .await
                        .map_err(io_err)?;
                    if n != 1 {
                        return Err(stale());
                    }
                    tx.execute(
                        "DELETE FROM cssmtp_parked_chunk WHERE parked_id = $1",
                        &[&row],
                    )
                    .await
                    .map_err(io_err)?;
                    insert_chunks(&tx, row, file).await?;
                    tx.commit().await.map_err(io_err)
                }
                .await;
                drop(client);
                let _ = conn.await;
                result
            })
            .await
    }
}

impl ParkedStore for PgParked {
    fn list(&self) -> Pending<'_, Vec<(ParkedId, SystemTime)>> {
        Box::pin(async move {
            let (db, writer) = (self.db.clone(), self.writer.clone());
            let listed = self
                .db
                .run(async move {
                    db.timed(async {
                        let rows = db
                            .client()
                            .await?
                            .query(
                                "SELECT id, tried FROM cssmtp_parked WHERE writer = $1 ORDER BY tried, id",
                                &[&writer],
                            )
                            .await
                            .map_err(io_err)?;
                        Ok(rows
                            .iter()
                            .map(|r| (parked_id(r.get(0)), r.get::<_, SystemTime>(1)))
                            .collect::<Vec<_>>())
                    })
                    .await
                })
                .await;
            listed.unwrap_or_else(|e| {
                tracing::warn!(
                    "CSM2602W The spool database cannot be used ({e}); parked mail is listed again in {} s",
                    RELIST.as_secs()
                );
                Vec::new()
            })
        })
    }

    fn load<'a>(&'a self, id: &'a ParkedId) -> Pending<'a, ParkedRead> {
        Box::pin(async move {
            let Some(row) = row_of(id) else {
                return ParkedRead::Gone;
            };
            let (fence, first_attempt) = match self.take(row).await {
                Ok(Some(taken)) => taken,
                Ok(None) => {
                    return match self.exists(row).await {
                        Ok(true) => ParkedRead::Busy,
                        Ok(false) => ParkedRead::Gone,
                        Err(e) => ParkedRead::NotNow(e),
                    };
                }
                Err(e) => return ParkedRead::NotNow(e),
            };
            if let Ok(mut t) = self.turns.lock() {
                t.insert(row, fence);
            }
            let file = match self.read_copy(row).await {
                Ok(file) => file,
                Err(e) => {
                    self.end_turn(row);
                    return ParkedRead::NotNow(e);
                }
            };
            match tokio::task::spawn_blocking(move || extended::load_from(file)).await {
                Ok(Ok((mut meta, file, mail))) => {
                    // The row's time is the one that counts (an operator may set it).
                    meta.first_attempt = first_attempt;
                    ParkedRead::Found(Parked::from_copy(meta, file, mail))
                }
                Ok(Err(e)) => {
                    self.end_turn(row);
                    ParkedRead::Unreadable(e)
                }
                Err(e) => {
                    self.end_turn(row);
                    ParkedRead::NotNow(io::Error::other(e))
                }
            }
        })
    }

    fn keep<'a>(
        &'a self,
        id: &'a ParkedId,
        parked: &'a Parked,
        keep: &'a [usize],
    ) -> Pending<'a, io::Result<()>> {
        Box::pin(async move {
            let row = row_of(id).ok_or_else(|| io::Error::other("not a parked mail's id"))?;
            let fence = self.turn(row).ok_or_else(stale)?;
            let kept = if keep.len() >= parked.mail.recipients.len() {
                self.touch(row, fence).await
            } else {
                self.rewrite(row, fence, parked, keep).await
            };
            self.end_turn(row);
            kept
        })
    }

    fn remove<'a>(&'a self, id: &'a ParkedId) -> Pending<'a, ()> {
        Box::pin(async move {
            let Some(row) = row_of(id) else { return };
            let Some(fence) = self.turn(row) else { return };
            match delete_parked(&self.db, row, fence).await {
                Ok(1) => self.end_turn(row),
                Ok(_) => {
                    self.end_turn(row);
                    tracing::warn!(
                        "CSM2612W Parked mail {row} of writer {} was not removed: {}",
                        self.writer,
                        stale()
                    );
                }
                Err(e) => {
                    // Every recipient is final: the row must go, or the next turn sends
                    // again. Tried again in the background, the lease kept meanwhile.
                    tracing::warn!(
                        "CSM2612W Parked mail {row} of writer {} cannot be removed now ({e}); tried again every second",
                        self.writer
                    );
                    let (db, turns) = (self.db.clone(), Arc::clone(&self.turns));
                    self.db.spawn(async move {
                        for _ in 0..REMOVE_TRIES {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if delete_parked(&db, row, fence).await.is_ok() {
                                break;
                            }
                        }
                        if let Ok(mut t) = turns.lock() {
                            t.remove(&row);
                        }
                    });
                }
            }
        })
    }

    fn shown(&self) -> String {
        format!("the spool database (writer {}, cssmtp_parked)", self.writer)
    }

    fn relist_every(&self) -> Option<Duration> {
        Some(RELIST.min(self.interval))
    }
}
