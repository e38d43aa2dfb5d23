//! The state of every recipient of one spool file, as a pure state machine.
//!
//! [`FileQueue::apply`] takes an [`Event`] (a mail parsed, a delivery's results, a timer,
//! an operator's request, what a storage or return step did) and returns the
//! [`Effect`]s to carry out, in order. It does no I/O and knows no path, socket, clock or
//! journal format: time comes in with the events, durable state goes out as typed
//! [`Change`]s, and the mail's text rides along as an opaque payload `T`.
//!
//! ```text
//! pending ──▶ in flight ──▶ delivered
//!   ▲  │          │   ╲──▶ retrying (4xx: again every RetryLimit Interval, at most Count times) ──▶ pending
//!   │  │          │    ╲──▶ parking (RetryLimit exhausted, ExtendedRetry active) ──▶ parked | kept
//!   │  │          ╰──▶ failed (5xx, no target, RetryLimit exhausted) ──▶ the mail is returned
//!   │  ╰──▶ (held back while SUSPEND,IMMEDIATE or the store cannot record)
//!   ╰── holding (possibly delivered before a restart, PossiblyDelivered Hold) ──▶ held | pending
//! in flight ──▶ held (the text changed in the spool file: kept with the file)
//! ```
//!
//! Final states: delivered, failed, parked, held, kept (could not be parked: left for the
//! next start). A mail is final when every recipient is; it is then returned (once, one
//! notification for its failed recipients), and forgotten when its return and its park
//! are done. The file is released ([`Effect::FileDone`]) when it is parsed to the end and
//! no mail is left.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

pub use crate::domain::change::{Change, Recovered, RecoveredFailure};
use crate::domain::failure::FailedRecipient;
pub use crate::domain::outcome::MailSummary;

/// How a recipient's failures are handled (RetryLimit, ExtendedRetry, PossiblyDelivered).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Retries after the first attempt (RetryLimit Count); 0: none.
    pub retry_count: u32,
    /// Between attempts (RetryLimit Interval); zero: no retry.
    pub retry_interval: Duration,
    /// ExtendedRetry is active: a recipient past its RetryLimit is parked, not failed.
    pub extended: bool,
    /// PossiblyDelivered Hold: a recipient possibly delivered before a restart is held
    /// for the operator, not sent again.
    pub hold_possibly_delivered: bool,
}

impl Policy {
    /// A generated mail's (a notification, an error report): tried once, never retried,
    /// parked or held; its failures end it (the driver, [`crate::queue::generated`],
    /// makes them a dead letter, never a notification about a notification).
    pub const ONE_ATTEMPT: Self = Self {
        retry_count: 0,
        retry_interval: Duration::ZERO,
        extended: false,
        hold_possibly_delivered: false,
    };

    fn may_retry(&self, attempts: u32) -> bool {
        self.retry_count > 0 && !self.retry_interval.is_zero() && attempts <= self.retry_count
    }
}

/// Where one recipient is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RcptState {
    /// To be sent (or held back until sending may go on).
    Pending,
    /// Being attempted now.
    InFlight,
    /// Waiting for its mail's next retry.
    Retrying,
    /// Possibly delivered before a restart, being written to the hold area.
    Holding,
    /// Past its RetryLimit, to be parked in extended retry once the mail is final.
    Parking,
    /// Final: in extended retry (parked durably).
    Parked,
    /// Final: could not be parked; left (not final in storage) for the next start.
    Kept,
    /// Final: delivered.
    Delivered,
    /// Final: undeliverable; returned with its mail.
    Failed,
    /// Final: held with the file for the operator (possibly delivered, or its text
    /// changed in the spool file).
    Held,
}

impl RcptState {
    /// Whether nothing more happens to the recipient in this run.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            Self::Pending | Self::InFlight | Self::Retrying | Self::Holding
        )
    }
}

/// One recipient of a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rcpt {
    pub address: String,
    /// Line of its RCPT TO.
    pub line: u32,
    pub state: RcptState,
}

/// Whether the failed recipients of a mail were returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReturnState {
    /// Nothing returned (yet).
    None,
    /// Being returned ([`Effect::Return`] given, no [`Event::Returned`] yet).
    Returning,
    /// Returned (now or before a restart).
    Done,
    /// Returning failed; the next start returns it.
    NotDone,
}

/// One mail of the file.
#[derive(Debug)]
pub struct Mail<T> {
    /// Line of its MAIL FROM.
    pub line: u32,
    /// The reverse path ("" for `<>`).
    pub reverse_path: String,
    pub rcpts: Vec<Rcpt>,
    /// Recipients that will not get the mail, with why (refused by the parser, or
    /// failed), in the order they failed.
    pub failed: Vec<FailedRecipient>,
    /// Delivery attempts made (kept across restarts).
    pub attempts: u32,
    /// Size as the receiver stores it.
    pub size: u64,
    pub returned: ReturnState,
    /// The mail went into long retry (counted once).
    retried: bool,
    /// A park is being written ([`Effect::Park`] given, no [`Event::ParkDone`] yet).
    parking: bool,
    /// Final (its [`Effect::MailFinal`] given).
    done: bool,
    /// What the driver keeps with the mail (its text, its headers).
    pub payload: T,
}

