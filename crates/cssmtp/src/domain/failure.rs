//! What went wrong with a recipient, and where: the stage of the dialogue, the problem,
//! the target server, the RFC 3463 status, and a recipient that will not get its mail.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use cssmtp_wire::{EnhancedStatus, Reply};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An RFC 3463 enhanced status code, `class.subject.detail` (written `5.1.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Status {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl Status {
    /// 4.4.2: the connection failed, timed out or was given up.
    pub const CONNECTION: Self = Self::new(4, 4, 2);
    /// 4.5.0: the server's bytes were not valid SMTP.
    pub const PROTOCOL: Self = Self::new(4, 5, 0);
    /// 4.7.5: STARTTLS or the TLS handshake failed.
    pub const TLS: Self = Self::new(4, 7, 5);
    /// 5.3.4: larger than every target accepts.
    pub const TOO_BIG: Self = Self::new(5, 3, 4);
    /// 5.7.10: the mail requires TLS and no target offers it.
    pub const NEEDS_TLS: Self = Self::new(5, 7, 10);
    /// 5.6.3: 8-bit text and no target offers 8BITMIME.
    pub const NEEDS_8BIT: Self = Self::new(5, 6, 3);
    /// 5.6.7: UTF-8 addresses and no target offers SMTPUTF8 (RFC 6531 §3.5).
    pub const NEEDS_UTF8: Self = Self::new(5, 6, 7);
    /// 4.4.1: no reachable target can take the mail.
    pub const NO_ROUTE: Self = Self::new(4, 4, 1);
    /// 5.1.3: an envelope value cannot be sent safely.
    pub const BAD_ARGUMENT: Self = Self::new(5, 1, 3);
    /// 4.3.0: the mail's text changed in the spool file.
    pub const TEXT_CHANGED: Self = Self::new(4, 3, 0);
    /// 4.4.7: delivery time expired (RetryLimit or extended retry gave up).
    pub const EXPIRED: Self = Self::new(4, 4, 7);
    /// 4.5.3: too many recipients (or messages) for the server.
    pub const TOO_MANY: Self = Self::new(4, 5, 3);

    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        Self {
            class,
            subject,
            detail,
        }
    }

    /// `X.0.0` for a reply code `Xyz` without an enhanced code.
    pub fn of_reply_code(code: u16) -> Self {
        Self::new(u8::try_from(code / 100).unwrap_or(u8::MAX), 0, 0)
    }
}

impl From<EnhancedStatus> for Status {
    fn from(e: EnhancedStatus) -> Self {
        Self::new(e.class, e.subject, e.detail)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// Text that is not `class.subject.detail`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an enhanced status code (class.subject.detail)")]
pub struct BadStatus;

impl FromStr for Status {
    type Err = BadStatus;

    /// Reads `class.subject.detail`, each up to three digits (RFC 3463 allows one
    /// digit of class; a server's reply may carry any value up to 255, and whatever
    /// [`Status`] writes it reads back).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('.');
        let (Some(class), Some(subject), Some(detail), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BadStatus);
        };
        let digits = |p: &str, max: usize| {
            !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit())
        };
        if !(digits(class, 3) && digits(subject, 3) && digits(detail, 3)) {
            return Err(BadStatus);
        }
        Ok(Self::new(
            class.parse().map_err(|_| BadStatus)?,
            subject.parse().map_err(|_| BadStatus)?,
            detail.parse().map_err(|_| BadStatus)?,
        ))
    }
}

impl PartialEq<&str> for Status {
    fn eq(&self, other: &&str) -> bool {
        other.parse::<Self>().is_ok_and(|o| o == *self)
    }
}

