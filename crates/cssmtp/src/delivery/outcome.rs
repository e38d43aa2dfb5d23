//! What happened to a recipient, and the one rule that decides retry or undeliverable.

use std::net::SocketAddr;

use cssmtp_wire::{Reply, Severity};

pub use crate::domain::failure::{Failure, Problem, Stage, Status};

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

/// Whether a reply says "too many" (messages in the session, or recipients in the
/// transaction): its enhanced code is 4.5.3 or, as many servers send no enhanced code or
/// another one, its text says "too many" (a heuristic on the server's words, kept here
/// alone).
fn says_too_many(reply: &Reply) -> bool {
    reply
        .enhanced
        .is_some_and(|e| Status::from(e) == Status::TOO_MANY)
        || reply.text().to_ascii_lowercase().contains("too many")
}

/// Whether a failure is a server's "too many messages" (at MAIL FROM: a limit of mails
/// per session) or "too many recipients" (at RCPT TO: per transaction) reply.
pub fn too_many(failure: &Failure) -> Option<Rotate> {
    let Problem::Reply(reply) = &failure.problem else {
        return None;
    };
    let says = says_too_many(reply);
    match failure.stage {
        Stage::MailFrom if matches!(reply.code, 421 | 451 | 452) && says => Some(Rotate::Session),
        Stage::RcptTo if reply.code == 452 && says => Some(Rotate::Transaction),
        _ => None,
    }
}

/// Whether a failure is about the session, not the mail: `None` for a failure the mail
/// itself is charged with (long retry, or undeliverable, by [`classify`]).
pub fn session_matter(failure: &Failure) -> Option<Rotate> {
    let too_many = says_too_many;
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
    Delivered { target: SocketAddr, reply: Reply },
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
    use std::time::Duration;

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