impl<T> Mail<T> {
    /// A mail entering the queue: each recipient of `new` in `state`, those the parser
    /// refused already failed, nothing tried yet; and what storage recovered of it.
    fn entering(new: NewMail<T>, state: RcptState) -> (Self, Option<Recovered>) {
        let rcpts = (new.rcpts.into_iter())
            .map(|(address, line)| Rcpt {
                address,
                line,
                state,
            })
            .collect();
        let mail = Self {
            line: new.line,
            reverse_path: new.reverse_path,
            rcpts,
            failed: new.rejected,
            attempts: 0,
            size: new.size,
            returned: ReturnState::None,
            retried: false,
            parking: false,
            done: false,
            payload: new.payload,
        };
        (mail, new.recovered)
    }

    /// Recipients in `state`, counted.
    pub fn count(&self, state: RcptState) -> usize {
        self.rcpts.iter().filter(|r| r.state == state).count()
    }

    /// Recipients in `state`.
    pub fn in_state(&self, state: RcptState) -> Vec<usize> {
        (0..self.rcpts.len())
            .filter(|&i| self.rcpts.get(i).is_some_and(|r| r.state == state))
            .collect()
    }

    fn is_final(&self) -> bool {
        self.rcpts.iter().all(|r| r.state.is_final())
    }
}

/// The recipients of one spool file.
#[derive(Debug)]
pub struct FileQueue<T> {
    policy: Policy,
    mails: BTreeMap<u32, Mail<T>>,
    /// Mails waiting for their retry, by due time.
    due: BTreeSet<(Instant, u32)>,
    /// Mails held back while sending is blocked.
    held_back: BTreeSet<u32>,
    blocked: bool,
    parse_done: bool,
    released: bool,
    rcpts: usize,
    /// ExtendedRetry's policy: this is the queue of parked mails.
    park: Option<ParkPolicy>,
    /// The recipients' states of the mails forgotten (the tests' view of the end).
    #[cfg(test)]
    ended: BTreeMap<u32, Vec<RcptState>>,
}

