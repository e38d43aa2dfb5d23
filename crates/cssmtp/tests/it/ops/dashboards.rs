//! The Grafana dashboard and the Prometheus alert rules in monitoring/ use only
//! metrics a running daemon exports; the status page on the metrics listener shows
//! the targets, the spool and the failures, read-only, in a real headless browser
//! (Debian's chromium).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use cssmtp::sink::SinkOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::have;
use crate::support::{Daemon, Env, closed_port, mail, sink, target, text_with_ids};

fn read(path: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(path),
    )
    .unwrap()
}

/// The `cssmtp_…` metric names in a PromQL expression.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(i) = rest.find("cssmtp_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        into.insert(name);
    }
}

/// Every `expr` of the dashboard (any depth).
fn dashboard_exprs(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr" | "query" | "definition", serde_json::Value::String(s)) => {
                        into.push(s.clone());
                    }
                    _ => dashboard_exprs(v, into),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| dashboard_exprs(v, into)),
        _ => {}
    }
}

/// GET `path` from the metrics listener: the head and the body.
async fn get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// A daemon (in this process) with a metrics listener that has delivered one mail, and
/// holds a second file waiting in the writer directory while intake is suspended.
async fn busy_daemon() -> (Daemon, Env, cssmtp::sink::Sink, std::net::SocketAddr) {
    let sink = sink(SinkOptions::default()).await;
    let metrics = closed_port();
    let env = Env::new(&format!(
        "{}MetricsListen {metrics}\n",
        target(sink.addr, "")
    ));
    let daemon = Daemon::start(&env).await;
    env.submit(
        "PAYROLL",
        &format!(
            "HELO zos1.example\n{}",
            mail(
                "payroll@zos1.example",
                &["alice@example.com"],
                &text_with_ids("totals", "body"),
            )
        ),
    );
    sink.wait_for(1).await;
    daemon.ok("SUSPEND").await;
    env.submit(
        "LEDGER",
        &format!(
            "HELO zos1.example\n{}",
            mail(
                "ledger@zos1.example",
                &["bob@example.com"],
                &text_with_ids("ledger", "body"),
            )
        ),
    );
    (daemon, env, sink, metrics)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboards_and_alerts_use_only_exported_metrics() {
    let (daemon, _env, _sink, metrics) = busy_daemon().await;
    let (head, body) = get(metrics, "/metrics").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let exported: BTreeSet<String> = body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect();
    // The new spool and file-system gauges are there, with the waiting file.
    assert!(
        body.lines().any(|l| l == "cssmtp_spool_backlog_files 1"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("cssmtp_filesystem_used_ratio{directory=\"spool\"} ")),
        "{body}"
    );

    let dashboard: serde_json::Value =
        serde_json::from_str(&read("monitoring/grafana-cssmtp.json")).unwrap();
    let mut exprs = Vec::new();
    dashboard_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 20, "{exprs:?}");
    let mut used = BTreeSet::new();
    for e in &exprs {
        metric_names(e, &mut used);
    }
    let alerts = read("monitoring/cssmtp-alerts.yml");
    let mut alert_names = BTreeSet::new();
    let mut rules = 0;
    for line in alerts.lines() {
        if let Some(expr) = line.trim_start().strip_prefix("expr: ") {
            rules += 1;
            metric_names(expr, &mut alert_names);
        }
    }
    assert!(rules >= 8, "{alerts}");
    for name in used.iter().chain(&alert_names) {
        assert!(
            exported.contains(name),
            "{name} is used but not exported: {exported:?}"
        );
    }
    // What the issue asks the alerts to cover.
    for name in [
        "cssmtp_target_up",
        "cssmtp_mails_in_retry",
        "cssmtp_spool_backlog_oldest_seconds",
        "cssmtp_dead_letters_total",
        "cssmtp_filesystem_used_ratio",
    ] {
        assert!(alert_names.contains(name), "no alert on {name}");
    }
    assert!(alerts.contains("up{job=\"cssmtp\"} == 0"), "target down");
    // Every panel of the dashboard has a query that names an exported metric.
    for panel in dashboard["panels"].as_array().unwrap() {
        let mut e = Vec::new();
        dashboard_exprs(panel, &mut e);
        let mut names = BTreeSet::new();
        e.iter().for_each(|x| metric_names(x, &mut names));
        assert!(
            !names.is_empty(),
            "panel {} has no cssmtp metric",
            panel["title"]
        );
    }
    daemon.end().await;
}

/// The status page, as served and as a real browser renders it: the target with its
/// state and last reply, the spool (suspended, one file waiting), the counts; no
/// script allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_a_headless_browser() {
    let (daemon, _env, sink, metrics) = busy_daemon().await;
    let (head, body) = get(metrics, "/status").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("content-type: text/html"), "{head}");
    assert!(
        lower.contains("content-security-policy: default-src 'none'"),
        "{head}"
    );
    assert!(!body.contains("<script"), "no script");
    let target_cell = format!("<td>{}</td>", sink.addr);
    for needle in [
        target_cell.as_str(),
        "<span class=\"up\">READY</span>",
        "SUSPENDED",
        "Files waiting for intake</th><td class=\"num\">1</td>",
        "Recipients delivered</td><td class=\"num\">1</td>",
        "250 ",
    ] {
        assert!(body.contains(needle), "{needle}: {body}");
    }
    assert_eq!(
        get(metrics, "/").await.1.lines().count(),
        body.lines().count()
    );

    let Some(chromium) = ["chromium", "chromium-browser"]
        .into_iter()
        .find(|c| have(c))
    else {
        println!(
            "note: chromium is missing (Debian: apt-get install chromium); skipping the browser"
        );
        daemon.end().await;
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = format!("http://{metrics}/status");
    let browser = |args: Vec<String>| {
        let mut c = tokio::process::Command::new(chromium);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
        c
    };
    let out = browser(vec!["--dump-dom".into(), url.clone()])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<table id=\"targets\">"), "{dom}");
    assert!(dom.contains(&sink.addr.to_string()), "{dom}");
    assert!(dom.contains("SUSPENDED"), "{dom}");
    let shot = dir.path().join("status.png");
    let out = browser(vec![
        format!("--screenshot={}", shot.display()),
        "--window-size=1100,900".into(),
        url,
    ])
    .output()
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    if let Some(keep) = std::env::var_os("CSSMTP_KEEP_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }
    daemon.end().await;
}
