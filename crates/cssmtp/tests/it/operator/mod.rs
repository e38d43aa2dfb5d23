//! The operator interface: every MODIFY command through the real control socket of a
//! running daemon, checked against what the daemon really did; accounting records; the
//! metrics endpoint scraped over HTTP; SIGHUP and `cssmtp modify` on the real binary.
//! `display` holds the DISPLAY commands and the metrics that must agree with them,
//! `commands` the commands that change something; this file their shared helpers.
//!
//! The daemon runs in the test's runtime on tokio's paused clock: waiting (for retry
//! intervals, or for work to settle) costs no real time, and "eventually" below steps
//! the virtual clock, never the wall clock.

mod auth;
mod commands;
mod display;
mod shutdown;
mod tls_policy;

use std::collections::BTreeMap;
use std::time::Duration;

use cssmtp::sink::{Sink, SinkOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{
    Daemon, Env, closed_port, cssmtp, eventually, mail, notifications, sink, target, text_with_ids,
};

/// Waits until no spool task is active and the spool's intake directory is empty.
async fn settled(daemon: &Daemon, env: &Env) {
    eventually(|| async {
        let reply = daemon.cmd("D,SP").await;
        reply.data["tasks"].as_array().is_some_and(Vec::is_empty)
            && env.files_in("").is_empty()
            && env.files_in("active").is_empty()
    })
    .await;
}

fn one_mail(rcpts: &[&str]) -> String {
    format!(
        "HELO zos.example\n{}",
        mail("batch@zos.example", rcpts, &text_with_ids("op", "b"))
    )
}

fn accounting(env: &Env) -> Vec<Value> {
    let path = env.config().accounting_path();
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Scrapes `/metrics` with a plain HTTP/1.1 request; returns `name{labels}` → value.
async fn scrape(addr: std::net::SocketAddr) -> BTreeMap<String, f64> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{head}"
    );
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_owned(), value.parse::<f64>().unwrap())
        })
        .collect()
}
