//! SMTPUTF8 (RFC 6531) and CHUNKING/BDAT (RFC 3030) against `cssmtp sink` (issue 15
//! point 2): UTF-8 addresses only when `Options SmtpUtf8` allows them, only to a target
//! offering SMTPUTF8 (routed there, or returned with 5.6.7), never mangled; BDAT when
//! offered, byte for byte what DATA delivers, switchable per target.

use cssmtp::sink::SinkOptions;

use crate::support::{Env, mail, notifications, originals, sink, target, text_with_ids};

const SMTPUTF8: &str = "Options\n{\n  SmtpUtf8 Yes\n}\n";

/// A mail to a UTF-8 recipient from a UTF-8 sender, with UTF-8 in its header.
fn utf8_mail(subject: &str) -> String {
    mail(
        "jörg@bücher.example",
        &["用户@例子.广告"],
        &text_with_ids(subject, "To: 用户@例子.广告\nGrüße\n"),
    )
}

fn ascii_mail(subject: &str) -> String {
    mail(
        "a@h.example",
        &["x@example.com"],
        &text_with_ids(subject, "plain\n"),
    )
}

#[tokio::test]
async fn utf8_addresses_go_with_smtputf8_to_the_target_offering_it() {
    let without = sink(SinkOptions::default()).await;
    let with = sink(SinkOptions {
        smtputf8: true,
        ..SinkOptions::default()
    })
    .await;
    // The target without SMTPUTF8 is listed first: it would be chosen first.
    let env = Env::new(&format!(
        "{SMTPUTF8}{}{}",
        target(without.addr, ""),
        target(with.addr, "")
    ));
    let mut file = String::from("HELO h.example\n");
    for i in 0..3 {
        file.push_str(&utf8_mail(&format!("utf{i}")));
        file.push_str(&ascii_mail(&format!("ascii{i}")));
    }
    env.submit("UTF8", &file);
    let report = env.drain().await;
    assert!(report.all_delivered(), "{:?}", report.files);
    assert!(
        without.received().iter().all(|m| m.mail_from.is_ascii()
            && m.rcpt_to.iter().all(|r| r.is_ascii())
            && !m.smtputf8),
        "no UTF-8 address to a server without SMTPUTF8"
    );
    let utf8: Vec<_> = with
        .received()
        .into_iter()
        .filter(|m| !m.mail_from.is_ascii())
        .collect();
    assert_eq!(
        utf8.len(),
        3,
        "every UTF-8 mail went to the SMTPUTF8 server"
    );
    for m in &utf8 {
        assert!(m.smtputf8, "MAIL FROM carries SMTPUTF8");
        assert_eq!(m.mail_from, "jörg@bücher.example");
        assert_eq!(m.rcpt_to, ["用户@例子.广告"]);
        assert!(m.body_8bitmime, "its 8-bit header goes with BODY=8BITMIME");
        assert!(m.text().contains("To: 用户@例子.广告\r\n"), "{}", m.text());
    }
    // ASCII mail never says SMTPUTF8.
    assert!(
        with.received()
            .iter()
            .filter(|m| m.mail_from.is_ascii())
            .all(|m| !m.smtputf8)
    );
    assert_eq!(without.received().len() + with.received().len(), 6);
}

#[tokio::test]
async fn a_utf8_mail_no_target_takes_is_returned_with_5_6_7() {
    let without = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{SMTPUTF8}{}", target(without.addr, "")));
    let file = format!(
        "HELO h.example\n{}{}",
        mail(
            "a@h.example",
            &["jörg@bücher.example"],
            &text_with_ids("utf", "x\n")
        ),
        ascii_mail("ascii"),
    );
    env.submit("UTF8", &file);
    let report = env.drain().await;
    let received = originals(&without);
    assert_eq!(received.len(), 1, "the ASCII mail is delivered");
    assert_eq!(received[0].rcpt_to, ["x@example.com"]);
    let undeliverable = &report.files[0].undeliverable;
    assert_eq!(undeliverable.len(), 1, "{:?}", report.files);
    assert!(
        undeliverable[0].reason.starts_with(
            "553 5.6.7 mail has a non-ASCII address and no target server offers SMTPUTF8"
        ),
        "{}",
        undeliverable[0].reason
    );
    let notices = notifications(&without);
    assert_eq!(notices.len(), 1, "returned to its sender");
    let text = notices[0].text();
    assert!(text.contains("Status: 5.6.7"), "{text}");
}

