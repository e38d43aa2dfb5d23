//! Per-target `Charset` (issue 14 point 1) through the real binary: text translated
//! from EBCDIC goes to a target in its Charset, ISO8859-1 by default (CSSMTP's), UTF-8
//! when configured; a character ISO-8859-1 cannot represent (the euro sign, IBM-1140
//! X'9F') returns the mail with the character and its line named, never a `?`.

use cssmtp::sink::SinkOptions;
use cssmtp::spool::translate::CodePage;

use crate::support::{Env, cssmtp, notifications, originals, sink, target};

/// An IBM-1140 batch-SMTP file, records ended by NL X'15'.
fn ebcdic_1140(lines: &[&str]) -> Vec<u8> {
    let page = CodePage::Ibm1140;
    let mut file = Vec::new();
    for line in lines {
        file.extend(page.encode(line).unwrap());
        file.push(0x15);
    }
    file
}

const LINES: &[&str] = &[
    "HELO zos1.corp.example",
    "MAIL FROM:<billing@zos1.corp.example>",
    "RCPT TO:<carol@example.com>",
    "DATA",
    "Date: Sat, 28 Nov 2026 10:00:00 +0000",
    "Message-ID: <inv.1@zos1.corp.example>",
    "Subject: Rechnung \u{a2} \u{ac}",
    "",
    "Summe: 100 \u{20ac}",
    ".",
];

async fn run(charset: &str) -> (cssmtp::sink::Sink, Option<i32>, String) {
    run_with(SinkOptions::default(), charset).await
}

async fn run_with(
    options: SinkOptions,
    charset: &str,
) -> (cssmtp::sink::Sink, Option<i32>, String) {
    let sink = sink(options).await;
    let env = Env::new(&format!(
        "{}Translate IBM-1140\nChkPoint No\n",
        target(sink.addr, charset)
    ));
    let path = env.dir.path().join("invoice.ebcdic");
    std::fs::write(&path, ebcdic_1140(LINES)).unwrap();
    let out = cssmtp()
        .args([
            "submit",
            "--job-name",
            "BILLING",
            "--job-id",
            "J0000042",
            "-c",
        ])
        .arg(&env.config_path)
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    (sink, out.status.code(), log)
}

#[tokio::test]
async fn a_euro_sign_to_an_iso8859_1_target_returns_the_mail_with_the_reason() {
    // No Charset: CSSMTP's default, ISO8859-1.
    let (sink, code, log) = run("").await;
    assert_eq!(code, Some(3), "{log}");
    assert!(originals(&sink).is_empty(), "never sent with a '?': {log}");
    let returned = notifications(&sink);
    assert_eq!(returned.len(), 1, "{log}");
    assert_eq!(returned[0].rcpt_to, ["billing@zos1.corp.example"]);
    let text = returned[0].text();
    assert!(text.contains("Status: 5.6.5"), "{text}");
    assert!(
        text.contains("554 5.6.5 line 5 of the text holds U+20AC"),
        "{text}"
    );
    assert!(
        text.contains("which ISO8859-1 (the Charset of target 127.0.0.1:"),
        "{text}"
    );
}

#[tokio::test]
async fn latin1_text_arrives_in_iso8859_1_and_the_euro_sign_in_utf8() {
    // Without the euro sign, the default target gets ISO-8859-1 bytes.
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}Translate IBM-1140\nChkPoint No\n",
        target(sink.addr, "")
    ));
    let mut lines = LINES.to_vec();
    lines[8] = "Summe: 100 EUR";
    let path = env.dir.path().join("invoice.ebcdic");
    std::fs::write(&path, ebcdic_1140(&lines)).unwrap();
    let out = cssmtp()
        .args(["submit", "-c"])
        .arg(&env.config_path)
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    let out = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert!(
        got[0]
            .data
            .ends_with(b"Subject: Rechnung \xa2 \xac\r\n\r\nSumme: 100 EUR\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got[0].data)
    );

    // With Charset UTF-8, the euro sign arrives.
    let (sink, code, log) = run("  Charset UTF-8").await;
    assert_eq!(code, Some(0), "{log}");
    let got = sink.received();
    assert_eq!(got.len(), 1, "{log}");
    assert!(
        String::from_utf8_lossy(&got[0].data)
            .ends_with("Subject: Rechnung \u{a2} \u{ac}\r\n\r\nSumme: 100 \u{20ac}\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got[0].data)
    );
}

/// The same through BDAT (a target offering CHUNKING): the text goes through the same
/// Charset as with DATA, so the euro sign is refused there too, never sent as UTF-8.
#[tokio::test]
async fn bdat_sends_the_text_in_the_targets_charset_too() {
    let options = SinkOptions {
        chunking: true,
        ..SinkOptions::default()
    };
    let (sink, code, log) = run_with(options, "").await;
    assert_eq!(code, Some(3), "{log}");
    assert!(originals(&sink).is_empty(), "not sent in UTF-8: {log}");
    let returned = notifications(&sink);
    assert_eq!(returned.len(), 1, "{log}");
    assert!(
        returned[0]
            .text()
            .contains("554 5.6.5 line 5 of the text holds U+20AC"),
        "{}",
        returned[0].text()
    );
}
