#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use super::*;
use crate::data::{DataRules, render_lines};

fn parse(text: &str) -> (Vec<Mail>, Summary) {
    parse_bytes(text.as_bytes(), Limits::default())
}

fn parse_with(text: &str, limits: Limits) -> (Vec<Mail>, Summary) {
    parse_bytes(text.as_bytes(), limits)
}

/// The errors as `(line, text)`, the form an error report shows.
fn errors(summary: &Summary) -> Vec<(u32, String)> {
    summary
        .errors
        .iter()
        .map(|e| (e.line, e.to_string()))
        .collect()
}

fn wire_text(file: &str, mail: &Mail) -> String {
    let span = &file.as_bytes()[mail.data.start as usize..mail.data.end as usize];
    let mut out = Vec::new();
    render_lines(span, rules(mail, false), true, &mut out);
    String::from_utf8(out).unwrap()
}

fn rules(mail: &Mail, truncate: bool) -> DataRules {
    DataRules {
        padded: mail.data.padded,
        truncate,
    }
}

const TWO_MAILS: &str = "HELO zos1.corp.example
MAIL FROM:<batch@zos1.corp.example>
RCPT TO:<alice@example.com>
RCPT TO:<bob@example.org>
DATA
From: batch@zos1.corp.example
Subject: totals

..leading dot doubled
body
.
MAIL FROM:<>
RCPT TO:<carol@example.net>
DATA
Subject: second
Date: Sat, 28 Nov 2026 10:00:00 +0000
Message-ID: <x@y>

second body
.
QUIT
";

#[test]
fn multi_mail_multi_recipient_file() {
    let (mails, summary) = parse(TWO_MAILS);
    assert_eq!(summary.errors, vec![]);
    assert_eq!(mails.len(), 2);
    let first = &mails[0];
    assert_eq!((first.ordinal, first.line), (1, 2));
    assert_eq!(first.helo, "zos1.corp.example");
    assert!(!first.esmtp && !first.starttls);
    assert_eq!(first.reverse_path, "batch@zos1.corp.example");
    let rcpts: Vec<_> = first
        .recipients
        .iter()
        .map(|r| (r.address.as_str(), r.line))
        .collect();
    assert_eq!(
        rcpts,
        vec![("alice@example.com", 3), ("bob@example.org", 4)]
    );
    assert_eq!(
        wire_text(TWO_MAILS, first),
        "From: batch@zos1.corp.example\r\nSubject: totals\r\n\r\n..leading dot doubled\r\nbody\r\n"
    );
    assert_eq!(first.data.lines, 5);
    assert_eq!(
        first.data.wire_size,
        wire_text(TWO_MAILS, first).len() as u64
    );
    assert!(!first.data.has_date && !first.data.has_message_id);
    assert_eq!(first.data.missing_separator_at, None);
    let second = &mails[1];
    assert_eq!(second.reverse_path, "", "null reverse path is allowed");
    assert!(second.data.has_date && second.data.has_message_id);
    assert_eq!(summary.mails, 2);
}

#[test]
fn crlf_and_lf_files_parse_alike() {
    let crlf = TWO_MAILS.replace('\n', "\r\n");
    let (a, _) = parse(TWO_MAILS);
    let (b, sb) = parse(&crlf);
    assert!(sb.errors.is_empty());
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(wire_text(TWO_MAILS, x), wire_text(&crlf, y));
        assert_eq!(x.data.wire_size, y.data.wire_size);
        assert_eq!(x.recipients, y.recipients);
    }
}

