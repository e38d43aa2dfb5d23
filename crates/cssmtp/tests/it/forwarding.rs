//! The forwarding path end to end: spool files in, mails out, files gone.

use std::collections::HashMap;

use cssmtp::sink::SinkOptions;
use cssmtp::spool::report::Disposition;

use crate::support::{
    Env, mail, notifications, originals, sink, target, text_with_ids, without_added_headers,
};

#[tokio::test]
async fn multi_mail_multi_recipient_files_arrive_byte_exact() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let first = text_with_ids(
        "first",
        "line one\n..starts with a dot\n\n  indented\ttab\n...\nlast",
    );
    let second = text_with_ids("second", "only line");
    let file = format!(
        "EHLO zos1.example\n{}{}QUIT\n",
        mail(
            "batch@zos1.example",
            &["alice@example.com", "bob@example.org", "carol@example.net"],
            &first
        ),
        mail("batch@zos1.example", &["dave@example.com"], &second)
    );
    env.submit("PAYROLL", &file);
    let report = env.drain().await;

    let received = sink.received();
    assert_eq!(received.len(), 2);
    let by_subject: HashMap<String, _> = received
        .iter()
        .map(|m| (m.header("Subject").unwrap(), m))
        .collect();
    let one = by_subject["first"];
    assert_eq!(one.mail_from, "batch@zos1.example");
    assert_eq!(
        one.rcpt_to,
        ["alice@example.com", "bob@example.org", "carol@example.net"]
    );
    // Dot-stuffing was kept in the spool and removed by the receiver; CRLF on the wire.
    assert_eq!(
        without_added_headers(&one.data),
        "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <first@test>\r\nSubject: first\r\n\r\n\
         line one\r\n.starts with a dot\r\n\r\n  indented\ttab\r\n..\r\nlast\r\n"
    );
    assert_eq!(
        without_added_headers(&by_subject["second"].data),
        "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <second@test>\r\nSubject: second\r\n\r\nonly line\r\n"
    );
    assert_eq!(report.stats.rcpts_delivered, 4);
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].disposition, Disposition::Deleted);
    assert!(
        env.files_in("").is_empty()
            && env.files_in("active").is_empty()
            && env.files_in("hold").is_empty()
    );
}

#[tokio::test]
async fn crlf_and_lf_spool_files_give_the_same_mail() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let lf = format!(
        "HELO h.example\n{}",
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids("lf", "body  \ntext")
        )
    );
    env.submit("LF", &lf);
    env.submit("CRLF", &lf.replace("lf", "crlf").replace('\n', "\r\n"));
    env.drain().await;
    let received = sink.received();
    assert_eq!(received.len(), 2);
    let texts: Vec<String> = received
        .iter()
        .map(|m| without_added_headers(&m.data).replace("crlf", "lf"))
        .collect();
    assert_eq!(texts[0], texts[1]);
    assert!(
        texts[0].ends_with("\r\n\r\nbody  \r\ntext\r\n"),
        "trailing blanks of a text file kept: {:?}",
        texts[0]
    );
}

