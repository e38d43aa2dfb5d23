//! When mail cannot be delivered: notifications to the originator, dead letters, error
//! reports to the mail administrators.
//!
//! * [`dsn`] builds RFC 3464 notifications, [`report`] error reports, [`deadletter`] dead
//!   letters (pure);
//! * [`Notifier`] composes them and carries out what follows: a notification is an
//!   ordinary queued mail of the queue core with a one-attempt policy
//!   ([`crate::queue::generated`]), from the null reverse path, through the target
//!   servers; if it fails it becomes a dead letter, never a
//!   notification about a notification. Mail whose reverse path is null, or that is
//!   itself automatic (`Auto-Submitted`), goes straight to a dead letter. Notifications
//!   and reports together are limited to `NotifyLimit` per minute (more wait), and there
//!   is at most one notification per mail and one report per spool file: no failure can
//!   make unbounded mail.

pub mod deadletter;
pub mod dsn;
pub mod report;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Local};
use cssmtp_batch::SyntaxError;
use cssmtp_wire::data::dot_stuff;
use tokio::time::{Duration, Instant};

use crate::config::{DeadLetterAction, LiveConfig, Report};
use crate::delivery::router::Router;
use crate::domain::Status;
use crate::queue::generated::{self, GeneratedMail, SendFailure};
use crate::spool::name::JobIdentity;
use crate::spool::report::FileReport;
use crate::telemetry::{At, Event as TelemetryEvent, Telemetry};

pub use crate::escape::one_line;

/// Where a mail came from, for notifications and logs.
#[derive(Debug, Clone)]
pub struct MailOrigin<'a> {
    pub host: &'a str,
    pub job: &'a JobIdentity,
    /// The mail's number in its spool file.
    pub mail: u32,
    /// Line of its MAIL FROM.
    pub line: u32,
    /// When cssmtp took the spool file.
    pub arrival: DateTime<Local>,
}

pub use crate::domain::failure::FailedRecipient;

impl FailedRecipient {
    /// From a RCPT TO refused by the batch parser.
    pub fn from_syntax(text: &str, error: &SyntaxError) -> Self {
        let (code, enhanced) = error.code();
        let address = text
            .trim()
            .trim_start_matches("TO:")
            .trim_start_matches("to:")
            .trim();
        let address = address.trim_start_matches('<').trim_end_matches('>');
        Self {
            address: one_line(address, 256),
            line: error.line,
            status: enhanced
                .parse()
                .unwrap_or_else(|_| Status::of_reply_code(code)),
            diagnostic: Some(error.to_string()),
            remote_mta: None,
            reason: format!("{error} (spool file line {})", error.line),
        }
    }
}

/// A limit of `per_minute` events, as a token bucket; waiting callers wait their turn.
pub struct Limiter {
    per_minute: u32,
    state: Mutex<(f64, Instant)>,
}

impl Limiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute,
            state: Mutex::new((f64::from(per_minute), Instant::now())),
        }
    }

    /// Waits until one more event is allowed (0: no limit).
    pub async fn acquire(&self) {
        if self.per_minute == 0 {
            return;
        }
        let rate = f64::from(self.per_minute) / 60.0;
        loop {
            let wait = {
                let mut state = self
                    .state
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let now = Instant::now();
                let (tokens, last) = *state;
                let tokens = (tokens + now.duration_since(last).as_secs_f64() * rate)
                    .min(f64::from(self.per_minute));
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / rate)
            };
            tracing::debug!(
                "CSM2115I Notification rate limit (NotifyLimit): waiting {} ms",
                wait.as_millis()
            );
            tokio::time::sleep(wait).await;
        }
    }
}

/// Most of a mail returned whole in a notification (`ReturnContent Full`); a larger
/// mail's notification carries its header only.
pub const RETURN_FULL_MAX: u64 = 1024 * 1024;

