//! The conformance suite of a [`SpoolSource`]: a file is claimed by exactly one
//! claimer, opened as it was written, and a claim survives a crash. Run it from a
//! backend's tests with a [`SourceHarness`]:
//!
//! ```ignore
//! cssmtp::storage::conformance::source::run(MyHarness::new()).await;
//! ```

#![allow(
    clippy::expect_used,
    reason = "a test suite for backends: a broken guarantee panics, with what broke"
)]

use std::io::Read;

use crate::spool::layout::Opened;
use crate::storage::source::SpoolSource;

/// Puts files into a spool and starts sources on it, again and again.
#[allow(async_fn_in_trait)]
pub trait SourceHarness {
    type Source: SpoolSource;

    /// Puts a finished spool file into the spool, as a producer does.
    async fn submit(&mut self, name: &str, text: &[u8]);

    /// Starts a source on the spool (a second one beside a first is another claimer;
    /// one started after a source was dropped is the next start after a crash).
    async fn start(&mut self) -> Self::Source;
}

fn text_of(opened: &Opened) -> Vec<u8> {
    let mut text = Vec::new();
    let mut reader = opened.reader.try_clone().expect("a second handle");
    reader
        .read_to_end(&mut text)
        .expect("the claimed file reads");
    text
}

const FIRST: &[u8] = b"HELO a.example\r\nMAIL FROM:<a@example.com>\r\n";
const SECOND: &[u8] = b"HELO b.example\r\nMAIL FROM:<b@example.com>\r\n";

/// Runs every check.
///
/// # Panics
/// When the source breaks one of its guarantees (this is a test suite).
pub async fn run<H: SourceHarness>(mut h: H) {
    let source = h.start().await;
    assert!(
        source.left_claimed().await.expect("lists").is_empty(),
        "a new spool has nothing claimed"
    );
    assert!(source.waiting().await.expect("lists").is_empty());
    h.submit("JOBA.J0000001.first", FIRST).await;
    h.submit("JOBB.J0000002.second", SECOND).await;
    let mut waiting = source.waiting().await.expect("lists");
    assert_eq!(waiting.len(), 2, "each finished file is listed once");

    // Two claimers race for the same file: exactly one wins.
    let rival = h.start().await;
    let candidate = waiting.pop().expect("a file waits");
    let rival_listing = rival.waiting().await.expect("lists");
    assert_eq!(rival_listing.len(), 2);
    let claim = source
        .claim(&candidate)
        .expect("claims")
        .expect("the first claimer wins");
    for c in &rival_listing {
        if let Some(won) = rival.claim(c).expect("claims") {
            // The rival may take the other file, never the one claimed.
            let opened = rival.open(&won).expect("opens");
            let mine = source.open(&claim).expect("opens");
            assert_ne!(opened.id, mine.id, "one file, one claimer");
            drop(won);
        }
    }
    assert!(
        source.claim(&candidate).expect("claims").is_none(),
        "a claimed file is claimed once"
    );
    assert!(source.renew(&claim), "a live claim renews");

    // Opened as written; its identity stable.
    let opened = source.open(&claim).expect("opens");
    let text = text_of(&opened);
    assert!(text == FIRST || text == SECOND, "the file as written");
    let id = opened.id.clone();
    assert_eq!(source.open(&claim).expect("opens again").id, id);
    drop(opened);
    drop((source, rival));

    // After a crash: what was claimed is taken up again, the same file.
    let source = h.start().await;
    let left = source.left_claimed().await.expect("lists");
    assert!(!left.is_empty(), "a claim survives a crash");
    let ids: Vec<_> = (left.iter())
        .map(|c| source.open(c).expect("opens").id)
        .collect();
    assert!(ids.contains(&id), "the claimed file comes back");
    for c in &left {
        let opened = source.open(c).expect("opens");
        let text = text_of(&opened);
        assert!(text == FIRST || text == SECOND, "the file as written");
    }
    assert!(
        source.waiting().await.expect("lists").len() + left.len() == 2,
        "nothing lost, nothing doubled"
    );
}
