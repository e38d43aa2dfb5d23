//! Every state and transition of the queue core, including those a crash interrupts
//! (warm start from what storage recovered), and a property test over event sequences.

use std::time::{Duration, Instant};

use cssmtp_wire::Reply;

use super::*;
use crate::delivery::outcome::{Failure, Problem, RcptResult, Stage};

pub(super) const MIN: Duration = Duration::from_secs(60);

pub(super) fn policy() -> Policy {
    Policy {
        retry_count: 2,
        retry_interval: MIN,
        extended: false,
        hold_possibly_delivered: false,
    }
}

pub(super) fn new_mail(ordinal: u32, rcpts: usize) -> NewMail<()> {
    NewMail {
        ordinal,
        line: ordinal * 10,
        reverse_path: "from@example.com".into(),
        size: 100,
        rcpts: (0..rcpts)
            .map(|i| (format!("r{i}@example.com"), ordinal * 10 + 1 + i as u32))
            .collect(),
        rejected: Vec::new(),
        recovered: None,
        payload: (),
    }
}

pub(super) fn delivered() -> RcptResult {
    RcptResult::Delivered {
        target: "192.0.2.1:25".parse().unwrap(),
        reply: Reply::new(250, None, "ok"),
    }
}

fn failure(problem: Problem) -> Failure {
    Failure::new(
        Stage::DataTerm,
        Some("192.0.2.1:25".parse().unwrap()),
        problem,
    )
}

pub(super) fn transient() -> RcptResult {
    RcptResult::Retry(failure(Problem::Reply(Reply::new(451, None, "later"))))
}

pub(super) fn permanent() -> RcptResult {
    RcptResult::Undeliverable(failure(Problem::Reply(Reply::new(550, None, "no"))))
}

pub(super) fn text_changed() -> RcptResult {
    RcptResult::Retry(failure(Problem::TextChanged("changed".into())))
}

pub(super) fn not_recorded() -> RcptResult {
    RcptResult::Retry(failure(Problem::NotRecorded("journal".into())))
}

pub(super) fn results(mail: u32, r: Vec<RcptResult>, now: Instant) -> Event<()> {
    Event::Delivered {
        mail,
        results: r.into_iter().enumerate().collect(),
        now,
    }
}

pub(super) fn states(q: &FileQueue<()>, mail: u32) -> Vec<RcptState> {
    q.mail(mail)
        .map(|m| m.rcpts.iter().map(|r| r.state).collect())
        .unwrap_or_default()
}

pub(super) fn sends(effects: &[Effect]) -> Vec<(u32, Vec<usize>)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Send { mail, rcpts } => Some((*mail, rcpts.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn is_final(effects: &[Effect], mail: u32) -> bool {
    effects
        .iter()
        .any(|e| matches!(e, Effect::MailFinal { mail: m, .. } if *m == mail))
}

pub(super) fn has(effects: &[Effect], wanted: &Effect) -> bool {
    effects.contains(wanted)
}

pub(super) fn records(effects: &[Effect]) -> Vec<Change> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Record(c) => Some(c.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_mail_is_sent_to_its_pending_recipients_and_delivered() {
    let now = Instant::now();
    let mut q = FileQueue::new(policy());
    let e = q.apply(Event::Accept(new_mail(1, 2)));
    assert_eq!(
        e,
        vec![Effect::Send {
            mail: 1,
            rcpts: vec![0, 1]
        }]
    );
    assert_eq!(states(&q, 1), vec![RcptState::InFlight; 2]);
    assert_eq!(q.mail(1).map(|m| m.attempts), Some(1));
    let e = q.apply(results(1, vec![delivered(), delivered()], now));
    assert!(records(&e).is_empty(), "deliveries are recorded by the ack");
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Note(Note::Delivered {
            mail: 1,
            count: 2,
            ..
        })
    )));
    assert!(is_final(&e, 1));
    assert!(has(&e, &Effect::Forget { mail: 1 }));
    assert!(!has(&e, &Effect::FileDone), "not parsed to the end yet");
    assert_eq!(q.apply(Event::ParseDone), vec![Effect::FileDone]);
    assert!(q.is_released());
    assert!(q.apply(Event::ParseDone).is_empty(), "released once");
}

