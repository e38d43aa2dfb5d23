//! Mainframe-format spool files (issue 14 point 1) through the real binary: EBCDIC
//! batch SMTP as a job moved from z/OS writes it (`Translate`), in fixed-length 80-byte
//! records without line ends (made here with Python's own cp037 codec, an
//! implementation independent of cssmtp's tables) or in records ended by NL X'15',
//! with the continuation rule and NullTrnc; submitted with `cssmtp submit`, forwarded by
//! `cssmtp run --drain` to a loopback sink, and compared byte for byte.

use cssmtp::sink::SinkOptions;
use cssmtp::spool::translate::CodePage;

use crate::support::{Env, cssmtp, sink, target, without_added_headers};

/// `text` in Python's `codec`, or `None` (with a note) without python3.
fn python_encode(text: &str, codec: &str) -> Option<Vec<u8>> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; sys.stdout.buffer.write(sys.argv[1].encode(sys.argv[2]))",
            text,
            codec,
        ])
        .output();
    match out {
        Ok(out) if out.status.success() => Some(out.stdout),
        _ => {
            eprintln!("note: no python3 with {codec}: the test is skipped");
            None
        }
    }
}

/// A fixed-length record of 80 bytes: `text` in cp037, padded with `pad`.
fn record(text: &str, pad: u8) -> Option<Vec<u8>> {
    let mut r = python_encode(text, "cp037")?;
    assert!(r.len() <= 80, "{text}");
    r.resize(80, pad);
    Some(r)
}

async fn submit_and_drain(env: &Env, file: &[u8]) -> (String, String) {
    let path = env.dir.path().join("job.ebcdic");
    std::fs::write(&path, file).unwrap();
    let out = cssmtp()
        .args([
            "submit",
            "--job-name",
            "PAYROLL",
            "--job-id",
            "J0012345",
            "-c",
        ])
        .arg(&env.config_path)
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "submit: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(0), "{log}");
    (log, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn ebcdic_037_fixed_80_byte_records_with_continuations_and_nulltrnc() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Translate IBM-037\nOptions {{ NullTrnc }}\nChkPoint No\n",
        // The translation itself, byte for byte (ISO8859-1, the default: charset.rs).
        target(sink.addr, "  Charset UTF-8")
    ));
    let domain = format!("{}example", "aaaaaaaaaa.".repeat(6));
    // RCPT TO split after '<' in column 80; another after column 79, with NL X'15' in
    // column 80 (both CSSMTP's continuation rule).
    let rcpt1 = format!("RCPT TO:{}<", " ".repeat(71));
    let long = format!("RCPT TO:<bob@{domain}>");
    let (rcpt2a, rcpt2b) = long.split_at(79);
    let mut nl_record = python_encode(rcpt2a, "cp037").unwrap_or_default();
    nl_record.push(0x15);
    let records = [
        record("HELO zos1.corp.example", 0x40),
        // Padded with X'00': NullTrnc strips them from the command.
        record("MAIL FROM:<payroll@zos1.corp.example>", 0x00),
        record(&rcpt1, 0x40),
        record("alice@example.com>", 0x40),
        Some(nl_record),
        record(rcpt2b, 0x40),
        record("DATA", 0x40),
        record("Date: Sat, 28 Nov 2026 10:00:00 +0000", 0x40),
        record("Message-ID: <pay.1@zos1.corp.example>", 0x40),
        record("Subject: Payroll ¬ totals ¢", 0x40),
        record("", 0x40),
        record("Net pay:   100", 0x40),
        record(&format!("{}<", "x".repeat(79)), 0x40),
        record("..leading dot", 0x40),
        record(".", 0x40),
        record("QUIT", 0x40),
    ];
    let Some(records) = records.into_iter().collect::<Option<Vec<_>>>() else {
        return;
    };
    let file: Vec<u8> = records.concat();
    assert_eq!(file.len(), 16 * 80);
    let (log, _) = submit_and_drain(&env, &file).await;
    assert!(
        log.contains("is read as EBCDIC IBM-037 (fixed-length records): 16 record(s), 2 joined by continuation"),
        "{log}"
    );
    let received = sink.received();
    assert_eq!(received.len(), 1, "{log}");
    let mail = &received[0];
    assert_eq!(mail.mail_from, "payroll@zos1.corp.example");
    assert_eq!(
        mail.rcpt_to,
        ["alice@example.com".to_owned(), format!("bob@{domain}")]
    );
    assert_eq!(
        without_added_headers(&mail.data),
        format!(
            "Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <pay.1@zos1.corp.example>\r\nSubject: Payroll ¬ totals ¢\r\n\r\nNet pay:   100\r\n{}<\r\n.leading dot\r\n",
            "x".repeat(79)
        )
    );
}

