//! Memory and output stay bounded whatever the input (issue 9, point 7): too many
//! recipients are one error of the mail, long lines and big mails are copied in fixed
//! chunks. Memory itself is measured by `bench/extremes`; these tests check, with small
//! inputs, the behaviour that keeps it bounded.

use std::path::{Path, PathBuf};

use cssmtp::sink::SinkOptions;
use cssmtp::spool::report::Disposition;
use cssmtp_batch::ErrorKind;

use crate::support::{
    Env, mail, notifications, sink, target, text_with_ids, without_added_headers,
};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
    });
    found.sort();
    found
}

/// The text (wire form, CRLF, dot-stuffed) of the one mail of a batch-SMTP file.
fn text_of(batch: &[u8]) -> (cssmtp_batch::Mail, Vec<u8>) {
    let (mut mails, summary) = cssmtp_batch::parse_bytes(batch, cssmtp_batch::Limits::default());
    assert!(summary.errors.is_empty(), "{:?}", summary.errors);
    assert_eq!(mails.len(), 1);
    let mail = mails.remove(0);
    let span = &batch[mail.data.start as usize..mail.data.end as usize];
    let mut wire = Vec::new();
    let rules = cssmtp_batch::DataRules {
        padded: mail.data.padded,
        truncate: false,
    };
    cssmtp_batch::render_lines(span, rules, true, &mut wire);
    (mail, wire)
}

/// 2,001 `RCPT TO` in one mail: one reported error of that mail (the file is held with
/// its report), nothing sent, no 2,001 returns.
#[tokio::test]
async fn more_than_2000_recipients_are_one_error_of_the_mail_not_2001_returns() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let rcpts: Vec<String> = (0..2001).map(|i| format!("r{i}@example.com")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    env.submit(
        "MANY",
        &format!(
            "HELO h.example\n{}{}",
            mail("a@h.example", &rcpts, &text_with_ids("many", "body")),
            mail(
                "a@h.example",
                &["ok@example.com"],
                &text_with_ids("next", "b")
            )
        ),
    );
    let report = env.drain().await;
    let file = &report.files[0];
    let received = sink.received();
    assert_eq!(received.len(), 1, "only the next mail is sent");
    assert_eq!(received[0].rcpt_to, ["ok@example.com"]);
    assert_eq!(file.undeliverable_count, 0, "no recipient returned");
    assert!(file.returns.is_empty() && notifications(&sink).is_empty());
    assert!(files(&env.config().dead_letter_directory()).is_empty());
    assert_eq!(file.errors.len(), 1, "{:?}", file.errors);
    assert_eq!(
        file.errors[0].line, 2003,
        "at the first RCPT TO beyond 2000"
    );
    assert_eq!(
        file.errors[0].kind,
        ErrorKind::TooManyRecipients {
            count: 2001,
            limit: 2000
        }
    );
    let Disposition::Held(held) = &file.disposition else {
        panic!("held with its report: {:?}", file.disposition)
    };
    let text = std::fs::read_to_string(format!("{}.report", held.display())).unwrap();
    assert!(
        text.contains(
            "552 5.5.3 Too many recipients. 2001 RCPT TO in this mail, at most 2000. Mail not sent"
        ),
        "{text}"
    );
}

/// A line far longer than the reader's and the renderer's buffers, with DataLineTrunc:
/// cut to 998 characters, the rest of the mail intact. A line of 600 characters followed
/// by 300,000 blanks: with `BlankTrnc Yes` (padded records) the blanks are padding and
/// removed; in a text file (the default here: its lines differ in length) they are
/// content, so the line is cut to 998 like any other.
#[tokio::test]
async fn a_line_longer_than_the_buffers_is_cut_to_998_and_the_rest_is_intact() {
    for (option, p) in [
        ("BlankTrnc YES", "p".repeat(600)),
        ("", format!("{}{}", "p".repeat(600), " ".repeat(398))),
    ] {
        long_lines_cut_to_998(option, &p).await;
    }
}

