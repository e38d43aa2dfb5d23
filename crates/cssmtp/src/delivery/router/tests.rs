use std::sync::Arc;

use cssmtp_wire::Capabilities;
use tokio::time::{Duration, Instant};

use super::super::outcome::{Failure, Problem, Stage};
use super::*;

fn resolved(n: u8, preference: u16) -> Resolved {
    Resolved {
        addr: format!("127.0.0.{n}:25").parse().unwrap(),
        origin: format!("TargetIp 127.0.0.{n}"),
        tls_name: None,
        secure: false,
        message_size: 0,
        max_mails: 0,
        max_rcpts: 0,
        max_connections: 0,
        preference,
        auth: None,
        tls: Arc::default(),
        source: None,
        charset: crate::config::Charset::Latin1,
        chunking: true,
    }
}

fn caps(size: u64, starttls: bool) -> Capabilities {
    Capabilities {
        esmtp: true,
        size_advertised: size > 0,
        size_limit: size,
        starttls,
        ..Capabilities::default()
    }
}

/// A target at its MaxConnections is passed over for another; with none left the
/// mail waits, and a released connection wakes the waiters.
#[tokio::test(start_paused = true)]
async fn a_full_target_is_passed_over_then_waited_for() {
    let mut capped = resolved(1, 0);
    capped.max_connections = 1;
    let router = Router::new(vec![capped, resolved(2, 10)], Duration::from_secs(120));
    let Choice::Use(first) = router.choose(false, 10, false, None) else {
        panic!()
    };
    assert_eq!(first.index, 0);
    router.opened(&first, caps(0, false));
    let Choice::Use(second) = router.choose(false, 10, false, None) else {
        panic!()
    };
    assert_eq!(second.index, 1, "the preferred target is full");
    let Choice::Use(same) = router.choose(false, 10, false, Some(&first)) else {
        panic!()
    };
    assert_eq!(same.index, 0, "its own session still carries mail");
    let single = Router::new(vec![resolved(3, 0)], Duration::from_secs(120));
    let mut only = resolved(4, 0);
    only.max_connections = 1;
    single.set_targets(vec![only]);
    let Choice::Use(t) = single.choose(false, 10, false, None) else {
        panic!()
    };
    single.opened(&t, caps(0, false));
    assert!(matches!(
        single.choose(false, 10, false, None),
        Choice::Full(_)
    ));
    let changes = single.changes();
    single.closed(&t);
    changes.await;
    assert!(matches!(
        single.choose(false, 10, false, None),
        Choice::Use(_)
    ));
}

/// Issue 10 point 2: a connection refused while 3 sessions work teaches the limit 3:
/// the target stays in service, no fourth connection is opened; after ConnectRetry
/// one more is tried, and the limit rises when it is greeted, stays when refused.
#[tokio::test(start_paused = true)]
async fn a_refused_connection_teaches_the_connection_limit() {
    let router = Router::new(vec![resolved(1, 0)], Duration::from_secs(120));
    let target = Arc::clone(&router.targets()[0]);
    let use_it = |router: &Router| match router.choose(false, 10, false, None) {
        Choice::Use(t) => t,
        other => panic!("{other:?}"),
    };
    for _ in 0..3 {
        let t = use_it(&router);
        router.opened(&t, caps(0, false));
    }
    assert_eq!(target.connections_limit(), (0, LimitSource::None));
    let fourth = use_it(&router);
    let refused = Failure::new(
        Stage::Greeting,
        Some("127.0.0.1:25".parse().unwrap()),
        Problem::Connection("closed by the server".into()),
    );
    let since = Some(fourth.progress());
    assert!(
        !router.connect_failed(&fourth, refused.clone(), since, true),
        "the target stays in service"
    );
    assert!(target.state().down_until.is_none());
    assert_eq!(target.connections_limit(), (3, LimitSource::Learned));
    assert!(
        matches!(router.choose(false, 10, false, None), Choice::Full(_)),
        "no fourth connection"
    );
    let Choice::Use(same) = router.choose(false, 10, false, Some(&target)) else {
        panic!()
    };
    assert!(Arc::ptr_eq(&same, &target), "open sessions carry the mail");
    // After ConnectRetry, one more is tried: refused, the limit stays (and the time
    // starts again).
    tokio::time::advance(Duration::from_secs(120)).await;
    let probe = use_it(&router);
    router.connect_failed(&probe, refused, Some(probe.progress()), true);
    assert_eq!(target.connections_limit(), (3, LimitSource::Learned));
    assert!(matches!(
        router.choose(false, 10, false, None),
        Choice::Full(_)
    ));
    // Greeted: the limit rises by one.
    tokio::time::advance(Duration::from_secs(120)).await;
    let probe = use_it(&router);
    router.opened(&probe, caps(0, false));
    assert_eq!(target.connections_limit(), (4, LimitSource::Learned));
    assert!(matches!(
        router.choose(false, 10, false, None),
        Choice::Full(_)
    ));
    // A connection given up for want of a greeting teaches nothing.
    router.closed(&target);
    let t = use_it(&router);
    let silent = Failure::new(
        Stage::Greeting,
        None,
        Problem::Connection("no greeting".into()),
    );
    router.connect_failed(&t, silent, Some(t.progress()), false);
    assert_eq!(target.connections_limit(), (4, LimitSource::Learned));
    // A configured MaxConnections below the learned limit is the one in force.
    let mut capped = resolved(1, 0);
    capped.max_connections = 2;
    router.set_targets(vec![capped]);
    assert_eq!(
        router.targets()[0].connections_limit(),
        (2, LimitSource::Configured)
    );
}

