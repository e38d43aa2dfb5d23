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
    /// Each recipient and what became of it (for the MAIL record and `cssmtp trace`).
    pub fates: Vec<RcptFate>,
}

/// What became of one recipient of a final mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RcptFate {
    pub address: String,
    /// `delivered`, `undeliverable`, `extended_retry`, `held` or `kept` (not final in
    /// storage: sent again at the next start).
    pub fate: &'static str,
    /// Why it is undeliverable.
    pub reason: Option<String>,
}

impl MailSummary {
    /// Every recipient got the mail.
    pub fn all_sent(&self) -> bool {
        self.delivered == self.rcpts
    }
}

/// Tries of one mail kept for its MAIL record and `cssmtp trace`: at most this many.
pub const MAX_TRIES: usize = 32;

/// What a mail went through before it was final (its Message-ID, its tries), kept by
/// its spool task for the MAIL record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailLife {
    /// The Message-ID the mail went out with (its own, or the one cssmtp added).
    pub message_id: Option<String>,
    /// Each try at a target, oldest first (at most [`MAX_TRIES`]).
    pub tries: Vec<MailTry>,
    /// Tries not kept (beyond [`MAX_TRIES`]).
    pub tries_dropped: u32,
}

/// One try of a mail at a target (for some of its recipients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailTry {
    pub time: std::time::SystemTime,
    /// The target server ("" when none was reached).
    pub target: String,
    /// `accepted`, `retry`, `undeliverable` or `extended_retry`.
    pub result: &'static str,
    /// The recipient concerned (None: `count` recipients accepted together).
    pub address: Option<String>,
    pub count: usize,
    /// The reply or the failure, as logged.
    pub reply: String,
}

impl MailLife {
    /// Keeps a try (counting it only once [`MAX_TRIES`] are kept).
    pub fn push(&mut self, t: MailTry) {
        if self.tries.len() < MAX_TRIES {
            self.tries.push(t);
        } else {
            self.tries_dropped = self.tries_dropped.saturating_add(1);
        }
    }
}