#[test]
fn trailing_blanks_are_stripped_from_commands_and_kept_in_text() {
    let file = "HELO a.example   \nMAIL FROM:<x@a.example>  \nRCPT TO:<y@b.example>\t \nDATA \nSubject: s   \n\nbody   \n-- \r\nsig\n.   \n";
    let (mails, summary) = parse(file);
    // A tab before the trailing blank is not a blank: the RCPT is still valid.
    assert!(summary.errors.is_empty(), "{:?}", errors(&summary));
    assert_eq!(mails[0].recipients[0].address, "y@b.example");
    assert!(!mails[0].data.padded);
    // Variable-length lines (a Linux text file): the blanks of the text are content.
    let wire = "Subject: s   \r\n\r\nbody   \r\n-- \r\nsig\r\n";
    assert_eq!(wire_text(file, &mails[0]), wire);
    assert_eq!(mails[0].data.wire_size, wire.len() as u64);
    // `BlankTrnc Yes` strips them (CSSMTP's rule for every record).
    let limits = Limits {
        blank_trnc: BlankTrnc::Yes,
        ..Limits::default()
    };
    let (mails, summary) = parse_with(file, limits);
    assert!(summary.errors.is_empty(), "{:?}", errors(&summary));
    let wire = "Subject: s\r\n\r\nbody\r\n--\r\nsig\r\n";
    assert_eq!(wire_text(file, &mails[0]), wire);
    assert_eq!(mails[0].data.wire_size, wire.len() as u64);
}

/// The records of `lines`, each padded with blanks to `width` (fixed-length records
/// turned into text).
fn padded(lines: &[&str], width: usize, end: &str) -> String {
    lines.iter().map(|l| format!("{l:<width$}{end}")).collect()
}

#[test]
fn padded_fixed_length_records_lose_their_padding() {
    let lines = [
        "HELO a.example",
        "MAIL FROM:<x@a.example>",
        "RCPT TO:<y@b.example>",
        "DATA",
        "Subject: s",
        "",
        "body",
        "   ",
        "-- ",
        ".",
        "QUIT",
    ];
    for end in ["\n", "\r\n"] {
        let file = padded(&lines, 80, end);
        assert!(crate::record::fixed_length(file.as_bytes()));
        let (mails, summary) = parse(&file);
        assert!(summary.errors.is_empty(), "{:?}", errors(&summary));
        assert!(mails[0].data.padded);
        // The empty line stays the header's end; a line of blanks stays a (empty) line.
        let wire = "Subject: s\r\n\r\nbody\r\n\r\n--\r\n";
        assert_eq!(wire_text(&file, &mails[0]), wire);
        assert_eq!(mails[0].data.wire_size, wire.len() as u64);
        assert_eq!(mails[0].data.missing_separator_at, None);
        // `BlankTrnc No` keeps the padding (as long as the lines are within 998).
        let limits = Limits {
            blank_trnc: BlankTrnc::No,
            ..Limits::default()
        };
        let (mails, _) = parse_with(&file, limits);
        assert!(!mails[0].data.padded);
        assert!(wire_text(&file, &mails[0]).starts_with(&format!("{:<80}\r\n", "Subject: s")));
    }
    // One line shorter (a variable-length file, or a last record cut): kept.
    let mut file = padded(&lines, 80, "\n");
    file.push_str("NOOP\n");
    let (mails, _) = parse(&file);
    assert!(!mails[0].data.padded);
}

#[test]
fn a_line_of_blanks_in_a_text_header_does_not_end_it() {
    // In a text file the blanks are kept: the receiver sees a folded line, not the empty
    // line between header and body, so the missing one is added where the body starts.
    let file = "HELO a.example\nMAIL FROM:<x@a.example>\nRCPT TO:<y@b.example>\nDATA\nSubject: s\n  \nbody\n.\n";
    let (mails, _) = parse(file);
    assert!(mails[0].data.missing_separator_at.is_some());
}

#[test]
fn kept_blanks_count_toward_the_998_limit() {
    let file = format!(
        "HELO a.example\nMAIL FROM:<x@a.example>\nRCPT TO:<y@b.example>\nDATA\n{}{}\n.\n",
        "a".repeat(990),
        " ".repeat(20)
    );
    let (mails, summary) = parse(&file);
    assert!(mails.is_empty());
    assert_eq!(
        errors(&summary),
        vec![(
            5,
            "554 5.6.0 JES Syntax error. Data line of 1010 characters exceeds 998".into()
        )]
    );
    let limits = Limits {
        blank_trnc: BlankTrnc::Yes,
        ..Limits::default()
    };
    let (mails, summary) = parse_with(&file, limits);
    assert!(summary.errors.is_empty());
    assert_eq!(mails[0].data.wire_size, 992);
}

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

