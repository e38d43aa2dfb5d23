//! No mail waits without bound (issue 10 point 5): a mail no reachable target can take,
//! that only a down target might, is charged to the RetryLimit schedule.

use cssmtp::sink::SinkOptions;

use crate::support::{
    Env, closed_port, mail, notifications, originals, sink, target, text_with_ids,
};

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_mail_only_a_down_target_might_take_is_retried_then_returned() {
    let small = sink(SinkOptions {
        size: Some(5_000),
        ..SinkOptions::default()
    })
    .await;
    let down = closed_port();
    let env = Env::new(&format!(
        "{}{}RetryLimit\n{{\n  Count 2\n  Interval 1\n}}\n",
        target(small.addr, ""),
        target(down, "")
    ));
    let big = text_with_ids("big", &"0123456789 123456789 123456789\n".repeat(1000));
    let file = format!(
        "HELO h.example\n{}{}",
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids("small", "tiny\n")
        ),
        mail("a@h.example", &["y@example.com"], &big),
    );
    env.submit("WAIT", &file);
    // The down target's SIZE is unknown: it might take the big mail, but it never
    // answers. The mail must not wait for it: before the fix each attempt waited
    // ConnectRetry again and again, and the mail was returned with a misleading reason
    // after twelve such waits. No clock guard here: paused time jumps to any far timer
    // while the run waits on its blocking threads.
    let report = env.drain().await;
    let delivered = originals(&small);
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].header("Subject").unwrap(), "small");
    assert_eq!(
        report.stats.rcpts_retried, 2,
        "charged to RetryLimit like any temporary failure"
    );
    let u = &report.files[0].undeliverable;
    assert_eq!(u.len(), 1, "{:?}", report.files);
    assert_eq!(u[0].address, "y@example.com");
    assert!(
        u[0].reason
            .contains("no reachable target server can take the mail")
            && u[0].reason.ends_with("RetryLimit of 2 retries exhausted"),
        "{}",
        u[0].reason
    );
    assert_eq!(notifications(&small).len(), 1, "the sender is told");
}
