//! What goes into the state machine ([`Event`]) and what comes out of it ([`Effect`],
//! [`Note`]).

use std::time::{Duration, Instant};

use super::{Change, MailSummary, Recovered, Unparked};
use crate::delivery::outcome::{Failure, RcptResult};
use crate::domain::failure::FailedRecipient;

/// A mail as parsed, for [`Event::Accept`].
#[derive(Debug)]
pub struct NewMail<T> {
    pub ordinal: u32,
    pub line: u32,
    pub reverse_path: String,
    /// Size as the receiver stores it.
    pub size: u64,
    /// `(address, line)` of each recipient to send to.
    pub rcpts: Vec<(String, u32)>,
    /// Recipients the parser refused.
    pub rejected: Vec<FailedRecipient>,
    /// What storage knew of the mail before a restart.
    pub recovered: Option<Recovered>,
    pub payload: T,
}

/// What happens to the state.
#[derive(Debug)]
pub enum Event<T> {
    /// The parser read a mail.
    Accept(NewMail<T>),
    /// The parser reached the end of the file (or gave up on it).
    ParseDone,
    /// The results of one delivery attempt: `(recipient index, result)`.
    Delivered {
        mail: u32,
        results: Vec<(usize, RcptResult)>,
        now: Instant,
    },
    /// Time passed: mails due for retry go again.
    Due { now: Instant },
    /// Sending may (false) or may not (true) go on: SUSPEND,IMMEDIATE, or a store that
    /// cannot record.
    Blocked(bool),
    /// FLUSHRETRY: mails in long retry leave it now.
    FlushRetry,
    /// MODIFY USEREXIT: mails waiting in long retry are tried now (the exit that held
    /// them may have changed), without waiting for their interval.
    RetryNow,
    /// The possibly delivered recipients of a mail were written to the hold area (or
    /// not: they are sent again).
    HoldDone { mail: u32, ok: bool },
    /// The parked recipients of a mail were written to extended retry (or not).
    ParkDone { mail: u32, ok: bool },
    /// A mail's return ended: `done` when it was returned (notification or dead letter).
    Returned { mail: u32, done: bool },
    /// A parked mail's turn (extended retry; only in a queue made with
    /// [`super::FileQueue::parked`]).
    Unpark(Unparked<T>),
}

/// What a state change tells people (logs, statistics, the file's report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A recipient will not get its mail.
    Undeliverable { mail: u32, failed: FailedRecipient },
    /// Recipients accepted by a target.
    Delivered {
        mail: u32,
        count: usize,
        target: String,
        /// The target's reply (formatted only if it is logged).
        reply: cssmtp_wire::Reply,
    },
    /// A recipient will be tried again.
    Retrying {
        mail: u32,
        address: String,
        attempt: u32,
        failure: Failure,
    },
    /// A mail went into long retry (once per mail).
    IntoRetry { mail: u32 },
    /// A recipient goes to extended retry.
    ToExtended {
        mail: u32,
        address: String,
        failure: Failure,
    },
    /// A mail's text changed in the spool file: held with the file.
    TextChanged {
        mail: u32,
        line: u32,
        failure: Failure,
    },
    /// A recipient was possibly delivered before a restart.
    PossiblyDelivered { mail: u32, address: String },
    /// What storage knew of a mail before a restart.
    Restored {
        mail: u32,
        delivered: usize,
        parked: usize,
        held: usize,
        failed: Vec<FailedRecipient>,
    },
    /// FLUSHRETRY took `count` mails out of long retry.
    Flushed { count: u64 },
    /// A parked recipient failed again for now: it stays parked.
    StaysParked {
        mail: u32,
        address: String,
        failure: Failure,
    },
    /// A parked mail reached its Age (or FLUSHRETRY,AGE=): its recipients fail.
    Expired { mail: u32, reason: String },
}

/// What the driver does, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Send the mail to these recipients (its attempt is counted).
    Send { mail: u32, rcpts: Vec<usize> },
    /// Make this change durable.
    Record(Change),
    /// Write the mail for these possibly delivered recipients to the hold area; answer
    /// with [`Event::HoldDone`].
    HoldInDoubt { mail: u32, rcpts: Vec<usize> },
    /// Park the mail for these recipients in extended retry; answer with
    /// [`Event::ParkDone`].
    Park { mail: u32, rcpts: Vec<usize> },
    /// Return the mail's failed recipients to its originator; answer with
    /// [`Event::Returned`].
    Return { mail: u32 },
    /// Every recipient of the mail is final (account for it).
    MailFinal { mail: u32, summary: MailSummary },
    /// Nothing more happens to the mail: the driver may drop what it kept for it.
    Forget { mail: u32 },
    /// Tell people.
    Note(Note),
    /// Every mail of the file is done: release the file.
    FileDone,
    /// A parked mail's turn is over: it stays parked for `keep` (rewritten when fewer
    /// than it had; none: it goes), to be tried again after `again_after` (`None`: left
    /// as it was, not tried).
    Repark {
        mail: u32,
        keep: Vec<usize>,
        again_after: Option<Duration>,
    },
}
