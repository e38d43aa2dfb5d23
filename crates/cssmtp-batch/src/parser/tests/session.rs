//! The sequence of commands, command lines, and the limits of a file.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]

use super::*;

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