#[tokio::test]
async fn ebcdic_1047_records_ended_by_nl_beside_an_ascii_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Translate IBM-1047\nChkPoint No\n",
        target(sink.addr, "")
    ));
    let page = CodePage::Ibm1047;
    let mut file = Vec::new();
    for line in [
        "EHLO zos1.corp.example",
        "MAIL FROM:<batch@zos1.corp.example>",
        "RCPT TO:<carol@example.com>",
        "DATA",
        "Subject: array[0] ^ 2   ",
        "",
        "x[i] = y[i]^2",
        ".",
    ] {
        file.extend(page.encode(line).unwrap());
        file.push(0x15);
    }
    // An ASCII file in the same spool is read as it is.
    let ascii = env.dir.path().join("ascii.bsmtp");
    std::fs::write(
        &ascii,
        "HELO linux.example\nMAIL FROM:<cron@linux.example>\nRCPT TO:<dave@example.com>\nDATA\nSubject: plain [ascii]\n\nok\n.\n",
    )
    .unwrap();
    let out = cssmtp()
        .args(["submit", "-c"])
        .arg(&env.config_path)
        .arg(&ascii)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let (log, _) = submit_and_drain(&env, &file).await;
    assert_eq!(log.matches("CSM4030I").count(), 1, "{log}");
    assert!(log.contains("is read as EBCDIC IBM-1047 (records ended by NL): 8 record(s)"));
    let mut received = sink.received();
    received.sort_by(|a, b| a.rcpt_to.cmp(&b.rcpt_to));
    assert_eq!(received.len(), 2, "{log}");
    assert_eq!(received[0].rcpt_to, ["carol@example.com"]);
    let text = without_added_headers(&received[0].data);
    assert!(
        text.ends_with("Subject: array[0] ^ 2\r\n\r\nx[i] = y[i]^2\r\n"),
        "{text:?}"
    );
    assert_eq!(received[1].rcpt_to, ["dave@example.com"]);
    assert!(
        without_added_headers(&received[1].data).ends_with("Subject: plain [ascii]\r\n\r\nok\r\n")
    );
}

#[tokio::test]
async fn at_sign_is_read_as_at_in_commands_and_header_but_not_subject_nor_text() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Translate IBM-1047\nOptions {{ AtSign §  ReplaceSubjectAtSign No }}\nChkPoint No\n",
        target(sink.addr, "  Charset UTF-8")
    ));
    let page = CodePage::Ibm1047;
    let mut file = Vec::new();
    for line in [
        "HELO zos1.corp.example",
        "MAIL FROM:<batch§zos1.corp.example>",
        "RCPT TO:<erin§example.com>",
        "DATA",
        "To: erin§example.com",
        "Subject: rule §4 applies",
        "",
        "See §4.",
        ".",
    ] {
        file.extend(page.encode(line).unwrap());
        file.push(0x15);
    }
    let (log, _) = submit_and_drain(&env, &file).await;
    let received = sink.received();
    assert_eq!(received.len(), 1, "{log}");
    assert_eq!(received[0].mail_from, "batch@zos1.corp.example");
    assert_eq!(received[0].rcpt_to, ["erin@example.com"]);
    let text = without_added_headers(&received[0].data);
    assert!(
        text.ends_with("To: erin@example.com\r\nSubject: rule §4 applies\r\n\r\nSee §4.\r\n"),
        "{text:?}"
    );
}

/// A NETDATA text unit: key, number of values, each with its length (big-endian).
fn text_unit(key: u16, values: &[&[u8]]) -> Vec<u8> {
    let mut out = key.to_be_bytes().to_vec();
    out.extend(u16::try_from(values.len()).unwrap().to_be_bytes());
    for v in values {
        out.extend(u16::try_from(v.len()).unwrap().to_be_bytes());
        out.extend(*v);
    }
    out
}

/// One NETDATA segment: length (itself and the flags included), flags, data.
fn segment(flags: u8, data: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::try_from(data.len() + 2).unwrap(), flags];
    out.extend(data);
    out
}

