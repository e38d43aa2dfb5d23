//! SMTP smuggling: a bare CR in a spool file never becomes a line break on the wire.
//! Tested against a strict receiver (refuses bare CR/LF) and a lenient one (ends the
//! text at <LF>.<LF>, <CR>.<CR>… like the servers the smuggling attack exploits).

use cssmtp::sink::{Received, SinkOptions};

use crate::support::{Env, mail, sink, target, text_with_ids};

/// A spool file whose second mail tries to smuggle a whole extra mail behind bare CRs.
fn smuggling_file() -> String {
    let attack = "Subject: innocent\n\nhello\r.\rMAIL FROM:<evil@attacker.example>\rRCPT TO:<victim@example.com>\rDATA\rSubject: smuggled\r\rpwned\r.\r\nend";
    format!(
        "HELO h.example\n{}{}{}",
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids("before", "clean")
        ),
        mail("a@h.example", &["x@example.com"], attack),
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids("after", "clean")
        )
    )
}

fn assert_clean(received: &[Received]) {
    let subjects: Vec<String> = received
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert_eq!(subjects.len(), 2, "{subjects:?}");
    assert!(subjects.contains(&"before".into()) && subjects.contains(&"after".into()));
    for m in received {
        assert!(!m.mail_from.contains("evil") && !m.rcpt_to.iter().any(|r| r.contains("victim")));
        for (i, &b) in m.data.iter().enumerate() {
            if b == b'\r' {
                assert_eq!(
                    m.data.get(i + 1),
                    Some(&b'\n'),
                    "bare CR reached the receiver"
                );
            }
            if b == b'\n' {
                assert!(
                    i > 0 && m.data[i - 1] == b'\r',
                    "bare LF reached the receiver"
                );
            }
        }
    }
}

#[tokio::test]
async fn bare_cr_is_rejected_before_a_strict_receiver() {
    let strict = sink(SinkOptions {
        strict_line_ends: true,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&target(strict.addr, ""));
    env.submit("SMUGGLE", &smuggling_file());
    let report = env.drain().await;
    assert_clean(&strict.received());
    let errors: Vec<String> = report.files[0]
        .errors
        .iter()
        .map(|e| format!("{}: {e}", e.line))
        .collect();
    assert_eq!(
        errors,
        ["16: 554 5.6.0 JES Syntax error. Bare CR (X'0D' not followed by LF) in data line"]
    );
}

#[tokio::test]
async fn nothing_is_smuggled_past_a_lenient_receiver() {
    let lenient = sink(SinkOptions {
        lenient_end_of_data: true,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&target(lenient.addr, ""));
    env.submit("SMUGGLE", &smuggling_file());
    env.drain().await;
    assert_clean(&lenient.received());
}

#[tokio::test]
async fn the_lenient_receiver_would_be_fooled_by_a_naive_client() {
    // Proof that the lenient sink is a meaningful test: raw bytes with a bare-LF end of
    // data make it accept a second, smuggled mail.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let lenient = sink(SinkOptions {
        lenient_end_of_data: true,
        pipelining: false,
        ..SinkOptions::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(lenient.addr).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let _ = s.read(&mut buf).await.unwrap();
    for cmd in [
        "EHLO c\r\n",
        "MAIL FROM:<a@b>\r\n",
        "RCPT TO:<x@y>\r\n",
        "DATA\r\n",
    ] {
        s.write_all(cmd.as_bytes()).await.unwrap();
        let _ = s.read(&mut buf).await.unwrap();
    }
    s.write_all(b"hi\n.\nMAIL FROM:<evil@a>\r\nRCPT TO:<victim@y>\r\nDATA\r\nsmuggled\r\n.\r\n")
        .await
        .unwrap();
    let received = lenient.wait_for(2).await;
    assert!(received.iter().any(|m| m.rcpt_to == ["victim@y"]));
}
