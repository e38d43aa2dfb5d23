//! The conformance suite of a [`ParkedStore`]: parked mail is read back as it was
//! parked, a turn's outcome (the recipients kept, the time of the turn) is durable, and
//! a removed mail stays gone across a restart. Run it from a backend's tests with a
//! [`ParkedHarness`]:
//!
//! ```ignore
//! cssmtp::storage::conformance::parked::run(MyHarness::new()).await;
//! ```

#![allow(
    clippy::expect_used,
    clippy::panic,
    reason = "a test suite for backends: a broken guarantee panics, with what broke"
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::delivery::MailText;
use crate::domain::JobIdentity;
use crate::notify::deadletter::FullMail;
use crate::retry::extended;
use crate::storage::MailCopy;
use crate::storage::parked::{Parked, ParkedId, ParkedRead, ParkedStore};

/// Parks mail and starts stores on the same storage, again and again.
#[allow(async_fn_in_trait)]
pub trait ParkedHarness {
    type Store: ParkedStore;

    /// Parks a mail as [`crate::storage::SpoolClaim::park`] does.
    async fn park(&mut self, copy: &MailCopy<'_>);

    /// Starts a store (one started after another was dropped is the next start after
    /// a crash: what was parked and kept must be there).
    async fn start(&mut self) -> Self::Store;
}

/// The header cssmtp added and the text of a parked mail, in wire form: an 8-bit
/// line, a dot-stuffed line, a line as long as a line may be.
fn mail_text() -> (Vec<u8>, Vec<u8>) {
    let headers =
        b"Received: from h.example by h.example; Mon, 30 Nov 2026 10:00:00 +0000\r\n".to_vec();
    let mut text =
        b"Subject: parked\r\n\r\nCaf\xc3\xa9 au lait\r\n..a line that began with a dot\r\n"
            .to_vec();
    // As long as a data line may be (998), a spool file with longer ones is refused.
    text.extend(std::iter::repeat_n(b'x', 998));
    text.extend_from_slice(b"\r\nend\r\n");
    (headers, text)
}

pub fn job() -> JobIdentity {
    JobIdentity {
        file_name: "PAYROLL.J0000042.conformance".into(),
        job_name: "PAYROLL".into(),
        job_id: "J0000042".into(),
    }
}

/// Parks mail `mail` of [`job`] for `rcpts`.
async fn park<H: ParkedHarness>(h: &mut H, mail: u32, rcpts: &[&str], needs_tls: bool) {
    let (job, full) = (job(), full_mail());
    let copy = copy_of(&job, &full, mail, rcpts, needs_tls);
    h.park(&copy).await;
}

/// The text of the suite's parked mail.
pub fn full_mail() -> FullMail {
    let (headers, text) = mail_text();
    FullMail {
        headers: Arc::from(headers),
        text: MailText::Memory(Arc::from(text)),
    }
}

/// A copy of mail `mail` of `job` for `rcpts` (lines 10 × mail + 1, + 2…).
pub fn copy_of<'a>(
    job: &'a JobIdentity,
    full: &'a FullMail,
    mail: u32,
    rcpts: &[&str],
    needs_tls: bool,
) -> MailCopy<'a> {
    MailCopy {
        job,
        mail,
        line: 10 * mail,
        first_attempt: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        reverse_path: "payroll@zos1.example",
        rcpts: (rcpts.iter().enumerate())
            .map(|(i, a)| ((*a).to_owned(), 10 * mail + 1 + i as u32))
            .collect(),
        needs_tls,
        text: full,
    }
}

async fn load(store: &impl ParkedStore, id: &ParkedId) -> Parked {
    match store.load(id).await {
        ParkedRead::Found(parked) => *parked,
        ParkedRead::Gone => panic!("{id}: parked mail reads as gone"),
        ParkedRead::Busy => panic!("{id}: parked mail reads as another instance's"),
        ParkedRead::Unreadable(e) | ParkedRead::NotNow(e) => panic!("{id}: cannot be read: {e}"),
    }
}

/// The parked mail's text is the one parked, byte for byte.
async fn assert_text(parked: &Parked, what: &str) {
    let (headers, text) = mail_text();
    let wire = extended::read_all(&parked.text)
        .await
        .expect("the text reads");
    assert_eq!(wire, [headers, text].concat(), "{what}");
}

