//! `cssmtp submit` into the shared spool: the file's row and its text's chunks in one
//! transaction, so that cssmtp never sees half a file.
//!
//! **Idempotent.** The file's name is its job name, its job ID and a digest of its
//! text (and its place among the files of the command): the same file submitted again
//! by the same job (a retried step) has the same name, which is unique per writer
//! (`ON CONFLICT DO NOTHING`): it is spooled once.

use std::io;

use sha2::{Digest, Sha256};

use super::{CHUNK, DbSettings, MAX_FILE, io_err};
use crate::domain::job::spool_file_name;
use crate::spool::submit::JobInfo;

/// What a submit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submitted {
    /// Spooled under this name.
    New(String),
    /// The same file was spooled before under this name: nothing was added.
    Already(String),
}

/// The name of a file in the shared spool: the job and a digest of its text.
pub fn name_of(job: &JobInfo, index: usize, contents: &[u8]) -> String {
    let digest = Sha256::digest(contents);
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    spool_file_name(&job.job_name, &job.job_id, &format!("{hex}-{index}"))
}

/// Spools `contents` for `writer` in the database.
///
/// # Errors
/// The database cannot be reached or written, or the file is larger than
/// [`MAX_FILE`]: nothing is spooled.
pub async fn submit(
    settings: &DbSettings,
    writer: &str,
    job: &JobInfo,
    index: usize,
    contents: &[u8],
) -> io::Result<Submitted> {
    let name = name_of(job, index, contents);
    submit_named(settings, writer, &name, contents).await
}

/// Spools `contents` under `name` (the conformance suites' producer).
///
/// # Errors
/// As [`submit`].
pub async fn submit_named(
    settings: &DbSettings,
    writer: &str,
    name: &str,
    contents: &[u8],
) -> io::Result<Submitted> {
    if contents.len() as u64 > MAX_FILE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "it is {} bytes; the spool database keeps files up to {MAX_FILE} bytes",
                contents.len()
            ),
        ));
    }
    let (mut client, conn) = settings.client_config()?.connect().await.map_err(io_err)?;
    let conn = tokio::spawn(conn);
    let result = async {
        super::schema::migrate(&client).await?;
        let tx = client.transaction().await.map_err(io_err)?;
        let row = tx
            .query_opt(
                "INSERT INTO cssmtp_spool_file (writer, name, ready) VALUES ($1, $2, true)
                 ON CONFLICT (writer, name) DO NOTHING RETURNING id",
                &[&writer, &name],
            )
            .await
            .map_err(io_err)?;
        let Some(row) = row else {
            return Ok(Submitted::Already(name.to_owned()));
        };
        let id: i64 = row.get(0);
        let insert = tx
            .prepare("INSERT INTO cssmtp_spool_chunk (file_id, seq, data) VALUES ($1, $2, $3)")
            .await
            .map_err(io_err)?;
        for (seq, chunk) in contents.chunks(CHUNK).enumerate() {
            let seq = i32::try_from(seq).map_err(io::Error::other)?;
            tx.execute(&insert, &[&id, &seq, &chunk])
                .await
                .map_err(io_err)?;
        }
        tx.commit().await.map_err(io_err)?;
        Ok(Submitted::New(name.to_owned()))
    }
    .await;
    drop(client);
    let _ = conn.await;
    result
}