#[tokio::test]
async fn a_netdata_file_as_tso_transmit_and_smtpnote_write_it() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Translate IBM-1047\nChkPoint No\n",
        target(sink.addr, "")
    ));
    let page = CodePage::Ibm1047;
    let e = |s: &str| page.encode(s).unwrap();
    // Control records as the TSO/E Customization manual lays them out (INMR01 header,
    // INMR02 file utility, INMR03 data format, INMR06 end), with typical text units.
    let mut inmr01 = e("INMR01");
    for unit in [
        text_unit(0x0042, &[&[0x00, 0x50]]),        // INMLRECL 80
        text_unit(0x1011, &[&e("ZOS1")]),           // INMFNODE
        text_unit(0x1012, &[&e("PAYROLL")]),        // INMFUID
        text_unit(0x1001, &[&e("LINUX")]),          // INMTNODE
        text_unit(0x1002, &[&e("CSSMTP")]),         // INMTUID
        text_unit(0x1024, &[&e("20261128100000")]), // INMFTIME
        text_unit(0x102F, &[&[0x00, 0x01]]),        // INMNUMF 1
    ] {
        inmr01.extend(unit);
    }
    let mut inmr02 = e("INMR02");
    inmr02.extend([0, 0, 0, 1]);
    inmr02.extend(text_unit(0x1028, &[&e("INMCOPY")])); // INMUTILN
    inmr02.extend(text_unit(0x003C, &[&[0x40, 0x00]])); // INMDSORG PS
    inmr02.extend(text_unit(0x0042, &[&[0x00, 0x50]])); // INMLRECL
    inmr02.extend(text_unit(0x0049, &[&[0x90, 0x00]])); // INMRECFM FB
    let mut inmr03 = e("INMR03");
    inmr03.extend(text_unit(0x003C, &[&[0x40, 0x00]]));
    inmr03.extend(text_unit(0x0042, &[&[0x00, 0x50]]));
    inmr03.extend(text_unit(0x0049, &[&[0x90, 0x00]]));
    let mut stream = Vec::new();
    for control in [&inmr01, &inmr02, &inmr03] {
        stream.extend(segment(0xE0, control));
    }
    let rcpt = format!("RCPT TO:{}<", " ".repeat(71));
    for line in [
        "HELO zos1.corp.example",
        "MAIL FROM:<payroll@zos1.corp.example>",
        &rcpt,
        "frank@example.com>",
        "DATA",
        "Subject: sent with SMTPNOTE",
        "",
        "Totals attached.",
        ".",
        "QUIT",
    ] {
        let mut record = e(line);
        record.resize(80, 0x40);
        // A record in two segments, as TRANSMIT may split them.
        let (a, b) = record.split_at(50);
        stream.extend(segment(0x80, a));
        stream.extend(segment(0x40, b));
    }
    stream.extend(segment(0xE0, &e("INMR06")));
    // Cut into 80-byte card images, the last one padded.
    let cards = stream.len().div_ceil(80);
    stream.resize(cards * 80, 0x40);
    let (log, _) = submit_and_drain(&env, &stream).await;
    assert!(
        log.contains("is read as EBCDIC IBM-1047 (NETDATA, TSO TRANSMIT): 10 record(s), 1 joined by continuation"),
        "{log}"
    );
    let received = sink.received();
    assert_eq!(received.len(), 1, "{log}");
    assert_eq!(received[0].mail_from, "payroll@zos1.corp.example");
    assert_eq!(received[0].rcpt_to, ["frank@example.com"]);
    let text = without_added_headers(&received[0].data);
    assert!(
        text.ends_with("Subject: sent with SMTPNOTE\r\n\r\nTotals attached.\r\n"),
        "{text:?}"
    );
}

/// `lines` in `codec` (Python's), each ended by NL X'15'.
fn nl_records(lines: &[&str], codec: &str) -> Option<Vec<u8>> {
    let mut file = Vec::new();
    for line in lines {
        file.extend(python_encode(line, codec)?);
        file.push(0x15);
    }
    Some(file)
}

