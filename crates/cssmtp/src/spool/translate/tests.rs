use super::*;

/// Each table against Python's codec (stdlib cp037, cp500, cp1140; cp1047 from the
/// `ebcdic` package when installed), an independent implementation.
#[test]
fn tables_match_python() {
    for (page, codec) in [
        (CodePage::Ibm037, "cp037"),
        (CodePage::Ibm500, "cp500"),
        (CodePage::Ibm1140, "cp1140"),
        (CodePage::Ibm1047, "cp1047"),
    ] {
        let script = format!(
            "import sys\ntry:\n import ebcdic\nexcept ImportError:\n pass\nsys.stdout.write(bytes(range(256)).decode('{codec}'))"
        );
        let out = std::process::Command::new("python3")
            .args(["-c", &script])
            .output();
        let Ok(out) = out else {
            eprintln!("note: no python3, {codec} not checked");
            continue;
        };
        if !out.status.success() {
            eprintln!("note: python3 has no {codec}, not checked");
            continue;
        }
        let python: Vec<char> = String::from_utf8(out.stdout).unwrap().chars().collect();
        assert_eq!(python.as_slice(), page.table().as_slice(), "{codec}");
    }
}

/// IBM-1047 is IBM-037 with `[ ] ^ ¬ Ý ¨` moved and NL/LF swapped (IBM's CCSID 1047
/// table); IBM-1140 is IBM-037 with the euro sign at X'9F'.
#[test]
fn the_relatives_of_037() {
    let diff = |a: CodePage, b: CodePage| -> Vec<(usize, char, char)> {
        (0..256)
            .filter_map(|i| {
                let (x, y) = (a.table()[i], b.table()[i]);
                (x != y).then_some((i, x, y))
            })
            .collect()
    };
    assert_eq!(
        diff(CodePage::Ibm037, CodePage::Ibm1047),
        [
            (0x15, '\u{85}', '\n'),
            (0x25, '\n', '\u{85}'),
            (0x5F, '¬', '^'),
            (0xAD, 'Ý', '['),
            (0xB0, '^', '¬'),
            (0xBA, '[', 'Ý'),
            (0xBB, ']', '¨'),
            (0xBD, '¨', ']'),
        ]
    );
    assert_eq!(
        diff(CodePage::Ibm037, CodePage::Ibm1140),
        [(0x9F, '¤', '€')]
    );
    assert_eq!(CodePage::parse("ibm-1047"), Some(CodePage::Ibm1047));
    assert_eq!(CodePage::parse("CP037"), Some(CodePage::Ibm037));
    assert_eq!(CodePage::parse("IBM-273"), None);
}

fn fixed(page: CodePage, lines: &[&str], lrecl: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        let mut record = page.encode(line).unwrap();
        record.resize(lrecl, BLANK);
        out.extend(record);
    }
    out
}

#[test]
fn fixed_records_continuation_and_blanks() {
    let page = CodePage::Ibm1047;
    let rcpt = format!("RCPT TO:{}<", " ".repeat(71));
    let mut file = fixed(page, &["HELO h.example", &rcpt, "a@b.example>", "DATA"], 80);
    // A text line of 80 ending in '<' is text, not a continuation.
    let html = format!("{}<", "x".repeat(79));
    file.extend(fixed(page, &[&html, "[¬]  ", "", "."], 80));
    assert!(page.recognises(&file));
    assert!(!page.recognises(b"HELO h.example\n"));
    let mut out = Vec::new();
    let done = convert(Rules::plain(page, 80), &file, file.as_slice(), &mut out).unwrap();
    assert_eq!(done.continued, 1);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!("HELO h.example\n{rcpt}a@b.example>\nDATA\n{html}\n[¬]\n\n.\n")
    );
}

#[test]
fn delimited_records() {
    let page = CodePage::Ibm037;
    let mut file = page.encode("EHLO h   ").unwrap();
    file.push(NL);
    file.extend(page.encode("MAIL FROM:<a@b.c>\0\0").unwrap());
    file.push(NL);
    let mut out = Vec::new();
    convert(Rules::plain(page, 80), &file, file.as_slice(), &mut out).unwrap();
    assert_eq!(out, b"EHLO h\nMAIL FROM:<a@b.c>\0\0\n");
}

