//! Replies as typed values: each command's answer is one value from which both the
//! console lines and the JSON `data` are made ([`Answer`]), and each refusal is a
//! [`Refusal`], never a string built or searched in logic.

use std::net::IpAddr;

use serde::Serialize;

use super::Reply;

/// A command's answer: serialised, it is the reply's `data`; [`lines`](Self::lines) is
/// the console reply.
pub trait Answer: Serialize {
    /// The console reply, line by line, each message line starting with its message ID.
    fn lines(&self) -> Vec<String>;

    /// The reply to send.
    fn reply(&self) -> Reply {
        Reply {
            ok: true,
            lines: self.lines(),
            // Only maps with string keys and plain values are serialised: this cannot fail.
            data: serde_json::to_value(self).unwrap_or_default(),
        }
    }
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `DISPLAY,TARGETS,ADDR=`: no target has that address.
    NoTarget(IpAddr),
    /// No spool task has that TKID.
    NoTask(u32),
    /// The spool task ended before it answered.
    TaskEnded(u32),
    /// The spool task did not answer in time.
    TaskSilent(u32),
    /// `FLUSHRETRY,AGE=` without extended retry.
    ExtendedInactive,
    /// Extended retry ended before it answered.
    ExtendedEnded,
    /// REFRESH: the configuration could not be read or used (the reason).
    Refresh(String),
    /// REFRESHIPLIST: the targets could not be resolved (the reason).
    RefreshIplist(String),
    /// USEREXIT,LEVEL=VERSION1 without a UserExit statement.
    NoUserExit,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoTarget(ip) => write!(f, "CSM5090E No target server has address {ip}"),
            Self::NoTask(tkid) => write!(f, "CSM5090E No spool task TKID={tkid}"),
            Self::TaskEnded(tkid) => write!(f, "CSM5090E Spool task TKID={tkid} has ended"),
            Self::TaskSilent(tkid) => write!(
                f,
                "CSM5090E Spool task TKID={tkid} did not answer within 30 seconds; the request stays queued"
            ),
            Self::ExtendedInactive => {
                f.write_str("CSM5090E FLUSHRETRY,AGE: extended retry is not active")
            }
            Self::ExtendedEnded => f.write_str("CSM5090E FLUSHRETRY,AGE: extended retry has ended"),
            Self::Refresh(why) => write!(f, "CSM5014E REFRESH: {why}; nothing changed"),
            Self::RefreshIplist(why) => {
                write!(f, "CSM5014E REFRESHIPLIST: {why}; the list is unchanged")
            }
            Self::NoUserExit => f.write_str(
                "CSM5090E USEREXIT: no UserExit statement names an exit program; nothing changed",
            ),
        }
    }
}

impl From<Refusal> for Reply {
    fn from(refusal: Refusal) -> Self {
        Self::error(refusal.to_string())
    }
}

/// `YES` or `NO`, as the console shows a flag.
pub(super) fn yes(b: bool) -> &'static str {
    if b { "YES" } else { "NO" }
}