#[test]
fn an_empty_file_is_released_at_once() {
    let mut q: FileQueue<()> = FileQueue::new(policy());
    assert_eq!(q.apply(Event::ParseDone), vec![Effect::FileDone]);
}

#[test]
fn a_permanent_failure_is_recorded_and_returned_once_before_the_file_goes() {
    let now = Instant::now();
    let mut q = FileQueue::new(policy());
    q.apply(Event::Accept(new_mail(1, 2)));
    q.apply(Event::ParseDone);
    let e = q.apply(results(1, vec![delivered(), permanent()], now));
    match records(&e).as_slice() {
        [
            Change::Attempted {
                mail: 1,
                attempts: 1,
                retry,
                failed,
            },
        ] => {
            assert!(retry.is_empty());
            assert_eq!(failed.len(), 1);
            assert_eq!(failed[0].0, 1);
            assert_eq!(failed[0].1.address, "r1@example.com");
            assert_eq!(failed[0].1.status, "5.0.0");
        }
        other => panic!("{other:?}"),
    }
    assert!(has(&e, &Effect::Return { mail: 1 }));
    assert!(!has(&e, &Effect::FileDone), "released after the return");
    assert_eq!(q.mail(1).map(|m| m.returned), Some(ReturnState::Returning));
    let e = q.apply(Event::Returned {
        mail: 1,
        done: true,
    });
    assert_eq!(
        e,
        vec![
            Effect::Record(Change::Returned { mail: 1 }),
            Effect::Forget { mail: 1 },
            Effect::FileDone
        ]
    );
}

#[test]
fn a_return_that_failed_is_not_recorded_and_the_file_is_still_released() {
    let now = Instant::now();
    let mut q = FileQueue::new(policy());
    q.apply(Event::Accept(new_mail(1, 1)));
    q.apply(Event::ParseDone);
    q.apply(results(1, vec![permanent()], now));
    let e = q.apply(Event::Returned {
        mail: 1,
        done: false,
    });
    assert_eq!(e, vec![Effect::Forget { mail: 1 }, Effect::FileDone]);
    // A second answer changes nothing.
    assert!(
        q.apply(Event::Returned {
            mail: 1,
            done: true
        })
        .is_empty()
    );
}

#[test]
fn a_transient_failure_waits_its_interval_then_goes_until_the_limit() {
    let t0 = Instant::now();
    let mut q = FileQueue::new(policy());
    q.apply(Event::Accept(new_mail(1, 2)));
    let e = q.apply(results(1, vec![delivered(), transient()], t0));
    assert_eq!(
        states(&q, 1),
        vec![RcptState::Delivered, RcptState::Retrying]
    );
    assert_eq!(
        records(&e),
        vec![Change::Attempted {
            mail: 1,
            attempts: 1,
            retry: vec![1],
            failed: vec![]
        }]
    );
    assert!(has(&e, &Effect::Note(Note::IntoRetry { mail: 1 })));
    assert_eq!(q.next_due(), Some(t0 + MIN));
    assert_eq!(q.waiting(), 1);
    assert!(q.apply(Event::Due { now: t0 + MIN / 2 }).is_empty());
    let e = q.apply(Event::Due { now: t0 + MIN });
    assert_eq!(sends(&e), vec![(1, vec![1])], "only the one not final");
    // Second failure: still within RetryLimit Count 2 (attempt 2 of 3).
    let e = q.apply(results(1, vec![transient()], t0 + MIN));
    assert!(
        !e.iter()
            .any(|e| matches!(e, Effect::Note(Note::IntoRetry { .. }))),
        "counted once per mail"
    );
    let e = q.apply(Event::Due { now: t0 + 2 * MIN });
    assert_eq!(sends(&e), vec![(1, vec![1])]);
    assert_eq!(q.mail(1).map(|m| m.attempts), Some(3));
    // Third failure: the limit is reached.
    let e = q.apply(Event::Delivered {
        mail: 1,
        results: vec![(1, transient())],
        now: t0 + 2 * MIN,
    });
    assert_eq!(states(&q, 1), vec![RcptState::Delivered, RcptState::Failed]);
    let failed = q.mail(1).map(|m| m.failed.clone()).unwrap_or_default();
    assert!(
        failed[0]
            .reason
            .ends_with("RetryLimit of 2 retries exhausted"),
        "{failed:?}"
    );
    assert!(has(&e, &Effect::Return { mail: 1 }));
    assert_eq!(q.waiting(), 0);
}

