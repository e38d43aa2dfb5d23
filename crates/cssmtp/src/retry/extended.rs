//! Extended retry: mail kept in the MailDirectory and tried every `Interval` until `Age`.
//!
//! Each mail is one file, `<job>.<jobid>.<mail>.<unique>.mail`, that is itself a valid
//! batch-SMTP file (an operator can read it, or re-send it with `cssmtp submit`): a
//! `NOOP cssmtp-extended-retry …` line with what cssmtp needs to know (where the mail
//! came from, when it was first tried), then the envelope with the recipients still to
//! deliver, and the text exactly as sent (cssmtp's headers included). The file is written
//! durably before the spool file is released; it is removed once every recipient is
//! delivered or returned. The time of the last attempt is the file's modification time,
//! so the schedule survives restarts.
//!
//! This module is the storage of parked mail only (write, list, read back, rewrite,
//! touch, remove; the MailDirectory behind [`crate::storage::parked::ParkedStore`] is
//! [`crate::storage::maildir`]); what happens to a parked mail is decided by the queue core
//! ([`crate::queue::state`], `Event::Unpark`) and carried out by its driver
//! ([`crate::queue::parked`]).

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use chrono::{DateTime, Local, Utc};

use crate::delivery::MailText;
use crate::spool::name::JobIdentity;

/// What a mail file says about its mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// The spool file it came from.
    pub spool_file: String,
    pub job_name: String,
    pub job_id: String,
    /// The mail's number in its spool file, and the line of its MAIL FROM.
    pub mail: u32,
    pub line: u32,
    /// When it was first tried (its Age counts from here).
    pub first_attempt: SystemTime,
    /// The spool-file lines of its recipients' RCPT TO, in envelope order.
    pub rcpt_lines: Vec<u32>,
}

impl Meta {
    /// The job the mail came from.
    pub fn job(&self) -> JobIdentity {
        JobIdentity {
            file_name: self.spool_file.clone(),
            job_name: self.job_name.clone(),
            job_id: self.job_id.clone(),
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    DateTime::<Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// The content of a mail file. `text` is the mail as sent: CRLF lines, dot-stuffed,
/// cssmtp's headers included.
pub fn mail_file(
    host: &str,
    meta: &Meta,
    needs_tls: bool,
    reverse_path: &str,
    rcpts: &[String],
    text: &[u8],
) -> Vec<u8> {
    let mut out = mail_file_head(host, meta, needs_tls, reverse_path, rcpts);
    out.extend_from_slice(text);
    cssmtp_batch::write::transaction_tail(&mut out, text.is_empty() || text.ends_with(b"\r\n"));
    out
}

/// [`mail_file`] up to `DATA`, for a writer that copies the text itself.
pub fn mail_file_head(
    host: &str,
    meta: &Meta,
    needs_tls: bool,
    reverse_path: &str,
    rcpts: &[String],
) -> Vec<u8> {
    let lines: Vec<String> = meta.rcpt_lines.iter().map(u32::to_string).collect();
    let mut out = format!(
        "NOOP cssmtp-extended-retry v1 spool-file={} job={} jobid={} mail={} line={} first-attempt={} rcpt-lines={}\r\n\
         NOOP mail {} of spool file {} in extended retry; re-send with 'cssmtp submit' if needed\r\n",
        meta.spool_file,
        meta.job_name,
        meta.job_id,
        meta.mail,
        meta.line,
        rfc3339(meta.first_attempt),
        lines.join(","),
        meta.mail,
        meta.spool_file,
    )
    .into_bytes();
    cssmtp_batch::write::transaction_head(&mut out, host, needs_tls, reverse_path, rcpts);
    out
}

/// Reads the metadata line of a mail file.
pub fn parse_meta(first_line: &str) -> Option<Meta> {
    let rest = first_line
        .trim()
        .strip_prefix("NOOP cssmtp-extended-retry v1 ")?;
    let fields: HashMap<&str, &str> = rest
        .split_whitespace()
        .filter_map(|f| f.split_once('='))
        .collect();
    let first_attempt = DateTime::parse_from_rfc3339(fields.get("first-attempt")?).ok()?;
    Some(Meta {
        spool_file: (*fields.get("spool-file")?).to_owned(),
        job_name: (*fields.get("job")?).to_owned(),
        job_id: (*fields.get("jobid")?).to_owned(),
        mail: fields.get("mail")?.parse().ok()?,
        line: fields.get("line")?.parse().ok()?,
        first_attempt: SystemTime::from(first_attempt),
        rcpt_lines: fields
            .get("rcpt-lines")
            .map(|l| l.split(',').filter_map(|n| n.parse().ok()).collect())
            .unwrap_or_default(),
    })
}

/// The name of a new mail file.
pub fn file_name(meta: &Meta) -> String {
    format!(
        "{}.{}.{}.{}.mail",
        meta.job_name,
        meta.job_id,
        meta.mail,
        crate::headers::unique_token(Local::now()).replace('.', "-")
    )
}

/// The header block of a wire text whose header ends after about `approx` bytes: up to
/// its first empty line.
pub fn crlf_header(wire: &[u8], approx: usize) -> Vec<u8> {
    let end = memchr::memmem::find(wire, b"\r\n\r\n").map_or(approx.min(wire.len()), |i| i + 2);
    wire.get(..end).unwrap_or(wire).to_vec()
}

/// Reads a whole mail text in wire form.
pub async fn read_all(text: &MailText) -> std::io::Result<Vec<u8>> {
    let mut body = crate::delivery::body::Body::new(text);
    let (mut raw, mut out) = (Vec::new(), Vec::new());
    while body.next_chunk(&mut raw, &mut out).await? {}
    Ok(out)
}

/// Mail files in `dir` with the time of their last attempt.
pub fn list(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, SystemTime)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".mail") && !n.starts_with('.'))
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.modified().ok()?)))
        .collect();
    found.sort_by_key(|(_, t)| *t);
    found
}