/// The original mail, for its notification or dead letter.
#[derive(Debug, Clone)]
pub struct Original {
    pub reverse_path: String,
    /// The mail says `Auto-Submitted` (other than `no`): never answered automatically.
    pub auto_submitted: bool,
    /// Its header block as sent (with cssmtp's headers), CRLF lines, unstuffed.
    pub header: Vec<u8>,
    /// The whole mail as sent, read from its file when needed.
    pub full: Option<deadletter::FullMail>,
    /// It must travel over TLS (STARTTLS in its spool file): its notification travels
    /// over TLS too, and a dead letter of it (or of its notification) keeps that
    /// requirement.
    pub needs_tls: bool,
}

/// What became of an undeliverable mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returned {
    /// A notification was accepted for the originator.
    Notified(String),
    /// Stored as a dead letter (the notification, or the mail when it has no originator).
    DeadLetter(PathBuf),
    /// Dead letter not stored (`DeadLetterAction Delete`), logged only.
    DeadLetterDeleted,
    /// `ReturnToMailFrom No`: logged only.
    NotReturned,
    /// Neither sent nor stored (the dead letter could not be written): the mail is not
    /// returned, and its spool file (or MailDirectory file) must be kept.
    Failed(String),
}

impl Returned {
    /// The mail was returned (or, as configured, only logged): its copy may go.
    pub fn is_done(&self) -> bool {
        !matches!(self, Self::Failed(_))
    }
}

impl std::fmt::Display for Returned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Notified(to) => write!(f, "notification sent to <{to}>"),
            Self::DeadLetter(path) => write!(f, "dead letter {}", path.display()),
            Self::DeadLetterDeleted => write!(f, "dead letter not kept (DeadLetterAction Delete)"),
            Self::NotReturned => write!(f, "not returned (ReturnToMailFrom No)"),
            Self::Failed(why) => write!(f, "NOT returned: {why}"),
        }
    }
}

/// Carries out notifications, dead letters and reports.
pub struct Notifier {
    /// The configuration in force (REFRESH changes it).
    pub config: Arc<LiveConfig>,
    pub host: String,
    /// Sends what it composes: each a queued mail with a one-attempt policy.
    pub generated: generated::Driver,
    pub telemetry: Telemetry,
    pub limiter: Limiter,
    /// The target servers: a mail that failed at a `Secure Yes` target needed TLS.
    pub router: Arc<Router>,
}

impl Notifier {
    fn message_id(&self) -> String {
        format!(
            "{}@{}",
            crate::headers::unique_token(Local::now()),
            self.host
        )
    }

    /// True when a mail must travel over TLS: its spool file said STARTTLS, or it
    /// failed at a `Secure Yes` target (whatever it carries of the mail keeps that
    /// protection).
    fn needs_tls(&self, original: &Original, failed: &[FailedRecipient]) -> bool {
        original.needs_tls || {
            let targets = self.router.targets();
            failed
                .iter()
                .filter_map(|f| f.remote_mta)
                .any(|remote| targets.iter().any(|t| t.secure && t.addr == remote))
        }
    }

