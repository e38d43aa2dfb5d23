//! HELO/EHLO, STARTTLS, MAIL FROM and RCPT TO.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use super::*;

#[test]
fn helo_rules() {
    let (_, s) = parse("HELO\nHELO dom 11/28/26\nEHLO bad..domain\n");
    assert_eq!(
        errors(&s),
        vec![
            (
                1,
                "501 5.5.4 JES Syntax error. Missing domain after 'HELO' command".into()
            ),
            (
                2,
                "501 5.5.4 JES Syntax error. Too many args after 'HELO' command".into()
            ),
            (
                3,
                "501 5.5.4 JES Syntax error. Invalid domain 'bad..domain' after 'EHLO' command"
                    .into()
            ),
        ]
    );
    // A valid earlier HELO still holds after a bad one.
    let (mails, s) = parse(
        "HELO ok.example\nHELO dom 11/28/26\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\n",
    );
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].helo, "ok.example");
    assert_eq!(s.counted, 1);
}

#[test]
fn mail_needs_helo() {
    let (mails, s) = parse("MAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nbody\n.\n");
    assert!(mails.is_empty());
    assert_eq!(
        errors(&s),
        vec![(
            1,
            "503 5.5.1 JES Syntax error. HELO or EHLO required before 'MAIL FROM' command".into()
        )]
    );
    assert_eq!(
        s.counted, 1,
        "the skipped RCPT, DATA and text add no errors"
    );
}

#[test]
fn starttls_scope_runs_to_next_hello() {
    let file = "EHLO a.example\nSTARTTLS\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\nEHLO a.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\n";
    let (mails, s) = parse(file);
    assert!(s.errors.is_empty());
    let tls: Vec<bool> = mails.iter().map(|m| m.starttls).collect();
    assert_eq!(tls, vec![true, true, false]);
    assert!(mails.iter().all(|m| m.esmtp));
}

#[test]
fn starttls_errors() {
    let (_, s) = parse(
        "HELO a.example\nSTARTTLS\nEHLO a.example\nSTARTTLS now\nMAIL FROM:<a@b.c>\nSTARTTLS\nRSET\n",
    );
    assert_eq!(
        errors(&s),
        vec![
            (
                2,
                "503 5.5.1 JES Syntax error. 'STARTTLS' requires EHLO, not HELO".into()
            ),
            (
                4,
                "501 5.5.4 JES Syntax error. Unexpected args after 'STARTTLS' command".into()
            ),
            (
                6,
                "503 5.5.1 JES Syntax error. 'STARTTLS' not allowed within a mail transaction"
                    .into()
            ),
        ]
    );
}

#[test]
fn a_faulty_starttls_still_asks_for_tls() {
    // Reported as an error, but the job asked for TLS: never sent in the clear.
    let file = "HELO a.example\nSTARTTLS\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\nEHLO a.example\nSTARTTLS now\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\n";
    let (mails, s) = parse(file);
    assert_eq!(s.errors.len(), 2);
    let tls: Vec<bool> = mails.iter().map(|m| m.starttls).collect();
    assert_eq!(tls, vec![true, true]);
}

#[test]
fn mail_from_syntax() {
    let (mails, s) = parse_with(
        "HELO h.example\nMAIL FROM:a@b.c\nMAIL FROM:<a@b.c> BODY=8BITMIME\nMAIL TO:<a@b.c>\nmail from: <ok@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\n",
        Limits {
            syntax_error_limit: 0,
            ..Limits::default()
        },
    );
    assert_eq!(
        errors(&s),
        vec![
            (2, "501 5.5.4 JES Syntax error. Angle brackets required in 'MAIL FROM' command".into()),
            (3, "555 5.5.4 JES Syntax error. Parameters after the path in 'MAIL FROM' not supported".into()),
            (4, "501 5.5.4 JES Syntax error. Syntax is 'MAIL FROM:<path>'".into()),
        ]
    );
    assert_eq!(
        mails.len(),
        1,
        "lower case and a space after the colon are accepted"
    );
    assert_eq!(mails[0].reverse_path, "ok@b.c");
}

