//! Bad input of every kind: reported clearly, never a panic, never lost mail.

use cssmtp::sink::SinkOptions;
use cssmtp::spool::report::Disposition;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::{Env, mail, sink, target, text_with_ids};

#[tokio::test]
async fn a_garbage_spool_file_is_held_with_its_errors() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    let mut garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    garbage.extend_from_slice(b"\nHELO\nMAIL FROM:<x\n");
    let path = env.layout().incoming.join("GARBAGE.J1.x");
    std::fs::write(&path, &garbage).unwrap();
    let report = env.drain().await;
    assert!(sink.received().is_empty());
    let file = &report.files[0];
    assert!(!file.errors.is_empty());
    let Disposition::Held(held) = &file.disposition else {
        panic!()
    };
    assert_eq!(
        std::fs::read(held).unwrap(),
        garbage,
        "the held file is intact"
    );
    assert!(
        std::fs::read_to_string(format!("{}.report", held.display()))
            .unwrap()
            .contains("JESSyntaxErrLimit 5 exceeded")
    );
}

#[tokio::test]
async fn jes_job_size_rejects_the_whole_file() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}JESJobSize 1\n", target(sink.addr, "")));
    let body = "x".repeat(1500);
    env.submit(
        "BIGJOB",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], &body)
        ),
    );
    let report = env.drain().await;
    assert!(sink.received().is_empty());
    let problem = report.files[0].file_problem.clone().unwrap();
    assert!(problem.contains("exceeds JESJobSize 1"), "{problem}");
    assert!(matches!(report.files[0].disposition, Disposition::Held(_)));
}

#[tokio::test]
async fn bad_spool_disp_delete_removes_bad_files() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}BadSpoolDisp Delete\n", target(sink.addr, "")));
    env.submit("BAD", "HELO h.example\nBOGUS\n");
    let report = env.drain().await;
    assert_eq!(report.files[0].disposition, Disposition::Removed);
    assert!(env.files_in("hold").is_empty() && env.files_in("active").is_empty());
}

/// A target server that answers MAIL FROM with garbage: the failure is recorded with its
/// stage, the mail is retried (here: RetryLimit Count 0, so it becomes undeliverable).
#[tokio::test]
async fn garbage_server_replies_are_reported() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.write_all(b"220 weird server\r\n").await;
                let _ = s.read(&mut buf).await; // EHLO
                let _ = s.write_all(b"250-weird\r\n250 PIPELINING\r\n").await;
                let _ = s.read(&mut buf).await; // MAIL, RCPT, DATA
                let _ = s.write_all(b"\x00\xffnot smtp at all\r\n").await;
                let _ = s.read(&mut buf).await;
            });
        }
    });
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 0\n}}\n",
        target(addr, "")
    ));
    env.submit(
        "WEIRD",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], &text_with_ids("w", "b"))
        ),
    );
    let report = env.drain().await;
    let u = &report.files[0].undeliverable;
    assert_eq!(u.len(), 1);
    assert!(
        u[0].reason.contains("protocol error") && u[0].reason.contains("at MAIL FROM"),
        "{}",
        u[0].reason
    );
}

/// A raw scripted server: sends `greeting`, then for each client read the next reply in
/// `replies` (one write each, possibly several reply lines), then holds the connection.
async fn scripted_server(replies: Vec<&'static [u8]>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let replies = replies.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.write_all(b"220 scripted\r\n").await;
                for reply in replies {
                    if s.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let _ = s.write_all(reply).await;
                }
                // Then read forever without answering.
                while s.read(&mut buf).await.unwrap_or(0) > 0 {}
            });
        }
    });
    addr
}

/// STARTTLS response injection (CVE-2011-0411 class, client side): a server that sends
/// more than its 220 before the handshake is not trusted.
#[tokio::test]
async fn data_sent_with_the_starttls_reply_is_refused() {
    let addr = scripted_server(vec![
        b"250-scripted\r\n250-PIPELINING\r\n250 STARTTLS\r\n",
        b"220 2.0.0 go ahead\r\n250 2.1.0 injected answer\r\n",
    ])
    .await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 0\n}}\n",
        target(addr, "  Secure Yes")
    ));
    env.submit(
        "INJECT",
        &format!(
            "EHLO h.example\n{}",
            mail("a@h.example", &["x@example.com"], "Subject: s\n\nb")
        ),
    );
    let report = env.drain().await;
    let u = &report.files[0].undeliverable;
    assert_eq!(u.len(), 1);
    assert!(
        u[0].reason
            .contains("server sent data after its STARTTLS reply"),
        "{}",
        u[0].reason
    );
}