async fn long_lines_cut_to_998(option: &str, p: &str) {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Options\n{{\n  DataLineTrunc YES\n  {option}\n}}\n",
        target(sink.addr, "")
    ));
    let long: String = (0..300_000)
        .map(|i| (b'a' + (i % 26) as u8) as char)
        .collect();
    let padded = format!("{}{}", "p".repeat(600), " ".repeat(300_000));
    let text = format!(
        "{}before\n{long}\nmiddle\n{padded}\r\n..dot\n{long}",
        text_with_ids("long", "")
    );
    env.submit(
        "LONG",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], &text)
        ),
    );
    let report = env.drain().await;
    assert!(report.all_delivered(), "{option}: {report:?}");
    let received = sink.received();
    assert_eq!(received.len(), 1);
    let body = without_added_headers(&received[0].data);
    let expected = format!(
        "{}before\r\n{cut}\r\nmiddle\r\n{p}\r\n.dot\r\n{cut}\r\n",
        text_with_ids("long", "").replace('\n', "\r\n"),
        cut = &long[..998],
    );
    assert_eq!(body, expected, "{option}");
}

/// A dead letter of a mail larger than the copy chunk (with lines longer than it too)
/// holds the mail byte for byte, as it was sent. The records are taken for padded ones
/// (`BlankTrnc YES`), so that a line of 200,000 trailing blanks is valid and trimmed.
#[tokio::test]
async fn a_dead_letter_larger_than_a_chunk_is_byte_exact() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Options {{ BlankTrnc YES }}\n",
        target(sink.addr, "")
    ));
    let mut body = String::new();
    for i in 0..6000 {
        match i % 7 {
            0 => body.push_str(&format!(".line {i} starts with a dot\n")),
            1 => body.push_str(&format!("line {i} with trailing blanks   \r\n")),
            2 => body.push_str(&format!("{}\n", "w".repeat(990))),
            _ => body.push_str(&format!("line {i}\n")),
        }
        if i == 3000 {
            // A line with 200,000 trailing blanks: longer than any chunk.
            body.push_str(&format!("blanks{}\n", " ".repeat(200_000)));
        }
    }
    let text = text_with_ids("dead", &body);
    let stuffed: String = text
        .lines()
        .map(|l| {
            if l.starts_with('.') {
                format!(".{l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    env.submit(
        "DEAD",
        &format!(
            "HELO h.example\n{}",
            mail("", &["reject-x@example.com"], &stuffed)
        ),
    );
    env.drain().await;
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1);
    let letter = std::fs::read(&dead[0]).unwrap();
    assert!(
        letter.len() > 512 * 1024,
        "several chunks: {}",
        letter.len()
    );
    let (mail, wire) = text_of(&letter);
    assert_eq!(mail.recipients[0].address, "reject-x@example.com");
    let expected: Vec<u8> = stuffed
        .lines()
        .flat_map(|l| format!("{}\r\n", l.trim_end_matches([' ', '\r'])).into_bytes())
        .collect();
    assert!(wire.starts_with(b"Received: from "));
    assert!(
        wire.ends_with(&expected),
        "the text, byte for byte, after cssmtp's headers"
    );
    let headers = wire.len() - expected.len();
    assert!(headers < 1024, "only cssmtp's headers before it: {headers}");
}

/// A notification returns at most 256 KiB of a mail's header, however long the header.
#[tokio::test]
async fn a_notification_carries_a_bounded_header() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let mut header = String::from("Subject: big header\n");
    for i in 0..8000 {
        header.push_str(&format!("X-Filler-{i}: {}\n", "f".repeat(60)));
    }
    assert!(header.len() > 512 * 1024);
    env.submit(
        "HDR",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["reject-x@example.com"],
                &format!("{header}\nbody\n")
            )
        ),
    );
    env.drain().await;
    let dsn = notifications(&sink);
    assert_eq!(dsn.len(), 1);
    let size = dsn[0].data.len();
    assert!(size < 300 * 1024, "notification of {size} bytes");
    assert!(dsn[0].text().contains("X-Filler-0: "));
}