/// `cssmtp submit` with `args` before the file; its exit code, stdout and stderr.
async fn submit_with(env: &Env, args: &[&str], file: &[u8]) -> (Option<i32>, String, String) {
    let path = env.dir.path().join("job.in");
    std::fs::write(&path, file).unwrap();
    let out = cssmtp()
        .arg("submit")
        .args(args)
        .arg("-c")
        .arg(&env.config_path)
        .arg(&path)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cssmtp run --drain`, which must exit with `code`: its log.
async fn drain(env: &Env, code: i32) -> String {
    let out = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{log}");
    log
}

#[tokio::test]
async fn a_file_in_ibm_037_submitted_to_an_ibm_1047_writer_with_its_own_code_page() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Translate IBM-1047\nChkPoint No\n",
        target(sink.addr, "  Charset UTF-8")
    ));
    // [ ] ^ ¬ are at other bytes in IBM-037 than in IBM-1047; a tab X'05' is kept.
    let Some(file) = nl_records(
        &[
            "HELO zos1.corp.example",
            "MAIL FROM:<batch@zos1.corp.example>",
            "RCPT TO:<gina@example.com>",
            "DATA",
            "Subject: a[0] ^ b[1] ¬ c",
            "",
            "x[i]\t= ¬y[i]^2",
            ".",
            "QUIT",
        ],
        "cp037",
    ) else {
        return;
    };
    // The same bytes read as IBM-1047 (the writer's) would not be these characters.
    let as_1047: String = file
        .iter()
        .map(|b| CodePage::Ibm1047.table()[usize::from(*b)])
        .collect();
    assert!(!as_1047.contains("a[0] ^ b[1] ¬ c"), "{as_1047:?}");
    let (code, out, err) = submit_with(&env, &["--translate", "IBM-037"], &file).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(".translate=IBM-037"), "{out}");
    // A UTF-8 file in the same EBCDIC writer, by the producer's word.
    let utf8 = "HELO linux.example\nMAIL FROM:<cron@linux.example>\nRCPT TO:<hal@example.com>\nDATA\nSubject: plain [utf-8] ¬\n\nok\n.\n";
    let (code, out, err) = submit_with(&env, &["--translate", "none"], utf8.as_bytes()).await;
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains(".translate=none"), "{out}");
    let log = drain(&env, 0).await;
    assert!(
        log.contains("is read as EBCDIC IBM-037 (records ended by NL): 9 record(s)"),
        "{log}"
    );
    assert_eq!(log.matches("CSM4030I").count(), 1, "{log}");
    let mut received = sink.received();
    received.sort_by(|a, b| a.rcpt_to.cmp(&b.rcpt_to));
    assert_eq!(received.len(), 2, "{log}");
    assert_eq!(received[0].rcpt_to, ["gina@example.com"]);
    let text = without_added_headers(&received[0].data);
    assert!(
        text.ends_with("Subject: a[0] ^ b[1] ¬ c\r\n\r\nx[i]\t= ¬y[i]^2\r\n"),
        "{text:?}"
    );
    assert_eq!(received[1].rcpt_to, ["hal@example.com"]);
    assert!(
        without_added_headers(&received[1].data)
            .ends_with("Subject: plain [utf-8] ¬\r\n\r\nok\r\n")
    );
}

#[tokio::test]
async fn an_unknown_per_file_code_page_is_refused_and_the_file_held() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Translate IBM-1047\nChkPoint No\n",
        target(sink.addr, "")
    ));
    let Some(file) = nl_records(
        &[
            "HELO zos1.corp.example",
            "MAIL FROM:<batch@zos1.corp.example>",
            "RCPT TO:<ivan@example.com>",
            "DATA",
            "Subject: never guessed",
            "",
            "text",
            ".",
        ],
        "cp037",
    ) else {
        return;
    };
    // cssmtp submit refuses it.
    let (code, _, err) = submit_with(&env, &["--translate", "IBM-9999"], &file).await;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("\"IBM-9999\" is no code page cssmtp supports"),
        "{err}"
    );
    assert!(env.files_in("").is_empty());
    // A producer writing the name itself: held, with the reason, nothing sent.
    let name = "PAYROLL.J0012345.1.translate=IBM-9999";
    std::fs::write(env.layout().incoming.join(name), &file).unwrap();
    let log = drain(&env, 3).await;
    assert!(
        log.contains(&format!("CSM4036E Task 1: spool file {name} cannot be read: the spool file name asks for code page \"IBM-9999\" (translate=), which cssmtp does not support")),
        "{log}"
    );
    assert!(sink.received().is_empty(), "{log}");
    // Held (exit 3: files were held), with its report.
    assert_eq!(
        env.files_in("hold"),
        [name.to_owned(), format!("{name}.report")],
        "{log}"
    );
}

#[tokio::test]
async fn a_control_character_in_an_ebcdic_record_is_refused_clearly() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Translate IBM-1047\nChkPoint No\n",
        target(sink.addr, "")
    ));
    let page = CodePage::Ibm1047;
    let mut file = Vec::new();
    for line in [
        "HELO zos1.corp.example",
        "MAIL FROM:<batch@zos1.corp.example>",
        "RCPT TO:<judy@example.com>",
        "DATA",
        "Subject: bell",
        "",
        "ring",
        ".",
    ] {
        file.extend(page.encode(line).unwrap());
        if line == "ring" {
            // BEL X'2F' in column 5 of record 7.
            file.push(0x2F);
        }
        file.push(0x15);
    }
    let (code, _, err) = submit_with(&env, &[], &file).await;
    assert_eq!(code, Some(65), "{err}");
    assert!(
        err.contains("record 7, column 5 holds the control character X'2F'"),
        "{err}"
    );
    assert!(env.files_in("").is_empty());
    let name = "PAYROLL.J0012345.1";
    std::fs::write(env.layout().incoming.join(name), &file).unwrap();
    let log = drain(&env, 3).await;
    assert!(
        log.contains(&format!("CSM4036E Task 1: spool file {name} cannot be read: cannot translate the spool file from IBM-1047: record 7, column 5 holds the control character X'2F', which batch SMTP may not hold")),
        "{log}"
    );
    assert!(sink.received().is_empty(), "{log}");
    // Held (exit 3: files were held), with its report.
    assert_eq!(
        env.files_in("hold"),
        [name.to_owned(), format!("{name}.report")],
        "{log}"
    );
}
