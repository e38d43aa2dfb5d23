//! Dead letters: mail that can be neither delivered nor returned.
//!
//! With `DeadLetterAction Store` each is a file in the dead-letter directory, named as
//! CSSMTP names them, `<job>.<jobid>.<MonDDYYYY>.<HHMMSS>.<microseconds>.<mail><type>`
//! (type `U` for an undeliverable mail or notification, `R` for an error report), e.g.
//! `PAYROLL.J0012345.Nov282026.220047.541437.3U`. The file is itself a valid batch-SMTP
//! file: `NOOP` lines (which batch SMTP ignores) say what happened, then the envelope and
//! the text. After fixing the cause, an operator re-sends it with `cssmtp submit FILE`.
//!
//! A mail's text is copied into the file a chunk at a time from its spool file
//! ([`FullMail`]): a dead letter of any size costs fixed memory.

use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Local};
use tokio::io::AsyncWriteExt;

use crate::delivery::body::{Body, MailText};
use crate::escape::one_line;

/// What a dead letter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A mail, or its undeliverable notification.
    Undeliverable,
    /// An error report.
    Report,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Self::Undeliverable => 'U',
            Self::Report => 'R',
        }
    }
}

/// The file name of a dead letter.
pub fn file_name(
    job_name: &str,
    job_id: &str,
    mail: u32,
    kind: Kind,
    now: DateTime<Local>,
) -> String {
    format!(
        "{job_name}.{job_id}.{}.{:06}.{mail}{}",
        now.format("%b%d%Y.%H%M%S"),
        now.timestamp_subsec_micros(),
        kind.letter()
    )
}

/// A whole mail as sent: cssmtp's headers, then its text, which stays in its file and
/// is read again, a chunk at a time, when it is needed (never whole in memory).
#[derive(Debug, Clone)]
pub struct FullMail {
    /// The header fields cssmtp added (wire form).
    pub headers: Arc<[u8]>,
    pub text: MailText,
}

impl FullMail {
    /// Size on the wire (dot-stuffed, without the final ".").
    pub fn wire_size(&self) -> u64 {
        self.headers.len() as u64 + self.text.wire_size()
    }

    /// The whole mail in wire form; only for a mail known to be small (see
    /// [`wire_size`](Self::wire_size)).
    ///
    /// # Errors
    /// An I/O error reading the text.
    pub async fn read(&self) -> io::Result<Vec<u8>> {
        let mut wire = self.headers.to_vec();
        let mut body = Body::new(&self.text);
        let mut raw = Vec::new();
        while body.next_chunk(&mut raw, &mut wire).await? {}
        Ok(wire)
    }

    /// Copies the mail in wire form to `file`, a chunk at a time; returns whether it
    /// ended with a line end (or was empty).
    ///
    /// # Errors
    /// An I/O error reading the text or writing `file`.
    pub async fn copy_to(&self, file: &mut tokio::fs::File) -> io::Result<bool> {
        file.write_all(&self.headers).await?;
        let mut ended = self.headers.is_empty() || self.headers.ends_with(b"\r\n");
        let mut body = Body::new(&self.text);
        let (mut raw, mut out) = (Vec::new(), Vec::new());
        while body.next_chunk(&mut raw, &mut out).await? {
            if !out.is_empty() {
                file.write_all(&out).await?;
                ended = out.ends_with(b"\r\n");
                out.clear();
            }
        }
        Ok(ended)
    }
}

/// The text of a kept file.
#[derive(Debug, Clone, Copy)]
pub enum Text<'a> {
    /// Already in memory, wire form: CRLF lines, dot-stuffed (what cssmtp wrote itself).
    Wire(&'a [u8]),
    /// A mail, copied from its file a chunk at a time.
    Mail(&'a FullMail),
}

/// The mail a kept file holds.
#[derive(Debug, Clone, Copy)]
pub struct Letter<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub text: Text<'a>,
    /// It must travel over TLS (its spool file said STARTTLS): so must it when sent again.
    pub starttls: bool,
}

/// The title line of a dead letter.
pub const TITLE: &str = "cssmtp dead letter: re-send with 'cssmtp submit' once the cause is fixed";

