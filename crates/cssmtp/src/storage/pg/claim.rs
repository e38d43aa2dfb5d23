//! A claimed file of the shared spool, as the queue core finishes it: deleted (its
//! row, chunks and records go in one statement, under its fencing token), held (its
//! row stays, `state = 'held'`, with the report beside it in `cssmtp_held`).
//!
//! Copies of mail for extended retry are parked in the database
//! ([`super::parked`]: any instance of the writer drives them); copies of mail possibly
//! delivered before a restart are kept in `cssmtp_held` (kind `in-doubt`), for the
//! operator, whichever instance made them.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::source::{Lease, Leases, hold_row};
use super::{Db, io_err};
use crate::spool::claim::Keeping;
use crate::storage::{FileStore, MailCopy, Pending, SpoolClaim};

/// How long a finished file's deletion is tried again while the database is away.
const DELETE_TRIES: u32 = 600;

/// A leased file.
pub struct PgClaim {
    db: Db,
    writer: String,
    lease: Lease,
    leases: Leases,
    name: String,
    keeping: Keeping,
    places: Places,
}

/// Where a claimed file's copies are made.
pub struct Places {
    /// This instance's name (a parked mail's first lease).
    pub owner: String,
    /// ExtendedRetry's Interval (a parked mail's first turn).
    pub interval: Duration,
    /// Where copies are written before they go into the database.
    pub scratch: PathBuf,
    /// The host's `hold/`: a copy of mail possibly delivered larger than
    /// [`HELD_MAX`].
    pub hold_dir: PathBuf,
}

/// The largest copy of a mail possibly delivered kept in the database (`cssmtp_held`);
/// a larger one stays in the `hold/` directory of the host that made it.
pub const HELD_MAX: u64 = 64 * 1024 * 1024;

/// How to send a held copy again.
const AGAIN: &str = "submit this file again (cssmtp submit) to send it again";