/// A server that accepts the text and never answers: the DataTerm timeout (600 s by
/// default) ends the wait, on tokio's paused clock, and the failure names its stage.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_server_that_stops_answering_times_out_at_its_stage() {
    let addr = scripted_server(vec![
        b"250-scripted\r\n250 PIPELINING\r\n",
        b"250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",
    ])
    .await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 0\n}}\n",
        target(addr, "")
    ));
    env.submit(
        "SILENT",
        &format!(
            "EHLO h.example\n{}",
            mail("a@h.example", &["x@example.com"], "Subject: s\n\nb")
        ),
    );
    let started = tokio::time::Instant::now();
    let report = env.drain().await;
    assert!(started.elapsed() >= std::time::Duration::from_secs(600));
    let u = &report.files[0].undeliverable;
    assert!(
        u[0].reason
            .starts_with("no reply within 600 seconds (at end of mail text with "),
        "{}",
        u[0].reason
    );
}

#[tokio::test]
async fn ipv6_targets() {
    let sink = cssmtp::sink::Sink::bind("[::1]:0".parse().unwrap(), SinkOptions::default())
        .await
        .unwrap();
    let env = Env::new(&target(sink.addr, ""));
    env.submit(
        "V6",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], &text_with_ids("v6", "b"))
        ),
    );
    let report = env.drain().await;
    assert!(report.all_delivered());
    assert_eq!(sink.received().len(), 1);
    assert!(sink.received()[0].peer.is_ipv6());
}

/// A recipient refused by an IPv6 target is returned with the target as
/// `Remote-MTA: dns; [IPv6:...]` (RFC 3464 §2.3.5; the failure carries the target's
/// address, not its text).
#[tokio::test]
async fn a_notification_names_an_ipv6_target_as_its_remote_mta() {
    let sink = cssmtp::sink::Sink::bind("[::1]:0".parse().unwrap(), SinkOptions::default())
        .await
        .unwrap();
    let env = Env::new(&target(sink.addr, ""));
    env.submit(
        "V6",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["reject-x@example.com"],
                &text_with_ids("v6", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert_eq!(report.stats.rcpts_undeliverable, 1);
    let returned = crate::support::notifications(&sink);
    assert_eq!(returned.len(), 1);
    let text = String::from_utf8_lossy(&returned[0].data);
    assert!(text.contains("Remote-MTA: dns; [IPv6:::1]\r\n"), "{text}");
}

/// The report beside a held file says how to release it (back into the writer
/// directory, not a non-existent `incoming/`) and that releasing sends every mail in it
/// again, the delivered ones included.
#[tokio::test]
async fn a_held_files_report_warns_that_releasing_sends_everything_again() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&target(sink.addr, ""));
    env.submit(
        "HALFBAD",
        &format!(
            "HELO h.example\n{}FROB the widget\n{}",
            mail(
                "a@h.example",
                &["one@example.com"],
                &text_with_ids("s", "b")
            ),
            mail(
                "a@h.example",
                &["two@example.com"],
                &text_with_ids("t", "c")
            ),
        ),
    );
    let report = env.drain().await;
    let file = &report.files[0];
    assert_eq!(file.rcpts_delivered, 2, "the good mails went");
    let Disposition::Held(held) = &file.disposition else {
        panic!("held expected: {:?}", file.disposition)
    };
    let text = std::fs::read_to_string(format!("{}.report", held.display())).unwrap();
    let writer_dir = env.layout().incoming;
    assert!(
        text.contains(&format!(
            "move it back into the writer directory {}/",
            writer_dir.display()
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "EVERY mail in it is\n  sent again, in full, including mails already delivered"
        ),
        "{text}"
    );
    assert!(
        text.contains("2 recipient(s) were already delivered from this file: before releasing,\n  edit out the mails already delivered"),
        "{text}"
    );
    assert!(!text.contains("incoming/"), "{text}");
}
