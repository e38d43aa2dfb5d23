//! Long retry of recipients that got a 4xx reply, on tokio's paused clock.

use cssmtp::sink::SinkOptions;
use cssmtp::spool::report::Disposition;

use crate::support::{Env, mail, notifications, originals, sink, target, text_with_ids};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_4xx_recipient_is_retried_and_delivered() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 3\n  Interval 1\n}}\n",
        target(sink.addr, "")
    ));
    let file = format!(
        "HELO h.example\n{}",
        mail(
            "a@h.example",
            &["now@example.com", "tempfail-once@example.com"],
            &text_with_ids("retry", "b")
        )
    );
    env.submit("RETRY", &file);
    let started = tokio::time::Instant::now();
    let report = env.drain().await;
    let received = sink.received();
    assert_eq!(
        received.len(),
        2,
        "first pass to one recipient, second pass to the other"
    );
    assert_eq!(received[0].rcpt_to, ["now@example.com"]);
    assert_eq!(
        received[1].rcpt_to,
        ["tempfail-once@example.com"],
        "only the 4xx recipient is retried"
    );
    assert_eq!(
        received[0].header("Message-ID"),
        received[1].header("Message-ID"),
        "same mail, same Message-ID"
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(60),
        "retried after RetryLimit Interval"
    );
    assert_eq!(report.stats.rcpts_retried, 1);
    assert_eq!(report.files[0].disposition, Disposition::Deleted);
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retries_stop_at_the_retry_limit() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 2\n  Interval 5\n}}\n",
        target(sink.addr, "")
    ));
    env.submit(
        "LIMIT",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["ok@example.com", "tempfail@example.com"],
                &text_with_ids("l", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert_eq!(originals(&sink).len(), 1);
    let returned = notifications(&sink);
    assert_eq!(returned.len(), 1, "the originator is told once");
    assert!(
        returned[0]
            .text()
            .contains("Final-Recipient: rfc822; tempfail@example.com")
    );
    assert_eq!(
        report.stats.rcpts_retried, 2,
        "two retries after the first attempt"
    );
    let u = &report.files[0].undeliverable;
    assert_eq!(u.len(), 1);
    assert_eq!(u[0].address, "tempfail@example.com");
    assert!(
        u[0].reason.starts_with("451 4.2.1")
            && u[0].reason.ends_with("RetryLimit of 2 retries exhausted"),
        "{}",
        u[0].reason
    );
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_connection_lost_in_data_is_retried() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit\n{{\n  Count 1\n  Interval 1\n}}\n",
        target(sink.addr, "")
    ));
    env.submit(
        "DROP",
        &format!(
            "HELO h.example\n{}{}",
            mail(
                "a@h.example",
                &["drop-in-data@example.com"],
                "Subject: dropped\n\nb"
            ),
            mail(
                "a@h.example",
                &["fine@example.com"],
                &text_with_ids("fine", "b")
            )
        ),
    );
    let report = env.drain().await;
    assert_eq!(
        originals(&sink).len(),
        1,
        "the other mail went out on a new connection"
    );
    let u = &report.files[0].undeliverable;
    assert_eq!(u.len(), 1);
    assert!(
        u[0].reason.contains("at end of mail text"),
        "the failure records its stage: {}",
        u[0].reason
    );
    assert_eq!(report.stats.rcpts_retried, 1);
}
