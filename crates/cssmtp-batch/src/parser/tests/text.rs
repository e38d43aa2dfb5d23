//! The text of a mail: line ends, blanks, dots, 8-bit, limits, headers.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use super::*;

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