#[test]
fn dot_stuffing_is_preserved_and_dot_line_ends_data() {
    let file =
        "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\n\n..\n...x\n.x\n.  \nRSET\n";
    let (mails, s) = parse(file);
    assert!(s.errors.is_empty());
    assert_eq!(wire_text(file, &mails[0]), "\r\n..\r\n...x\r\n.x\r\n");
    // Three stuffed lines: the receiver stores three bytes fewer than the wire carries.
    assert_eq!(mails[0].data.wire_size, 16);
    assert_eq!(mails[0].data.dot_lines, 3);
    assert_eq!(mails[0].data.message_size(), 13);
    assert!(!mails[0].data.eight_bit);
}

#[test]
fn eight_bit_text_is_noticed() {
    let file = "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nSubject: x\n\nna\u{ef}ve\n.\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nSubject: y\n\nplain\n.\n";
    let (mails, s) = parse(file);
    assert!(s.errors.is_empty());
    assert!(mails[0].data.eight_bit);
    assert!(!mails[1].data.eight_bit);
}

#[test]
fn rset_drops_the_mail_in_progress() {
    let (mails, s) = parse(
        "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nRSET\nMAIL FROM:<z@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\n",
    );
    assert!(s.errors.is_empty());
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].reverse_path, "z@b.c");
    assert_eq!(mails[0].ordinal, 1);
}

#[test]
fn quit_ends_the_session_and_is_implied() {
    let file = "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\nQUIT\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\nEHLO again.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\n";
    let (mails, s) = parse(file);
    assert_eq!(mails.len(), 2);
    assert_eq!(mails[1].helo, "again.example");
    assert_eq!(
        errors(&s),
        vec![(
            8,
            "503 5.5.1 JES Syntax error. HELO or EHLO required before 'MAIL FROM' command".into()
        )]
    );
    // No QUIT at the end is fine; an open transaction at end of file is not.
    let (_, s) = parse("HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\n");
    assert_eq!(
        errors(&s),
        vec![(
            3,
            "503 5.5.1 JES Syntax error. Mail transaction ended without 'DATA'".into()
        )]
    );
}

#[test]
fn sequencing_errors() {
    let (_, s) = parse_with(
        "HELO h.example\nRCPT TO:<d@e.f>\nDATA\nignored text\nRCPT TO:<d@e.f>\n.\nMAIL FROM:<a@b.c>\nDATA\nalso ignored\n.\nMAIL FROM:<a@b.c>\nMAIL FROM:<b@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\n",
        Limits {
            syntax_error_limit: 0,
            ..Limits::default()
        },
    );
    assert_eq!(
        errors(&s),
        vec![
            (
                2,
                "503 5.5.1 JES Syntax error. 'RCPT TO' command without 'MAIL FROM'".into()
            ),
            (
                3,
                "503 5.5.1 JES Syntax error. 'DATA' command without 'MAIL FROM'".into()
            ),
            (
                8,
                "503 5.5.1 JES Syntax error. 'DATA' command without 'RCPT TO'".into()
            ),
            (
                12,
                "503 5.5.1 JES Syntax error. Nested 'MAIL FROM' command; previous mail has no DATA"
                    .into()
            ),
        ]
    );
}

#[test]
fn unknown_ignored_and_unsupported_commands() {
    let (mails, s) = parse(
        "HELO h.example\nNOOP\nVERB ON\nTICK 1\nHELP\nXYZZY plugh\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nx\n.\n",
    );
    assert_eq!(
        errors(&s),
        vec![
            (
                5,
                "502 5.5.1 JES Syntax error. Command 'HELP' not supported".into()
            ),
            (
                6,
                "500 5.5.1 JES Syntax error. Unrecognized command 'XYZZY'".into()
            ),
        ]
    );
    assert_eq!(mails.len(), 1);
}