/// A Linux text file: the `-- ` signature separator and the trailing-space soft breaks
/// of `format=flowed` (RFC 3676) are content, and arrive byte for byte (the parser's
/// digest, checked before the final ".", matches the text as sent). Commands keep being
/// read without their trailing blanks and tabs.
#[tokio::test]
async fn a_text_file_keeps_signature_and_flowed_blanks() {
    // A server that offers SIZE, so that the size announced is seen.
    let sink = sink(SinkOptions {
        size: Some(1_000_000),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&target(sink.addr, ""));
    let body = "Content-Type: text/plain; charset=us-ascii; format=flowed\n\n\
        The nightly totals were computed and the numbers below are the \n\
        ones the auditors asked for. \n\
        Totals: 42\n\
        \n\
        -- \n\
        Batch job NIGHTLY  \n\
        \t \n";
    let text = text_with_ids("flowed", body).replacen("\n\nContent-Type", "\nContent-Type", 1);
    let file = format!(
        "HELO h.example  \nMAIL FROM:<a@h.example> \t\nRCPT TO:<x@example.com>\t \nDATA  \n{text}.  \nQUIT \n"
    );
    env.submit("FLOWED", &file);
    env.submit(
        "FLOWCR",
        &file.replace("flowed", "flowcr").replace('\n', "\r\n"),
    );
    let report = env.drain().await;
    assert!(report.all_delivered(), "{report:?}");
    let received = sink.received();
    assert_eq!(received.len(), 2);
    for m in &received {
        assert_eq!(m.mail_from, "a@h.example");
        assert_eq!(m.rcpt_to, ["x@example.com"]);
        let got = without_added_headers(&m.data).replace("flowcr", "flowed");
        assert_eq!(got, text.replace('\n', "\r\n"), "byte for byte");
        assert_eq!(m.size, Some(m.data.len() as u64), "SIZE= counts the blanks");
    }
}

/// Fixed-length records turned into text (every line padded with blanks to 80 columns,
/// as a z/OS data set is): the padding is removed from every line, a line of blanks only
/// becomes an empty line (here the end of the header), and the mail is sent (the digest
/// matches the trimmed text).
#[tokio::test]
async fn padded_fixed_length_records_lose_their_padding() {
    // A server that offers SIZE, so that the size announced is seen.
    let sink = sink(SinkOptions {
        size: Some(1_000_000),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&target(sink.addr, ""));
    for (job, end) in [("PADDED", "\n"), ("PADCRLF", "\r\n")] {
        let text = text_with_ids(job, "body line\n   \n..dot\n-- \nBatch job NIGHTLY\n");
        let records = format!(
            "HELO h.example\n{}QUIT\n",
            mail("a@h.example", &["x@example.com"], &text)
        );
        let padded: String = records.lines().map(|l| format!("{l:<80}{end}")).collect();
        assert!(padded.lines().all(|l| l.trim_end_matches('\r').len() == 80));
        env.submit(job, &padded);
    }
    let report = env.drain().await;
    assert!(report.all_delivered(), "{report:?}");
    let received = sink.received();
    assert_eq!(received.len(), 2);
    let expected = "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <PADDED@test>\r\nSubject: PADDED\r\n\r\nbody line\r\n\r\n.dot\r\n--\r\nBatch job NIGHTLY\r\n";
    for m in &received {
        let got = without_added_headers(&m.data).replace("PADCRLF", "PADDED");
        assert_eq!(got, expected);
        assert_eq!(m.size, Some(m.data.len() as u64));
    }
}

#[tokio::test]
async fn added_headers_follow_the_header_statement() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let file = format!(
        "EHLO zos1.example\n{}{}",
        mail(
            "a@zos1.example",
            &["x@example.com"],
            "Subject: no date\n\nbody"
        ),
        mail("a@zos1.example", &["x@example.com"], "no header at all")
    );
    env.submit("HDRJOB", &file);
    env.drain().await;
    let mut received = sink.received();
    received.sort_by_key(|m| m.data.len());
    let text = received[1].text();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "Received: from zos1.example");
    assert!(
        lines[1].starts_with("\tby cssmtp.test (cssmtp ")
            && lines[1].contains(" with ESMTP id HDRJOB.J0000001."),
        "{text}"
    );
    assert!(
        lines[2].starts_with("\tfor <") && lines[2].contains("@cssmtp.test>; "),
        "{text}"
    );
    assert!(lines[3].starts_with("Date: "));
    assert!(
        lines[4].starts_with("Message-ID: <HDRJOB.J0000001.")
            && lines[4].ends_with("@cssmtp.test>")
    );
    assert_eq!(lines[5], "Subject: no date");
    // A text without header gets the blank line that separates header and body.
    let bare = received[0].text();
    assert!(bare.contains(">\r\n\r\nno header at all\r\n"), "{bare}");

    let env = Env::new(&format!(
        "{}Header\n{{\n  Date NO\n  UserInfo NO\n}}\n",
        target(sink.addr, "")
    ));
    env.submit(
        "HDRJOB",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], "Subject: s\n\nb")
        ),
    );
    env.drain().await;
    let last = sink.received().into_iter().max_by_key(|m| m.id).unwrap();
    let text = last.text();
    assert!(
        !text.contains("\r\nDate: ") && !text.contains("HDRJOB"),
        "{text}"
    );
    assert!(
        text.contains("with SMTP id ") && text.contains("for <TESTWTR@cssmtp.test>"),
        "{text}"
    );
    assert!(last.header("Message-ID").is_some());
}