/// A mail file read back: what it says of its mail, the file, the mail.
pub type Loaded = (Meta, File, cssmtp_batch::Mail);

/// Reads a mail file back; `Ok(None)`: it is gone.
///
/// # Errors
/// It cannot be read, or is not a parked mail.
pub fn load_file(path: &Path) -> std::io::Result<Option<Loaded>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    load_from(file).map(Some)
}

/// Reads a mail file back from an open file (read from its start; the shared spool's
/// copy of a parked mail in an unlinked temporary file).
///
/// # Errors
/// It cannot be read, or is not a parked mail.
pub fn load_from(mut file: File) -> std::io::Result<Loaded> {
    use std::io::{Read, Seek};
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let meta = parse_meta(&String::from_utf8_lossy(first))
        .ok_or_else(|| std::io::Error::other("not a cssmtp extended-retry file (first line)"))?;
    // The text was written in wire form (padding, if any, already removed): the blanks
    // left are content.
    let limits = cssmtp_batch::Limits {
        syntax_error_limit: 0,
        blank_trnc: cssmtp_batch::BlankTrnc::No,
        ..cssmtp_batch::Limits::default()
    };
    let (mut mails, _) = cssmtp_batch::parse_bytes(&bytes, limits);
    let mail = mails
        .pop()
        .filter(|m| !m.recipients.is_empty())
        .ok_or_else(|| std::io::Error::other("no mail in it"))?;
    Ok((meta, file, mail))
}

pub async fn remove(path: &Path) {
    let path = path.to_owned();
    let _ = tokio::task::spawn_blocking(move || {
        let _ = std::fs::remove_file(&path);
        if let Some(dir) = path.parent() {
            let _ = crate::durable::sync_dir(dir);
        }
    })
    .await;
}

/// Records an attempt: the file's modification time is the time of the last attempt.
pub async fn touch(path: &Path) {
    let path = path.to_owned();
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(file) = File::options().write(true).open(&path) {
            let _ = file.set_modified(crate::clock::now());
        }
    })
    .await;
}

/// Rewrites a parked mail's file for fewer recipients (`meta.rcpt_lines` theirs):
/// written anew beside it (the text copied a chunk at a time), then renamed over it, so
/// that a reader sees the old file or the new one.
///
/// # Errors
/// An I/O error: the old file stays (recipients already delivered may be sent again).
pub async fn rewrite(
    path: &Path,
    host: &str,
    meta: &Meta,
    needs_tls: bool,
    reverse_path: &str,
    rcpts: &[String],
    text: &MailText,
) -> std::io::Result<()> {
    let head = mail_file_head(host, meta, needs_tls, reverse_path, rcpts);
    let full = crate::notify::deadletter::FullMail {
        headers: Arc::from(Vec::new()),
        text: text.clone(),
    };
    let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
    let name = path
        .file_name()
        .map(|n| format!(".{}.rewrite", n.to_string_lossy()))
        .unwrap_or_else(|| ".rewrite".into());
    let new = crate::notify::deadletter::write_streamed(dir.clone(), name, head, &full).await?;
    let target = path.to_owned();
    tokio::task::spawn_blocking(move || {
        std::fs::rename(&new, &target)
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&new);
            })
            .and_then(|()| crate::durable::sync_dir(&dir))
    })
    .await
    .map_err(std::io::Error::other)?
}

/// Writes a mail into the MailDirectory (durably), its text copied from its spool file a
/// chunk at a time (never whole in memory); returns its path.
///
/// # Errors
/// An I/O error: the mail must then not leave long retry.
pub async fn store_streamed(
    dir: PathBuf,
    host: &str,
    meta: &Meta,
    needs_tls: bool,
    reverse_path: &str,
    rcpts: &[String],
    mail: &crate::notify::deadletter::FullMail,
) -> std::io::Result<PathBuf> {
    let head = mail_file_head(host, meta, needs_tls, reverse_path, rcpts);
    let path = crate::notify::deadletter::write_streamed(dir, file_name(meta), head, mail).await?;
    touch(&path).await;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mail_files_are_batch_smtp_with_metadata() {
        let meta = Meta {
            spool_file: "PAYROLL.J0000001.x".into(),
            job_name: "PAYROLL".into(),
            job_id: "J0000001".into(),
            mail: 3,
            line: 12,
            first_attempt: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
            rcpt_lines: vec![13, 15],
        };
        let file = mail_file(
            "h.example",
            &meta,
            true,
            "a@b.c",
            &["x@y.z".into(), "w@y.z".into()],
            b"Subject: s\r\n\r\n..dot\r\n",
        );
        let first =
            String::from_utf8_lossy(file.split(|&b| b == b'\n').next().unwrap()).into_owned();
        assert_eq!(parse_meta(&first), Some(meta));
        let (mails, summary) = cssmtp_batch::parse_bytes(&file, cssmtp_batch::Limits::default());
        assert!(summary.errors.is_empty());
        assert!(mails[0].starttls);
        assert_eq!(mails[0].recipients.len(), 2);
    }
}
