//! What cssmtp tells people about its work, derived from one stream of events.
//!
//! Every happening that is counted is an [`Event`] handed to [`Telemetry::emit`], which
//! derives from it, in one place ([`derive`]), its log line, its counters ([`Stats`]:
//! the end-of-run report, DISPLAY TARGETS, the metrics, the STATS records) and its
//! accounting record ([`Accounting`], SMF 119). The counters cannot be changed and no
//! record can be written from outside this module, so a log line, its count and its
//! record cannot drift apart.
//!
//! Events are plain data about domain types ([`crate::domain`]); this module imports
//! nothing of the queue, delivery or storage, which all emit into it.

pub mod accounting;
mod derive;
mod stats;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use accounting::{Accounting, AccountingWriter};
pub use stats::{Snapshot, Stats};

use crate::config::{Config, Smf119};
use crate::domain::failure::Failure;
use crate::domain::job::JobIdentity;
use crate::domain::outcome::{MailLife, MailSummary};
use crate::domain::report::FileReport;

/// Where statistics and accounting records go (cheap to clone).
#[derive(Clone, Default)]
pub struct Telemetry {
    stats: Arc<Stats>,
    accounting: Accounting,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Counters from zero, records to `accounting`.
    pub fn new(accounting: Accounting) -> Self {
        Self {
            stats: Arc::default(),
            accounting,
        }
    }

    /// Tells people about `event`: its log line, counters and accounting record.
    pub fn emit(&self, event: Event<'_>) {
        derive::emit(&self.stats, &self.accounting, event);
    }

    /// The counters now.
    pub fn snapshot(&self) -> Snapshot {
        self.stats.snapshot()
    }

    /// The counters, to be read after the telemetry (and its accounting file) is gone.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Changes which accounting records are written, and reopens the file (REFRESH).
    pub fn refresh_accounting(&self, selection: Smf119) {
        self.accounting.select(selection);
        self.accounting.reopen();
    }

    /// Whether MAIL records are written (what a mail went through is kept for them only
    /// then).
    pub fn records_mails(&self) -> bool {
        self.accounting.wants(accounting::Kind::Mail)
    }

    /// Accounting records lost because the writer could not keep up.
    pub fn accounting_lost(&self) -> u64 {
        self.accounting.lost()
    }
}

/// One mail of a spool file, as log lines name it.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    /// The spool task (none for mail in extended retry).
    pub tkid: Option<u32>,
    /// The spool file's name (escaped).
    pub file: &'a str,
    /// The mail's number in its file.
    pub mail: u32,
}

/// A session with a target that ended (a CONNECT record).
#[derive(Debug, Clone, Copy)]
pub struct SessionEnd<'a> {
    pub target: SocketAddr,
    /// How the target was found (the statement or the MX look-up).
    pub origin: &'a str,
    pub opened: SystemTime,
    pub mails: u64,
    pub tls: bool,
    pub esmtp: bool,
    /// The SMTP AUTH mechanism the session logged in with (None: no AUTH).
    pub auth: Option<&'static str>,
    /// The negotiated TLS protocol version and cipher suite (None: no TLS).
    pub tls_protocol: Option<&'a str>,
    pub tls_cipher: Option<&'a str>,
    /// "quit" or "dropped".
    pub how: &'a str,
}

/// What a CONFIG record is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigEvent {
    /// The daemon started.
    Start,
    /// REFRESH (or SIGHUP).
    Refresh,
    /// LOGLEVEL,LEVEL=.
    LogLevel,
    /// USEREXIT,LEVEL= (CSSMTP writes a CONFIG record for it too).
    UserExit,
}

impl ConfigEvent {
    /// The record's `event` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Refresh => "refresh",
            Self::LogLevel => "loglevel",
            Self::UserExit => "userexit",
        }
    }
}

/// Something that happened, as people are told of it.
#[derive(Debug)]
pub enum Event<'a> {
    /// A session with a target was greeted.
    Connected,
    /// A session with a target ended.
    SessionEnded(SessionEnd<'a>),
    /// A mail was handed to a target; `sent`: accepted for at least one recipient.
    Attempted { sent: bool },
    /// Recipients of a spool file's mail were accepted by a target.
    Delivered {
        at: At<'a>,
        count: usize,
        target: &'a str,
        reply: &'a cssmtp_wire::Reply,
    },
    /// Recipients of a mail in extended retry were accepted.
    DeliveredFromParked { at: At<'a>, count: usize },
    /// Recipients accepted after a stop, in transactions that ran to their end (the
    /// next start takes the file up from what was recorded).
    DeliveredAtStop { count: usize },
    /// A recipient will be tried again.
    Retrying {
        at: At<'a>,
        address: &'a str,
        /// This attempt, and how many there are at most.
        attempt: u32,
        attempts: u32,
        interval: Duration,
        failure: &'a Failure,
    },
    /// A recipient will not get its mail.
    Undeliverable {
        at: At<'a>,
        line: u32,
        address: &'a str,
        reason: &'a str,
    },
    /// A recipient in extended retry will not get its mail (its mail's expiry is
    /// logged once, for all of them).
    ExpiredInParked,
    /// A recipient goes to extended retry.
    ToExtended {
        at: At<'a>,
        address: &'a str,
        failure: &'a Failure,
    },
    /// Recipients of a mail were kept for extended retry (`shown`: where).
    Parked {
        at: At<'a>,
        count: u64,
        shown: &'a str,
        /// When extended retry gives up on it (None: no limit).
        until: Option<SystemTime>,
    },
    /// A mail went into long retry (once per mail).
    IntoRetry,
    /// A mail has undeliverable recipients: it is being returned.
    Returning,
    /// A mail is final.
    MailFinal {
        job: &'a JobIdentity,
        /// The spool file's owning user.
        owner: &'a str,
        tkid: u32,
        mail: u32,
        summary: &'a MailSummary,
        /// Its Message-ID and tries.
        life: &'a MailLife,
        arrival: SystemTime,
    },
    /// A spool file is finished (deleted, removed, held or left in `active/`).
    FileFinished(&'a FileReport),
    /// An undeliverable notification was sent.
    Notified {
        at: At<'a>,
        to: &'a str,
        /// The notification's Message-ID.
        id: &'a str,
    },
    /// An error report about a spool file was made (`how`: "written to …" or "sent
    /// to …").
    Reported { file: &'a str, how: &'a str },
    /// A dead letter was stored (`stored`: where) or, with DeadLetterAction Delete,
    /// only logged; `notes` say why.
    DeadLetter {
        /// The mail it holds (None: an error report's).
        at: Option<At<'a>>,
        stored: Option<&'a Path>,
        notes: &'a [String],
    },
    /// StatsInterval passed (a STATS record).
    Interval {
        interval: Duration,
        spool_tasks: usize,
        mails_in_retry: u64,
        mails_in_extended_retry: u64,
    },
    /// The configuration in force was set (a CONFIG record).
    Config {
        event: ConfigEvent,
        config: &'a Config,
    },
}
