//! What a failure says about the session (a fresh session, a following transaction);
//! what happened to a recipient and the one rule that decides retry or undeliverable
//! live in the leaf [`crate::domain::outcome`].

use cssmtp_wire::Reply;

pub use crate::domain::failure::{Failure, Problem, Stage, Status};
pub use crate::domain::outcome::{Disposition, RcptResult, classify};

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

#[cfg(test)]
mod tests {
    use super::*;

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
