//! A claimed file of the shared spool, as the queue core finishes it: deleted (its
//! row, chunks and records go in one statement, under its fencing token), held (its
//! row stays, `state = 'held'`, with the report beside it in `cssmtp_held`).
//!
//! Copies of mail for extended retry and mail possibly delivered before a restart are
//! kept, for now, on the host that makes them (its MailDirectory and `hold/`), as the
//! directory spool keeps them.

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
    /// The host's `hold/` (copies of mail possibly delivered).
    hold_dir: PathBuf,
}

impl PgClaim {
    pub fn new(
        db: Db,
        writer: String,
        lease: Lease,
        leases: Leases,
        keeping: Keeping,
        hold_dir: PathBuf,
    ) -> Self {
        let name = crate::escape::name(std::ffi::OsStr::new(&lease.name));
        Self {
            db,
            writer,
            lease,
            leases,
            name,
            keeping,
            hold_dir,
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
            let store = crate::storage::maildir::MailDirectory::new(
                self.keeping.mail_directory.clone(),
                self.keeping.host.clone(),
            );
            let path = store.park(copy).await?;
            let shown = crate::escape::path(&path).to_string();
            if let Some(tx) = &self.keeping.extended {
                let _ = tx.send(crate::storage::parked::ParkedId::new(&path));
            }
            Ok(shown)
        })
    }

    fn hold_in_doubt<'a>(&'a self, copy: &'a MailCopy<'a>) -> Pending<'a, io::Result<String>> {
        Box::pin(crate::spool::claim::hold_in_doubt(
            self.hold_dir.clone(),
            &self.keeping.host,
            "submit this file again to send it again",
            copy,
        ))
    }
}
