//! STOP with transactions in progress: the shutdown order and its deadline (`app`'s
//! module doc). A session held by the sink stands for a slow server; the clock is
//! tokio's paused one, so "how long the stop took" is virtual time, exact.

use super::*;

use cssmtp::app::{self, RunOptions};
use cssmtp::control;
use cssmtp::sink::Gate;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(5);

/// Starts a daemon with the short deadline; returns its stop and its run.
fn start(
    env: &Env,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<app::RunReport>>,
) {
    let stop = CancellationToken::new();
    let options = RunOptions::daemon().deadline(DEADLINE);
    let run = tokio::spawn(app::run(env.config(), options, stop.clone()));
    (stop, run)
}

fn journal_text(env: &Env) -> String {
    std::fs::read_to_string(env.config().journal_path()).unwrap_or_default()
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stop_cuts_a_transaction_before_its_dot_at_the_deadline_and_the_next_start_sends_it_once() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "Timeout {{ DataCmd 1200 }}\n{}",
        target(sink.addr, "")
    ));
    let socket = env.config().control_socket();
    env.submit("SLOW", &one_mail(&["a@example.com", "b@example.com"]));
    // The server never answers DATA (its timeout is 20 minutes).
    sink.arm(Gate::AtData);
    let (_stop, run) = start(&env);
    sink.wait_held(1).await;
    let stopped_at = tokio::time::Instant::now();
    let reply = control::request(&socket, "STOP").await.unwrap();
    assert!(reply.ok, "{:#?}", reply.lines);
    let report = run.await.unwrap().unwrap();
    let took = stopped_at.elapsed();
    assert!(report.stopped);
    // Cut at the deadline, not at the server's DATA timeout.
    assert!(
        took >= DEADLINE && took < Duration::from_secs(60),
        "the stop took {took:?}"
    );
    // Everything is released: the control socket is gone, the lock is free (the next
    // start below takes it), the file stays claimed for the next start.
    assert!(!socket.exists(), "control socket removed");
    assert_eq!(env.files_in("active").len(), 1);
    // Nothing says the recipients might have the mail: no "." went out.
    let journal = journal_text(&env);
    assert!(!journal.contains(r#""t":"sent""#), "{journal}");
    assert_eq!(sink.count(), 0);

    // The next start sends the mail, once, to both.
    let report = env.drain().await;
    assert!(report.all_delivered(), "{report:#?}");
    assert_eq!(sink.count(), 1);
    let mut rcpts = sink.received()[0].rcpt_to.clone();
    rcpts.sort();
    assert_eq!(rcpts, ["a@example.com", "b@example.com"]);
    assert!(env.files_in("active").is_empty());
}

#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn stop_never_cuts_between_the_dot_and_its_reply_even_past_the_deadline() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "Timeout {{ DataTerm 600 }}\n{}",
        target(sink.addr, "")
    ));
    let socket = env.config().control_socket();
    env.submit("DOT", &one_mail(&["c@example.com"]));
    // The server keeps the mail and never answers its ".".
    sink.arm(Gate::AfterDot);
    let (stop, run) = start(&env);
    sink.wait_held(1).await;
    // The "." is out: the journal said so (synced) before it went.
    assert!(journal_text(&env).contains(r#""t":"sent""#));
    let stopped_at = tokio::time::Instant::now();
    stop.cancel();
    let report = run.await.unwrap().unwrap();
    let took = stopped_at.elapsed();
    assert!(report.stopped);
    // Past the deadline, the transaction still waited for its reply, until the
    // server's DataTerm timeout: it was not cut between its "." and its reply.
    assert!(took >= Duration::from_secs(600), "the stop took {took:?}");
    assert!(!socket.exists(), "control socket removed");
}
