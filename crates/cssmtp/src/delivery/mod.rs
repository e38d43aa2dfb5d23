//! Delivery: sending mails to the target servers.
//!
//! Spool tasks put [`MailJob`]s on a bounded queue; `MaxConnections` [`worker`]s take
//! them, each keeping one SMTP [`session`] open and reusing it while mail keeps coming.
//! The [`router`] picks the target for each mail. Every recipient's result
//! ([`outcome::RcptResult`]) goes back to the spool task that owns the mail.

pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod charset;
pub(crate) mod cutoff;
pub(crate) mod dkim;
pub(crate) mod outcome;
pub(crate) mod resolve;
pub(crate) mod router;
pub mod session;
pub mod tls;
pub(crate) mod tls_policy;
pub(crate) mod worker;

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

pub use body::{MailText, SpoolText};
pub use outcome::{
    Disposition, Failure, Problem, RcptResult, Rotate, Stage, classify, session_matter,
};

pub use crate::domain::ids::MailKey;

/// One delivery attempt of one mail, for some of its recipients.
#[derive(Debug)]
pub struct MailJob {
    pub key: MailKey,

    /// The reverse path ("" for `<>`).
    pub reverse_path: String,
    /// The recipients to attempt now.
    pub recipients: Vec<String>,
    /// For each of `recipients`, its index among the mail's recipients.
    pub rcpt_index: Vec<usize>,
    /// The mail must travel over TLS (STARTTLS in its spool file).
    pub needs_tls: bool,
    /// The text (or an added header) holds a byte ≥ 0x80: it is sent only to a server
    /// offering 8BITMIME, with `BODY=8BITMIME` (RFC 6152).
    pub eight_bit: bool,
    /// Headers cssmtp adds (Received:, and Date:/Message-ID: when missing), wire form.
    pub headers: Arc<[u8]>,
    /// The text.
    pub text: MailText,
    /// Size as the receiver stores it: added headers plus text, without the dots of
    /// dot-stuffing (what SIZE= announces, and what SIZE routing compares).
    pub size: u64,
    /// Where the results go.
    pub reply: mpsc::UnboundedSender<MailOutcome>,
    /// Told of the mail's progress by the session: the final "." about to go, and its
    /// reply (spool mails, with `ChkPoint Yes`).
    pub ack: Option<Arc<dyn DeliveryAck>>,
}

/// What the owner of a mail is told as its transaction goes. The session reports; it
/// never persists: the owner turns these into its durable records.
pub trait DeliveryAck: Send + Sync {
    /// The final "." is about to go to these recipients (indexes among the mail's
    /// recipients), the server having accepted them. Returns once the owner has
    /// recorded that they may get the mail (surviving a crash of the process); the
    /// "." is written only after the returned receiver (if any) resolves (the record is
    /// then durable against a crash of the system too).
    ///
    /// # Errors
    /// Nothing could be recorded: the "." must not be sent.
    fn before_dot(&self, rcpts: &[usize]) -> Result<Option<oneshot::Receiver<()>>, NotRecorded>;

    /// The reply to the "." to `rcpts` was read (`delivered`: a positive one), or never
    /// came. Called before the session's next transaction.
    fn after_dot(&self, rcpts: &[usize], delivered: bool);
}

impl MailJob {
    /// The envelope has a non-ASCII (UTF-8) address: the mail goes only to a server
    /// offering SMTPUTF8, with `MAIL FROM:<…> SMTPUTF8` (RFC 6531).
    pub fn smtputf8(&self) -> bool {
        !self.reverse_path.is_ascii() || self.recipients.iter().any(|r| !r.is_ascii())
    }
}

/// The owner of a mail could not record it before its final ".".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRecorded(pub String);

impl std::fmt::Debug for dyn DeliveryAck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeliveryAck")
    }
}

/// The results of one [`MailJob`].
#[derive(Debug)]
pub struct MailOutcome {
    pub key: MailKey,
    /// `(index among the mail's recipients, result)`.
    pub results: Vec<(usize, RcptResult)>,
}