    /// Returns an undeliverable mail: a notification to its originator, or a dead letter.
    /// A notification about a mail that needed TLS is sent over TLS only (else it becomes
    /// a dead letter that keeps `STARTTLS`).
    pub async fn return_mail(
        &self,
        origin: &MailOrigin<'_>,
        original: &Original,
        failed: &[FailedRecipient],
    ) -> Returned {
        let file = &origin.job.file_name;
        let config = self.config.current();
        if !config.undeliverable.return_to_mail_from {
            tracing::info!(
                "CSM2104I Mail {} of {file} not returned to <{}> (ReturnToMailFrom No)",
                origin.mail,
                original.reverse_path
            );
            return Returned::NotReturned;
        }
        let needs_tls = self.needs_tls(original, failed);
        let reasons: Vec<String> = failed
            .iter()
            .map(|f| format!("<{}>: {}", f.address, f.reason))
            .collect();
        if original.reverse_path.is_empty() || original.auto_submitted {
            // Nobody to return it to, or answering it could start a loop.
            let why = if original.reverse_path.is_empty() {
                "its reverse path is null"
            } else {
                "it is an automatic message (Auto-Submitted)"
            };
            let mut notes = vec![format!(
                "undeliverable mail {} of spool file {file}; not returned: {why}",
                origin.mail
            )];
            notes.extend(reasons);
            let header = dot_stuff(&original.header);
            let rcpts: Vec<String> = failed.iter().map(|f| f.address.clone()).collect();
            let letter = deadletter::Letter {
                from: &original.reverse_path,
                to: &rcpts,
                // The mail is copied from its file a chunk at a time, whatever its size.
                text: original
                    .full
                    .as_ref()
                    .map_or(deadletter::Text::Wire(&header), deadletter::Text::Mail),
                starttls: needs_tls,
            };
            return self
                .dead_letter(origin, deadletter::Kind::Undeliverable, &notes, &letter)
                .await;
        }
        // The whole mail (up to 1 MiB, read only then) with ReturnContent Full, else its
        // header.
        let full = match original.full.as_ref() {
            Some(f)
                if f.wire_size() <= RETURN_FULL_MAX
                    && config.undeliverable.return_content
                        == crate::config::ReturnContent::Full =>
            {
                f.read()
                    .await
                    .ok()
                    .map(|f| cssmtp_wire::data::dot_unstuff(&f))
            }
            _ => None,
        };
        let returned = match &full {
            Some(full) => dsn::Returned::Full(full),
            None => dsn::Returned::Headers(&original.header),
        };
        let id = self.message_id();
        let notification = dsn::notification(
            origin,
            &original.reverse_path,
            failed,
            returned,
            Local::now(),
            &id,
        );
        let wire = dot_stuff(&notification);
        self.limiter.acquire().await;
        match self
            .send_once(
                "",
                std::slice::from_ref(&original.reverse_path),
                &wire,
                needs_tls,
            )
            .await
        {
            Ok(()) => {
                self.telemetry.emit(TelemetryEvent::Notified {
                    at: At {
                        tkid: None,
                        file,
                        mail: origin.mail,
                    },
                    to: &original.reverse_path,
                    id: &format!("<{id}>"),
                });
                Returned::Notified(original.reverse_path.clone())
            }
            // Never handed to a connection (cssmtp is stopping): the journal does not say
            // the mail was returned, so the next start returns it; a stop does not turn
            // it into a dead letter.
            Err(SendFailure::NotSent(why)) => Returned::Failed(why),
            Err(SendFailure::Failed(failures)) => {
                let mut notes = vec![format!(
                    "undeliverable notification for mail {} of spool file {file} could not be sent",
                    origin.mail
                )];
                notes.extend(failures);
                notes.extend(reasons);
                let letter = deadletter::Letter {
                    from: "",
                    to: std::slice::from_ref(&original.reverse_path),
                    text: deadletter::Text::Wire(&wire),
                    starttls: needs_tls,
                };
                self.dead_letter(origin, deadletter::Kind::Undeliverable, &notes, &letter)
                    .await
            }
        }
    }

