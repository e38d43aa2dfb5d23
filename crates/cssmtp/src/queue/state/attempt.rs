//! The transitions after an attempt: results → retry, park, fail, complete, return.

use std::time::{Duration, Instant};

use super::{Change, Effect, FileQueue, MailSummary, Note, Policy, Rcpt, RcptState, ReturnState};
use crate::delivery::outcome::{Failure, Problem, RcptResult, Stage};
use crate::domain::failure::FailedRecipient;

/// The result of a recipient the delivery sent none for: tried again.
pub fn no_result() -> RcptResult {
    RcptResult::Retry(Failure::new(
        Stage::Route,
        None,
        Problem::Protocol("no result recorded".into()),
    ))
}

/// What one attempt decided, for the record.
#[derive(Default)]
struct Decided {
    /// Not final yet: to retry, or to park once the mail is final.
    again: Vec<usize>,
    failed: Vec<(usize, FailedRecipient)>,
}

/// What one attempt's results come to, recipient by recipient.
#[derive(Default)]
struct Tally {
    ordinal: u32,
    /// The mail's attempts so far, and whether another is allowed.
    attempts: u32,
    may_retry: bool,
    /// A parked mail's turn (extended retry).
    parked: bool,
    decided: Decided,
    /// Recipients delivered, by which target, with its reply.
    delivered: usize,
    target: String,
    reply: Option<cssmtp_wire::Reply>,
    /// Some recipient waits for its retry; some was not sent for want of its record.
    any_retry: bool,
    unrecorded: bool,
    /// The mail's text changed in the spool file.
    changed: Option<Failure>,
}

impl Tally {
    /// One recipient's result: its next state, and what people are told.
    fn take(
        &mut self,
        policy: &Policy,
        i: usize,
        rcpt: &mut Rcpt,
        result: RcptResult,
        out: &mut Vec<Effect>,
    ) {
        let mail = self.ordinal;
        match result {
            RcptResult::Delivered { target, reply } => {
                rcpt.state = RcptState::Delivered;
                self.delivered += 1;
                self.target = target.to_string();
                self.reply = Some(reply);
            }
            // A parked mail: whatever went wrong for now, it stays parked.
            RcptResult::Retry(failure) if self.parked => {
                out.push(Effect::Note(Note::StaysParked {
                    mail,
                    address: rcpt.address.clone(),
                    failure,
                }));
                rcpt.state = RcptState::Parked;
            }
            // Not sent, not retried, not returned: held with the file.
            RcptResult::Retry(failure) if matches!(failure.problem, Problem::TextChanged(_)) => {
                rcpt.state = RcptState::Held;
                self.changed = Some(failure);
            }
            RcptResult::Retry(failure) if matches!(failure.problem, Problem::NotRecorded(_)) => {
                // Not sent for want of its record: not an attempt; it goes again at once
                // (held back until the store can record).
                rcpt.state = RcptState::Retrying;
                self.decided.again.push(i);
                self.unrecorded = true;
            }
            RcptResult::Retry(failure) if self.may_retry => {
                out.push(Effect::Note(Note::Retrying {
                    mail,
                    address: rcpt.address.clone(),
                    attempt: self.attempts,
                    failure,
                }));
                rcpt.state = RcptState::Retrying;
                self.decided.again.push(i);
                self.any_retry = true;
            }
            RcptResult::Retry(failure) if policy.extended => {
                out.push(Effect::Note(Note::ToExtended {
                    mail,
                    address: rcpt.address.clone(),
                    failure,
                }));
                rcpt.state = RcptState::Parking;
                self.decided.again.push(i);
            }
            RcptResult::Retry(failure) => {
                rcpt.state = RcptState::Failed;
                let note = if policy.retry_count == 0 || policy.retry_interval.is_zero() {
                    "no retry (RetryLimit)".to_owned()
                } else {
                    format!("RetryLimit of {} retries exhausted", policy.retry_count)
                };
                let f =
                    FailedRecipient::from_failure(&rcpt.address, rcpt.line, &failure, Some(&note));
                self.decided.failed.push((i, f));
            }
            RcptResult::Undeliverable(failure) => {
                rcpt.state = RcptState::Failed;
                let note = self.parked.then_some(super::parked::IN_EXTENDED);
                let f = FailedRecipient::from_failure(&rcpt.address, rcpt.line, &failure, note);
                self.decided.failed.push((i, f));
            }
        }
    }
}

