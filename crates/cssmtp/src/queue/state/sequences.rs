//! A property test of the queue core: any sequence of events (mails, results of every
//! kind, timers, SUSPEND, FLUSHRETRY, storage and return answers, warm starts) keeps
//! its invariants: nothing final is sent again, one attempt of a mail at a time, a mail
//! is returned at most once, every recipient ends in exactly one final state, and the
//! file is released only when every mail is done.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::tests::{MIN, delivered, new_mail, not_recorded, permanent, text_changed, transient};
use super::*;

#[derive(Debug, Clone)]
enum Action {
    Accept {
        rcpts: usize,
        rejected: bool,
        known: Vec<u8>,
        returned: bool,
    },
    ParseDone,
    Deliver {
        pick: usize,
        results: Vec<u8>,
    },
    Advance(u8),
    Block(bool),
    Flush,
    AnswerPark {
        pick: usize,
        ok: bool,
    },
    AnswerHold {
        pick: usize,
        ok: bool,
    },
    AnswerReturn {
        pick: usize,
        ok: bool,
    },
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => (0usize..4, any::<bool>(), proptest::collection::vec(0u8..8, 4), any::<bool>())
            .prop_map(|(rcpts, rejected, known, returned)| Action::Accept { rcpts, rejected, known, returned }),
        1 => Just(Action::ParseDone),
        6 => (any::<usize>(), proptest::collection::vec(0u8..6, 4))
            .prop_map(|(pick, results)| Action::Deliver { pick, results }),
        2 => (0u8..4).prop_map(Action::Advance),
        1 => any::<bool>().prop_map(Action::Block),
        1 => Just(Action::Flush),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Action::AnswerPark { pick, ok }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Action::AnswerHold { pick, ok }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, ok)| Action::AnswerReturn { pick, ok }),
    ]
}

fn policies() -> impl Strategy<Value = Policy> {
    (0u32..3, any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(retry_count, zero, extended, hold)| Policy {
            retry_count,
            retry_interval: if zero { Duration::ZERO } else { MIN },
            extended,
            hold_possibly_delivered: hold,
        },
    )
}

/// The outside world of a queue: what it was asked to do and has not been answered.
struct World {
    q: FileQueue<()>,
    now: Instant,
    next: u32,
    sends: Vec<(u32, Vec<usize>)>,
    parks: Vec<u32>,
    holds: Vec<u32>,
    returns: Vec<u32>,
    /// Recipients final (and their state) as last seen.
    finals: BTreeMap<(u32, usize), RcptState>,
    accepted: BTreeSet<u32>,
    forgotten: BTreeSet<u32>,
    returned: BTreeSet<u32>,
    parse_done: bool,
}

impl World {
    fn new(policy: Policy) -> Self {
        Self {
            q: FileQueue::new(policy),
            now: Instant::now(),
            next: 1,
            sends: Vec::new(),
            parks: Vec::new(),
            holds: Vec::new(),
            returns: Vec::new(),
            finals: BTreeMap::new(),
            accepted: BTreeSet::new(),
            forgotten: BTreeSet::new(),
            returned: BTreeSet::new(),
            parse_done: false,
        }
    }