fn addresses(parked: &Parked) -> Vec<&str> {
    (parked.mail.recipients.iter())
        .map(|r| r.address.as_str())
        .collect()
}

/// The parked mail whose number is `mail`.
async fn find(store: &impl ParkedStore, mail: u32) -> (ParkedId, SystemTime) {
    for (id, tried) in store.list().await {
        if load(store, &id).await.meta.mail == mail {
            return (id, tried);
        }
    }
    panic!("mail {mail} is not listed as parked")
}

/// Runs every check.
///
/// # Panics
/// When the store breaks one of its guarantees (this is a test suite).
pub async fn run<H: ParkedHarness>(mut h: H) {
    let store = h.start().await;
    assert!(store.list().await.is_empty(), "nothing parked yet");
    assert!(
        matches!(
            store.load(&ParkedId::new("no-such-mail")).await,
            ParkedRead::Gone | ParkedRead::Unreadable(_)
        ),
        "an unknown id is not found"
    );
    drop(store);

    // Parked mail is listed, oldest first, and read back as it was parked.
    park(
        &mut h,
        1,
        &["a@example.net", "b@example.net", "c@example.net"],
        true,
    )
    .await;
    park(&mut h, 2, &["d@example.net"], false).await;
    let store = h.start().await;
    let listed = store.list().await;
    assert_eq!(listed.len(), 2, "each parked mail is listed once");
    assert!(
        listed.is_sorted_by_key(|(_, tried)| *tried),
        "listed oldest first"
    );
    let (one, first_turn) = find(&store, 1).await;
    let parked = load(&store, &one).await;
    assert_eq!(parked.meta.spool_file, job().file_name);
    assert_eq!(
        (parked.meta.job_name.as_str(), parked.meta.job_id.as_str()),
        ("PAYROLL", "J0000042")
    );
    assert_eq!((parked.meta.mail, parked.meta.line), (1, 10));
    assert_eq!(parked.meta.rcpt_lines, [11, 12, 13]);
    assert_eq!(
        parked.meta.first_attempt,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        "Age counts from the first attempt, not from parking"
    );
    assert_eq!(
        addresses(&parked),
        ["a@example.net", "b@example.net", "c@example.net"]
    );
    assert_eq!(parked.mail.reverse_path, "payroll@zos1.example");
    assert!(parked.mail.starttls, "a mail that needed TLS still does");
    assert_text(&parked, "the text is kept byte for byte").await;

    // A turn that delivered to b: a and c stay parked, durably, tried now.
    store
        .keep(&one, &parked, &[0, 2])
        .await
        .expect("the turn is recorded");
    drop((parked, store));
    let store = h.start().await;
    let (one, turn) = find(&store, 1).await;
    assert!(turn >= first_turn, "the time of the turn is recorded");
    let parked = load(&store, &one).await;
    assert_eq!(addresses(&parked), ["a@example.net", "c@example.net"]);
    assert_eq!(
        parked.meta.rcpt_lines,
        [11, 13],
        "each recipient keeps its line"
    );
    assert_text(&parked, "a rewritten mail keeps its text").await;

    // A turn that changed nothing keeps every recipient.
    store
        .keep(&one, &parked, &[0, 1])
        .await
        .expect("the turn is recorded");
    drop(parked);
    let (one, _) = find(&store, 1).await;
    assert_eq!(
        addresses(&load(&store, &one).await),
        ["a@example.net", "c@example.net"]
    );

    // A mail every recipient of which is final goes, and stays gone after a restart.
    let (two, _) = find(&store, 2).await;
    store.remove(&two).await;
    assert!(
        matches!(store.load(&two).await, ParkedRead::Gone),
        "a removed mail is gone"
    );
    drop(store);
    let store = h.start().await;
    let listed = store.list().await;
    assert_eq!(
        listed.len(),
        1,
        "only mail 1 is parked: {:?}",
        listed
            .iter()
            .map(|(id, _)| id.to_string())
            .collect::<Vec<_>>()
    );
    assert!(matches!(store.load(&two).await, ParkedRead::Gone));
    let (one, _) = find(&store, 1).await;
    store.remove(&one).await;
    assert!(store.list().await.is_empty(), "nothing is left parked");
}