impl<T> FileQueue<T> {
    /// An attempt's results: each recipient sent goes on (delivered, retrying, parking,
    /// failed, held), and the mail is concluded.
    pub(super) fn delivered(
        &mut self,
        ordinal: u32,
        mut results: Vec<(usize, RcptResult)>,
        now: Instant,
        out: &mut Vec<Effect>,
    ) {
        let policy = self.policy;
        let parked = self.park.is_some();
        let Some(mail) = self.mails.get_mut(&ordinal) else {
            return;
        };
        let mut tally = Tally {
            ordinal,
            attempts: mail.attempts,
            may_retry: policy.may_retry(mail.attempts),
            parked,
            ..Tally::default()
        };
        // Every recipient sent gets a result (a missing one is tried again).
        for i in mail.in_state(RcptState::InFlight) {
            if !results.iter().any(|(r, _)| *r == i) {
                results.push((i, no_result()));
            }
        }
        for (i, result) in results {
            match mail.rcpts.get_mut(i) {
                // Not sent in this attempt: a result cannot change it.
                Some(rcpt) if rcpt.state == RcptState::InFlight => {
                    tally.take(&policy, i, rcpt, result, out);
                }
                _ => {}
            }
        }
        if let Some(failure) = tally.changed {
            out.push(Effect::Note(Note::TextChanged {
                mail: ordinal,
                line: mail.line,
                failure,
            }));
        }
        if tally.unrecorded {
            mail.attempts = mail.attempts.saturating_sub(1);
        }
        if tally.any_retry || tally.unrecorded {
            let wait = if tally.any_retry {
                policy.retry_interval
            } else {
                Duration::ZERO
            };
            self.due.insert((now + wait, ordinal));
        }
        if tally.any_retry && !mail.retried {
            mail.retried = true;
            out.push(Effect::Note(Note::IntoRetry { mail: ordinal }));
        }
        if let Some(reply) = tally.reply.filter(|_| tally.delivered > 0) {
            out.push(Effect::Note(Note::Delivered {
                mail: ordinal,
                count: tally.delivered,
                target: tally.target,
                reply,
            }));
        }
        self.conclude(ordinal, tally.decided, out);
    }

    /// After an attempt (or FLUSHRETRY): records the recipients not final yet and those
    /// that failed, and completes the mail when every recipient is final.
    fn conclude(&mut self, ordinal: u32, decided: Decided, out: &mut Vec<Effect>) {
        let Some(mail) = self.mails.get_mut(&ordinal) else {
            return;
        };
        if !decided.again.is_empty() || !decided.failed.is_empty() {
            out.push(Effect::Record(Change::Attempted {
                mail: ordinal,
                attempts: mail.attempts,
                retry: decided.again,
                failed: decided.failed.clone(),
            }));
        }
        for (_, f) in decided.failed {
            out.push(Effect::Note(Note::Undeliverable {
                mail: ordinal,
                failed: f.clone(),
            }));
            mail.failed.push(f);
        }
        if mail.is_final() {
            self.complete(ordinal, out);
        }
    }

    /// Every recipient of a mail is final: park the ones for extended retry and return
    /// the failed ones.
    pub(super) fn complete(&mut self, ordinal: u32, out: &mut Vec<Effect>) {
        let Some(mail) = self.mails.get_mut(&ordinal) else {
            return;
        };
        if mail.done {
            return;
        }
        mail.done = true;
        let extended = mail.count(RcptState::Parking) + mail.count(RcptState::Parked);
        let summary = MailSummary {
            line: mail.line,
            reverse_path: mail.reverse_path.clone(),
            rcpts: mail.rcpts.len() + mail.failed.len() - mail.count(RcptState::Failed),
            delivered: mail.count(RcptState::Delivered),
            undeliverable: mail.failed.len(),
            extended,
            held: mail.count(RcptState::Held),
            size: mail.size,
            attempts: mail.attempts,
            fates: fates(mail),
        };
        out.push(Effect::MailFinal {
            mail: ordinal,
            summary,
        });
        let parking = mail.in_state(RcptState::Parking);
        if !parking.is_empty() {
            mail.parking = true;
            out.push(Effect::Park {
                mail: ordinal,
                rcpts: parking,
            });
        }
        if !mail.failed.is_empty() && mail.returned == ReturnState::None {
            mail.returned = ReturnState::Returning;
            out.push(Effect::Return { mail: ordinal });
        }
        self.forget_when_done(ordinal, out);
    }