impl<T> FileQueue<T> {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            mails: BTreeMap::new(),
            due: BTreeSet::new(),
            held_back: BTreeSet::new(),
            blocked: false,
            parse_done: false,
            released: false,
            rcpts: 0,
            park: None,
            #[cfg(test)]
            ended: BTreeMap::new(),
        }
    }

    /// Mails tracked (in delivery, waiting to retry, being returned or parked).
    pub fn mails(&self) -> usize {
        self.mails.len()
    }

    /// Recipients of the tracked mails.
    pub fn rcpts(&self) -> usize {
        self.rcpts
    }

    /// Mails waiting for a retry.
    pub fn waiting(&self) -> usize {
        self.due.len()
    }

    /// When the next retry is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(at, _)| *at)
    }

    pub fn mail(&self, mail: u32) -> Option<&Mail<T>> {
        self.mails.get(&mail)
    }

    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// Mails held back while sending is blocked.
    pub fn held_back(&self) -> usize {
        self.held_back.len()
    }

    /// The file was released ([`Effect::FileDone`] given).
    pub fn is_released(&self) -> bool {
        self.released
    }

    /// Applies one event; returns what to do, in order.
    pub fn apply(&mut self, event: Event<T>) -> Vec<Effect> {
        let mut out = Vec::new();
        match event {
            Event::Accept(mail) => self.accept(mail, &mut out),
            Event::ParseDone => self.parse_done = true,
            Event::Delivered { mail, results, now } => {
                self.delivered(mail, results, now, &mut out);
            }
            Event::Due { now } => self.due(now, &mut out),
            Event::Blocked(blocked) => {
                self.blocked = blocked;
                if !blocked {
                    for mail in std::mem::take(&mut self.held_back) {
                        self.dispatch(mail, &mut out);
                    }
                }
            }
            Event::FlushRetry => self.flush_retry(&mut out),
            Event::RetryNow => {
                if let Some(&(last, _)) = self.due.last() {
                    self.due(last, &mut out);
                }
            }
            Event::HoldDone { mail, ok } => self.hold_done(mail, ok, &mut out),
            Event::ParkDone { mail, ok } => self.park_done(mail, ok, &mut out),
            Event::Returned { mail, done } => self.returned(mail, done, &mut out),
            Event::Unpark(unparked) => self.unpark(unparked, &mut out),
        }
        if self.parse_done && self.mails.is_empty() && !self.released {
            self.released = true;
            out.push(Effect::FileDone);
        }
        out
    }

    fn accept(&mut self, new: NewMail<T>, out: &mut Vec<Effect>) {
        let ordinal = new.ordinal;
        for failed in &new.rejected {
            out.push(Effect::Note(Note::Undeliverable {
                mail: ordinal,
                failed: failed.clone(),
            }));
        }
        let (mut mail, recovered) = Mail::entering(new, RcptState::Pending);
        let holding = match recovered {
            Some(known) => self.restore(ordinal, &mut mail, known, out),
            None => Vec::new(),
        };
        self.rcpts += mail.rcpts.len();
        self.mails.insert(ordinal, mail);
        if holding.is_empty() {
            self.proceed(ordinal, out);
        } else {
            out.push(Effect::HoldInDoubt {
                mail: ordinal,
                rcpts: holding,
            });
        }
    }

    /// Applies what storage knew of a mail; returns the possibly delivered recipients to
    /// hold.
    fn restore(
        &self,
        ordinal: u32,
        mail: &mut Mail<T>,
        known: Recovered,
        out: &mut Vec<Effect>,
    ) -> Vec<usize> {
        mail.attempts = known.attempts;
        if known.returned {
            mail.returned = ReturnState::Done;
        }
        let (mut delivered, mut parked, mut held) = (0, 0, 0);
        let mut failed = Vec::new();
        let mut holding = Vec::new();
        for (i, rcpt) in mail.rcpts.iter_mut().enumerate() {
            if known.delivered.contains(&i) {
                rcpt.state = RcptState::Delivered;
                delivered += 1;
            } else if known.parked.contains(&i) {
                rcpt.state = RcptState::Parked;
                parked += 1;
            } else if known.held.contains(&i) {
                rcpt.state = RcptState::Held;
                held += 1;
            } else if let Some(f) = known.failed.get(&i) {
                rcpt.state = RcptState::Failed;
                failed.push(FailedRecipient {
                    address: rcpt.address.clone(),
                    line: rcpt.line,
                    status: f.status,
                    diagnostic: f.diagnostic.clone(),
                    remote_mta: f.remote,
                    reason: f.reason.clone(),
                });
            } else if known.in_doubt.contains(&i) {
                out.push(Effect::Note(Note::PossiblyDelivered {
                    mail: ordinal,
                    address: rcpt.address.clone(),
                }));
                if self.policy.hold_possibly_delivered {
                    rcpt.state = RcptState::Holding;
                    holding.push(i);
                }
            }
        }
        mail.failed.extend(failed.iter().cloned());
        out.push(Effect::Note(Note::Restored {
            mail: ordinal,
            delivered,
            parked,
            held,
            failed,
        }));
        holding
    }

    fn hold_done(&mut self, ordinal: u32, ok: bool, out: &mut Vec<Effect>) {
        let Some(mail) = self.mails.get_mut(&ordinal) else {
            return;
        };
        let holding = mail.in_state(RcptState::Holding);
        let state = if ok {
            RcptState::Held
        } else {
            // Never lose mail: what cannot be held is sent again.
            RcptState::Pending
        };
        for &i in &holding {
            if let Some(r) = mail.rcpts.get_mut(i) {
                r.state = state;
            }
        }
        if ok && !holding.is_empty() {
            out.push(Effect::Record(Change::HeldInDoubt {
                mail: ordinal,
                attempts: mail.attempts,
                rcpts: holding,
            }));
        }
        self.proceed(ordinal, out);
    }

    /// A mail taken in: completed when every recipient is final, else sent.
    fn proceed(&mut self, ordinal: u32, out: &mut Vec<Effect>) {
        let Some(mail) = self.mails.get(&ordinal) else {
            return;
        };
        if mail.is_final() {
            self.complete(ordinal, out);
        } else {
            self.dispatch(ordinal, out);
        }
    }

    /// Sends the pending recipients of a mail (or holds it back).
    fn dispatch(&mut self, ordinal: u32, out: &mut Vec<Effect>) {
        if self.blocked {
            self.held_back.insert(ordinal);
            return;
        }
        let Some(mail) = self.mails.get_mut(&ordinal) else {
            return;
        };
        if mail.rcpts.iter().any(|r| r.state == RcptState::InFlight) {
            // One attempt at a time; the rest go when it is back.
            return;
        }
        let rcpts = mail.in_state(RcptState::Pending);
        if rcpts.is_empty() {
            return;
        }
        for &i in &rcpts {
            if let Some(r) = mail.rcpts.get_mut(i) {
                r.state = RcptState::InFlight;
            }
        }
        mail.attempts += 1;
        out.push(Effect::Send {
            mail: ordinal,
            rcpts,
        });
    }

    fn due(&mut self, now: Instant, out: &mut Vec<Effect>) {
        while let Some(&(at, ordinal)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.remove(&(at, ordinal));
            if let Some(mail) = self.mails.get_mut(&ordinal) {
                for r in &mut mail.rcpts {
                    if r.state == RcptState::Retrying {
                        r.state = RcptState::Pending;
                    }
                }
            }
            self.dispatch(ordinal, out);
        }
    }
}

mod attempt;
mod events;
mod parked;
pub use attempt::no_result;
pub use events::{Effect, Event, NewMail, Note};
pub use parked::{ParkPolicy, Unparked};

#[cfg(test)]
mod one_attempt;
#[cfg(test)]
mod sequences;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod warm_start;