#[test]
fn without_retry_a_transient_failure_is_final() {
    let mut q = FileQueue::new(Policy {
        retry_count: 0,
        ..policy()
    });
    q.apply(Event::Accept(new_mail(1, 1)));
    let e = q.apply(results(1, vec![transient()], Instant::now()));
    assert_eq!(states(&q, 1), vec![RcptState::Failed]);
    assert!(
        q.mail(1)
            .is_some_and(|m| m.failed[0].reason.ends_with("no retry (RetryLimit)"))
    );
    assert!(has(&e, &Effect::Return { mail: 1 }));
}

#[test]
fn past_its_limit_a_recipient_is_parked_when_extended_retry_is_active() {
    let now = Instant::now();
    let mut q = FileQueue::new(Policy {
        retry_count: 0,
        extended: true,
        ..policy()
    });
    q.apply(Event::Accept(new_mail(1, 2)));
    q.apply(Event::ParseDone);
    let e = q.apply(results(1, vec![transient(), permanent()], now));
    assert_eq!(states(&q, 1), vec![RcptState::Parking, RcptState::Failed]);
    let i = |x: &Effect| e.iter().position(|y| y == x);
    let last_final = e
        .iter()
        .position(|x| matches!(x, Effect::MailFinal { mail: 1, .. }));
    assert!(
        last_final
            < i(&Effect::Park {
                mail: 1,
                rcpts: vec![0]
            })
    );
    assert!(
        i(&Effect::Park {
            mail: 1,
            rcpts: vec![0]
        }) < i(&Effect::Return { mail: 1 })
    );
    match records(&e).as_slice() {
        [Change::Attempted { retry, .. }] => assert_eq!(retry, &vec![0], "not final until parked"),
        other => panic!("{other:?}"),
    }
    let e = q.apply(Event::ParkDone { mail: 1, ok: true });
    assert_eq!(
        e,
        vec![Effect::Record(Change::Parked {
            mail: 1,
            attempts: 1,
            rcpts: vec![0]
        })]
    );
    assert_eq!(states(&q, 1), vec![RcptState::Parked, RcptState::Failed]);
    let e = q.apply(Event::Returned {
        mail: 1,
        done: true,
    });
    assert!(has(&e, &Effect::FileDone));
}

#[test]
fn a_park_that_failed_leaves_the_recipient_for_the_next_start() {
    let mut q = FileQueue::new(Policy {
        retry_count: 0,
        extended: true,
        ..policy()
    });
    q.apply(Event::Accept(new_mail(1, 1)));
    q.apply(Event::ParseDone);
    q.apply(results(1, vec![transient()], Instant::now()));
    let e = q.apply(Event::ParkDone { mail: 1, ok: false });
    assert_eq!(e, vec![Effect::Forget { mail: 1 }, Effect::FileDone]);
    assert!(records(&e).is_empty(), "not recorded as parked");
}

#[test]
fn a_changed_text_holds_the_recipients_with_the_file() {
    let mut q = FileQueue::new(policy());
    q.apply(Event::Accept(new_mail(1, 2)));
    let e = q.apply(results(
        1,
        vec![text_changed(), text_changed()],
        Instant::now(),
    ));
    assert_eq!(q.ended.get(&1), Some(&vec![RcptState::Held; 2]));
    assert!(e.iter().any(|e| matches!(
        e,
        Effect::Note(Note::TextChanged {
            mail: 1,
            line: 10,
            ..
        })
    )));
    assert!(records(&e).is_empty());
    assert!(!e.iter().any(|e| matches!(e, Effect::Return { .. })));
    assert!(is_final(&e, 1));
}

#[test]
fn a_mail_whose_record_could_not_be_written_goes_again_at_once_without_an_attempt() {
    let now = Instant::now();
    let mut q = FileQueue::new(policy());
    q.apply(Event::Accept(new_mail(1, 1)));
    let e = q.apply(results(1, vec![not_recorded()], now));
    assert_eq!(states(&q, 1), vec![RcptState::Retrying]);
    assert_eq!(q.mail(1).map(|m| m.attempts), Some(0));
    assert_eq!(q.next_due(), Some(now));
    assert!(!e.iter().any(|e| matches!(e, Effect::Note(_))));
    let e = q.apply(Event::Due { now });
    assert_eq!(sends(&e), vec![(1, vec![0])]);
    assert_eq!(q.mail(1).map(|m| m.attempts), Some(1));
}

