//! What happened to a recipient, and the one rule that decides retry or undeliverable.

use std::fmt;
use std::time::Duration;

use cssmtp_wire::{Reply, Severity};

/// The step of the SMTP dialogue (or of routing) where something happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Choosing a target for the mail.
    Route,
    /// Resolving TargetName / TargetMx.
    Resolve,
    Connect,
    /// The server's 220 greeting.
    Greeting,
    Ehlo,
    Helo,
    StartTls,
    TlsHandshake,
    MailFrom,
    RcptTo,
    Data,
    /// Sending the mail text.
    DataBlock,
    /// Waiting for the reply to the final ".": a failure here means the mail may or may
    /// not have been accepted.
    DataTerm,
    Rset,
    Quit,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Route => "routing",
            Self::Resolve => "resolving",
            Self::Connect => "connect",
            Self::Greeting => "greeting",
            Self::Ehlo => "EHLO",
            Self::Helo => "HELO",
            Self::StartTls => "STARTTLS",
            Self::TlsHandshake => "TLS handshake",
            Self::MailFrom => "MAIL FROM",
            Self::RcptTo => "RCPT TO",
            Self::Data => "DATA",
            Self::DataBlock => "mail text",
            Self::DataTerm => "end of mail text",
            Self::Rset => "RSET",
            Self::Quit => "QUIT",
        })
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The server answered with a negative (or an unexpected) reply.
    Reply(Reply),
    /// No answer within the stage's timeout.
    Timeout(Duration),
    /// The connection failed or was closed.
    Connection(String),
    /// The server's bytes were not valid SMTP.
    Protocol(String),
    /// STARTTLS or the TLS handshake failed (including certificate verification).
    Tls(String),
    /// The mail is larger than every target accepts.
    TooBig { size: u64 },
    /// The mail requires TLS and no target offers STARTTLS.
    NoTlsTarget,
    /// The mail has 8-bit text and no target offers 8BITMIME (RFC 6152).
    No8BitTarget,
    /// No reachable target can take the mail (size, TLS, 8BITMIME); only targets that
    /// are down might: the last failure of one of them.
    OnlyDownTargets(String),
    /// An envelope value cannot be sent safely (it would inject a command).
    UnsafeArgument(String),
    /// Delivery was interrupted because cssmtp is stopping.
    Stopping,
    /// The mail's text is not what was parsed (its spool file changed since), or a line of
    /// it cannot go on the wire; found before the final ".", which was not sent. A spool
    /// task holds such a mail, with its file, for the operator (never sent half-checked).
    TextChanged(String),
    /// The mail's record could not be made durable before its final "." (the store
    /// cannot write): the "." was not sent; the mail goes again once the store can
    /// record, not charged an attempt.
    NotRecorded(String),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Reply(reply) => write!(f, "{reply}"),
            Self::Timeout(d) => write!(f, "no reply within {} seconds", d.as_secs()),
            Self::Connection(e) => write!(f, "connection failed: {e}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Tls(e) => write!(f, "TLS failed: {e}"),
            Self::TooBig { size } => {
                write!(
                    f,
                    "552 5.3.4 mail of {size} bytes is larger than every target server accepts"
                )
            }
            Self::NoTlsTarget => write!(
                f,
                "530 5.7.10 mail requires TLS and no target server offers STARTTLS"
            ),
            Self::No8BitTarget => write!(
                f,
                "554 5.6.3 mail has 8-bit text and no target server offers 8BITMIME"
            ),
            Self::OnlyDownTargets(last) => write!(
                f,
                "451 4.4.1 no reachable target server can take the mail (its size, TLS or 8BITMIME); only target servers that are down might ({last})"
            ),
            Self::UnsafeArgument(e) => write!(f, "{e}"),
            Self::Stopping => write!(f, "cssmtp is stopping"),
            Self::TextChanged(why) => write!(
                f,
                "the mail text changed in the spool file after it was read ({why}); the final \".\" was not sent"
            ),
            Self::NotRecorded(why) => write!(f, "connection failed: {why}"),
        }
    }
}

