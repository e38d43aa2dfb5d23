//! The transitions of a parked mail (extended retry): unparked at its Interval, tried
//! once, then delivered, failed (returned), expired (its Age reached, or FLUSHRETRY,AGE=:
//! returned) or parked again for the recipients still to deliver.
//!
//! ```text
//! parked ──Unpark──▶ in flight ──▶ delivered
//!   ▲                    │   ╰──▶ failed (5xx) ──▶ returned
//!   ╰────── parked ◀─────╯  (4xx: again after Interval)
//! parked ──Unpark (Age reached, or FLUSHRETRY,AGE= old enough)──▶ failed ──▶ returned
//! ```
//!
//! A parked mail is a mail of a [`FileQueue`] made with [`FileQueue::parked`]: the same
//! recipient states and the same return; its turn ends with [`Effect::Repark`], which
//! says which recipients stay parked (none: the parked copy goes). A failed recipient
//! whose return did not go out stays parked, so that it is returned at the next turn.

use std::time::Duration;

use super::{Effect, FileQueue, Mail, NewMail, Note, RcptState, ReturnState};
use crate::domain::failure::FailedRecipient;

/// ExtendedRetry as data: how often a parked mail is tried, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParkPolicy {
    /// Between turns (ExtendedRetry Interval).
    pub interval: Duration,
    /// Counted from its first attempt; zero: no limit (ExtendedRetry Age).
    pub age: Duration,
}

/// A parked mail read back from storage, for [`super::Event::Unpark`].
#[derive(Debug)]
pub struct Unparked<T> {
    /// The mail and the recipients still parked (`recovered` and `rejected` unused).
    pub mail: NewMail<T>,
    /// Time since its first attempt.
    pub age: Duration,
    /// FLUSHRETRY,AGE=: no attempt; returned when it is at least this old, else left
    /// as it was.
    pub flush_age: Option<Duration>,
}

const DAY: u64 = 86_400;

impl<T> FileQueue<T> {
    /// The queue of parked mails, with ExtendedRetry's policy.
    pub fn parked(park: ParkPolicy) -> Self {
        let mut q = Self::new(super::Policy {
            retry_count: 0,
            retry_interval: Duration::ZERO,
            extended: true,
            hold_possibly_delivered: false,
        });
        q.park = Some(park);
        q
    }

    pub(super) fn unpark(&mut self, unparked: Unparked<T>, out: &mut Vec<Effect>) {
        let Some(park) = self.park else {
            return;
        };
        let Unparked {
            mail: new,
            age,
            flush_age,
        } = unparked;
        let ordinal = new.ordinal;
        let all: Vec<usize> = (0..new.rcpts.len()).collect();
        let expired = match flush_age {
            Some(limit) if age >= limit => Some(format!(
                "returned by the operator (FLUSHRETRY,AGE={}) after {} day(s) in extended retry",
                limit.as_secs() / DAY,
                age.as_secs() / DAY
            )),
            Some(_) => {
                // Not old enough: left as it was, not tried.
                out.push(Effect::Repark {
                    mail: ordinal,
                    keep: all,
                    again_after: None,
                });
                return;
            }
            None if !park.age.is_zero() && age >= park.age => Some(format!(
                "not delivered within ExtendedRetry Age of {} day(s)",
                park.age.as_secs() / DAY
            )),
            None => None,
        };
        let (mut mail, _) = Mail::entering(new, RcptState::Parked);
        if let Some(reason) = expired {
            out.push(Effect::Note(Note::Expired {
                mail: ordinal,
                reason: reason.clone(),
            }));
            for rcpt in &mut mail.rcpts {
                rcpt.state = RcptState::Failed;
                let failed = FailedRecipient {
                    address: rcpt.address.clone(),
                    line: rcpt.line,
                    status: crate::domain::Status::EXPIRED,
                    diagnostic: None,
                    remote_mta: None,
                    reason: reason.clone(),
                };
                out.push(Effect::Note(Note::Undeliverable {
                    mail: ordinal,
                    failed: failed.clone(),
                }));
                mail.failed.push(failed);
            }
            self.rcpts += mail.rcpts.len();
            self.mails.insert(ordinal, mail);
            self.complete(ordinal, out);
            return;
        }
        for rcpt in &mut mail.rcpts {
            rcpt.state = RcptState::Pending;
        }
        self.rcpts += mail.rcpts.len();
        self.mails.insert(ordinal, mail);
        self.dispatch(ordinal, out);
    }

