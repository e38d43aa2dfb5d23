//! The transitions a crash interrupts: a warm start from what storage recovered (final
//! recipients skipped, attempts kept, no second return, possibly delivered recipients
//! sent again or held).

use std::time::Instant;

use super::tests::{has, is_final, new_mail, policy, records, sends, states, transient};
use super::*;

fn recovered(mut f: impl FnMut(&mut Recovered)) -> Option<Recovered> {
    let mut r = Recovered::default();
    f(&mut r);
    Some(r)
}

#[test]
fn warm_start_skips_final_recipients_and_keeps_the_attempts() {
    let now = Instant::now();
    let mut q = FileQueue::new(policy());
    let mut m = new_mail(1, 5);
    m.recovered = recovered(|r| {
        r.attempts = 2;
        r.delivered.insert(0);
        r.parked.insert(1);
        r.held.insert(2);
        r.failed.insert(
            3,
            RecoveredFailure {
                status: "5.1.1".parse().unwrap(),
                diagnostic: Some("550 no".into()),
                remote: None,
                reason: "no such user".into(),
            },
        );
    });
    let e = q.apply(Event::Accept(m));
    assert_eq!(sends(&e), vec![(1, vec![4])], "only the one not final");
    assert_eq!(
        states(&q, 1),
        vec![
            RcptState::Delivered,
            RcptState::Parked,
            RcptState::Held,
            RcptState::Failed,
            RcptState::InFlight
        ]
    );
    assert_eq!(
        q.mail(1).map(|m| m.attempts),
        Some(3),
        "attempts carried on"
    );
    match e.first() {
        Some(Effect::Note(Note::Restored {
            delivered: 1,
            parked: 1,
            held: 1,
            failed,
            ..
        })) => {
            assert_eq!(failed[0].address, "r3@example.com");
            assert_eq!(failed[0].line, 14);
        }
        other => panic!("{other:?}"),
    }
    // The last attempt (3 of 3) fails: RetryLimit is exhausted by the recovered count.
    let e = q.apply(Event::Delivered {
        mail: 1,
        results: vec![(4, transient())],
        now,
    });
    assert_eq!(q.mail(1).map(|m| m.failed.len()), Some(2));
    assert!(
        has(&e, &Effect::Return { mail: 1 }),
        "the recovered failure too"
    );
}

#[test]
fn warm_start_does_not_return_a_mail_twice_and_returns_one_not_yet_returned() {
    for returned in [false, true] {
        let mut q = FileQueue::new(policy());
        let mut m = new_mail(1, 1);
        m.recovered = recovered(|r| {
            r.returned = returned;
            r.failed.insert(
                0,
                RecoveredFailure {
                    status: "5.0.0".parse().unwrap(),
                    diagnostic: None,
                    remote: None,
                    reason: "no".into(),
                },
            );
        });
        let e = q.apply(Event::Accept(m));
        assert!(sends(&e).is_empty());
        assert_eq!(has(&e, &Effect::Return { mail: 1 }), !returned);
        assert_eq!(has(&e, &Effect::Forget { mail: 1 }), returned);
    }
}

#[test]
fn possibly_delivered_recipients_are_sent_again_by_default() {
    let mut q = FileQueue::new(policy());
    let mut m = new_mail(1, 2);
    m.recovered = recovered(|r| {
        r.delivered.insert(0);
        r.in_doubt.insert(1);
    });
    let e = q.apply(Event::Accept(m));
    assert!(has(
        &e,
        &Effect::Note(Note::PossiblyDelivered {
            mail: 1,
            address: "r1@example.com".into()
        })
    ));
    assert_eq!(sends(&e), vec![(1, vec![1])]);
}

#[test]
fn possibly_delivered_recipients_are_held_with_hold_and_sent_when_they_cannot_be() {
    for ok in [true, false] {
        let mut q = FileQueue::new(Policy {
            hold_possibly_delivered: true,
            ..policy()
        });
        let mut m = new_mail(1, 3);
        m.recovered = recovered(|r| {
            r.attempts = 1;
            r.in_doubt.insert(1);
        });
        let e = q.apply(Event::Accept(m));
        assert_eq!(
            e.last(),
            Some(&Effect::HoldInDoubt {
                mail: 1,
                rcpts: vec![1]
            })
        );
        assert!(sends(&e).is_empty(), "nothing goes before the hold is done");
        assert_eq!(states(&q, 1)[1], RcptState::Holding);
        let e = q.apply(Event::HoldDone { mail: 1, ok });
        if ok {
            assert_eq!(
                records(&e),
                vec![Change::HeldInDoubt {
                    mail: 1,
                    attempts: 1,
                    rcpts: vec![1]
                }]
            );
            assert_eq!(sends(&e), vec![(1, vec![0, 2])]);
            assert_eq!(states(&q, 1)[1], RcptState::Held);
        } else {
            assert!(records(&e).is_empty());
            assert_eq!(
                sends(&e),
                vec![(1, vec![0, 1, 2])],
                "never lost: sent again"
            );
        }
    }
}

#[test]
fn a_mail_every_recipient_of_which_was_final_before_a_restart_is_not_sent() {
    let mut q = FileQueue::new(policy());
    let mut m = new_mail(1, 2);
    m.recovered = recovered(|r| {
        r.delivered.insert(0);
        r.parked.insert(1);
    });
    let e = q.apply(Event::Accept(m));
    assert!(sends(&e).is_empty());
    assert!(is_final(&e, 1));
    assert!(
        !e.iter().any(|e| matches!(e, Effect::Park { .. })),
        "parked already"
    );
    assert!(has(&e, &Effect::Forget { mail: 1 }));
}
