//! `SourceAddress` (issue 15 point 5, the Linux face of CSSMTP's `-p` stack option):
//! connections to target servers are made from the configured local address, globally
//! or per `TargetServer`, through the real binary.

use cssmtp::sink::SinkOptions;

use crate::support::{Env, cssmtp, mail, sink, text_with_ids};

/// Runs `cssmtp run --drain` on `env` and says whether it exited 0.
async fn drain(env: &Env) -> bool {
    let status = cssmtp()
        .args(["run", "--drain", "-c"])
        .arg(&env.config_path)
        .status()
        .await
        .unwrap();
    status.success()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_target_sees_the_configured_source_address() {
    let first = sink(SinkOptions::default()).await;
    let second = sink(SinkOptions::default()).await;
    // The global address for the first target, the block's own for the second (mail
    // goes to the first; the second only when the first is gone).
    let env = Env::new(&format!(
        "SourceAddress 127.0.0.2\nTargetServer\n{{\n  TargetIp 127.0.0.1\n  ConnectPort {}\n}}\n",
        first.addr.port()
    ));
    env.submit(
        "SRCADDR",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["x@example.com"],
                &text_with_ids("from .2", "b")
            )
        ),
    );
    assert!(drain(&env).await, "the drain succeeds");
    let received = first.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].peer.ip().to_string(),
        "127.0.0.2",
        "the target sees the global SourceAddress"
    );

    let env = Env::new(&format!(
        "SourceAddress 127.0.0.2\nTargetServer\n{{\n  TargetIp 127.0.0.1\n  ConnectPort {}\n  SourceAddress 127.0.0.3\n}}\n",
        second.addr.port()
    ));
    env.submit(
        "SRCADDR",
        &format!(
            "HELO h.example\n{}",
            mail(
                "a@h.example",
                &["y@example.com"],
                &text_with_ids("from .3", "b")
            )
        ),
    );
    assert!(drain(&env).await);
    let received = second.received();
    assert_eq!(received.len(), 1);
    assert_eq!(
        received[0].peer.ip().to_string(),
        "127.0.0.3",
        "a target's own SourceAddress wins"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_address_that_is_not_an_ip_is_refused_at_its_line() {
    let env = Env::new("SourceAddress not-an-address\nTargetServer\n{\n  TargetIp 127.0.0.1\n}\n");
    let out = cssmtp()
        .args(["check", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SourceAddress \"not-an-address\" is not an IP address"),
        "{text}"
    );
}
