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

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Local, Utc};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ExtendedRetry};
use crate::delivery::{Failure, MailJob, MailKey, MailText, RcptResult, SpoolText};
use crate::notify::{FailedRecipient, MailOrigin, Notifier, Original};
use crate::spool::Mode;
use crate::spool::name::JobIdentity;
use crate::stats::Stats;

/// Attempts in flight at once.
const PARALLEL: usize = 8;

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
    fn job(&self) -> JobIdentity {
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
fn mail_file_head(
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

/// Runs extended retry: in daemon mode until stopped; in drain mode, tries the mails due
/// now once, then ends.
pub struct Manager {
    pub config: Arc<Config>,
    pub settings: ExtendedRetry,
    pub notifier: Arc<Notifier>,
    pub stats: Arc<Stats>,
    /// Mails in extended retry now (DISPLAY TARGETS, metrics).
    pub current: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
enum Attempt {
    /// Nothing left to do: the file is gone.
    Done,
    /// FLUSHRETRY,AGE=: not old enough; left as it was.
    Young,
    /// Try again after Interval.
    Again,
}

impl Manager {
    /// Runs until stopped (or, in drain mode, until the mails due now were tried).
    pub async fn run(
        self,
        mut new_files: mpsc::UnboundedReceiver<PathBuf>,
        mut flush: mpsc::UnboundedReceiver<crate::control::FlushAge>,
        stop: CancellationToken,
        mode: Mode,
    ) {
        let manager = Arc::new(self);
        let dir = manager.config.mail_directory();
        let mut due: BTreeSet<(Instant, PathBuf)> = BTreeSet::new();
        // The listing on a blocking thread, not the runtime's.
        let listed = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || list(&dir))
                .await
                .unwrap_or_default()
        };
        for (path, last) in listed {
            let elapsed = crate::clock::now().duration_since(last).unwrap_or_default();
            let wait = manager.settings.interval.saturating_sub(elapsed);
            due.insert((Instant::now() + wait, path));
        }
        if !due.is_empty() {
            tracing::info!(
                "CSM2201I {} mail(s) in extended retry in {}",
                due.len(),
                dir.display()
            );
        }
        let mut attempts: JoinSet<(PathBuf, Attempt)> = JoinSet::new();
        let mut in_flight: BTreeSet<PathBuf> = BTreeSet::new();
        loop {
            manager.current.store(
                (due.len() + in_flight.len()) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let now = Instant::now();
            while attempts.len() < PARALLEL {
                let Some(first) = due.first().cloned().filter(|(at, _)| *at <= now) else {
                    break;
                };
                due.remove(&first);
                let (_, path) = first;
                if in_flight.insert(path.clone()) {
                    let m = Arc::clone(&manager);
                    attempts.spawn(async move {
                        let outcome = m.attempt(&path, None).await;
                        (path, outcome)
                    });
                }
            }
            if mode == Mode::Drain
                && attempts.is_empty()
                && due.first().is_none_or(|(at, _)| *at > Instant::now())
            {
                break;
            }
            let next = due.first().map(|(at, _)| *at);
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                    if let Ok((path, outcome)) = done {
                        in_flight.remove(&path);
                        if matches!(outcome, Attempt::Again | Attempt::Young) {
                            due.insert((Instant::now() + manager.settings.interval, path));
                        }
                    }
                }
                Some(path) = new_files.recv() => {
                    due.insert((Instant::now() + manager.settings.interval, path));
                }
                Some((age, answer)) = flush.recv() => {
                    // Mails being tried now are left to their attempt.
                    let mut returned = 0;
                    for (at, path) in std::mem::take(&mut due) {
                        match manager.attempt(&path, Some(age)).await {
                            Attempt::Done => returned += 1,
                            Attempt::Young | Attempt::Again => {
                                due.insert((at, path));
                            }
                        }
                    }
                    tracing::info!(
                        "CSM2210I FLUSHRETRY: {returned} mail(s) in extended retry for {} day(s) or more returned",
                        age.as_secs() / 86_400
                    );
                    let _ = answer.send(returned);
                }
                () = async {
                    match next {
                        Some(at) => sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
        // Attempts in progress complete their transaction (never stopped between "."
        // and its reply).
        while attempts.join_next().await.is_some() {}
    }

    /// One attempt for one mail file. With `flush_age` (FLUSHRETRY,AGE=), no attempt:
    /// the mail is returned when it has been in extended retry that long.
    async fn attempt(&self, path: &Path, flush_age: Option<Duration>) -> Attempt {
        let loaded = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || load(&path)).await
        };
        let (meta, file, mail) = match loaded {
            Ok(Ok(Some(x))) => x,
            Ok(Ok(None)) => return Attempt::Done,
            Ok(Err(e)) => {
                tracing::error!(
                    "CSM2209E Cannot read {} in extended retry: {e}; it is kept and skipped",
                    path.display()
                );
                return Attempt::Done;
            }
            Err(e) => {
                tracing::error!(
                    "CSM2209E Cannot read {} in extended retry: {e}",
                    path.display()
                );
                return Attempt::Again;
            }
        };
        let age = crate::clock::now()
            .duration_since(meta.first_attempt)
            .unwrap_or_default();
        let spool = Arc::new(SpoolText {
            file,
            truncate: false,
        });
        let text = MailText::Spool {
            spool,
            data: mail.data.clone(),
        };
        let lines = |i: usize| meta.rcpt_lines.get(i).copied().unwrap_or(meta.line);
        let expired = match flush_age {
            Some(limit) if age >= limit => Some(format!(
                "returned by the operator (FLUSHRETRY,AGE={}) after {} day(s) in extended retry",
                limit.as_secs() / 86_400,
                age.as_secs() / 86_400
            )),
            Some(_) => return Attempt::Young,
            None if !self.settings.age.is_zero() && age >= self.settings.age => Some(format!(
                "not delivered within ExtendedRetry Age of {} day(s)",
                self.settings.age.as_secs() / 86_400
            )),
            None => None,
        };
        if let Some(reason) = expired {
            let failed: Vec<FailedRecipient> = mail
                .recipients
                .iter()
                .enumerate()
                .map(|(i, r)| FailedRecipient {
                    address: r.address.clone(),
                    line: lines(i),
                    status: crate::domain::Status::EXPIRED,
                    diagnostic: None,
                    remote_mta: None,
                    reason: reason.clone(),
                })
                .collect();
            tracing::warn!(
                "CSM2204W Mail {} of {} is undeliverable: {reason}",
                meta.mail,
                meta.spool_file
            );
            for _ in &failed {
                self.stats.rcpt_undeliverable();
            }
            if self.give_back(&meta, &mail, &text, &failed).await {
                remove(path).await;
                return Attempt::Done;
            }
            // Not returned: the file is the only copy; it stays (its time is the last
            // attempt), and the return is tried again at the next Interval.
            touch(path).await;
            return Attempt::Again;
        }
        let (reply, mut results) = mpsc::unbounded_channel();
        let job = MailJob {
            key: MailKey {
                tkid: 0,
                ordinal: meta.mail,
            },
            reverse_path: mail.reverse_path.clone(),
            recipients: mail.recipients.iter().map(|r| r.address.clone()).collect(),
            rcpt_index: (0..mail.recipients.len()).collect(),
            needs_tls: mail.starttls,
            eight_bit: text.eight_bit(),
            headers: Arc::from(Vec::new()),
            size: text.message_size(),
            text: text.clone(),
            reply,
            ack: None,
        };
        if self.notifier.queue.send(job).await.is_err() {
            return Attempt::Again;
        }
        let Some(outcome) = results.recv().await else {
            return Attempt::Again;
        };
        let mut keep: Vec<usize> = Vec::new();
        let mut failed: Vec<FailedRecipient> = Vec::new();
        let mut failed_at: Vec<usize> = Vec::new();
        let mut delivered = 0;
        for (i, result) in outcome.results {
            let address = mail
                .recipients
                .get(i)
                .map(|r| r.address.clone())
                .unwrap_or_default();
            match result {
                RcptResult::Delivered { .. } => {
                    delivered += 1;
                    self.stats.rcpt_delivered();
                }
                RcptResult::Retry(failure) => {
                    tracing::info!(
                        "CSM2202I Mail {} of {} to <{address}> stays in extended retry: {failure}",
                        meta.mail,
                        meta.spool_file
                    );
                    keep.push(i);
                }
                RcptResult::Undeliverable(failure) => {
                    failed_at.push(i);
                    failed.push(failed_from(&address, lines(i), &failure));
                }
            }
        }
        if delivered > 0 {
            tracing::info!(
                "CSM2203I Mail {} of {} delivered from extended retry to {delivered} recipient(s)",
                meta.mail,
                meta.spool_file
            );
        }
        if !failed.is_empty() {
            for _ in &failed {
                self.stats.rcpt_undeliverable();
            }
            if !self.give_back(&meta, &mail, &text, &failed).await {
                // Not returned: they stay in the file, tried (and returned) again.
                keep.extend(failed_at);
                keep.sort_unstable();
            }
        }
        if keep.is_empty() {
            remove(path).await;
            return Attempt::Done;
        }
        if keep.len() < mail.recipients.len() {
            // Fewer recipients left: rewrite the file with only those.
            let rcpts: Vec<String> = keep
                .iter()
                .filter_map(|&i| mail.recipients.get(i).map(|r| r.address.clone()))
                .collect();
            let meta = Meta {
                rcpt_lines: keep.iter().map(|&i| lines(i)).collect(),
                ..meta.clone()
            };
            // Written anew beside it (the text copied a chunk at a time), then renamed
            // over it: a reader sees the old file or the new one.
            let head = mail_file_head(
                &self.notifier.host,
                &meta,
                mail.starttls,
                &mail.reverse_path,
                &rcpts,
            );
            let full = crate::notify::deadletter::FullMail {
                headers: Arc::from(Vec::new()),
                text: text.clone(),
            };
            let dir = path.parent().unwrap_or(Path::new(".")).to_owned();
            let name = path
                .file_name()
                .map(|n| format!(".{}.rewrite", n.to_string_lossy()))
                .unwrap_or_else(|| ".rewrite".into());
            let written =
                crate::notify::deadletter::write_streamed(dir.clone(), name, head, &full).await;
            let target = path.to_owned();
            let rewritten = match written {
                Ok(new) => tokio::task::spawn_blocking(move || {
                    std::fs::rename(&new, &target)
                        .inspect_err(|_| {
                            let _ = std::fs::remove_file(&new);
                        })
                        .and_then(|()| crate::durable::sync_dir(&dir))
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r),
                Err(e) => Err(e),
            };
            if let Err(e) = rewritten {
                tracing::error!(
                    "CSM2209E Cannot rewrite {} ({e}); recipients already delivered may be sent again",
                    path_display(&meta)
                );
            }
        } else {
            touch(path).await;
        }
        Attempt::Again
    }

    async fn give_back(
        &self,
        meta: &Meta,
        mail: &cssmtp_batch::Mail,
        text: &MailText,
        failed: &[FailedRecipient],
    ) -> bool {
        let job = meta.job();
        let origin = MailOrigin {
            host: &self.notifier.host,
            job: &job,
            mail: meta.mail,
            line: meta.line,
            arrival: DateTime::<Local>::from(meta.first_attempt),
        };
        // Only the header is read here (at most 256 KiB of it); the whole mail stays in
        // its file, copied from there a chunk at a time when needed.
        let header_text = match text {
            MailText::Spool { spool, data } => MailText::Spool {
                spool: std::sync::Arc::clone(spool),
                data: cssmtp_batch::DataSpan {
                    end: data.end.min(data.start.saturating_add(256 * 1024)),
                    missing_separator_at: None,
                    ..data.clone()
                },
            },
            MailText::Memory(_) => text.clone(),
        };
        let wire = read_all(&header_text).await.unwrap_or_default();
        let header_end =
            usize::try_from(mail.data.header_end.saturating_sub(mail.data.start)).unwrap_or(0);
        let header = cssmtp_wire::data::dot_unstuff(&crlf_header(&wire, header_end));
        let original = Original {
            reverse_path: mail.reverse_path.clone(),
            auto_submitted: mail.data.auto_submitted,
            header,
            full: Some(crate::notify::deadletter::FullMail {
                headers: std::sync::Arc::from(Vec::new()),
                text: text.clone(),
            }),
            needs_tls: mail.starttls,
        };
        let returned = self.notifier.return_mail(&origin, &original, failed).await;
        tracing::info!(
            "CSM2205I Mail {} of {} from extended retry: {returned}",
            meta.mail,
            meta.spool_file
        );
        returned.is_done()
    }
}

fn path_display(meta: &Meta) -> String {
    format!(
        "mail {} of {} in extended retry",
        meta.mail, meta.spool_file
    )
}

fn failed_from(address: &str, line: u32, failure: &Failure) -> FailedRecipient {
    FailedRecipient::from_failure(address, line, failure, Some("in extended retry"))
}

/// The header block of a wire text whose header ends after about `approx` bytes: up to
/// its first empty line.
fn crlf_header(wire: &[u8], approx: usize) -> Vec<u8> {
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
fn list(dir: &Path) -> Vec<(PathBuf, SystemTime)> {
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

type Loaded = (Meta, File, cssmtp_batch::Mail);

fn load(path: &Path) -> std::io::Result<Option<Loaded>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
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
    Ok(Some((meta, File::open(path)?, mail)))
}

async fn remove(path: &Path) {
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
async fn touch(path: &Path) {
    let path = path.to_owned();
    let _ = tokio::task::spawn_blocking(move || {
        if let Ok(file) = File::options().write(true).open(&path) {
            let _ = file.set_modified(crate::clock::now());
        }
    })
    .await;
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