#[tokio::test]
async fn utf8_addresses_are_refused_per_mail_unless_smtputf8_is_allowed() {
    let with = sink(SinkOptions {
        smtputf8: true,
        ..SinkOptions::default()
    })
    .await;
    // Options SmtpUtf8 is No (the default): today's behaviour.
    let env = Env::new(&target(with.addr, ""));
    let file = format!(
        "HELO h.example\n{}{}{}",
        mail(
            "a@h.example",
            &["jörg@bücher.example", "y@example.com"],
            &text_with_ids("mixed", "x\n")
        ),
        utf8_mail("utf"),
        ascii_mail("ascii"),
    );
    env.submit("UTF8", &file);
    let report = env.drain().await;
    let received = originals(&with);
    let mut rcpts: Vec<_> = received.iter().flat_map(|m| m.rcpt_to.clone()).collect();
    rcpts.sort();
    assert_eq!(
        rcpts,
        ["x@example.com", "y@example.com"],
        "the ASCII recipients get their mail, never a UTF-8 one"
    );
    assert!(received.iter().all(|m| !m.smtputf8));
    let file = &report.files[0];
    let reasons: Vec<String> = file
        .undeliverable
        .iter()
        .map(|u| u.reason.clone())
        .chain(file.errors.iter().map(ToString::to_string))
        .collect();
    assert!(
        reasons.iter().any(|r| r.contains("553 5.6.7")
            && r.contains("<jörg@bücher.example>")
            && r.contains("SmtpUtf8")),
        "{reasons:?}"
    );
}

/// A large text: lines starting with dots (stuffed in the spool file), 8-bit lines,
/// long lines; several BDAT chunks.
fn big_text(subject: &str) -> String {
    let mut body = String::new();
    for i in 0..6000 {
        match i % 5 {
            0 => body.push_str(&format!(".line {i} starts with a dot\n")),
            1 => body.push_str(&format!("Grüße {i} aus Zürich, naïve café\n")),
            2 => body.push_str(&format!("{i} {}\n", "x".repeat(i % 900))),
            3 => body.push_str("..\n"),
            _ => body.push('\n'),
        }
    }
    // Dot-stuffed, as a producer writes batch SMTP.
    let stuffed: String = body
        .lines()
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    text_with_ids(subject, &stuffed)
}

