//! A claimed spool file of the directory spool (a file in `active/`): the
//! [`SpoolClaim`] the queue core finishes it through.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use super::layout::{Reaper, SpoolLayout};
use crate::notify::deadletter;
use crate::storage::maildir::MailDirectory;
use crate::storage::parked::ParkedId;
use crate::storage::{FileStore, MailCopy, Pending, SpoolClaim};

/// A file in `active/`.
pub struct DirClaim {
    path: PathBuf,
    /// The name as shown (escaped: names are data).
    name: String,
    layout: SpoolLayout,
    reaper: Reaper,
    /// This host's name (in the copies' heads).
    host: String,
    /// Extended retry's MailDirectory, as configured when the file was claimed.
    mail_directory: PathBuf,
    /// Wakes extended retry for each mail parked (None when it is inactive).
    extended: Option<mpsc::UnboundedSender<ParkedId>>,
}

/// Where a claimed file's parked and held copies go.
pub struct Keeping {
    pub host: String,
    pub mail_directory: PathBuf,
    pub extended: Option<mpsc::UnboundedSender<ParkedId>>,
}

impl DirClaim {
    pub fn new(path: PathBuf, layout: SpoolLayout, reaper: Reaper, keeping: Keeping) -> Self {
        let name = crate::escape::name(path.file_name().unwrap_or(path.as_os_str()));
        Self {
            path,
            name,
            layout,
            reaper,
            host: keeping.host,
            mail_directory: keeping.mail_directory,
            extended: keeping.extended,
        }
    }
}

impl SpoolClaim for DirClaim {
    fn name(&self) -> &str {
        &self.name
    }

    fn delete(&self, store: Option<&dyn FileStore>) {
        // The reaper syncs the journal (the file's `done` record and every record
        // before), removes the file, syncs `active/`, and only then lets the journal
        // forget it.
        let key = store.map(|s| Arc::from(s.id().as_str()));
        self.reaper.remove(self.path.clone(), key);
    }

    fn hold(&self) -> Pending<'_, io::Result<PathBuf>> {
        // The move and the directory syncs run on a blocking thread.
        let (layout, path) = (self.layout.clone(), self.path.clone());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let to = layout.hold(&path)?;
                crate::durable::sync_dir(&layout.hold)?;
                crate::durable::sync_dir(&layout.active)?;
                Ok(to)
            })
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)))
        })
    }

    fn keep_beside<'a>(&'a self, held: &'a Path, text: Vec<u8>) -> Pending<'a, ()> {
        let mut beside = held.to_owned().into_os_string();
        beside.push(".report");
        let beside = PathBuf::from(beside);
        Box::pin(async move {
            // Written (and synced) on a blocking thread.
            let to = beside.clone();
            let written =
                tokio::task::spawn_blocking(move || crate::durable::replace(&to, &text, 0o640))
                    .await
                    .unwrap_or_else(|e| Err(io::Error::other(e)));
            if let Err(e) = written {
                tracing::error!(
                    "CSM2008E Cannot write {}: {e}",
                    crate::escape::path(&beside)
                );
            }
        })
    }

    fn shown(&self) -> String {
        crate::escape::path(&self.path).to_string()
    }

    fn park<'a>(&'a self, copy: &'a MailCopy<'a>) -> Pending<'a, io::Result<String>> {
        Box::pin(async move {
            let store = MailDirectory::new(self.mail_directory.clone(), self.host.clone());
            let path = store.park(copy).await?;
            let shown = crate::escape::path(&path).to_string();
            if let Some(tx) = &self.extended {
                let _ = tx.send(ParkedId::new(&path));
            }
            Ok(shown)
        })
    }

    fn hold_in_doubt<'a>(&'a self, copy: &'a MailCopy<'a>) -> Pending<'a, io::Result<String>> {
        Box::pin(hold_in_doubt(
            self.layout.hold.clone(),
            &self.host,
            "move this file into incoming/ to send it again",
            copy,
        ))
    }
}

/// Keeps a mail for its possibly delivered recipients in `dir`, for the operator, as a
/// batch-SMTP file (`again` says how to send it again); returns where, for people.
///
/// # Errors
/// It cannot be written.
pub async fn hold_in_doubt(
    dir: PathBuf,
    host: &str,
    again: &str,
    copy: &MailCopy<'_>,
) -> io::Result<String> {
    let rcpts: Vec<String> = copy.rcpts.iter().map(|(a, _)| a.clone()).collect();
    let path = deadletter::store(
        dir,
        format!(
            "{}.mail{}.possibly-delivered",
            copy.job.file_name, copy.mail
        ),
        host,
        &format!("cssmtp: possibly delivered before a restart (PossiblyDelivered Hold); {again}"),
        &[format!(
            "from spool file {} mail {} (line {})",
            copy.job.file_name, copy.mail, copy.line
        )],
        &deadletter::Letter {
            from: copy.reverse_path,
            to: &rcpts,
            text: deadletter::Text::Mail(copy.text),
            starttls: copy.needs_tls,
        },
    )
    .await?;
    Ok(crate::escape::path(&path).to_string())
}
