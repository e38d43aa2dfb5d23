//! What happened to a recipient in one delivery attempt, and the one rule that decides
//! retry or undeliverable.

use std::net::SocketAddr;

use cssmtp_wire::{Reply, Severity};

use super::failure::{Failure, Problem};

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
        // AUTH failing (a 535 included) is the target's failure: never charged to a
        // recipient as undeliverable.
        | Problem::Auth(_)
        | Problem::OnlyDownTargets(_)
        | Problem::NotRecorded(_)
        | Problem::Stopping => Disposition::Retry,
        // Not a recipient's fault: a spool task holds the mail (see the variant); text
        // kept elsewhere (extended retry) is read again next time.
        Problem::TextChanged(_) => Disposition::Retry,
        Problem::TooBig { .. }
        | Problem::NoTlsTarget
        | Problem::No8BitTarget
        | Problem::NoUtf8Target
        | Problem::UnsafeArgument(_) => Disposition::Undeliverable,
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
}

/// A final mail, counted (for its accounting record and statistics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSummary {
    pub line: u32,
    pub reverse_path: String,
    /// Recipients it had (sent to, or refused by the parser).
    pub rcpts: usize,
    pub delivered: usize,
    pub undeliverable: usize,
    /// Parked in extended retry (or to be).
    pub extended: usize,
    pub held: usize,
    pub size: u64,
    pub attempts: u32,
}

impl MailSummary {
    /// Every recipient got the mail.
    pub fn all_sent(&self) -> bool {
        self.delivered == self.rcpts
    }
}
