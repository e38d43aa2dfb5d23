//! What became of one spool file: the report a spool task hands back, which error
//! reports, notifications, the control interface and the demo read.

use std::path::PathBuf;

use cssmtp_batch::SyntaxError;

use super::job::JobIdentity;

/// A recipient that will not get the mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undeliverable {
    pub mail: u32,
    /// Line of the RCPT TO.
    pub line: u32,
    pub address: String,
    pub reason: String,
}

/// What became of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Every recipient delivered or returned, no error in the file: removed.
    Deleted,
    /// Errors in the file: moved to `hold/` (path of the file there).
    Held(PathBuf),
    /// Errors in the file, BadSpoolDisp Delete: removed.
    Removed,
    /// cssmtp stopped first: the file stays in `active/` for the next start.
    LeftActive,
}

/// The result of one spool file.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub tkid: u32,
    pub job: JobIdentity,
    /// The user who owns the spool file.
    pub owner: String,
    pub mails: u32,
    pub rcpts_delivered: u64,
    pub undeliverable_count: u64,
    pub undeliverable: Vec<Undeliverable>,
    /// Recipients handed to extended retry.
    pub rcpts_extended: u64,
    /// Recipients possibly delivered before a restart and held (`PossiblyDelivered
    /// Hold`).
    pub possibly_delivered_held: u64,
    /// What was done for each mail with undeliverable recipients.
    pub returns: Vec<(u32, String)>,
    pub errors: Vec<SyntaxError>,
    /// A problem with the file as a whole (unreadable, JESJobSize).
    pub file_problem: Option<String>,
    /// `Options TestMode YES`: nothing was sent.
    pub test_mode: bool,
    /// A mail of the file asked for TLS (`STARTTLS`): its error report travels over TLS
    /// only.
    pub needs_tls: bool,
    /// Mails whose undeliverable recipients could be neither returned nor kept for
    /// extended retry (a dead letter or MailDirectory file could not be written): the
    /// spool file stays in `active/`, and the next start returns them.
    pub unreturned: Vec<(u32, String)>,
    pub disposition: Disposition,
    /// What was done with the error report.
    pub report: Option<String>,
    /// A mail's text changed after it was read (see `file_problem`): the file is held
    /// whatever `BadSpoolDisp` says.
    pub must_hold: bool,
}

impl FileReport {
    /// True when the file had anything to report.
    pub fn has_problems(&self) -> bool {
        self.undeliverable_count > 0 || self.possibly_delivered_held > 0 || self.is_bad()
    }

    /// True when the file itself has errors (not only undeliverable recipients): it
    /// follows `BadSpoolDisp`.
    pub fn is_bad(&self) -> bool {
        self.file_problem.is_some() || self.errors.iter().any(|e| !e.is_recipient_error())
    }
}
