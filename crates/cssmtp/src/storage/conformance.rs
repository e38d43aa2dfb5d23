//! The conformance suite of a [`StateStore`]: what every backend must do for the queue
//! core to neither lose nor duplicate mail across a crash. Run it from a backend's tests
//! with a [`Harness`] that can start the store on the same storage again:
//!
//! ```ignore
//! cssmtp::storage::conformance::run(MyHarness::new()).await;
//! ```
//!
//! Each check records through the store, "crashes" (drops it without a clean
//! shutdown, after what the store promised durable is durable), starts it again and
//! compares what [`StateStore::open`] recovers with what was recorded.

use std::collections::{BTreeMap, BTreeSet};

use super::{FileId, FileStore, Finished, StateStore};
use crate::notify::FailedRecipient;
use crate::queue::state::{Change, Recovered, RecoveredFailure};

/// Starts a store on the same storage, again and again.
#[allow(async_fn_in_trait)]
pub trait Harness {
    type Store: StateStore;

    /// Starts the store; `claimed` are the files still claimed (a backend may drop
    /// what it knows of any other). What was recorded before must be recovered.
    async fn start(&mut self, claimed: &[FileId]) -> Self::Store;

    /// Stops the store abruptly, once everything it said was recorded is (a crash of
    /// the process). Every handle the store gave out is dropped by then.
    async fn crash(&mut self, store: Self::Store);
}

fn failed(address: &str) -> FailedRecipient {
    FailedRecipient {
        address: address.into(),
        line: 7,
        status: crate::domain::Status::new(5, 1, 1),
        diagnostic: Some("550 5.1.1 no such user".into()),
        remote_mta: Some(std::net::SocketAddr::from(([192, 0, 2, 1], 25))),
        reason: "550 5.1.1 no such user (at RCPT TO)".into(),
    }
}

fn recorded_failure() -> RecoveredFailure {
    RecoveredFailure {
        status: crate::domain::Status::new(5, 1, 1),
        diagnostic: Some("550 5.1.1 no such user".into()),
        remote: Some(std::net::SocketAddr::from(([192, 0, 2, 1], 25))),
        reason: "550 5.1.1 no such user (at RCPT TO)".into(),
    }
}

/// Records what a file's life records, up to a crash.
fn record_a_life(store: &dyn FileStore) {
    assert!(store.is_writable());
    assert!(*store.writable().borrow());
    // Mail 1: the first attempt delivers 0, 1 waits for a retry, 2 fails.
    let ack = store.ack(1);
    assert!(ack.before_dot(&[0, 1]).is_ok());
    ack.after_dot(&[0], true);
    assert!(store.record(&Change::Attempted {
        mail: 1,
        attempts: 1,
        retry: vec![1],
        failed: vec![(2, failed("c@example.com"))],
    }));
    // Its second attempt: the "." goes to 1, and the process dies before the reply.
    assert!(ack.before_dot(&[1]).is_ok());
    // Mail 2: parked for extended retry, then returned.
    assert!(store.record(&Change::Attempted {
        mail: 2,
        attempts: 3,
        retry: vec![0],
        failed: vec![(1, failed("e@example.com"))],
    }));
    assert!(store.record(&Change::Parked {
        mail: 2,
        attempts: 3,
        rcpts: vec![0],
    }));
    assert!(store.record(&Change::Returned { mail: 2 }));
    // Mail 3: possibly delivered before an earlier restart, held; 1 was sent, its
    // reply negative: to be sent again.
    assert!(store.record(&Change::HeldInDoubt {
        mail: 3,
        attempts: 1,
        rcpts: vec![0],
    }));
    let ack = store.ack(3);
    assert!(ack.before_dot(&[1]).is_ok());
    ack.after_dot(&[1], false);
}

fn expected() -> BTreeMap<u32, Recovered> {
    let mut mails = BTreeMap::new();
    mails.insert(
        1,
        Recovered {
            attempts: 1,
            returned: false,
            delivered: BTreeSet::from([0]),
            parked: BTreeSet::new(),
            held: BTreeSet::new(),
            failed: BTreeMap::from([(2, recorded_failure())]),
            in_doubt: BTreeSet::from([1]),
        },
    );
    mails.insert(
        2,
        Recovered {
            attempts: 3,
            returned: true,
            parked: BTreeSet::from([0]),
            failed: BTreeMap::from([(1, recorded_failure())]),
            ..Recovered::default()
        },
    );
    mails.insert(
        3,
        Recovered {
            attempts: 1,
            held: BTreeSet::from([0]),
            ..Recovered::default()
        },
    );
    mails
}

/// Runs every check.
///
/// # Panics
/// When the store breaks one of its guarantees (this is a test suite).
pub async fn run<H: Harness>(mut h: H) {
    let a = FileId::new("A@1");
    let b = FileId::new("B@2");
    let c = FileId::new("C@3");
    let d = FileId::new("D@4");
    let all = [a.clone(), b.clone(), c.clone(), d.clone()];

    // A fresh store knows nothing.
    let store = h.start(&all).await;
    assert!(store.is_writable());
    for f in &all {
        let (recovered, file) = store.open(f);
        assert!(recovered.is_empty(), "{f}: a new file has no past");
        assert_eq!(file.id(), f);
    }
    // A's life up to a crash; B finished (deleted); C held; D untouched.
    let (_, file_a) = store.open(&a);
    record_a_life(&*file_a);
    let (_, file_b) = store.open(&b);
    record_a_life(&*file_b);
    file_b.finished(Finished::Deleted);
    let (_, file_c) = store.open(&c);
    record_a_life(&*file_c);
    file_c.finished(Finished::Held);
    drop((file_a, file_b, file_c));
    h.crash(store).await;

    // After the crash: A is where it was, recipient by recipient.
    let store = h.start(&all).await;
    let (recovered, file_a) = store.open(&a);
    let recovered: BTreeMap<u32, Recovered> = recovered.into_iter().collect();
    assert_eq!(recovered, expected(), "what was recorded of A is recovered");
    // Given once: a second open recovers nothing.
    assert!(store.open(&a).0.is_empty(), "recovered once");
    // A held file comes back, when released, as a new file.
    assert!(store.open(&c).0.is_empty(), "a held file has no past");
    assert!(store.open(&d).0.is_empty());

    // A goes on after the restart: the recipient in doubt is sent again and delivered,
    // the failed one returned.
    let ack = file_a.ack(1);
    assert!(ack.before_dot(&[1]).is_ok());
    ack.after_dot(&[1], true);
    assert!(file_a.record(&Change::Returned { mail: 1 }));
    drop((ack, file_a));
    h.crash(store).await;

    let store = h.start(std::slice::from_ref(&a)).await;
    let (recovered, _) = store.open(&a);
    let mail = recovered.get(&1).cloned().unwrap_or_default();
    assert_eq!(mail.delivered, BTreeSet::from([0, 1]), "both delivered now");
    assert!(mail.in_doubt.is_empty(), "no longer in doubt");
    assert!(mail.returned, "returned, never again");
    assert_eq!(mail.attempts, 1, "attempts are kept");
    // Files no longer claimed are not recovered.
    assert!(store.open(&b).0.is_empty(), "not claimed: forgotten");
    h.crash(store).await;
}

pub mod parked;
pub mod source;