#[tokio::test]
async fn bdat_carries_a_large_8bit_mail_byte_for_byte_as_data_does() {
    let chunking = sink(SinkOptions {
        chunking: true,
        size: Some(0),
        ..SinkOptions::default()
    })
    .await;
    let data_only = sink(SinkOptions {
        size: Some(0),
        ..SinkOptions::default()
    })
    .await;
    let fixed = "Header\n{\n  UserInfo Yes\n}\n";
    for (sink, subject) in [(&chunking, "big"), (&data_only, "big")] {
        let env = Env::new(&format!("{fixed}{}", target(sink.addr, "")));
        let file = format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], &big_text(subject))
        );
        env.submit("BIG", &file);
        let report = env.drain().await;
        assert!(report.all_delivered(), "{:?}", report.files);
    }
    let by_bdat = chunking.received();
    let by_data = data_only.received();
    assert_eq!((by_bdat.len(), by_data.len()), (1, 1));
    let (bdat, data) = (&by_bdat[0], &by_data[0]);
    assert!(
        data.bdat_chunks.is_empty(),
        "DATA where CHUNKING is not offered"
    );
    assert!(
        bdat.bdat_chunks.len() > 2,
        "several chunks: {:?}",
        bdat.bdat_chunks
    );
    assert_eq!(
        bdat.bdat_chunks.iter().sum::<u64>(),
        bdat.data.len() as u64,
        "the chunks add up to the text"
    );
    assert!(bdat.body_8bitmime);
    // The same bytes as DATA delivers (after the Received: field, which names the time).
    let body = |m: &cssmtp::sink::Received| {
        let text = m.data.clone();
        let at = text
            .windows(9)
            .position(|w| w == b"\r\nSubject")
            .expect("Subject");
        text[at..].to_vec()
    };
    assert!(body(bdat) == body(data), "BDAT delivers what DATA does");
    assert!(bdat.text().contains("\r\n.line 5 starts with a dot\r\n"));
    assert!(
        bdat.text().contains("\r\n..\r\n"),
        "a stuffed '...' line is '..'"
    );
    assert_eq!(
        bdat.size,
        Some(bdat.data.len() as u64),
        "SIZE= is what is stored"
    );
}

#[tokio::test]
async fn chunking_no_in_the_target_sends_data() {
    let chunking = sink(SinkOptions {
        chunking: true,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&target(chunking.addr, "  Chunking No"));
    env.submit("ONE", &format!("HELO h.example\n{}", ascii_mail("one")));
    assert!(env.drain().await.all_delivered());
    let received = chunking.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].bdat_chunks.is_empty(), "Chunking No: DATA");

    let env = Env::new(&target(chunking.addr, ""));
    env.submit("TWO", &format!("HELO h.example\n{}", ascii_mail("two")));
    assert!(env.drain().await.all_delivered());
    let received = chunking.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[1].bdat_chunks.len(),
        1,
        "a small mail: BDAT n LAST"
    );
}