#[test]
fn command_line_limits_and_control_characters() {
    let long = format!("HELO {}", "a".repeat(506));
    let (_, s) = parse(&format!("{long}\nHELO a\x01b\nHELO ok.example\n"));
    assert_eq!(
        errors(&s),
        vec![
            (
                1,
                "500 5.5.2 JES Syntax error. Command line of 511 characters exceeds 510".into()
            ),
            (
                2,
                "501 5.5.2 JES Syntax error. Control character X'01' in command".into()
            ),
        ]
    );
}

#[test]
fn null_trnc_strips_trailing_nuls_from_commands() {
    let file = "HELO h.example\0\0\nMAIL FROM:<a@b.c>\0\nRCPT TO:<d@e.f>\nDATA\nx\n.\n";
    let (mails, s) = parse_with(
        file,
        Limits {
            null_trnc: true,
            ..Limits::default()
        },
    );
    assert!(s.errors.is_empty());
    assert_eq!(mails.len(), 1);
    let (_, s) = parse(file);
    assert_eq!(
        s.errors[0].to_string(),
        "501 5.5.2 JES Syntax error. Control character X'00' in command"
    );
}

#[test]
fn data_line_limit_and_truncation() {
    let file = format!(
        "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nshort\n{}\n.\n",
        "x".repeat(999)
    );
    let (mails, s) = parse(&file);
    assert!(mails.is_empty());
    assert_eq!(
        errors(&s),
        vec![(
            6,
            "554 5.6.0 JES Syntax error. Data line of 999 characters exceeds 998".into()
        )]
    );
    let (mails, s) = parse_with(
        &file,
        Limits {
            data_line_trunc: true,
            ..Limits::default()
        },
    );
    assert!(s.errors.is_empty());
    assert_eq!(mails[0].data.wire_size, 7 + 1000);
    let span = &file.as_bytes()[mails[0].data.start as usize..mails[0].data.end as usize];
    let mut out = Vec::new();
    render_lines(span, rules(&mails[0], true), true, &mut out);
    assert_eq!(out.len() as u64, mails[0].data.wire_size);
}

#[test]
fn bare_cr_rejects_the_mail() {
    let file = "HELO h.example\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nSubject: x\r\n\r\nevil\r.\r\nMAIL FROM:<x@y.z>\r\n.\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nfine\r\n.\r\n";
    let (mails, s) = parse(file);
    assert_eq!(
        errors(&s),
        vec![(
            7,
            "554 5.6.0 JES Syntax error. Bare CR (X'0D' not followed by LF) in data line".into()
        )]
    );
    assert_eq!(mails.len(), 1, "only the clean mail survives");
    assert_eq!(wire_text(file, &mails[0]), "fine\r\n");
}

#[test]
fn syntax_error_limit_stops_the_file() {
    let file = "HELO h.example\nBAD1\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nfirst\n.\nBAD2\nBAD3\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nsecond\n.\n";
    let (mails, s) = parse_with(
        file,
        Limits {
            syntax_error_limit: 2,
            ..Limits::default()
        },
    );
    assert_eq!(mails.len(), 1, "mail before the limit is kept");
    assert!(s.stopped);
    assert_eq!(s.counted, 3);
    assert_eq!(
        errors(&s).last().unwrap(),
        &(
            9,
            "554 5.5.0 JESSyntaxErrLimit 2 exceeded. Rest of spool file not processed".to_string()
        )
    );
    let (mails, s) = parse_with(
        file,
        Limits {
            syntax_error_limit: 0,
            ..Limits::default()
        },
    );
    assert_eq!(mails.len(), 2, "0 means no limit");
    assert!(!s.stopped);
}