#[tokio::test]
async fn a_rejected_recipient_does_not_stop_the_others() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let file = format!(
        "HELO h.example\n{}",
        mail(
            "a@h.example",
            &[
                "one@example.com",
                "reject-two@example.com",
                "three@example.com"
            ],
            &text_with_ids("r", "x")
        )
    );
    env.submit("REJ", &file);
    let report = env.drain().await;
    let received = originals(&sink);
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].rcpt_to,
        ["one@example.com", "three@example.com"]
    );
    let file = &report.files[0];
    assert_eq!(file.rcpts_delivered, 2);
    assert_eq!(file.undeliverable.len(), 1);
    assert_eq!(file.undeliverable[0].address, "reject-two@example.com");
    assert_eq!(file.undeliverable[0].line, 4);
    assert!(
        file.undeliverable[0]
            .reason
            .starts_with("550 5.1.1 No such user"),
        "{:?}",
        file.undeliverable
    );
    // The originator is told, and the file, with nothing wrong in itself, is deleted.
    let returned = notifications(&sink);
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].rcpt_to, ["a@h.example"]);
    assert!(
        returned[0]
            .text()
            .contains("Final-Recipient: rfc822; reject-two@example.com")
    );
    assert_eq!(file.disposition, Disposition::Deleted);
    assert_eq!(
        file.returns,
        [(1, "notification sent to <a@h.example>".to_string())]
    );
    // With Report File (the default), the error report is in reports/.
    let report_text = std::fs::read_to_string(
        env.layout()
            .incoming
            .join("reports")
            .join(format!("{}.report", file.job.file_name)),
    )
    .unwrap();
    assert!(
        report_text.contains("mail 1, line 4, <reject-two@example.com>: 550 5.1.1"),
        "{report_text}"
    );
}

#[tokio::test]
async fn mail_from_refused_and_all_recipients_refused() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let file = format!(
        "HELO h.example\n{}{}{}",
        mail(
            "reject-sender@h.example",
            &["a@example.com", "b@example.com"],
            "x"
        ),
        mail(
            "ok@h.example",
            &["reject-1@example.com", "reject-2@example.com"],
            "y"
        ),
        mail(
            "ok@h.example",
            &["fine@example.com"],
            &text_with_ids("after", "z")
        )
    );
    env.submit("MIX", &file);
    let report = env.drain().await;
    let received = originals(&sink);
    assert_eq!(
        received.len(),
        1,
        "the session survives refusals and the next mail is sent"
    );
    assert_eq!(received[0].rcpt_to, ["fine@example.com"]);
    let undeliverable: Vec<(u32, &str)> = report.files[0]
        .undeliverable
        .iter()
        .map(|u| (u.mail, u.address.as_str()))
        .collect();
    assert_eq!(
        undeliverable,
        [
            (1, "a@example.com"),
            (1, "b@example.com"),
            (2, "reject-1@example.com"),
            (2, "reject-2@example.com")
        ]
    );
    assert!(
        report.files[0].undeliverable[0]
            .reason
            .contains("550 5.7.1 Sender refused")
    );
}