/// Keeps a copy of a mail possibly delivered in `cssmtp_held` (kind `in-doubt`), for
/// the operator of any instance: the batch-SMTP file the directory spool keeps in
/// `hold/`. One larger than [`HELD_MAX`] stays in this host's `hold/`.
///
/// # Errors
/// It cannot be written (nothing is kept).
pub(super) async fn hold_in_doubt(
    db: &Db,
    writer: &str,
    host: &str,
    places: &Places,
    copy: &MailCopy<'_>,
) -> io::Result<String> {
    let dir = tempfile::Builder::new()
        .prefix(".in-doubt")
        .tempdir_in(&places.scratch)?;
    crate::spool::claim::hold_in_doubt(dir.path().to_owned(), host, AGAIN, copy).await?;
    let made = std::fs::read_dir(dir.path())?
        .filter_map(Result::ok)
        .find(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .ok_or_else(|| io::Error::other("the copy was not written"))?;
    let (path, name) = (made.path(), made.file_name());
    if made.metadata()?.len() > HELD_MAX {
        let hold = places.hold_dir.clone();
        let kept = tokio::task::spawn_blocking(move || {
            crate::durable::move_no_replace(&path, &hold, &name)?
                .ok_or_else(|| io::Error::other("the copy vanished"))
                .inspect(|_| {
                    let _ = crate::durable::sync_dir(&hold);
                })
        })
        .await
        .map_err(io::Error::other)??;
        return Ok(crate::escape::path(&kept).to_string());
    }
    let data = tokio::fs::read(&path).await?;
    let (db2, writer, name) = (
        db.clone(),
        writer.to_owned(),
        name.to_string_lossy().into_owned(),
    );
    let id: i64 = db
        .run(async move {
            db2.timed(async {
                let row = db2
                    .client()
                    .await?
                    .query_one(
                        "INSERT INTO cssmtp_held (writer, name, kind, data) VALUES ($1, $2, 'in-doubt', $3)
                         RETURNING id",
                        &[&writer, &name, &data],
                    )
                    .await
                    .map_err(io_err)?;
                Ok(row.get(0))
            })
            .await
        })
        .await?;
    Ok(format!("the spool database (cssmtp_held id {id})"))
}

impl PgClaim {
    pub fn new(
        db: Db,
        writer: String,
        lease: Lease,
        leases: Leases,
        keeping: Keeping,
        places: Places,
    ) -> Self {
        let name = crate::escape::name(std::ffi::OsStr::new(&lease.name));
        Self {
            db,
            writer,
            lease,
            leases,
            name,
            keeping,
            places,
        }
    }
}

/// Removes a finished file's row (with its chunks and records), under its token.
async fn delete_row(db: &Db, held: super::source::Held) -> io::Result<u64> {
    db.timed(async {
        let client = db.client().await?;
        client
            .execute(
                "DELETE FROM cssmtp_spool_file WHERE id = $1 AND fence = $2",
                &[&held.id, &held.fence],
            )
            .await
            .map_err(io_err)
    })
    .await
}

impl SpoolClaim for PgClaim {
    fn name(&self) -> &str {
        &self.name
    }

    fn delete(&self, _store: Option<&dyn FileStore>) {
        // Everything recorded is committed already; the row (with its chunks and
        // records) goes under the token: now (the spool task ends after it), or, while
        // the database is away, tried again in the background.
        let (db, held, file, leases) = (
            self.db.clone(),
            self.lease.held,
            self.lease.file_id(),
            self.leases.clone(),
        );
        let once = {
            let db = db.clone();
            self.db.block(async move { delete_row(&db, held).await })
        };
        if once.is_ok() {
            leases.release(&file, held);
            return;
        }
        self.db.spawn(async move {
            for _ in 0..DELETE_TRIES {
                if delete_row(&db, held).await.is_ok() {
                    leases.release(&file, held);
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            tracing::error!(
                "CSM2608E Spool file {file} is finished but cannot be removed from the spool database; whoever takes it up finds every recipient final"
            );
        });
    }

    fn hold(&self) -> Pending<'_, io::Result<PathBuf>> {
        Box::pin(async move {
            hold_row(&self.db, &self.writer, &self.lease, Vec::new()).await?;
            self.leases.release(&self.lease.file_id(), self.lease.held);
            Ok(PathBuf::from(self.shown()))
        })
    }

    fn keep_beside<'a>(&'a self, _held: &'a Path, text: Vec<u8>) -> Pending<'a, ()> {
        Box::pin(async move {
            let (db, writer, name) = (
                self.db.clone(),
                self.writer.clone(),
                self.lease.name.clone(),
            );
            let kept = self
                .db
                .run(async move {
                    let client = db.client().await?;
                    client
                        .execute(
                            "INSERT INTO cssmtp_held (writer, name, kind, data) VALUES ($1, $2, 'report', $3)",
                            &[&writer, &name, &text],
                        )
                        .await
                        .map_err(io_err)
                })
                .await;
            if let Err(e) = kept {
                tracing::error!("CSM2008E Cannot write the report of {}: {e}", self.shown());
            }
        })
    }

    fn shown(&self) -> String {
        format!("database spool {}/{}", self.writer, self.name)
    }

    fn park<'a>(&'a self, copy: &'a MailCopy<'a>) -> Pending<'a, io::Result<String>> {
        Box::pin(async move {
            let id = super::parked::park(
                &self.db,
                &self.writer,
                &self.places.owner,
                &self.keeping.host,
                self.places.interval,
                &self.places.scratch,
                copy,
            )
            .await?;
            let shown = format!("the spool database ({id})");
            if let Some(tx) = &self.keeping.extended {
                let _ = tx.send(id);
            }
            Ok(shown)
        })
    }

    fn hold_in_doubt<'a>(&'a self, copy: &'a MailCopy<'a>) -> Pending<'a, io::Result<String>> {
        Box::pin(hold_in_doubt(
            &self.db,
            &self.writer,
            &self.keeping.host,
            &self.places,
            copy,
        ))
    }
}