    pub(super) fn park_done(&mut self, ordinal: u32, ok: bool, out: &mut Vec<Effect>) {
        let Some(mail) = self.mails.get_mut(&ordinal) else {
            return;
        };
        if !mail.parking {
            return;
        }
        mail.parking = false;
        let parking = mail.in_state(RcptState::Parking);
        // Not parked: the spool file is the only copy; storage keeps these recipients
        // not final, so that the next start sends them again.
        let state = if ok {
            RcptState::Parked
        } else {
            RcptState::Kept
        };
        for &i in &parking {
            if let Some(r) = mail.rcpts.get_mut(i) {
                r.state = state;
            }
        }
        if ok && !parking.is_empty() {
            out.push(Effect::Record(Change::Parked {
                mail: ordinal,
                attempts: mail.attempts,
                rcpts: parking,
            }));
        }
        self.forget_when_done(ordinal, out);
    }

    pub(super) fn returned(&mut self, ordinal: u32, done: bool, out: &mut Vec<Effect>) {
        let Some(mail) = self.mails.get_mut(&ordinal) else {
            return;
        };
        if mail.returned != ReturnState::Returning {
            return;
        }
        if done {
            mail.returned = ReturnState::Done;
            out.push(Effect::Record(Change::Returned { mail: ordinal }));
        } else {
            mail.returned = ReturnState::NotDone;
        }
        self.forget_when_done(ordinal, out);
    }

    /// A final mail whose park and return are over is forgotten.
    fn forget_when_done(&mut self, ordinal: u32, out: &mut Vec<Effect>) {
        let busy = self
            .mails
            .get(&ordinal)
            .is_some_and(|m| !m.done || m.parking || m.returned == ReturnState::Returning);
        if busy {
            return;
        }
        self.repark(ordinal, out);
        if let Some(mail) = self.mails.remove(&ordinal) {
            self.rcpts = self.rcpts.saturating_sub(mail.rcpts.len());
            #[cfg(test)]
            self.ended
                .insert(ordinal, mail.rcpts.iter().map(|r| r.state).collect());
            self.held_back.remove(&ordinal);
            self.due.retain(|(_, m)| *m != ordinal);
            out.push(Effect::Forget { mail: ordinal });
        }
    }

    /// FLUSHRETRY: the mails waiting in long retry leave it now, to extended retry when
    /// it is active, else undeliverable (returned).
    pub(super) fn flush_retry(&mut self, out: &mut Vec<Effect>) {
        let extended = self.policy.extended;
        let waiting: Vec<u32> = std::mem::take(&mut self.due)
            .into_iter()
            .map(|(_, ordinal)| ordinal)
            .collect();
        let mut count = 0;
        for ordinal in waiting {
            let Some(mail) = self.mails.get_mut(&ordinal) else {
                continue;
            };
            let mut decided = Decided::default();
            for (i, rcpt) in mail.rcpts.iter_mut().enumerate() {
                if rcpt.state != RcptState::Retrying {
                    continue;
                }
                if extended {
                    rcpt.state = RcptState::Parking;
                    decided.again.push(i);
                } else {
                    rcpt.state = RcptState::Failed;
                    decided.failed.push((
                        i,
                        FailedRecipient {
                            address: rcpt.address.clone(),
                            line: rcpt.line,
                            status: crate::domain::Status::EXPIRED,
                            diagnostic: None,
                            remote_mta: None,
                            reason: "long retry ended by the operator (FLUSHRETRY); not delivered"
                                .into(),
                        },
                    ));
                }
            }
            count += 1;
            self.conclude(ordinal, decided, out);
        }
        out.push(Effect::Note(Note::Flushed { count }));
    }
}

/// What became of each recipient of a final mail.
fn fates<P>(mail: &super::Mail<P>) -> Vec<crate::domain::outcome::RcptFate> {
    use crate::domain::outcome::RcptFate;
    let sent = mail
        .rcpts
        .iter()
        .filter(|r| r.state != RcptState::Failed)
        .map(|r| RcptFate {
            address: r.address.clone(),
            fate: match r.state {
                RcptState::Delivered => "delivered",
                RcptState::Parking | RcptState::Parked => "extended_retry",
                RcptState::Held | RcptState::Holding => "held",
                _ => "kept",
            },
            reason: None,
        });
    let failed = mail.failed.iter().map(|f| RcptFate {
        address: f.address.clone(),
        fate: "undeliverable",
        reason: Some(f.reason.clone()),
    });
    sent.chain(failed).collect()
}