/// A mail larger than the copy chunk kept for extended retry, then rewritten for its
/// remaining recipient: both files hold the text byte for byte.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_big_mail_in_extended_retry_is_kept_and_rewritten_byte_exact() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 1\n  Interval 1\n}}\nExtendedRetry\n{{\n  Age 1\n  Interval 30\n}}\n",
        target(sink.addr, "")
    ));
    let body: String = (0..8000)
        .map(|i| format!("line {i} {}\n", "z".repeat(i % 200)))
        .collect();
    env.submit(
        "EXTBIG",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["tempfail2-x@example.com", "tempfail-y@example.com"],
                &text_with_ids("extbig", &body)
            )
        ),
    );
    env.drain().await;
    let kept = files(&env.config().mail_directory());
    assert_eq!(kept.len(), 1);
    let first = std::fs::read(&kept[0]).unwrap();
    assert!(first.len() > 512 * 1024, "several chunks: {}", first.len());
    let (mail, wire) = text_of(&first);
    assert_eq!(mail.recipients.len(), 2);
    // Byte for byte: the trailing blank of every 200th line ("line 0 ") is content.
    let expected: Vec<u8> = text_with_ids("extbig", &body)
        .lines()
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect();
    assert!(wire.starts_with(b"Received: from ") && wire.ends_with(&expected));

    tokio::time::advance(std::time::Duration::from_secs(35 * 60)).await;
    env.drain().await;
    let delivered = sink.received();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].rcpt_to, ["tempfail2-x@example.com"]);
    let kept = files(&env.config().mail_directory());
    assert_eq!(kept.len(), 1, "{kept:?}");
    let rewritten = std::fs::read(&kept[0]).unwrap();
    let (mail, rewire) = text_of(&rewritten);
    assert_eq!(mail.recipients.len(), 1);
    assert_eq!(mail.recipients[0].address, "tempfail-y@example.com");
    assert_eq!(rewire, wire, "the same text, byte for byte");
}

/// Through the real binary (`cssmtp run --drain`): a mail with 2,001 RCPT TO is one
/// logged error and a held file, and a big null-sender mail becomes a byte-exact dead
/// letter.
#[tokio::test]
async fn the_real_binary_refuses_too_many_recipients_and_streams_dead_letters() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let rcpts: Vec<String> = (0..2001).map(|i| format!("r{i}@example.com")).collect();
    let rcpts: Vec<&str> = rcpts.iter().map(String::as_str).collect();
    env.submit(
        "MANY",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &rcpts, &text_with_ids("many", "body"))
        ),
    );
    let body: String = (0..5000)
        .map(|i| format!("line {i} {}\n", "y".repeat(100)))
        .collect();
    env.submit(
        "BIG",
        &format!(
            "HELO h.example\n{}",
            mail("", &["reject-x@example.com"], &text_with_ids("big", &body))
        ),
    );
    let out = crate::support::cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("552 5.5.3 Too many recipients. 2001 RCPT TO in this mail, at most 2000"),
        "{stderr}"
    );
    assert_eq!(
        stderr.matches("CSM2102W").count(),
        1,
        "one undeliverable: {stderr}"
    );
    assert!(sink.received().is_empty(), "nothing sent");
    let held = env.files_in("hold");
    assert!(
        held.iter()
            .any(|n| n.starts_with("MANY.") && !n.ends_with(".report")),
        "{held:?}"
    );
    let dead = files(&env.config().dead_letter_directory());
    assert_eq!(dead.len(), 1);
    let (_, wire) = text_of(&std::fs::read(&dead[0]).unwrap());
    let expected: Vec<u8> = text_with_ids("big", &body)
        .lines()
        .flat_map(|l| format!("{l}\r\n").into_bytes())
        .collect();
    assert!(wire.starts_with(b"Received: from ") && wire.ends_with(&expected));
}