#[test]
fn bad_recipient_is_undeliverable_and_not_counted() {
    let file = "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<good@e.f>\nRCPT TO:bad@e.f\nRCPT TO:<>\nRCPT TO:<x y@e.f>\nDATA\nx\n.\n";
    let (mails, s) = parse_with(
        file,
        Limits {
            syntax_error_limit: 1,
            ..Limits::default()
        },
    );
    assert_eq!(s.counted, 0);
    assert!(!s.stopped);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].recipients.len(), 1);
    let rejected: Vec<(u32, String)> = mails[0]
        .rejected
        .iter()
        .map(|r| (r.error.line, r.error.to_string()))
        .collect();
    assert_eq!(
        rejected,
        vec![
            (
                4,
                "501 5.5.4 JES Syntax error. Angle brackets required in 'RCPT TO' command".into()
            ),
            (
                5,
                "501 5.1.3 JES Syntax error. Null path '<>' not allowed in 'RCPT TO'".into()
            ),
            (
                6,
                "501 5.1.3 JES Syntax error. Invalid address '<x y@e.f>' in 'RCPT TO'".into()
            ),
        ]
    );
    assert_eq!(s.errors.len(), 3, "rejected recipients are reported too");
}

#[test]
fn mail_with_only_bad_recipients_is_still_emitted() {
    let (mails, s) = parse("HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<bad>\nDATA\nx\n.\n");
    assert_eq!(s.counted, 0);
    assert_eq!(mails.len(), 1);
    assert!(mails[0].recipients.is_empty());
    assert_eq!(mails[0].rejected.len(), 1);
}

#[test]
fn at_most_2000_recipients() {
    let mut file = String::from("HELO h.example\nMAIL FROM:<a@b.c>\n");
    for i in 0..2000 {
        file.push_str(&format!("RCPT TO:<r{i}@e.f>\n"));
    }
    file.push_str("DATA\nx\n.\n");
    let (mails, s) = parse(&file);
    assert_eq!(mails[0].recipients.len(), 2000);
    assert!(s.errors.is_empty(), "{:?}", s.errors);
}

/// One `RCPT TO` beyond the limit refuses the mail whole, with one error that does not
/// count toward JESSyntaxErrLimit; the next mail goes on.
#[test]
fn more_than_2000_recipients_refuse_the_mail_with_one_error() {
    let mut file = String::from("HELO h.example\nMAIL FROM:<a@b.c>\n");
    for i in 0..2003 {
        file.push_str(&format!("RCPT TO:<r{i}@e.f>\n"));
    }
    file.push_str("RCPT TO:<bad>\nDATA\nx\n.\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nnext\n.\n");
    let (mails, s) = parse_with(
        &file,
        Limits {
            syntax_error_limit: 1,
            ..Limits::default()
        },
    );
    assert_eq!(mails.len(), 1, "only the second mail");
    assert_eq!(mails[0].recipients[0].address, "d@e.f");
    assert_eq!(
        errors(&s),
        vec![(
            2003,
            "552 5.5.3 Too many recipients. 2004 RCPT TO in this mail, at most 2000. Mail not sent"
                .into()
        )]
    );
    assert_eq!(s.counted, 0);
    assert!(!s.errors[0].is_recipient_error(), "an error of the mail");
}

/// Recipients beyond the limit are counted, not kept: a smaller limit shows it.
#[test]
fn recipients_beyond_the_limit_are_not_kept() {
    let mut parser = Parser::new(Limits {
        max_recipients: 3,
        ..Limits::default()
    });
    let mut file = String::from("HELO h.example\nMAIL FROM:<a@b.c>\n");
    for i in 0..100_000 {
        file.push_str(&format!("RCPT TO:<r{i}@e.f>\n"));
    }
    file.push_str("DATA\nx\n.\n");
    let mut stepped = Vec::new();
    for line in crate::record::lines(file.as_bytes()) {
        stepped.push(parser.line(line));
        if let State::Envelope(p) = &parser.state {
            assert!(p.recipients.len() <= 3 && p.rejected.len() <= 3);
        }
    }
    assert!(stepped.iter().all(|s| *s == Step::Continue));
    let s = parser.finish();
    assert_eq!(s.errors.len(), 1);
    assert_eq!(
        s.errors[0].kind,
        ErrorKind::TooManyRecipients {
            count: 100_000,
            limit: 3
        }
    );
}

#[test]
fn path_length_limits() {
    let local = "l".repeat(65);
    let domain = format!("{}.example", "d".repeat(250));
    let file = format!(
        "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<{local}@e.f>\nRCPT TO:<a@{}>\nRCPT TO:<ok@e.f>\nDATA\nx\n.\n",
        domain
    );
    let (mails, s) = parse(&file);
    assert_eq!(
        errors(&s),
        vec![
            (
                3,
                "501 5.5.4 JES Syntax error. User name in 'RCPT TO' exceeds 64 characters".into()
            ),
            (
                4,
                "501 5.5.4 JES Syntax error. Path in 'RCPT TO' exceeds 255 characters".into()
            ),
        ]
    );
    assert_eq!(mails[0].recipients.len(), 1);
}