#[tokio::test(start_paused = true)]
async fn spreads_connections_and_prefers_current() {
    let router = Router::new(
        vec![resolved(1, 0), resolved(2, 0)],
        Duration::from_secs(120),
    );
    let targets = router.targets();
    let Choice::Use(first) = router.choose(false, 10, false, None) else {
        panic!()
    };
    assert_eq!(first.index, 0);
    let Choice::Use(second) = router.choose(false, 10, false, None) else {
        panic!()
    };
    assert_eq!(
        second.index, 1,
        "least-loaded, counting connections being opened"
    );
    router.opened(&first, caps(0, false));
    assert_eq!(first.state().connections, 1);
    let Choice::Use(again) = router.choose(false, 10, false, Some(&targets[0])) else {
        panic!()
    };
    assert_eq!(again.index, 0, "the open session's target is kept");
}

#[tokio::test(start_paused = true)]
async fn down_targets_are_skipped_then_waited_for() {
    let router = Router::new(
        vec![resolved(1, 0), resolved(2, 0)],
        Duration::from_secs(120),
    );
    let targets = router.targets();
    let f = Failure::new(Stage::Connect, None, Problem::Connection("refused".into()));
    router.connect_failed(&targets[0], f.clone(), Some(targets[0].progress()), false);
    let Choice::Use(t) = router.choose(false, 10, false, None) else {
        panic!()
    };
    assert_eq!(t.index, 1);
    router.connect_failed(&targets[1], f, Some(targets[1].progress()), false);
    assert!(!router.any_usable());
    let Choice::Wait(until) = router.choose(false, 10, false, None) else {
        panic!()
    };
    assert_eq!(until, Instant::now() + Duration::from_secs(120));
    tokio::time::advance(Duration::from_secs(120)).await;
    assert!(router.any_usable());
    assert!(matches!(
        router.choose(false, 10, false, None),
        Choice::Use(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn size_and_tls_routing() {
    let router = Router::new(
        vec![resolved(1, 0), resolved(2, 0)],
        Duration::from_secs(120),
    );
    let targets = router.targets();
    router.opened(&targets[0], caps(1000, false));
    router.opened(&targets[1], caps(0, true));
    let Choice::Use(t) = router.choose(false, 5000, false, None) else {
        panic!()
    };
    assert_eq!(t.index, 1, "too big for the first target");
    let Choice::Use(t) = router.choose(true, 10, false, None) else {
        panic!()
    };
    assert_eq!(t.index, 1, "only the second offers STARTTLS");
    router.capabilities(&targets[1], caps(2000, true), false);
    match router.choose(false, 5000, false, None) {
        Choice::Unroutable(f) => assert_eq!(f.problem, Problem::TooBig { size: 5000 }),
        other => panic!("{other:?}"),
    }
    router.capabilities(&targets[1], caps(0, false), false);
    match router.choose(true, 10, false, None) {
        Choice::Unroutable(f) => assert_eq!(f.problem, Problem::NoTlsTarget),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn eight_bit_routing() {
    let router = Router::new(
        vec![resolved(1, 0), resolved(2, 0)],
        Duration::from_secs(120),
    );
    let targets = router.targets();
    router.opened(&targets[0], caps(0, false));
    // Not reached yet: the second target may offer 8BITMIME.
    let Choice::Use(t) = router.choose(false, 10, true, None) else {
        panic!()
    };
    assert_eq!(t.index, 1);
    router.opened(
        &targets[1],
        Capabilities {
            eight_bit_mime: true,
            ..caps(0, false)
        },
    );
    let Choice::Use(t) = router.choose(false, 10, true, Some(&targets[0])) else {
        panic!()
    };
    assert_eq!(t.index, 1, "only the second offers 8BITMIME");
    router.capabilities(&targets[1], caps(0, false), false);
    match router.choose(false, 10, true, None) {
        Choice::Unroutable(f) => assert_eq!(f.problem, Problem::No8BitTarget),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        router.choose(false, 10, false, Some(&targets[0])),
        Choice::Use(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn a_mail_only_a_down_target_might_take_does_not_wait() {
    let router = Router::new(
        vec![resolved(1, 0), resolved(2, 0)],
        Duration::from_secs(120),
    );
    let targets = router.targets();
    router.opened(&targets[0], caps(1000, false));
    router.connect_failed(
        &targets[1],
        Failure::new(
            Stage::Connect,
            Some("127.0.0.2:25".parse().unwrap()),
            Problem::Connection("refused".into()),
        ),
        Some(targets[1].progress()),
        false,
    );
    // Too big for the reachable target; the down one's SIZE is unknown.
    match router.choose(false, 5000, false, None) {
        Choice::Later(f) => {
            assert!(matches!(f.problem, Problem::OnlyDownTargets(_)), "{f}");
            assert!(f.to_string().contains("refused"), "{f}");
        }
        other => panic!("{other:?}"),
    }
    // A mail the reachable target takes goes there; with every target down, mail
    // waits (back-pressure, nothing charged).
    assert!(matches!(
        router.choose(false, 10, false, None),
        Choice::Use(_)
    ));
    let refused = Failure::new(Stage::Connect, None, Problem::Connection("refused".into()));
    // Another session with it is open: this connection failed alone (issue 10 point 3).
    assert!(!router.connect_failed(
        &targets[0],
        refused.clone(),
        Some(targets[0].progress()),
        false
    ));
    assert!(targets[0].state().down_until.is_none());
    assert_eq!(targets[0].state().connect_failures, 1);
    // After the bounded fresh tries, the target is down.
    assert!(matches!(
        router.choose(false, 10, false, None),
        Choice::Use(_)
    ));
    assert!(router.connect_failed(&targets[0], refused, None, false));
    assert!(matches!(
        router.choose(false, 10, false, None),
        Choice::Wait(_)
    ));
}

#[tokio::test(start_paused = true)]
async fn mx_preference_first() {
    let router = Router::new(
        vec![resolved(1, 20), resolved(2, 10)],
        Duration::from_secs(120),
    );
    let targets = router.targets();
    for _ in 0..3 {
        let Choice::Use(t) = router.choose(false, 1, false, None) else {
            panic!()
        };
        assert_eq!(t.index, 1, "lower preference wins even when busier");
    }
    assert_eq!(targets[1].state().connections, 3);
}

#[tokio::test(start_paused = true)]
async fn capabilities_learned_over_tls_keep_starttls() {
    let router = Router::new(vec![resolved(1, 0)], Duration::from_secs(120));
    let targets = router.targets();
    router.opened(&targets[0], caps(0, true));
    // After STARTTLS the server's EHLO no longer lists STARTTLS.
    router.capabilities(&targets[0], caps(0, false), true);
    assert!(matches!(
        router.choose(true, 10, false, None),
        Choice::Use(_)
    ));
}
