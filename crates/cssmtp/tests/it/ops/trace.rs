//! `cssmtp trace` (issue 16 point 5), through the real binary: a daemon forwards to a
//! loopback sink a mail that is delivered, one that is returned, one that becomes a
//! dead letter and one that waits to be retried; each is traced by job name,
//! Message-ID or recipient, in text and JSON. Then mail kept for extended retry, and
//! "nothing found".

use std::process::Stdio;
use std::time::Duration;

use cssmtp::sink::SinkOptions;
use serde_json::Value;

use crate::support::{Env, cssmtp, mail, sink, target};

/// Runs `cssmtp trace` with `args`; its exit status and output.
async fn trace(env: &Env, args: &[&str]) -> (Option<i32>, String, String) {
    let out = cssmtp()
        .arg("trace")
        .arg("-c")
        .arg(&env.config_path)
        .args(args)
        .output()
        .await
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `cssmtp trace --json`, the answer parsed.
async fn trace_json(env: &Env, value: &str) -> Value {
    let (code, out, err) = trace(env, &["--json", value]).await;
    assert!(matches!(code, Some(0 | 4)), "{code:?} {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Submits a spool file through the real binary, as job `name` `id`.
async fn submit(env: &Env, name: &str, id: &str, text: &str) {
    let path = env.dir.path().join(format!("{name}.bsmtp"));
    std::fs::write(&path, format!("EHLO zos.example\n{text}QUIT\n")).unwrap();
    let out = cssmtp()
        .args(["submit", "--job-name", name, "--job-id", id, "-c"])
        .arg(&env.config_path)
        .arg(&path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

/// Polls `check` on the real child's work (a bounded wait, as for any real process).
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..600 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not reached within a minute: {what}");
}

fn text(id: &str) -> String {
    format!("Message-ID: <{id}@test>\nSubject: {id}\n\nBody of {id}.\n")
}

fn outcomes(answer: &Value) -> Vec<String> {
    answer["mails"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["outcome"].as_array().unwrap().clone())
        .filter_map(|o| o["what"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn trace_tells_each_mails_life() {
    let sink = sink(SinkOptions::default()).await;
    let addr = sink.addr;
    let env = Env::new(&format!(
        "{}RetryLimit {{ Count 1 Interval 60 }}\nSMF119 {{ Mail }}\n",
        target(addr, "")
    ));
    let mut daemon = cssmtp()
        .args(["-q", "run", "-c"])
        .arg(&env.config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    submit(
        &env,
        "DELIVER",
        "J0000011",
        &mail(
            "payroll@zos.example",
            &["ok@example.com"],
            &text("deliver-1"),
        ),
    )
    .await;
    submit(
        &env,
        "RETURNS",
        "J0000012",
        &mail(
            "ledger@zos.example",
            &["ok2@example.com", "reject-me@example.com"],
            &text("return-1"),
        ),
    )
    .await;
    submit(
        &env,
        "DEADLTR",
        "J0000013",
        &mail("", &["reject-dead@example.com"], &text("dead-1")),
    )
    .await;
    submit(
        &env,
        "RETRYJB",
        "J0000014",
        &mail(
            "batch@zos.example",
            &["tempfail@example.com"],
            &text("retry-1"),
        ),
    )
    .await;

    // Delivered, traced by job name.
    until("DELIVER delivered", || async {
        outcomes(&trace_json(&env, "DELIVER").await) == ["delivered"]
    })
    .await;
    let (code, out, err) = trace(&env, &["DELIVER"]).await;
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("Mail 1 of spool file DELIVER.J0000011.")
            && out.contains("(job DELIVER J0000011, owner root)")
            && out.contains("Message-ID: <deliver-1@test>")
            && out.contains("From:       <payroll@zos.example>")
            && out.contains("Taken:      20")
            && out.contains(&format!(" {addr} accepted 1 recipient(s): 250 "))
            && out.contains("Recipient:  <ok@example.com> delivered")
            && out.contains("Outcome:    delivered to 1 recipient(s) at 20"),
        "{out}"
    );
    let json = trace_json(&env, "deliver").await;
    let m = &json["mails"][0];
    assert_eq!(m["job_id"], "J0000011");
    assert_eq!(m["message_id"], "<deliver-1@test>");
    assert_eq!(m["tries"][0]["target"], addr.to_string());
    assert_eq!(m["tries"][0]["result"], "accepted");
    assert!(m["tries"][0]["reply"].as_str().unwrap().starts_with("250"));
    assert_eq!(json["daemon"]["asked"], true);

    // Returned, traced by Message-ID (with or without <>): the notification's own
    // Message-ID is the one the sender received.
    until("RETURNS returned", || async {
        outcomes(&trace_json(&env, "return-1@test").await).contains(&"returned".to_owned())
    })
    .await;
    let json = trace_json(&env, "<return-1@test>").await;
    let m = &json["mails"][0];
    let returned = m["outcome"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["what"] == "returned")
        .unwrap();
    let id = returned["notification_id"].as_str().unwrap();
    assert_eq!(returned["to"], "ledger@zos.example");
    let notification = sink
        .received()
        .into_iter()
        .find(|r| r.mail_from.is_empty() && r.rcpt_to == ["ledger@zos.example"])
        .expect("the notification");
    let notification = String::from_utf8_lossy(&notification.data).into_owned();
    assert!(
        notification.contains(&format!("Message-ID: {id}")),
        "{id} in {notification}"
    );
    let fates: Vec<(&str, &str)> = m["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["address"].as_str().unwrap(), r["fate"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fates,
        [
            ("ok2@example.com", "delivered"),
            ("reject-me@example.com", "undeliverable")
        ]
    );
    let (_, out, _) = trace(&env, &["return-1@test"]).await;
    assert!(
        out.contains(&format!(
            "Outcome:    returned: notification {id} sent to <ledger@zos.example>"
        )) && out.contains("Recipient:  <reject-me@example.com> undeliverable: "),
        "{out}"
    );

    // A dead letter (a null reverse path: nobody to return it to), traced by recipient.
    until("DEADLTR dead letter", || async {
        outcomes(&trace_json(&env, "reject-dead@example.com").await)
            .contains(&"dead_letter".to_owned())
    })
    .await;
    let json = trace_json(&env, "REJECT-DEAD@example.com").await;
    let m = &json["mails"][0];
    assert_eq!(m["job_name"], "DEADLTR");
    let dead = m["outcome"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["what"] == "dead_letter")
        .unwrap();
    let path = dead["dead_letter"].as_str().unwrap();
    assert!(std::path::Path::new(path).is_file(), "{path}");
    let (code, out, _) = trace(&env, &["reject-dead@example.com"]).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains(&format!("Outcome:    dead letter {path} at ")),
        "{out}"
    );
    // The dead letter's file name finds it too.
    let name = std::path::Path::new(path)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(outcomes(&trace_json(&env, name).await), outcomes(&json));

    // Waiting to be retried: not final, so only the running daemon knows it.
    until("RETRYJB in retry", || async {
        trace_json(&env, "RETRYJB").await["in_progress"][0]["mails_retry"] == 1
    })
    .await;
    let (code, out, _) = trace(&env, &["J0000014"]).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("Spool file RETRYJB.J0000014.")
            && out.contains("(job RETRYJB J0000014, owner root): in progress in spool task ")
            && out.contains("1 waiting to retry (next 20"),
        "{out}"
    );

    // Nothing: its own exit status.
    let (code, out, err) = trace(&env, &["NOSUCHJOB"]).await;
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(err.contains("no mail matches \"NOSUCHJOB\""), "{err}");
    assert_eq!(
        trace_json(&env, "NOSUCHJOB").await["mails"],
        Value::Array(vec![])
    );

    daemon.start_kill().unwrap();
    daemon.wait().await.unwrap();
    // Without the daemon, the records still answer, and say the daemon was not asked.
    let (code, out, _) = trace(&env, &["DELIVER"]).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("Outcome:    delivered") && out.contains("the running daemon was not asked"),
        "{out}"
    );
}

/// Without trace records (SMF119 Mail off): said so, and nothing found.
#[tokio::test]
async fn trace_without_records_says_so() {
    let env = Env::new("TargetServer { TargetIp 127.0.0.1 }\n");
    let (code, out, err) = trace(&env, &["PAYROLL"]).await;
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(
        err.contains("no trace records in ") && err.contains("SMF119 { Mail }"),
        "{err}"
    );
}

/// Mail kept for extended retry: where, and until when.
#[tokio::test]
async fn trace_tells_extended_retry_until_when() {
    let sink = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}RetryLimit {{ Count 0 }}\nExtendedRetry {{ Age 3 Interval 30 }}\nSMF119 {{ Mail }}\n",
        target(sink.addr, "")
    ));
    submit(
        &env,
        "PARKED",
        "J0000021",
        &mail(
            "batch@zos.example",
            &["tempfail@example.com"],
            &text("park-1"),
        ),
    )
    .await;
    let out = cssmtp()
        .args(["-q", "run", "--drain", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert!(out.status.code().is_some(), "{out:?}");
    let json = trace_json(&env, "tempfail@example.com").await;
    let m = &json["mails"][0];
    assert_eq!(m["recipients"][0]["fate"], "extended_retry");
    let parked = m["outcome"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["what"] == "extended_retry")
        .unwrap_or_else(|| panic!("{json:#}"));
    let taken = chrono::DateTime::parse_from_rfc3339(m["taken"].as_str().unwrap()).unwrap();
    let until = chrono::DateTime::parse_from_rfc3339(parked["until"].as_str().unwrap()).unwrap();
    assert_eq!(until - taken, chrono::Duration::days(3));
    let (code, out, _) = trace(&env, &["PARKED"]).await;
    assert_eq!(code, Some(0));
    assert!(
        out.contains("Outcome:    in extended retry (1 recipient(s), kept as ")
            && out.contains(&format!("until {}", parked["until"].as_str().unwrap())),
        "{out}"
    );
}