#[tokio::test]
async fn without_pipelining_and_with_helo_only_servers() {
    for options in [
        SinkOptions {
            pipelining: false,
            ..SinkOptions::default()
        },
        SinkOptions {
            ehlo: false,
            ..SinkOptions::default()
        },
    ] {
        let sink = sink(options).await;
        let env = Env::new(&target(sink.addr, ""));
        let file = format!(
            "EHLO h.example\n{}",
            mail(
                "a@h.example",
                &["one@example.com", "reject-x@example.com", "two@example.com"],
                &text_with_ids("p", "x")
            )
        );
        env.submit("NOPIPE", &file);
        let report = env.drain().await;
        let received = originals(&sink);
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].rcpt_to, ["one@example.com", "two@example.com"]);
        assert_eq!(report.stats.rcpts_undeliverable, 1);
    }
}

#[tokio::test]
async fn many_files_concurrently_each_mail_exactly_once() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}SpoolTasks 4\nMaxConnections 3\n",
        target(sink.addr, "")
    ));
    let mut expected = Vec::new();
    for f in 0..40 {
        let mut file = String::from("HELO h.example\n");
        for m in 0..3 {
            let subject = format!("file{f}-mail{m}");
            file.push_str(&mail(
                "a@h.example",
                &["x@example.com", "y@example.com"],
                &text_with_ids(&subject, "b"),
            ));
            expected.push(subject);
        }
        env.submit(&format!("JOB{f}"), &file);
    }
    let report = env.drain().await;
    let mut subjects: Vec<String> = sink
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    subjects.sort();
    expected.sort();
    assert_eq!(subjects, expected, "every mail once, none twice");
    assert_eq!(report.stats.rcpts_delivered, 240);
    assert_eq!(report.files.len(), 40);
    assert!(
        sink.sessions() <= 3,
        "connections are reused: {} sessions",
        sink.sessions()
    );
    assert!(env.files_in("").is_empty() && env.files_in("active").is_empty());
}

#[test]
fn claiming_is_atomic_between_competing_claimers() {
    let env = Env::new("TargetServer\n{\n TargetIp 127.0.0.1\n}\n");
    let layout = env.layout();
    for i in 0..200 {
        std::fs::write(layout.incoming.join(format!("JOB.J{i}.x")), "x").unwrap();
    }
    let claimed: Vec<Vec<String>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let layout = layout.clone();
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for c in layout.waiting(1000).unwrap() {
                        if layout.claim(&c.name).unwrap().is_some() {
                            mine.push(c.name);
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut all: Vec<String> = claimed.into_iter().flatten().collect();
    let total = all.len();
    all.sort();
    all.dedup();
    assert_eq!(total, 200, "each file claimed by exactly one claimer");
    assert_eq!(all.len(), 200);
    assert_eq!(env.files_in("active").len(), 200);
}

#[test]
fn half_written_files_are_never_taken() {
    let env = Env::new("TargetServer\n{\n TargetIp 127.0.0.1\n}\n");
    let layout = env.layout();
    std::fs::write(layout.incoming.join(".JOB.J1.x.tmp"), "HELO").unwrap();
    std::fs::write(layout.incoming.join("JOB.J2.x.tmp"), "HELO").unwrap();
    std::fs::write(layout.incoming.join("JOB.J3.x"), "HELO").unwrap();
    let names: Vec<String> = layout
        .waiting(10)
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["JOB.J3.x"]);
}

#[test]
fn spool_directories_get_their_modes_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new("TargetServer\n{\n TargetIp 127.0.0.1\n}\n");
    let layout = env.layout();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        mode(&layout.incoming),
        0o3730,
        "producers in the spool's group may create files, sticky: not rename others'"
    );
    assert_eq!(mode(&layout.active), 0o750);
    assert_eq!(mode(&layout.hold), 0o750);
    let spooled = env.submit("PERM", "HELO h.example\n");
    assert_eq!(mode(&spooled), 0o640);
}
