//! The MailDirectory as a [`ParkedStore`]: one batch-SMTP file per parked mail (its
//! format in [`crate::retry::extended`]), the time of its last turn the file's
//! modification time.

use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::parked::{Parked, ParkedId, ParkedRead, ParkedStore};
use super::{MailCopy, Pending};
use crate::retry::extended;

/// The MailDirectory.
pub struct MailDirectory {
    dir: PathBuf,
    /// This host's name, written into rewritten files.
    host: String,
}

impl MailDirectory {
    pub fn new(dir: PathBuf, host: String) -> Self {
        Self { dir, host }
    }

    /// Parks a mail for its recipients `copy.rcpts`, durably, its text copied a chunk
    /// at a time (the writing side of [`ParkedStore`], reached through
    /// [`super::SpoolClaim::park`]); returns its file's path.
    ///
    /// # Errors
    /// An I/O error: nothing is parked (the mail must not leave long retry).
    pub async fn park(&self, copy: &MailCopy<'_>) -> io::Result<PathBuf> {
        let meta = extended::Meta {
            spool_file: copy.job.file_name.clone(),
            job_name: copy.job.job_name.clone(),
            job_id: copy.job.job_id.clone(),
            mail: copy.mail,
            line: copy.line,
            first_attempt: copy.first_attempt,
            rcpt_lines: copy.rcpts.iter().map(|(_, line)| *line).collect(),
        };
        let rcpts: Vec<String> = copy.rcpts.iter().map(|(a, _)| a.clone()).collect();
        extended::store_streamed(
            self.dir.clone(),
            &self.host,
            &meta,
            copy.needs_tls,
            copy.reverse_path,
            &rcpts,
            copy.text,
        )
        .await
    }
}

fn path(id: &ParkedId) -> &Path {
    Path::new(id.as_os_str())
}

impl ParkedStore for MailDirectory {
    fn list(&self) -> Pending<'_, Vec<(ParkedId, SystemTime)>> {
        Box::pin(async move {
            // The listing on a blocking thread, not the runtime's.
            let dir = self.dir.clone();
            let listed = tokio::task::spawn_blocking(move || extended::list(&dir))
                .await
                .unwrap_or_default();
            (listed.into_iter())
                .map(|(p, t)| (ParkedId::new(p), t))
                .collect()
        })
    }

    fn load<'a>(&'a self, id: &'a ParkedId) -> Pending<'a, ParkedRead> {
        Box::pin(async move {
            let p = path(id).to_owned();
            match tokio::task::spawn_blocking(move || extended::load_file(&p)).await {
                Ok(Ok(Some((meta, file, mail)))) => {
                    ParkedRead::Found(Parked::from_copy(meta, file, mail))
                }
                Ok(Ok(None)) => ParkedRead::Gone,
                Ok(Err(e)) => ParkedRead::Unreadable(e),
                Err(e) => ParkedRead::NotNow(io::Error::other(e)),
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
            let (meta, mail) = (&parked.meta, &parked.mail);
            if keep.len() >= mail.recipients.len() {
                extended::touch(path(id)).await;
                return Ok(());
            }
            let rcpts: Vec<String> = (keep.iter())
                .filter_map(|&i| mail.recipients.get(i).map(|r| r.address.clone()))
                .collect();
            let meta = extended::Meta {
                rcpt_lines: (keep.iter())
                    .map(|&i| meta.rcpt_lines.get(i).copied().unwrap_or(meta.line))
                    .collect(),
                ..meta.clone()
            };
            extended::rewrite(
                path(id),
                &self.host,
                &meta,
                mail.starttls,
                &mail.reverse_path,
                &rcpts,
                &parked.text,
            )
            .await
        })
    }

    fn remove<'a>(&'a self, id: &'a ParkedId) -> Pending<'a, ()> {
        Box::pin(extended::remove(path(id)))
    }

    fn shown(&self) -> String {
        crate::escape::path(&self.dir).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::conformance::parked::{ParkedHarness, run};

    /// A MailDirectory in a temporary directory.
    struct Dir {
        dir: tempfile::TempDir,
    }

    impl Dir {
        fn store(&self) -> MailDirectory {
            MailDirectory::new(self.dir.path().to_owned(), "h.example".into())
        }
    }

    impl ParkedHarness for Dir {
        type Store = MailDirectory;

        async fn park(&mut self, copy: &MailCopy<'_>) {
            self.store().park(copy).await.expect("parks");
        }

        async fn start(&mut self) -> MailDirectory {
            self.store()
        }
    }

    #[tokio::test]
    async fn the_mail_directory_passes_the_parked_conformance_suite() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        run(Dir { dir }).await;
    }
}
