//! Choosing target servers: SIZE, MessageSize, down targets, MX order, back-pressure.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use cssmtp::app::{self, RunOptions};
use cssmtp::sink::{Sink, SinkOptions};
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, MX, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio_util::sync::CancellationToken;

use crate::support::{
    Env, closed_port, mail, notifications, originals, sink, target, text_with_ids,
};

fn big_text(subject: &str, bytes: usize) -> String {
    let line = "0123456789012345678901234567890123456789012345678901234567890123456789\n";
    text_with_ids(subject, &line.repeat(bytes / line.len() + 1))
}

#[tokio::test]
async fn size_routing_never_sends_a_mail_larger_than_size() {
    let small = sink(SinkOptions {
        size: Some(5_000),
        ..SinkOptions::default()
    })
    .await;
    let large = sink(SinkOptions {
        size: Some(50_000),
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&format!(
        "{}{}",
        target(small.addr, ""),
        target(large.addr, "")
    ));
    let file = format!(
        "HELO h.example\n{}{}{}",
        mail("a@h.example", &["x@example.com"], &big_text("big", 20_000)),
        mail("a@h.example", &["x@example.com"], &big_text("huge", 80_000)),
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids("small", "tiny")
        )
    );
    env.submit("SIZES", &file);
    let report = env.drain().await;
    assert!(
        small.received().iter().all(|m| m.data.len() <= 5_000),
        "nothing over SIZE reached the small server"
    );
    let large_subjects: Vec<String> = large
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert!(
        large_subjects.contains(&"big".to_string()),
        "{large_subjects:?} {:?}",
        report.files
    );
    assert_eq!(originals(&small).len() + originals(&large).len(), 2);
    assert_eq!(notifications(&small).len() + notifications(&large).len(), 1);
    let undeliverable = &report.files[0].undeliverable;
    assert_eq!(undeliverable.len(), 1);
    assert_eq!(undeliverable[0].mail, 2);
    assert!(
        undeliverable[0].reason.starts_with("552 5.3.4 mail of "),
        "{}",
        undeliverable[0].reason
    );
}

#[tokio::test]
async fn message_size_limits_plain_smtp_targets() {
    let plain = sink(SinkOptions {
        ehlo: false,
        ..SinkOptions::default()
    })
    .await;
    let env = Env::new(&target(plain.addr, "  MessageSize 3000"));
    let file = format!(
        "HELO h.example\n{}{}",
        mail("a@h.example", &["x@example.com"], &big_text("big", 4_000)),
        mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids("small", "tiny")
        )
    );
    env.submit("PLAIN", &file);
    let report = env.drain().await;
    let received = originals(&plain);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].header("Subject").unwrap(), "small");
    assert_eq!(report.files[0].undeliverable.len(), 1);
}

#[tokio::test]
async fn a_target_that_is_down_is_skipped() {
    let down = closed_port();
    let up = sink(SinkOptions::default()).await;
    let env = Env::new(&format!("{}{}", target(down, ""), target(up.addr, "")));
    let mut file = String::from("HELO h.example\n");
    for i in 0..5 {
        file.push_str(&mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids(&format!("m{i}"), "b"),
        ));
    }
    env.submit("DOWN", &file);
    let report = env.drain().await;
    assert_eq!(up.received().len(), 5);
    assert_eq!(report.stats.rcpts_undeliverable, 0);
    assert!(report.all_delivered());
}

#[tokio::test]
async fn connections_spread_over_healthy_targets() {
    let a = sink(SinkOptions::default()).await;
    let b = sink(SinkOptions::default()).await;
    let env = Env::new(&format!(
        "{}{}MaxConnections 4\nSpoolTasks 4\n",
        target(a.addr, ""),
        target(b.addr, "")
    ));
    for f in 0..8 {
        let mut file = String::from("HELO h.example\n");
        for m in 0..5 {
            file.push_str(&mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids(&format!("f{f}m{m}"), "b"),
            ));
        }
        env.submit("SPREAD", &file);
    }
    env.drain().await;
    assert_eq!(a.received().len() + b.received().len(), 40);
    assert!(
        a.sessions() > 0 && b.sessions() > 0,
        "both targets used: {} and {} sessions",
        a.sessions(),
        b.sessions()
    );
}

