//! What a mail's envelope says of its text: `SIZE=` is the size the receiver stores
//! (RFC 1870: without the dots of dot-stuffing), and 8-bit text travels with
//! `BODY=8BITMIME` only to servers offering it (RFC 6152).

use cssmtp::sink::SinkOptions;

use crate::support::{Env, mail, sink, target, text_with_ids};

/// Ids that do not depend on time or on other tests: the added Received: field has the
/// same length in every run of a file.
const FIXED_IDS: &str = "Header\n{\n  UserInfo Yes\n}\n";

/// A text with many lines that start with a dot (dot-stuffed in the spool file).
fn dotted_text() -> String {
    let mut body = String::new();
    for i in 0..200 {
        body.push_str(&format!("..line {i} starts with a dot\n"));
    }
    text_with_ids("dots", &body)
}

fn one_mail(text: &str) -> String {
    format!(
        "HELO h.example\n{}",
        mail("a@h.example", &["x@example.com"], text)
    )
}

#[tokio::test]
async fn size_is_the_stored_size_without_stuffed_dots() {
    // First to a server without a limit: what it stores, and what SIZE= said.
    let open = sink(SinkOptions {
        size: Some(0),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!("{FIXED_IDS}{}", target(open.addr, "")));
    env.submit("DOTS", &one_mail(&dotted_text()));
    let report = env.drain().await;
    assert!(report.all_delivered(), "{:?}", report.files);
    let received = open.received();
    assert_eq!(received.len(), 1);
    let stored = received[0].data.len() as u64;
    assert_eq!(
        received[0].size,
        Some(stored),
        "SIZE= must be the size the server stores"
    );
    assert!(received[0].text().contains("\r\n.line 7 starts"));

    // Then to a server whose limit is exactly that size: it takes the mail.
    let exact = sink(SinkOptions {
        size: Some(stored),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!("{FIXED_IDS}{}", target(exact.addr, "")));
    env.submit("DOTS", &one_mail(&dotted_text()));
    let report = env.drain().await;
    assert!(report.all_delivered(), "{:?}", report.files);
    let received = exact.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].data.len() as u64, stored);
    assert_eq!(received[0].size, Some(stored));
}