/// Written as its text (`"5.1.1"`), as the journal always had it.
impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Status {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

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
    /// SMTP AUTH (RFC 4954): a failure here is the target's, never the mail's.
    Auth,
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
    /// The user exit (`UserExit`), before the mail went to a target.
    UserExit,
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
            Self::Auth => "AUTH",
            Self::MailFrom => "MAIL FROM",
            Self::RcptTo => "RCPT TO",
            Self::Data => "DATA",
            Self::DataBlock => "mail text",
            Self::DataTerm => "end of mail text",
            Self::Rset => "RSET",
            Self::Quit => "QUIT",
            Self::UserExit => "user exit",
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
    /// SMTP AUTH could not be done: not offered, not over TLS, no secret (the words
    /// never hold the secret).
    Auth(String),
    /// The mail is larger than every target accepts.
    TooBig { size: u64 },
    /// The mail requires TLS and no target offers STARTTLS.
    NoTlsTarget,
    /// The mail has 8-bit text and no target offers 8BITMIME (RFC 6152).
    No8BitTarget,
    /// The mail has UTF-8 (non-ASCII) addresses and no target offers SMTPUTF8
    /// (RFC 6531).
    NoUtf8Target,
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
            Self::Auth(e) => write!(f, "authentication not possible: {e}"),
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
            Self::NoUtf8Target => write!(
                f,
                "553 5.6.7 mail has a non-ASCII address and no target server offers SMTPUTF8"
            ),
            Self::OnlyDownTargets(last) => write!(
                f,
                "451 4.4.1 no reachable target server can take the mail (its size, TLS, 8BITMIME or SMTPUTF8); only target servers that are down might ({last})"
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
    /// The target server, when one was involved.
    pub target: Option<SocketAddr>,
    pub problem: Problem,
}

impl Failure {
    pub fn new(stage: Stage, target: Option<SocketAddr>, problem: Problem) -> Self {
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
    pub fn status(&self) -> Status {
        match &self.problem {
            Problem::Reply(reply) => match reply.enhanced {
                Some(e) => Status::from(e),
                None => Status::of_reply_code(reply.code),
            },
            Problem::Timeout(_)
            | Problem::Connection(_)
            | Problem::NotRecorded(_)
            | Problem::Stopping => Status::CONNECTION,
            Problem::Protocol(_) => Status::PROTOCOL,
            Problem::Tls(_) => Status::TLS,
            // The target's failure, never a recipient's: as a connection failure.
            Problem::Auth(_) => Status::CONNECTION,
            Problem::TooBig { .. } => Status::TOO_BIG,
            Problem::NoTlsTarget => Status::NEEDS_TLS,
            Problem::No8BitTarget => Status::NEEDS_8BIT,
            Problem::NoUtf8Target => Status::NEEDS_UTF8,
            Problem::OnlyDownTargets(_) => Status::NO_ROUTE,
            Problem::UnsafeArgument(_) => Status::BAD_ARGUMENT,
            Problem::TextChanged(_) => Status::TEXT_CHANGED,
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

/// A recipient that will not get a mail, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecipient {
    pub address: String,
    /// Line of its RCPT TO.
    pub line: u32,
    /// RFC 3463 status, e.g. `5.1.1`.
    pub status: Status,
    /// The SMTP reply (or SMTP-style error text), for `Diagnostic-Code: smtp;`.
    pub diagnostic: Option<String>,
    /// The target server involved.
    pub remote_mta: Option<SocketAddr>,
    /// The whole story, for people.
    pub reason: String,
}

impl FailedRecipient {
    /// From a delivery failure; `note` is added to the reason (e.g. "RetryLimit of 5
    /// retries exhausted").
    pub fn from_failure(address: &str, line: u32, failure: &Failure, note: Option<&str>) -> Self {
        Self {
            address: address.to_owned(),
            line,
            status: failure.status(),
            diagnostic: failure.reply().map(ToString::to_string),
            remote_mta: failure.target,
            reason: match note {
                Some(note) => format!("{failure}; {note}"),
                None => failure.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_reads_and_writes_its_text() {
        for text in [
            "5.1.1",
            "4.4.7",
            "5.7.10",
            "2.0.0",
            "4.999.999",
            "255.255.255",
        ] {
            let status: Status = text.parse().unwrap();
            assert_eq!(status.to_string(), text);
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{text}\"")
            );
            assert_eq!(
                serde_json::from_str::<Status>(&format!("\"{text}\"")).unwrap(),
                status
            );
        }
        for bad in [
            "", "5", "5.1", "5.1.1.1", "5555.1.1", "256.1.1", "5.1000.1", "a.b.c", "5..1", "5.1.-1",
        ] {
            assert_eq!(bad.parse::<Status>(), Err(BadStatus), "{bad}");
        }
        assert_eq!(Status::of_reply_code(550), "5.0.0");
        assert_eq!(Status::EXPIRED, "4.4.7");
    }
}