#[test]
fn blocked_sending_holds_mails_back_until_released() {
    let now = Instant::now();
    let mut q = FileQueue::new(policy());
    assert!(q.apply(Event::Blocked(true)).is_empty());
    assert!(q.apply(Event::Accept(new_mail(1, 1))).is_empty());
    q.apply(Event::Accept(new_mail(2, 1)));
    assert_eq!(q.held_back(), 2);
    assert_eq!(states(&q, 1), vec![RcptState::Pending]);
    let e = q.apply(Event::Blocked(false));
    assert_eq!(sends(&e), vec![(1, vec![0]), (2, vec![0])]);
    // A retry due while blocked waits too.
    q.apply(results(1, vec![transient()], now));
    q.apply(Event::Blocked(true));
    assert!(q.apply(Event::Due { now: now + MIN }).is_empty());
    assert_eq!(sends(&q.apply(Event::Blocked(false))), vec![(1, vec![0])]);
}

#[test]
fn flushretry_parks_or_fails_what_waits_in_long_retry() {
    for extended in [false, true] {
        let now = Instant::now();
        let mut q = FileQueue::new(Policy {
            extended,
            ..policy()
        });
        q.apply(Event::Accept(new_mail(1, 2)));
        q.apply(Event::Accept(new_mail(2, 1)));
        q.apply(results(1, vec![delivered(), transient()], now));
        let e = q.apply(Event::FlushRetry);
        assert!(has(&e, &Effect::Note(Note::Flushed { count: 1 })));
        assert_eq!(q.waiting(), 0);
        if extended {
            assert_eq!(
                states(&q, 1),
                vec![RcptState::Delivered, RcptState::Parking]
            );
            assert!(has(
                &e,
                &Effect::Park {
                    mail: 1,
                    rcpts: vec![1]
                }
            ));
        } else {
            assert_eq!(states(&q, 1), vec![RcptState::Delivered, RcptState::Failed]);
            let failed = q.mail(1).map(|m| m.failed.clone()).unwrap_or_default();
            assert_eq!(failed[0].status, "4.4.7");
            assert!(has(&e, &Effect::Return { mail: 1 }));
        }
        assert_eq!(
            states(&q, 2),
            vec![RcptState::InFlight],
            "in flight: not flushed"
        );
    }
}

#[test]
fn refused_recipients_alone_are_returned() {
    let mut q = FileQueue::new(policy());
    let mut m = new_mail(1, 0);
    m.rejected.push(crate::notify::FailedRecipient {
        address: "bad".into(),
        line: 3,
        status: "5.1.3".parse().unwrap(),
        diagnostic: None,
        remote_mta: None,
        reason: "syntax".into(),
    });
    let e = q.apply(Event::Accept(m));
    assert!(matches!(
        e.first(),
        Some(Effect::Note(Note::Undeliverable { mail: 1, .. }))
    ));
    assert!(sends(&e).is_empty());
    assert!(is_final(&e, 1));
    assert!(has(&e, &Effect::Return { mail: 1 }));
}

#[test]
fn results_for_recipients_not_sent_are_ignored_and_missing_ones_retried() {
    let now = Instant::now();
    let mut q = FileQueue::new(policy());
    q.apply(Event::Accept(new_mail(1, 2)));
    q.apply(results(1, vec![delivered(), transient()], now));
    q.apply(Event::Due { now: now + MIN });
    // A stray result for 0 (delivered already) and none for 1.
    let e = q.apply(Event::Delivered {
        mail: 1,
        results: vec![(0, permanent()), (7, permanent())],
        now: now + MIN,
    });
    assert_eq!(
        states(&q, 1),
        vec![RcptState::Delivered, RcptState::Retrying]
    );
    assert!(!e.iter().any(|e| matches!(e, Effect::Return { .. })));
    // Results for an unknown mail change nothing.
    assert!(q.apply(results(9, vec![delivered()], now)).is_empty());
}