/// A failure with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub stage: Stage,
    /// The target server, as `ip:port`, when one was involved.
    pub target: Option<String>,
    pub problem: Problem,
}

impl Failure {
    pub fn new(stage: Stage, target: Option<String>, problem: Problem) -> Self {
        Self {
            stage,
            target,
            problem,
        }
    }

    /// The server reply, when the failure is one.
    pub fn reply(&self) -> Option<&Reply> {
        match &self.problem {
            Problem::Reply(reply) => Some(reply),
            _ => None,
        }
    }
}

impl Failure {
    /// The RFC 3463 status code for a notification: the server's enhanced code when it
    /// sent one, else one that says the same.
    pub fn status(&self) -> String {
        match &self.problem {
            Problem::Reply(reply) => match reply.enhanced {
                Some(e) => e.to_string(),
                None => format!("{}.0.0", reply.code / 100),
            },
            Problem::Timeout(_)
            | Problem::Connection(_)
            | Problem::NotRecorded(_)
            | Problem::Stopping => "4.4.2".into(),
            Problem::Protocol(_) => "4.5.0".into(),
            Problem::Tls(_) => "4.7.5".into(),
            Problem::TooBig { .. } => "5.3.4".into(),
            Problem::NoTlsTarget => "5.7.10".into(),
            Problem::No8BitTarget => "5.6.3".into(),
            Problem::OnlyDownTargets(_) => "4.4.1".into(),
            Problem::UnsafeArgument(_) => "5.1.3".into(),
            Problem::TextChanged(_) => "4.3.0".into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Some(target) => write!(f, "{} (at {} with {target})", self.problem, self.stage),
            None => write!(f, "{} (at {})", self.problem, self.stage),
        }
    }
}

/// Whether a failed recipient is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Try again later (long retry).
    Retry,
    /// Give up: the recipient is undeliverable.
    Undeliverable,
}

/// The one rule deciding retry or undeliverable. Every problem is listed: a new kind of
/// problem does not compile until someone decides.
pub fn classify(problem: &Problem) -> Disposition {
    match problem {
        Problem::Reply(reply) => match reply.severity() {
            Severity::PermanentNegative => Disposition::Undeliverable,
            // 4xx, and a 2xx/3xx where a negative reply was expected (a confused
            // server): try again.
            Severity::TransientNegative
            | Severity::PositiveCompletion
            | Severity::PositiveIntermediate => Disposition::Retry,
        },
        Problem::Timeout(_)
        | Problem::Connection(_)
        | Problem::Protocol(_)
        | Problem::Tls(_)
        | Problem::OnlyDownTargets(_)
        | Problem::NotRecorded(_)
        | Problem::Stopping => Disposition::Retry,
        // Not a recipient's fault: a spool task holds the mail (see the variant); text
        // kept elsewhere (extended retry) is read again next time.
        Problem::TextChanged(_) => Disposition::Retry,
        Problem::TooBig { .. }
        | Problem::NoTlsTarget
        | Problem::No8BitTarget
        | Problem::UnsafeArgument(_) => Disposition::Undeliverable,
    }
}

/// What a failure says about the session rather than the mail: the recipient goes again
/// at once, not charged an attempt (see [`session_matter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotate {
    /// The server ended the session (421, a closed connection before the text) or will
    /// take no more mail on it (451/452 "too many messages" at MAIL FROM, RFC 5321
    /// §4.5.3.1.10): a fresh session.
    Session,
    /// The transaction has all the recipients the server takes (452 at RCPT TO, RFC 5321
    /// §4.5.3.1.8): a following transaction.
    Transaction,
}

/// Whether a failure is a server's "too many messages" (at MAIL FROM: a limit of mails
/// per session) or "too many recipients" (at RCPT TO: per transaction) reply.
pub fn too_many(failure: &Failure) -> Option<Rotate> {
    let Problem::Reply(reply) = &failure.problem else {
        return None;
    };
    let says = reply
        .enhanced
        .is_some_and(|e| e.class == 4 && e.subject == 5 && e.detail == 3)
        || reply.text().to_ascii_lowercase().contains("too many");
    match failure.stage {
        Stage::MailFrom if matches!(reply.code, 421 | 451 | 452) && says => Some(Rotate::Session),
        Stage::RcptTo if reply.code == 452 && says => Some(Rotate::Transaction),
        _ => None,
    }
}