    fn apply(&mut self, event: Event<()>) {
        let effects = self.q.apply(event);
        for effect in effects {
            match effect {
                Effect::Send { mail, rcpts } => {
                    for i in &rcpts {
                        assert!(
                            !self.finals.contains_key(&(mail, *i)),
                            "a final recipient is never sent again: {mail}/{i}"
                        );
                    }
                    assert!(
                        !self.sends.iter().any(|(m, _)| *m == mail),
                        "one attempt at a time"
                    );
                    self.sends.push((mail, rcpts));
                }
                Effect::Park { mail, .. } => self.parks.push(mail),
                Effect::HoldInDoubt { mail, .. } => self.holds.push(mail),
                Effect::Return { mail } => {
                    assert!(self.returned.insert(mail), "a mail is returned once");
                    self.returns.push(mail);
                }
                Effect::Record(Change::Returned { mail }) => {
                    assert!(
                        self.returned.contains(&mail),
                        "recorded returned after its return"
                    );
                }
                Effect::Forget { mail } => {
                    assert!(self.forgotten.insert(mail), "forgotten once");
                    assert!(
                        !self.sends.iter().any(|(m, _)| *m == mail),
                        "not while in flight"
                    );
                    let ended = self.q.ended.get(&mail).cloned().unwrap_or_default();
                    for (i, s) in ended.iter().enumerate() {
                        assert!(
                            matches!(
                                s,
                                RcptState::Delivered
                                    | RcptState::Failed
                                    | RcptState::Parked
                                    | RcptState::Kept
                                    | RcptState::Held
                            ),
                            "{mail}/{i} ended {s:?}"
                        );
                    }
                }
                Effect::FileDone => {
                    assert!(self.parse_done, "released only once parsed");
                    assert_eq!(
                        self.accepted, self.forgotten,
                        "released only when every mail is done"
                    );
                    assert!(self.q.mails() == 0);
                }
                _ => {}
            }
        }
        // A final recipient stays final (parking becomes parked or kept).
        for (&(mail, i), &was) in &self.finals {
            if let Some(m) = self.q.mail(mail) {
                let now = m.rcpts[i].state;
                assert!(now.is_final(), "{mail}/{i}: {was:?} became {now:?}");
                let moved = was == now
                    || (was == RcptState::Parking
                        && matches!(now, RcptState::Parked | RcptState::Kept));
                assert!(moved, "{mail}/{i}: {was:?} became {now:?}");
            }
        }
        for &mail in &self.accepted {
            if let Some(m) = self.q.mail(mail) {
                for (i, r) in m.rcpts.iter().enumerate() {
                    if r.state.is_final() {
                        self.finals.insert((mail, i), r.state);
                    }
                }
            }
        }
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Accept {
                rcpts,
                rejected,
                known,
                returned,
            } => {
                if self.parse_done {
                    return;
                }
                let ordinal = self.next;
                self.next += 1;
                let mut m = new_mail(ordinal, rcpts);
                if rejected {
                    m.rejected.push(crate::notify::FailedRecipient {
                        address: "x".into(),
                        line: 1,
                        status: "5.1.3".parse().unwrap(),
                        diagnostic: None,
                        remote_mta: None,
                        reason: "syntax".into(),
                    });
                }
                if known.iter().any(|k| *k > 0) || returned {
                    let mut r = Recovered {
                        attempts: u32::from(known[0] % 3),
                        returned,
                        ..Recovered::default()
                    };
                    for (i, k) in known.iter().enumerate().take(rcpts) {
                        match k {
                            1 => {
                                r.delivered.insert(i);
                            }
                            2 => {
                                r.parked.insert(i);
                            }
                            3 => {
                                r.held.insert(i);
                            }
                            4 => {
                                r.failed.insert(
                                    i,
                                    RecoveredFailure {
                                        status: "5.0.0".parse().unwrap(),
                                        diagnostic: None,
                                        remote: None,
                                        reason: "r".into(),
                                    },
                                );
                            }
                            5 | 6 => {
                                r.in_doubt.insert(i);
                            }
                            _ => {}
                        }
                    }
                    m.recovered = Some(r);
                }
                self.accepted.insert(ordinal);
                self.apply(Event::Accept(m));
            }
            Action::ParseDone => {
                self.parse_done = true;
                self.apply(Event::ParseDone);
            }
            Action::Deliver { pick, results } => {
                if self.sends.is_empty() {
                    return;
                }
                let (mail, rcpts) = self.sends.remove(pick % self.sends.len());
                let mut out = Vec::new();
                for (n, i) in rcpts.iter().enumerate() {
                    let r = match results.get(n % results.len()).copied().unwrap_or(0) {
                        0 => delivered(),
                        1 => transient(),
                        2 => permanent(),
                        3 => text_changed(),
                        4 => not_recorded(),
                        _ => continue, // no result
                    };
                    out.push((*i, r));
                }
                self.apply(Event::Delivered {
                    mail,
                    results: out,
                    now: self.now,
                });
            }
            Action::Advance(minutes) => {
                self.now += MIN * u32::from(minutes);
                self.apply(Event::Due { now: self.now });
            }
            Action::Block(b) => self.apply(Event::Blocked(b)),
            Action::Flush => self.apply(Event::FlushRetry),
            Action::AnswerPark { pick, ok } => {
                if !self.parks.is_empty() {
                    let mail = self.parks.remove(pick % self.parks.len());
                    self.apply(Event::ParkDone { mail, ok });
                }
            }
            Action::AnswerHold { pick, ok } => {
                if !self.holds.is_empty() {
                    let mail = self.holds.remove(pick % self.holds.len());
                    self.apply(Event::HoldDone { mail, ok });
                }
            }
            Action::AnswerReturn { pick, ok } => {
                if !self.returns.is_empty() {
                    let mail = self.returns.remove(pick % self.returns.len());
                    self.apply(Event::Returned { mail, done: ok });
                }
            }
        }
    }

    /// Ends the run: everything answered, every attempt delivered, time passing.
    fn drain(&mut self) {
        self.act(Action::ParseDone);
        self.apply(Event::Blocked(false));
        for _ in 0..64 {
            if self.q.is_released() {
                break;
            }
            while let Some(mail) = self.holds.pop() {
                self.apply(Event::HoldDone { mail, ok: true });
            }
            while !self.sends.is_empty() {
                self.act(Action::Deliver {
                    pick: 0,
                    results: vec![0],
                });
            }
            while let Some(mail) = self.parks.pop() {
                self.apply(Event::ParkDone { mail, ok: true });
            }
            while let Some(mail) = self.returns.pop() {
                self.apply(Event::Returned { mail, done: true });
            }
            self.act(Action::Advance(3));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn every_recipient_ends_final_and_nothing_final_is_sent_again(
        policy in policies(),
        actions in proptest::collection::vec(action(), 0..60),
    ) {
        let mut world = World::new(policy);
        for a in actions {
            world.act(a);
        }
        world.drain();
        prop_assert!(world.q.is_released(), "the file is released in the end");
        prop_assert_eq!(&world.accepted, &world.forgotten);
        // Every recipient ever accepted ended in exactly one final state (checked at
        // each mail's end, see World::apply).
        for &mail in &world.accepted {
            prop_assert!(world.q.ended.contains_key(&mail));
        }
    }
}
