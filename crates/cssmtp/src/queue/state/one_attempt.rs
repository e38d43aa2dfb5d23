//! The one-attempt policy of a generated mail (notification, error report): delivered,
//! or final after its single attempt and returned — which its driver
//! ([`crate::queue::generated`]) makes a dead letter, never a notification.

use std::time::Instant;

use super::tests::{
    delivered, has, is_final, new_mail, permanent, records, results, sends, states,
};
use super::*;

/// A generated mail of `rcpts` recipients, accepted and parsed to the end.
fn generated(rcpts: usize) -> (FileQueue<()>, Vec<Effect>) {
    let mut q = FileQueue::new(Policy::ONE_ATTEMPT);
    let mut e = q.apply(Event::Accept(new_mail(1, rcpts)));
    e.extend(q.apply(Event::ParseDone));
    (q, e)
}

/// Nothing of it is retried, parked or held.
fn never_retried(q: &FileQueue<()>, e: &[Effect]) {
    assert_eq!(q.waiting(), 0, "no retry is scheduled");
    assert_eq!(q.next_due(), None);
    assert!(!e.iter().any(|e| matches!(
        e,
        Effect::Park { .. }
            | Effect::HoldInDoubt { .. }
            | Effect::Note(
                Note::Retrying { .. } | Note::IntoRetry { .. } | Note::ToExtended { .. }
            )
    )));
}

#[test]
fn a_generated_mail_is_sent_once_and_delivered() {
    let (mut q, e) = generated(2);
    assert_eq!(sends(&e), vec![(1, vec![0, 1])]);
    let e = q.apply(results(1, vec![delivered(), delivered()], Instant::now()));
    never_retried(&q, &e);
    assert!(is_final(&e, 1));
    assert!(!has(&e, &Effect::Return { mail: 1 }), "nothing to return");
    assert!(has(&e, &Effect::Forget { mail: 1 }));
    assert!(has(&e, &Effect::FileDone));
    assert!(q.is_released());
}

#[test]
fn a_temporary_failure_of_a_generated_mail_is_final_at_once() {
    let (mut q, _) = generated(2);
    let e = q.apply(results(
        1,
        vec![delivered(), super::tests::transient()],
        Instant::now(),
    ));
    never_retried(&q, &e);
    assert_eq!(q.mail(1).map(|m| m.attempts), Some(1));
    assert_eq!(states(&q, 1), vec![RcptState::Delivered, RcptState::Failed]);
    // Failed, not retried: recorded as failed with "no retry", and returned (its driver
    // makes that a dead letter).
    let failed: Vec<_> = records(&e)
        .into_iter()
        .filter_map(|c| match c {
            Change::Attempted { retry, failed, .. } => {
                assert!(retry.is_empty(), "nothing to try again");
                Some(failed)
            }
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(failed.len(), 1);
    assert!(
        failed
            .iter()
            .all(|(i, f)| *i == 1 && f.reason.contains("no retry"))
    );
    assert!(is_final(&e, 1));
    assert!(has(&e, &Effect::Return { mail: 1 }));
    assert!(!has(&e, &Effect::FileDone), "released once returned");
    // Time passing sends nothing again.
    assert!(
        sends(&q.apply(Event::Due {
            now: Instant::now() + super::tests::MIN * 60
        }))
        .is_empty()
    );
    let e = q.apply(Event::Returned {
        mail: 1,
        done: true,
    });
    assert!(has(&e, &Effect::Forget { mail: 1 }));
    assert!(has(&e, &Effect::FileDone));
    assert_eq!(q.mails(), 0);
}

#[test]
fn a_permanent_failure_of_a_generated_mail_is_returned_once() {
    let (mut q, _) = generated(1);
    let e = q.apply(results(1, vec![permanent()], Instant::now()));
    never_retried(&q, &e);
    assert!(is_final(&e, 1));
    let returns = e
        .iter()
        .filter(|e| matches!(e, Effect::Return { .. }))
        .count();
    assert_eq!(returns, 1, "one return (one dead letter), nothing else");
    let e = q.apply(Event::Returned {
        mail: 1,
        done: true,
    });
    assert!(has(&e, &Effect::FileDone));
}

#[test]
fn a_generated_mail_without_a_result_is_not_tried_again() {
    let (mut q, _) = generated(1);
    let e = q.apply(Event::Delivered {
        mail: 1,
        results: Vec::new(),
        now: Instant::now(),
    });
    never_retried(&q, &e);
    assert!(has(&e, &Effect::Return { mail: 1 }));
}

#[test]
fn flushretry_does_not_touch_a_generated_mail() {
    let (mut q, _) = generated(1);
    let e = q.apply(Event::FlushRetry);
    assert!(
        !e.iter()
            .any(|e| matches!(e, Effect::Return { .. } | Effect::Park { .. }))
    );
    assert_eq!(states(&q, 1), vec![RcptState::InFlight]);
}