#[test]
fn at_sign_in_commands_and_header_fields() {
    let page = CodePage::Ibm1047;
    let lines = [
        "MAIL FROM:<a§h.example>",
        "DATA",
        "To: b§example.com",
        "Subject: see §4,",
        " b§example",
        "Cc: c§example.com",
        "",
        "text § kept",
        ".",
    ];
    let mut file = Vec::new();
    for line in lines {
        file.extend(page.encode(line).unwrap());
        file.push(NL);
    }
    let run = |replace_subject_at_sign| {
        let mut out = Vec::new();
        let rules = Rules {
            at_sign: Some('§'),
            replace_subject_at_sign,
            ..Rules::plain(page, 80)
        };
        convert(rules, &file, file.as_slice(), &mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        run(false),
        "MAIL FROM:<a@h.example>\nDATA\nTo: b@example.com\nSubject: see §4,\n b§example\nCc: c@example.com\n\ntext § kept\n.\n"
    );
    assert!(run(true).contains("Subject: see @4,\n b@example\nCc: c@example.com\n\ntext § kept"));
}

proptest::proptest! {
    /// Any bytes, any record length: the conversion ends without a panic, and only
    /// recognised files are converted at all.
    #[test]
    fn any_input_converts_without_panic(
        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
        lrecl in 1usize..200,
        netdata in proptest::bool::ANY,
    ) {
        let mut input = bytes.clone();
        if netdata {
            input.splice(0..0, [8, 0xE0, 0xC9, 0xD5, 0xD4, 0xD9, 0xF0, 0xF1]);
        }
        let mut out = Vec::new();
        let rules = Rules { at_sign: Some('§'), ..Rules::plain(CodePage::Ibm1047, lrecl) };
        // Converted, or refused for a control character (never another error).
        if let Err(e) = convert(rules, &input, input.as_slice(), &mut out) {
            proptest::prop_assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            proptest::prop_assert!(e.to_string().contains("control character"));
        }
        let converted = converted_bytes(Some(rules), false, &input);
        proptest::prop_assert_eq!(
            !matches!(converted, Ok(None)),
            CodePage::Ibm1047.recognises(&input) || is_netdata(&input)
        );
    }
}

#[test]
fn the_code_page_a_file_name_chooses() {
    assert_eq!(file_page("PAYROLL.J1.x"), Ok(None));
    assert_eq!(file_page("report"), Ok(None));
    assert_eq!(
        file_page("PAYROLL.J1.x.translate=IBM-037"),
        Ok(Some(FilePage::Page(CodePage::Ibm037)))
    );
    assert_eq!(
        file_page("PAYROLL.J1.x.translate=none"),
        Ok(Some(FilePage::AsIs))
    );
    // Only the last part counts; an unknown page (or a path) is an error, never a guess.
    assert_eq!(file_page("A.translate=IBM-037.x"), Ok(None));
    for bad in [
        "A.B.translate=IBM-9999",
        "A.B.translate=",
        "A.B.translate=IBM-037;rm",
    ] {
        let err = file_page(bad).unwrap_err();
        assert!(err.contains("does not support"), "{err}");
    }
    assert_eq!(
        file_name_mark(FilePage::Page(CodePage::Ibm1140)),
        ".translate=IBM-1140"
    );
}

#[test]
fn control_characters_in_ebcdic_records() {
    let rules = Rules::plain(CodePage::Ibm1047, 80);
    let mut ok = CodePage::Ibm1047.encode("HELO a").unwrap();
    ok.extend([0x00, 0x00, 0x15]);
    ok.extend(CodePage::Ibm1047.encode("x").unwrap());
    ok.extend([0x05, 0x09]);
    ok.extend(CodePage::Ibm1047.encode("y").unwrap());
    ok.push(0x15);
    let mut out = Vec::new();
    convert(rules, &ok, ok.as_slice(), &mut out).unwrap();
    assert_eq!(out, b"HELO a\0\0\nx\t\ty\n");
    for (byte, at) in [(0x2F_u8, 2), (0x00, 2), (0x3F, 2), (0x01, 2)] {
        let mut bad = CodePage::Ibm1047.encode("HELO a").unwrap();
        bad.push(0x15);
        bad.push(0xE7);
        bad.push(byte);
        bad.push(0xE7);
        bad.push(0x15);
        let err = convert(rules, &bad, bad.as_slice(), &mut Vec::new()).unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "record {at}, column 2 holds the control character X'{byte:02X}'"
            )),
            "{err}"
        );
    }
}