/// What a kept file holds before the letter's text: `title` and `notes` as NOOP lines,
/// then the transaction up to `DATA`.
fn head(host: &str, title: &str, notes: &[String], letter: &Letter<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(format!("NOOP {}\r\n", one_line(title, 480)).as_bytes());
    for note in notes {
        out.extend_from_slice(format!("NOOP {}\r\n", one_line(note, 480)).as_bytes());
    }
    cssmtp_batch::write::transaction_head(&mut out, host, letter.starttls, letter.from, letter.to);
    out
}

/// Writes a batch-SMTP file kept for an operator (a dead letter, held mail) durably as
/// `dir/name` (`name.1`… when taken; `dir` made when missing): `title` and `notes` as
/// NOOP lines, then a transaction sending the letter. A mail's text is copied from its
/// file a chunk at a time. Returns the file's path.
///
/// Like [`crate::durable::write_new`]: written under a temporary name intake ignores,
/// flushed, renamed without replacing, directory flushed.
///
/// # Errors
/// An I/O error; no file is left but, at worst, a `.tmp` one.
pub async fn store(
    dir: PathBuf,
    name: String,
    host: &str,
    title: &str,
    notes: &[String],
    letter: &Letter<'_>,
) -> io::Result<PathBuf> {
    let mut content = head(host, title, notes, letter);
    let mail = match letter.text {
        Text::Wire(text) => {
            content.extend_from_slice(text);
            cssmtp_batch::write::transaction_tail(
                &mut content,
                text.is_empty() || text.ends_with(b"\r\n"),
            );
            return crate::durable::keep(dir, name, content, 0o640).await;
        }
        Text::Mail(mail) => mail,
    };
    write_streamed(dir, name, content, mail).await
}

/// Writes `head`, then `mail` (copied from its file a chunk at a time), then the end of
/// its transaction (`.`, `QUIT`) durably as `dir/name` (`name.1`… when taken; `dir`
/// made when missing), as [`crate::durable::write_new`] does; returns the file's path.
///
/// # Errors
/// An I/O error; no file is left but, at worst, a `.tmp` one.
pub async fn write_streamed(
    dir: PathBuf,
    name: String,
    head: Vec<u8>,
    mail: &FullMail,
) -> io::Result<PathBuf> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let (d, t) = (dir.clone(), tmp.clone());
    let file = tokio::task::spawn_blocking(move || {
        crate::durable::create_dir(&d, 0o750)?;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(&t)
    })
    .await
    .map_err(io::Error::other)??;
    let mut file = tokio::fs::File::from_std(file);
    let written = async {
        file.write_all(&head).await?;
        let ended = mail.copy_to(&mut file).await?;
        let mut tail = Vec::new();
        cssmtp_batch::write::transaction_tail(&mut tail, ended);
        file.write_all(&tail).await?;
        file.flush().await?;
        file.sync_all().await
    }
    .await;
    drop(file);
    tokio::task::spawn_blocking(move || {
        let placed = written.and_then(|()| crate::durable::move_no_replace(&tmp, &dir, &name));
        match placed {
            Ok(Some(path)) => {
                crate::durable::sync_dir(&dir)?;
                Ok(path)
            }
            Ok(None) => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "temporary file vanished",
            )),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    })
    .await
    .map_err(io::Error::other)?
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ibm_style_names_and_valid_batch_smtp() {
        let now = Local.with_ymd_and_hms(2008, 9, 30, 16, 4, 54).unwrap()
            + chrono::Duration::microseconds(541_437);
        assert_eq!(
            file_name("TESTMAIL", "J0000006", 1, Kind::Undeliverable, now),
            "TESTMAIL.J0000006.Sep302008.160454.541437.1U"
        );
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let path = rt
            .block_on(store(
                dir.path().join("dead"),
                "x".into(),
                "h.example",
                TITLE,
                &["reason: 550 no\r\nMAIL FROM:<evil>".into()],
                &Letter {
                    from: "",
                    to: &["a@b.c".into()],
                    text: Text::Wire(b"Subject: x\r\n\r\n..dot\r\n"),
                    starttls: false,
                },
            ))
            .unwrap();
        let letter = std::fs::read(path).unwrap();
        let (mails, summary) = cssmtp_batch::parse_bytes(&letter, cssmtp_batch::Limits::default());
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].reverse_path, "");
        assert_eq!(mails[0].recipients[0].address, "a@b.c");
        assert_eq!(
            letter
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"MAIL FROM"))
                .count(),
            1,
            "notes cannot inject commands"
        );
    }
}