    /// A parked mail's turn is over (tried, returned): what stays parked.
    pub(super) fn repark(&self, ordinal: u32, out: &mut Vec<Effect>) {
        let (Some(park), Some(mail)) = (self.park, self.mails.get(&ordinal)) else {
            return;
        };
        let not_returned = mail.returned == ReturnState::NotDone;
        let keep = (0..mail.rcpts.len())
            .filter(|&i| {
                mail.rcpts.get(i).is_some_and(|r| {
                    r.state == RcptState::Parked || (not_returned && r.state == RcptState::Failed)
                })
            })
            .collect();
        out.push(Effect::Repark {
            mail: ordinal,
            keep,
            again_after: Some(park.interval),
        });
    }

    /// Whether this is the queue of parked mails.
    pub fn is_parked(&self) -> bool {
        self.park.is_some()
    }
}

/// The note a failure of a parked recipient gets (in its return).
pub(super) const IN_EXTENDED: &str = "in extended retry";

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::Event;
    use super::super::tests::{delivered, new_mail, permanent, results, sends, transient};
    use super::*;

    const DAYS: Duration = Duration::from_secs(DAY);

    fn queue() -> FileQueue<()> {
        FileQueue::parked(ParkPolicy {
            interval: Duration::from_secs(3600),
            age: 5 * DAYS,
        })
    }

    fn unpark(rcpts: usize, age: Duration, flush_age: Option<Duration>) -> Event<()> {
        Event::Unpark(Unparked {
            mail: new_mail(1, rcpts),
            age,
            flush_age,
        })
    }

    fn repark(effects: &[Effect]) -> Option<(Vec<usize>, Option<Duration>)> {
        effects.iter().find_map(|e| match e {
            Effect::Repark {
                keep, again_after, ..
            } => Some((keep.clone(), *again_after)),
            _ => None,
        })
    }

    fn returns(effects: &[Effect]) -> bool {
        effects.contains(&Effect::Return { mail: 1 })
    }

    #[test]
    fn an_unparked_mail_is_sent_to_every_parked_recipient() {
        let mut q = queue();
        assert!(q.is_parked());
        let e = q.apply(unpark(2, DAYS, None));
        assert_eq!(sends(&e), vec![(1, vec![0, 1])]);
        assert!(repark(&e).is_none(), "its turn is not over");
    }

    #[test]
    fn a_delivered_parked_mail_is_removed() {
        let mut q = queue();
        q.apply(unpark(2, DAYS, None));
        let e = q.apply(results(1, vec![delivered(), delivered()], Instant::now()));
        assert!(!returns(&e));
        assert_eq!(repark(&e), Some((vec![], Some(Duration::from_secs(3600)))));
        assert!(e.contains(&Effect::Forget { mail: 1 }));
    }

    #[test]
    fn a_temporary_failure_stays_parked_for_the_next_interval() {
        let mut q = queue();
        q.apply(unpark(3, DAYS, None));
        let e = q.apply(results(
            1,
            vec![delivered(), transient(), transient()],
            Instant::now(),
        ));
        assert!(
            e.iter()
                .any(|e| matches!(e, Effect::Note(Note::StaysParked { mail: 1, .. })))
        );
        assert!(!returns(&e));
        assert_eq!(
            repark(&e),
            Some((vec![1, 2], Some(Duration::from_secs(3600)))),
            "only the recipients left are kept: the parked copy is rewritten"
        );
        assert_eq!(q.waiting(), 0, "no long retry for a parked mail");
    }

    #[test]
    fn a_permanent_failure_is_returned_then_the_rest_reparked() {
        let mut q = queue();
        q.apply(unpark(2, DAYS, None));
        let e = q.apply(results(1, vec![permanent(), transient()], Instant::now()));
        assert!(returns(&e));
        assert!(repark(&e).is_none(), "after the return");
        let failed = &q.mail(1).map(|m| m.failed.clone()).unwrap_or_default();
        assert_eq!(failed.len(), 1);
        assert!(
            failed[0].reason.ends_with(IN_EXTENDED),
            "{}",
            failed[0].reason
        );
        let e = q.apply(Event::Returned {
            mail: 1,
            done: true,
        });
        assert_eq!(repark(&e), Some((vec![1], Some(Duration::from_secs(3600)))));
    }

    #[test]
    fn a_recipient_the_delivery_sent_no_result_for_stays_parked() {
        let mut q = queue();
        q.apply(unpark(2, DAYS, None));
        let e = q.apply(Event::Delivered {
            mail: 1,
            results: vec![(0, delivered())],
            now: Instant::now(),
        });
        assert_eq!(repark(&e), Some((vec![1], Some(Duration::from_secs(3600)))));
    }

    #[test]
    fn a_failure_not_returned_stays_parked_to_be_returned_next_time() {
        let mut q = queue();
        q.apply(unpark(2, DAYS, None));
        q.apply(results(1, vec![permanent(), delivered()], Instant::now()));
        let e = q.apply(Event::Returned {
            mail: 1,
            done: false,
        });
        assert_eq!(repark(&e), Some((vec![0], Some(Duration::from_secs(3600)))));
    }

    #[test]
    fn a_mail_past_its_age_is_returned_without_an_attempt() {
        let mut q = queue();
        let e = q.apply(unpark(2, 5 * DAYS, None));
        assert!(sends(&e).is_empty());
        assert!(e.iter().any(|e| matches!(
            e,
            Effect::Note(Note::Expired { mail: 1, reason })
                if reason == "not delivered within ExtendedRetry Age of 5 day(s)"
        )));
        let failed = q.mail(1).map(|m| m.failed.clone()).unwrap_or_default();
        assert!(failed.iter().all(|f| f.status == "4.4.7"));
        assert_eq!(failed.len(), 2);
        assert!(returns(&e));
        let e = q.apply(Event::Returned {
            mail: 1,
            done: true,
        });
        assert_eq!(repark(&e), Some((vec![], Some(Duration::from_secs(3600)))));
    }

    #[test]
    fn an_expired_mail_not_returned_is_kept_whole() {
        let mut q = queue();
        q.apply(unpark(2, 6 * DAYS, None));
        let e = q.apply(Event::Returned {
            mail: 1,
            done: false,
        });
        assert_eq!(
            repark(&e),
            Some((vec![0, 1], Some(Duration::from_secs(3600))))
        );
    }

    #[test]
    fn no_age_limit_means_tried_forever() {
        let mut q = FileQueue::<()>::parked(ParkPolicy {
            interval: Duration::from_secs(60),
            age: Duration::ZERO,
        });
        let e = q.apply(unpark(1, 1000 * DAYS, None));
        assert_eq!(sends(&e), vec![(1, vec![0])]);
    }

    #[test]
    fn flushretry_age_returns_old_mails_and_leaves_young_ones() {
        let mut q = queue();
        let e = q.apply(unpark(1, DAYS, Some(2 * DAYS)));
        assert!(sends(&e).is_empty());
        assert_eq!(repark(&e), Some((vec![0], None)), "young: left as it was");
        assert!(q.mail(1).is_none());
        let mut q = queue();
        let e = q.apply(unpark(1, 3 * DAYS, Some(2 * DAYS)));
        assert!(sends(&e).is_empty());
        assert!(e.iter().any(|e| matches!(
            e,
            Effect::Note(Note::Expired { reason, .. })
                if reason == "returned by the operator (FLUSHRETRY,AGE=2) after 3 day(s) in extended retry"
        )));
        assert!(returns(&e));
    }

    #[test]
    fn an_ordinary_queue_ignores_unpark() {
        let mut q = FileQueue::<()>::new(super::super::tests::policy());
        assert!(q.apply(unpark(1, DAYS, None)).is_empty());
        assert!(!q.is_parked());
    }
}
