//! `cssmtp submit`: putting batch-SMTP files into the spool.
//!
//! Each file is written durably (see [`crate::durable`]): as `.<name>.tmp` in the
//! writer's spool directory, flushed to disk, then renamed to its final name, so cssmtp
//! never reads half a file. The name
//! carries the job name and job ID (see [`super::name`]) and an unguessable part: the
//! writer directory is not listable by producers, and no producer can guess (and so
//! race for) another's name. Spool files are written 0640.

use std::io;
use std::path::{Path, PathBuf};

use super::name::spool_file_name;

/// Who submits.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub job_name: String,
    pub job_id: String,
}

impl JobInfo {
    /// The job name from `CSSMTP_JOBNAME`, else the login name; the job ID from
    /// `CSSMTP_JOBID`, else `J` and the process ID.
    pub fn from_environment() -> Self {
        let job_name = std::env::var("CSSMTP_JOBNAME")
            .ok()
            .filter(|s| !s.is_empty())
            .or_else(|| {
                nix::unistd::User::from_uid(nix::unistd::getuid())
                    .ok()
                    .flatten()
                    .map(|u| u.name)
            })
            .unwrap_or_else(|| "BATCH".into());
        let job_id = std::env::var("CSSMTP_JOBID")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("J{:07}", std::process::id() % 10_000_000));
        Self { job_name, job_id }
    }
}

/// Writes `contents` into the spool directory `dir` as a new spool file; returns its
/// path. `index` tells files of one submit apart.
///
/// # Errors
/// An I/O error; at worst a `.tmp` file is left behind, which intake ignores.
pub fn submit(dir: &Path, job: &JobInfo, index: usize, contents: &[u8]) -> io::Result<PathBuf> {
    submit_translated(dir, job, index, contents, None)
}

/// [`submit`], with the code page the producer chose for this file (`cssmtp submit
/// --translate`), recorded as the last part of its name.
///
/// # Errors
/// As [`submit`].
pub fn submit_translated(
    dir: &Path,
    job: &JobInfo,
    index: usize,
    contents: &[u8],
    translate: Option<crate::spool::translate::FilePage>,
) -> io::Result<PathBuf> {
    let unique = format!(
        "{}-{}-{}",
        crate::headers::unique_token(chrono::Local::now()).replace('.', "-"),
        index,
        random_part()?
    );
    let mut name = spool_file_name(&job.job_name, &job.job_id, &unique);
    if let Some(page) = translate {
        name.push_str(&crate::spool::translate::file_name_mark(page));
    }
    crate::durable::write_new(dir, &name, contents, 0o640)
}

/// 64 random bits from the kernel, in lower-case hex.
fn random_part() -> io::Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