/// Whether a failure is about the session, not the mail: `None` for a failure the mail
/// itself is charged with (long retry, or undeliverable, by [`classify`]).
pub fn session_matter(failure: &Failure) -> Option<Rotate> {
    let too_many = |reply: &Reply| {
        reply
            .enhanced
            .is_some_and(|e| e.class == 4 && e.subject == 5 && e.detail == 3)
            || reply.text().to_ascii_lowercase().contains("too many")
    };
    match (&failure.problem, failure.stage) {
        (Problem::Reply(reply), _) if reply.code == 421 => Some(Rotate::Session),
        (Problem::Reply(reply), Stage::MailFrom)
            if matches!(reply.code, 451 | 452) && too_many(reply) =>
        {
            Some(Rotate::Session)
        }
        (Problem::Reply(reply), Stage::RcptTo) if reply.code == 452 && too_many(reply) => {
            Some(Rotate::Transaction)
        }
        // Closed before the text went: nothing of the mail is in doubt. (A failure while
        // the text goes, or waiting for the reply to ".", keeps the long-retry rule.)
        (Problem::Connection(_), Stage::MailFrom | Stage::RcptTo | Stage::Data | Stage::Rset) => {
            Some(Rotate::Session)
        }
        _ => None,
    }
}

/// The result of one delivery attempt for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    /// The target accepted the mail for this recipient.
    Delivered { target: String, reply: Reply },
    /// Not delivered; try again.
    Retry(Failure),
    /// Not delivered; never will be.
    Undeliverable(Failure),
}

impl RcptResult {
    /// The result for a failure, by [`classify`].
    pub fn failed(failure: Failure) -> Self {
        match classify(&failure.problem) {
            Disposition::Retry => Self::Retry(failure),
            Disposition::Undeliverable => Self::Undeliverable(failure),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let reply = |code| Problem::Reply(Reply::new(code, None, "x"));
        assert_eq!(classify(&reply(451)), Disposition::Retry);
        assert_eq!(classify(&reply(550)), Disposition::Undeliverable);
        assert_eq!(classify(&reply(354)), Disposition::Retry);
        assert_eq!(
            classify(&Problem::Timeout(Duration::from_secs(1))),
            Disposition::Retry
        );
        assert_eq!(
            classify(&Problem::TooBig { size: 1 }),
            Disposition::Undeliverable
        );
        assert_eq!(classify(&Problem::NoTlsTarget), Disposition::Undeliverable);
        assert_eq!(
            classify(&Problem::Tls("bad certificate".into())),
            Disposition::Retry
        );
    }

    #[test]
    fn session_matters() {
        let at = |stage, code, text| {
            session_matter(&Failure::new(
                stage,
                None,
                Problem::Reply(Reply::new(code, None, text)),
            ))
        };
        assert_eq!(at(Stage::MailFrom, 421, "closing"), Some(Rotate::Session));
        assert_eq!(at(Stage::DataTerm, 421, "closing"), Some(Rotate::Session));
        assert_eq!(
            at(Stage::MailFrom, 452, "Too many messages in this session"),
            Some(Rotate::Session)
        );
        assert_eq!(
            at(Stage::RcptTo, 452, "Too many recipients"),
            Some(Rotate::Transaction)
        );
        assert_eq!(at(Stage::RcptTo, 452, "Mailbox full"), None);
        assert_eq!(at(Stage::MailFrom, 451, "Local error"), None);
        assert_eq!(at(Stage::RcptTo, 450, "Greylisted"), None);
        let closed = |stage| {
            session_matter(&Failure::new(
                stage,
                None,
                Problem::Connection("closed by the server".into()),
            ))
        };
        assert_eq!(closed(Stage::RcptTo), Some(Rotate::Session));
        assert_eq!(closed(Stage::DataTerm), None);
        assert_eq!(closed(Stage::DataBlock), None);
    }
}