    /// Sends an error report about a spool file, as `Report` says; returns what was done,
    /// or why the report could be neither written, sent nor stored as a dead letter (the
    /// spool file must then be kept). A report about a spool file that asked for TLS is
    /// sent over TLS only.
    pub async fn report(&self, report: &FileReport) -> Result<Option<String>, String> {
        let config = self.config.current();
        let writer = &config.ext_wrt_name;
        match config.report {
            Report::None => Ok(None),
            Report::File => {
                let text = report::text(report, &self.host, writer);
                let dir = config.report_directory();
                let name = format!("{}.report", report.job.file_name);
                let written = crate::durable::keep(dir, name, text.into_bytes(), 0o640).await;
                match written {
                    Ok(path) => {
                        let how = format!("written to {}", crate::escape::path(&path));
                        self.telemetry.emit(TelemetryEvent::Reported {
                            file: &report.job.file_name,
                            how: &how,
                        });
                        Ok(Some(format!("error report {how}")))
                    }
                    Err(e) => {
                        tracing::error!(
                            "CSM2109E Cannot write the error report for {}: {e}",
                            report.job.file_name
                        );
                        Err(format!("cannot write the error report: {e}"))
                    }
                }
            }
            Report::Admin => {
                let from = config.report_mail_from.clone().unwrap_or_default();
                let admins = config.mail_administrators.clone();
                let mail = report::mail(
                    report,
                    &self.host,
                    writer,
                    &from,
                    &admins,
                    Local::now(),
                    &self.message_id(),
                );
                let wire = dot_stuff(&mail);
                self.limiter.acquire().await;
                match self
                    .send_once(&from, &admins, &wire, report.needs_tls)
                    .await
                {
                    Ok(()) => {
                        let how = format!("sent to {}", admins.join(", "));
                        self.telemetry.emit(TelemetryEvent::Reported {
                            file: &report.job.file_name,
                            how: &how,
                        });
                        Ok(Some(format!("error report {how}")))
                    }
                    Err(failure) => {
                        let failures = match failure {
                            SendFailure::NotSent(why) => vec![why],
                            SendFailure::Failed(failures) => failures,
                        };
                        let origin = MailOrigin {
                            host: &self.host,
                            job: &report.job,
                            mail: 0,
                            line: 0,
                            arrival: Local::now(),
                        };
                        let mut notes = vec![format!(
                            "error report for spool file {} could not be sent",
                            report.job.file_name
                        )];
                        notes.extend(failures);
                        let done = self
                            .dead_letter(
                                &origin,
                                deadletter::Kind::Report,
                                &notes,
                                &deadletter::Letter {
                                    from: &from,
                                    to: &admins,
                                    text: deadletter::Text::Wire(&wire),
                                    starttls: report.needs_tls,
                                },
                            )
                            .await;
                        match done {
                            Returned::Failed(why) => Err(why),
                            done => Ok(Some(done.to_string())),
                        }
                    }
                }
            }
        }
    }

    /// Sends a generated mail once, through the queue core ([`generated`]).
    async fn send_once(
        &self,
        from: &str,
        to: &[String],
        wire: &[u8],
        needs_tls: bool,
    ) -> Result<(), SendFailure> {
        let mail = GeneratedMail {
            from,
            to,
            wire,
            needs_tls,
        };
        self.generated.send(mail).await
    }

    /// Stores (or, with DeadLetterAction Delete, only logs) a dead letter.
    async fn dead_letter(
        &self,
        origin: &MailOrigin<'_>,
        kind: deadletter::Kind,
        notes: &[String],
        letter: &deadletter::Letter<'_>,
    ) -> Returned {
        let at = (!matches!(kind, deadletter::Kind::Report)).then_some(At {
            tkid: None,
            file: &origin.job.file_name,
            mail: origin.mail,
        });
        if self.config.current().undeliverable.dead_letter_action == DeadLetterAction::Delete {
            self.telemetry.emit(TelemetryEvent::DeadLetter {
                at,
                stored: None,
                notes,
            });
            return Returned::DeadLetterDeleted;
        }
        let dir = self.config.current().dead_letter_directory();
        let name = deadletter::file_name(
            &origin.job.job_name,
            &origin.job.job_id,
            origin.mail,
            kind,
            Local::now(),
        );
        let written =
            deadletter::store(dir, name, &self.host, deadletter::TITLE, notes, letter).await;
        match written {
            Ok(path) => {
                self.telemetry.emit(TelemetryEvent::DeadLetter {
                    at,
                    stored: Some(&path),
                    notes,
                });
                Returned::DeadLetter(path)
            }
            Err(e) => {
                tracing::error!(
                    "CSM2109E Cannot store a dead letter in {} ({e}): {}; the mail is kept",
                    self.config.current().dead_letter_directory().display(),
                    notes.join("; ")
                );
                Returned::Failed(format!("cannot store the dead letter: {e}"))
            }
        }
    }
}

#[cfg(test)]
mod tests;