/// Intake pauses while no target is reachable; mail is not failed, and goes out when
/// the target comes back (after ConnectRetry, on tokio's paused clock).
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn back_pressure_until_a_target_comes_back() {
    let addr = closed_port();
    let env = Env::new(&format!(
        "{}Timeout\n{{\n  ConnectRetry 60\n}}\n",
        target(addr, "")
    ));
    env.submit(
        "WAIT",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids("late", "b")
            )
        ),
    );
    env.submit(
        "WAIT2",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["y@example.com"],
                &text_with_ids("later", "b")
            )
        ),
    );
    let stop = CancellationToken::new();
    let run = tokio::spawn(app::run(env.config(), RunOptions::drain(), stop.clone()));
    // Well within ConnectRetry: the first connection has failed by now.
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(
        env.files_in("").len() + env.files_in("active").len(),
        2,
        "nothing failed or lost"
    );
    let sink = Sink::bind(addr, SinkOptions::default()).await.unwrap();
    let received = sink.wait_for(2).await;
    assert_eq!(received.len(), 2);
    let report = run.await.unwrap().unwrap();
    assert_eq!(report.stats.rcpts_undeliverable, 0);
    assert!(report.all_delivered());
}

/// A DNS server on loopback serving `example.test` with two MX hosts.
async fn dns_server(records: Vec<Record>) -> (SocketAddr, Server<Catalog>) {
    let origin = Name::from_str("example.test.").unwrap();
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(
        Name::from_str("ns.example.test.").unwrap(),
        Name::from_str("hostmaster.example.test.").unwrap(),
        1,
        3600,
        600,
        86400,
        60,
    );
    zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
    for record in records {
        zone.upsert_mut(record, 1);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(socket);
    (addr, server)
}

fn a_record(name: &str, ip: &str) -> Record {
    let ip: std::net::Ipv4Addr = ip.parse().unwrap();
    Record::from_rdata(Name::from_str(name).unwrap(), 60, RData::A(A(ip)))
}

fn mx_record(preference: u16, host: &str) -> Record {
    Record::from_rdata(
        Name::from_str("example.test.").unwrap(),
        60,
        RData::MX(MX::new(preference, Name::from_str(host).unwrap())),
    )
}

/// Two sinks on the same port of two loopback addresses (MX hosts share ConnectPort).
async fn sink_pair() -> (Sink, Sink) {
    for _ in 0..20 {
        let first = Sink::bind(
            SocketAddr::new(IpAddr::from([127, 0, 0, 2]), 0),
            SinkOptions::default(),
        )
        .await
        .unwrap();
        let port = first.addr.port();
        if let Ok(second) = Sink::bind(
            SocketAddr::new(IpAddr::from([127, 0, 0, 3]), port),
            SinkOptions::default(),
        )
        .await
        {
            return (first, second);
        }
    }
    panic!("no common free port on 127.0.0.2 and 127.0.0.3");
}

#[tokio::test]
async fn target_mx_follows_preference_order() {
    let (on_2, on_3) = sink_pair().await;
    let port = on_2.addr.port();
    // The preferred MX (10) is listed second and lives on 127.0.0.3.
    let (dns, _server) = dns_server(vec![
        mx_record(20, "mx2.example.test."),
        mx_record(10, "mx1.example.test."),
        a_record("mx1.example.test.", "127.0.0.3"),
        a_record("mx2.example.test.", "127.0.0.2"),
    ])
    .await;
    let config = format!(
        "TargetServer\n{{\n  TargetMx example.test\n  ConnectPort {port}\n}}\nNameServer {dns}\n"
    );
    let env = Env::new(&config);
    let mut file = String::from("HELO h.example\n");
    for i in 0..4 {
        file.push_str(&mail(
            "a@h.example",
            &["x@example.com"],
            &text_with_ids(&format!("mx{i}"), "b"),
        ));
    }
    env.submit("MX", &file);
    env.drain().await;
    assert_eq!(
        on_3.received().len(),
        4,
        "all mail to the preference-10 host"
    );
    assert!(on_2.received().is_empty());

    // When the preferred host is down, mail goes to the next preference.
    on_3.stop();
    drop(on_3);
    env.submit(
        "MX2",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids("fallback", "b")
            )
        ),
    );
    env.drain().await;
    let got: Vec<String> = on_2
        .received()
        .iter()
        .map(|m| m.header("Subject").unwrap())
        .collect();
    assert_eq!(got, ["fallback"]);
}

#[tokio::test]
async fn target_name_resolves_a_records() {
    let up = sink(SinkOptions::default()).await;
    let (dns, _server) = dns_server(vec![a_record("relay.example.test.", "127.0.0.1")]).await;
    let config = format!(
        "TargetServer\n{{\n  TargetName relay.example.test\n  ConnectPort {}\n}}\nNameServer {dns}\n",
        up.addr.port()
    );
    let env = Env::new(&config);
    env.submit(
        "NAME",
        &format!(
            "HELO h.example\n{}",
            mail("a@h.example", &["x@example.com"], &text_with_ids("n", "b"))
        ),
    );
    let report = env.drain().await;
    assert_eq!(up.received().len(), 1);
    assert!(report.all_delivered());
}
