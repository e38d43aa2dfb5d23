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

/// A text with bytes ≥ 0x80 in its body (UTF-8, as a Linux producer writes it).
fn eight_bit_text(subject: &str) -> String {
    text_with_ids(subject, "Grüße aus Zürich, naïve café\n")
}

fn subjects(mails: &[cssmtp::sink::Received]) -> Vec<String> {
    let mut s: Vec<String> = mails
        .iter()
        .map(|m| m.header("Subject").unwrap_or_default())
        .collect();
    s.sort();
    s
}

#[tokio::test]
async fn eight_bit_text_is_sent_with_body_8bitmime() {
    // A strict server: 8-bit text without BODY=8BITMIME is refused.
    let strict = sink(SinkOptions {
        strict_8bit: true,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&target(strict.addr, ""));
    let file = format!(
        "HELO h.example\n{}{}",
        mail("a@h.example", &["x@example.com"], &eight_bit_text("eight")),
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids("seven", "plain\n")
        ),
    );
    env.submit("EIGHT", &file);
    let report = env.drain().await;
    assert!(report.all_delivered(), "{:?}", report.files);
    let received = strict.received();
    assert_eq!(received.len(), 2);
    for m in &received {
        let subject = m.header("Subject").unwrap();
        assert_eq!(
            m.body_8bitmime,
            subject == "eight",
            "BODY=8BITMIME for 8-bit text only ({subject})"
        );
        if subject == "eight" {
            assert!(m.text().contains("Grüße aus Zürich"), "text intact");
        }
    }
}

#[tokio::test]
async fn eight_bit_text_goes_only_to_targets_offering_8bitmime() {
    let without = sink(SinkOptions {
        eight_bit_mime: false,
        ..SinkOptions::default()
    })
    .await;
    let with = sink(SinkOptions::default()).await;
    // The target without 8BITMIME is listed first: it would be chosen first.
    let env = Env::new(&format!(
        "{}{}",
        target(without.addr, ""),
        target(with.addr, "")
    ));
    let mut file = String::from("HELO h.example\n");
    for i in 0..4 {
        file.push_str(&mail(
            "a@h.example",
            &["x@example.com"],
            &eight_bit_text(&format!("eight{i}")),
        ));
        file.push_str(&mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids(&format!("seven{i}"), "plain\n"),
        ));
    }
    env.submit("EIGHT", &file);
    let report = env.drain().await;
    assert!(report.all_delivered(), "{:?}", report.files);
    let on_without = without.received();
    assert!(
        on_without
            .iter()
            .all(|m| m.data.is_ascii() && !m.body_8bitmime),
        "no 8-bit text to a server without 8BITMIME: {:?}",
        subjects(&on_without)
    );
    let eight: Vec<_> = with
        .received()
        .into_iter()
        .filter(|m| !m.data.is_ascii())
        .collect();
    assert_eq!(
        subjects(&eight),
        ["eight0", "eight1", "eight2", "eight3"],
        "every 8-bit mail went to the server offering 8BITMIME"
    );
    assert!(eight.iter().all(|m| m.body_8bitmime));
    assert_eq!(on_without.len() + with.received().len(), 8);
}

#[tokio::test]
async fn eight_bit_text_no_target_takes_is_returned_with_the_reason() {
    let without = sink(SinkOptions {
        eight_bit_mime: false,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&target(without.addr, ""));
    let file = format!(
        "HELO h.example\n{}{}",
        mail("a@h.example", &["x@example.com"], &eight_bit_text("eight")),
        mail(
            "a@h.example",
            &["y@example.com"],
            &text_with_ids("seven", "plain\n")
        ),
    );
    env.submit("EIGHT", &file);
    let report = env.drain().await;
    let received = crate::support::originals(&without);
    assert_eq!(
        subjects(&received),
        ["seven"],
        "the 7-bit mail is delivered"
    );
    assert!(!received[0].body_8bitmime, "no BODY= for 7-bit text");
    let undeliverable = &report.files[0].undeliverable;
    assert_eq!(undeliverable.len(), 1, "{:?}", report.files);
    assert_eq!(undeliverable[0].mail, 1);
    assert!(
        undeliverable[0]
            .reason
            .starts_with("554 5.6.3 mail has 8-bit text and no target server offers 8BITMIME"),
        "{}",
        undeliverable[0].reason
    );
    assert_eq!(report.files[0].returns.len(), 1, "{:?}", report.files);
    // The notification (the original's header only, 7-bit) reaches the sender.
    let notices = crate::support::notifications(&without);
    assert_eq!(notices.len(), 1);
    assert!(notices[0].text().contains("5.6.3"), "{}", notices[0].text());
}