#[tokio::test]
async fn a_refused_bdat_last_is_handled_like_a_refused_final_dot() {
    let chunking = sink(SinkOptions {
        chunking: true,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&target(chunking.addr, ""));
    let file = format!(
        "HELO h.example\n{}{}",
        mail(
            "a@h.example",
            &["data-reject@example.com"],
            &text_with_ids("rejected", "x\n")
        ),
        ascii_mail("after"),
    );
    env.submit("REJ", &file);
    let report = env.drain().await;
    let undeliverable = &report.files[0].undeliverable;
    assert_eq!(undeliverable.len(), 1, "{:?}", report.files);
    assert!(
        undeliverable[0]
            .reason
            .starts_with("554 5.6.0 Mail content refused (scripted)"),
        "{}",
        undeliverable[0].reason
    );
    assert!(
        undeliverable[0].reason.contains("at end of mail text"),
        "{}",
        undeliverable[0].reason
    );
    let received = originals(&chunking);
    assert_eq!(received.len(), 1, "the next mail goes on");
    assert_eq!(received[0].rcpt_to, ["x@example.com"]);
    assert_eq!(received[0].bdat_chunks.len(), 1);
}

mod session {
    //! The BDAT writer on one session with the sink: chunk boundaries, `LAST`, an empty
    //! text, and a chunk refused before the last.

    use std::sync::Arc;

    use cssmtp::config::Timeouts;
    use cssmtp::delivery::session::{Session, SessionParams};
    use cssmtp::delivery::{MailJob, MailKey, MailText, RcptResult, Stage};
    use cssmtp::sink::SinkOptions;
    use tokio::sync::mpsc;

    use crate::support::sink;

    fn job(rcpt: &str, headers: &[u8], text: &[u8]) -> MailJob {
        let (reply, _) = mpsc::unbounded_channel();
        MailJob {
            key: MailKey {
                tkid: 1,
                ordinal: 1,
            },
            reverse_path: "from@example.com".into(),
            recipients: vec![rcpt.to_owned()],
            rcpt_index: vec![0],
            needs_tls: false,
            eight_bit: !text.is_ascii(),
            headers: Arc::from(headers),
            text: MailText::Memory(Arc::from(text)),
            size: (headers.len() + text.len()) as u64,
            reply,
            ack: None,
        }
    }

    async fn session(sink: &cssmtp::sink::Sink, timeouts: &Timeouts) -> Session {
        let params = SessionParams {
            helo_name: "test.example",
            timeouts,
        };
        Session::open(sink.addr, None, &params).await.unwrap()
    }

    #[tokio::test]
    async fn chunks_end_with_last_and_an_empty_text_is_bdat_0_last() {
        let chunking = sink(SinkOptions {
            chunking: true,
            ..SinkOptions::default()
        })
        .await;
        let timeouts = Timeouts::default();
        let params = SessionParams {
            helo_name: "test.example",
            timeouts: &timeouts,
        };
        let mut s = session(&chunking, &timeouts).await;
        assert!(s.caps.chunking);
        // An empty mail: one chunk, "BDAT 0 LAST".
        let results = s.send_mail(&job("a@example.com", b"", b""), &params).await;
        assert!(
            matches!(results[0], RcptResult::Delivered { .. }),
            "{results:?}"
        );
        // A text larger than a chunk, stuffed dots included: the chunks carry it
        // unstuffed, the last one LAST (empty: the text ended on a chunk).
        let mut text = Vec::new();
        for i in 0..3000 {
            text.extend_from_slice(format!("..{i} {}\r\n", "é".repeat(20)).as_bytes());
        }
        let results = s
            .send_mail(&job("b@example.com", b"X-A: 1\r\n", &text), &params)
            .await;
        assert!(
            matches!(results[0], RcptResult::Delivered { .. }),
            "{results:?}"
        );
        let received = chunking.received();
        assert_eq!(received.len(), 2);
        assert_eq!(received[0].bdat_chunks, [0]);
        assert!(received[0].data.is_empty());
        let big = &received[1];
        let mut expected = b"X-A: 1\r\n".to_vec();
        expected.extend_from_slice(&cssmtp_wire::data::dot_unstuff(&text));
        assert!(big.data == expected, "the text unstuffed, byte for byte");
        assert_eq!(big.bdat_chunks, [expected.len() as u64, 0]);
        assert!(big.body_8bitmime);
    }

    #[tokio::test]
    async fn a_chunk_refused_before_the_last_fails_the_mail_and_the_session_goes_on() {
        let chunking = sink(SinkOptions {
            chunking: true,
            ..SinkOptions::default()
        })
        .await;
        let timeouts = Timeouts::default();
        let params = SessionParams {
            helo_name: "test.example",
            timeouts: &timeouts,
        };
        let mut s = session(&chunking, &timeouts).await;
        // Several chunks: the first is refused, those already sent after it are
        // answered too before RSET.
        let text: Vec<u8> = b"line of text\r\n".repeat(30_000);
        let mut many = job("bdat-reject@example.com", b"", b"");
        many.text = MailText::Memory(Arc::from(&text[..]));
        let results = s.send_mail(&many, &params).await;
        match &results[0] {
            RcptResult::Undeliverable(f) => {
                assert_eq!(f.stage, Stage::DataBlock);
                assert_eq!(f.reply().map(|r| r.code), Some(554), "{f}");
            }
            other => panic!("{other:?}"),
        }
        assert!(
            s.is_usable() && s.is_quiet().await,
            "RSET, and nothing left unread"
        );
        let results = s
            .send_mail(&job("c@example.com", b"", b"next\r\n"), &params)
            .await;
        assert!(
            matches!(results[0], RcptResult::Delivered { .. }),
            "{results:?}"
        );
        let received = chunking.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].rcpt_to, ["c@example.com"]);
    }
}