#[test]
fn jes_msg_size_rejects_big_mail_without_counting() {
    let body = "y".repeat(600);
    let file = format!(
        "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\n{body}\n{body}\n.\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nsmall\n.\n"
    );
    let (mails, s) = parse_with(
        &file,
        Limits {
            max_mail_kb: 1,
            syntax_error_limit: 1,
            ..Limits::default()
        },
    );
    assert_eq!(mails.len(), 1);
    assert_eq!(s.counted, 0);
    assert_eq!(
        errors(&s),
        vec![(
            7,
            "552 5.3.4 Mail size 1204 bytes exceeds JESMsgSize 1 (thousands of bytes)".into()
        )]
    );
}

#[test]
fn missing_end_of_data() {
    let (mails, s) = parse("HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nno end\n");
    assert!(mails.is_empty());
    assert_eq!(
        errors(&s),
        vec![(
            5,
            "554 5.6.0 JES Syntax error. End of file within 'DATA': no '.' line".into()
        )]
    );
}

#[test]
fn header_facts() {
    let file = "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nSubject: no blank line\nbody starts here\n.\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\njust a body\n.\n";
    let (mails, _) = parse(file);
    let body_line = file.find("body starts").unwrap() as u64;
    assert_eq!(mails[0].data.missing_separator_at, Some(body_line));
    assert_eq!(
        mails[1].data.missing_separator_at,
        Some(mails[1].data.start)
    );
}

#[test]
fn empty_and_blank_files() {
    let (mails, s) = parse("");
    assert!(mails.is_empty() && s.errors.is_empty());
    let (mails, s) = parse("\n\n   \n");
    assert!(mails.is_empty() && s.errors.is_empty());
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2048)) {
        let (mails, summary) = parse_bytes(&bytes, Limits { syntax_error_limit: 0, data_line_trunc: true, null_trnc: true, ..Limits::default() });
        for mail in &mails {
            let span = bytes.get(mail.data.start as usize..mail.data.end as usize).unwrap();
            let mut out = Vec::new();
            render_lines(span, rules(mail, true), true, &mut out);
            proptest::prop_assert_eq!(out.len() as u64, mail.data.wire_size);
            // Nothing but CRLF line ends on the wire.
            for (i, &b) in out.iter().enumerate() {
                if b == b'\r' { proptest::prop_assert_eq!(out.get(i + 1), Some(&b'\n')); }
                if b == b'\n' { proptest::prop_assert!(i > 0 && out[i - 1] == b'\r'); }
            }
        }
        proptest::prop_assert!(summary.errors.len() <= MAX_KEPT_ERRORS);
    }

    #[test]
    fn shuffled_commands_never_panic(lines in proptest::collection::vec(
        proptest::sample::select(vec![
            "HELO a.example", "EHLO b.example", "HELO", "STARTTLS", "MAIL FROM:<a@b.c>", "MAIL FROM:<>",
            "MAIL FROM:x", "RCPT TO:<d@e.f>", "RCPT TO:<bad", "DATA", ".", "..", "text", "Subject: s", "",
            "RSET", "QUIT", "NOOP", "HELP", "bad\rcr", "x\0",
        ]), 0..60)) {
        let file = lines.join("\n");
        let (mails, summary) = parse_bytes(file.as_bytes(), Limits::default());
        proptest::prop_assert!(mails.len() as u32 == summary.mails);
        for mail in &mails {
            proptest::prop_assert!(mail.data.start <= mail.data.end);
            proptest::prop_assert!(mail.data.end as usize <= file.len());
        }
    }
}

#[test]
fn header_end_and_auto_submitted() {
    let file = "HELO h.example\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nSubject: s\nAuto-Submitted: auto-replied\n\nbody\n.\nMAIL FROM:<a@b.c>\nRCPT TO:<d@e.f>\nDATA\nAuto-Submitted: no\nSubject: only header\n.\n";
    let (mails, _) = parse(file);
    assert!(mails[0].data.auto_submitted);
    assert_eq!(
        &file[mails[0].data.start as usize..mails[0].data.header_end as usize],
        "Subject: s\nAuto-Submitted: auto-replied\n"
    );
    assert!(
        !mails[1].data.auto_submitted,
        "Auto-Submitted: no is a person's mail"
    );
    assert_eq!(mails[1].data.header_end, mails[1].data.end, "all header");
}
