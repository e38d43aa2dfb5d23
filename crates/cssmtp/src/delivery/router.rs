//! The target servers: their health, what they offer, and which one a mail goes to.
//!
//! Health and capabilities are learned from sessions: a failed connection puts a target
//! down until `Timeout ConnectRetry` has passed, unless other connections to it work
//! (then only that connection failed: see [`Router::connect_failed`]); a failed TLS handshake keeps mail that
//! needs TLS away from it for as long; the EHLO reply tells SIZE, STARTTLS and 8BITMIME.
//! A mail is never sent to a target whose SIZE (or configured MessageSize) it exceeds,
//! nor over plain text when it requires TLS, nor, when its text is 8-bit, to a target
//! that does not offer 8BITMIME (RFC 6152). Among the targets that fit, a mail goes to the one
//! with the fewest connections (lowest MX preference first), so connections spread over
//! the healthy targets. When every target that fits is down, the mail waits: intake
//! pauses and nothing is failed for it. But when a reachable target is there that cannot
//! take this mail, and only down targets might, the mail does not wait for them without
//! bound: it is a temporary failure, charged to the RetryLimit schedule. A connection
//! refused while other sessions with its target work teaches the target's connection
//! limit (see [`Router::connect_failed`]); a mail finding every target that fits at its
//! limit is [`Choice::Full`]: the worker hands it to one with a session open.

use std::sync::{Arc, Mutex, RwLock};

use cssmtp_wire::Capabilities;
use rustls::pki_types::ServerName;
use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use super::outcome::{Failure, Problem, Stage};
use super::resolve::Resolved;
use super::tls::server_name;

/// One target address.
#[derive(Debug)]
pub struct Target {
    /// Position in the target list (configuration or MX order).
    pub index: usize,
    pub addr: std::net::SocketAddr,
    /// How it was configured.
    pub origin: String,
    /// The name its certificate must carry.
    pub tls_name: ServerName<'static>,
    /// `Secure Yes`: every session with it uses TLS.
    pub secure: bool,
    /// `MessageSize` (0: none).
    pub message_size: u64,
    /// `MaxMailsPerSession` (0: none).
    pub max_mails: u32,
    /// `MaxRcptsPerMail` (0: none).
    pub max_rcpts: u32,
    /// Per-target `MaxConnections`: connections open or being opened at once (0: none).
    pub max_connections: u32,
    pub preference: u16,
    state: Mutex<TargetState>,
    /// Counts sessions greeted and mails sent: a connection that fails while this moved
    /// on failed alone (issue 10 point 3), the target is not down.
    progress: tokio::sync::watch::Sender<u64>,
    /// Numbers the connections started to it, in order.
    tickets: std::sync::atomic::AtomicU64,
    /// The highest ticket of a connection greeted so far.
    greeted: tokio::sync::watch::Sender<u64>,
}

/// What is known of a target now.
#[derive(Debug, Clone, Default)]
pub struct TargetState {
    /// Connections fail: not used before this time.
    pub down_until: Option<Instant>,
    /// TLS failed: mail needing TLS not sent to it before this time.
    pub tls_broken_until: Option<Instant>,
    /// From the last EHLO; None until a session was opened.
    pub caps: Option<Capabilities>,
    pub connections: u32,
    /// Of those, the sessions greeted and not yet closed.
    pub open_sessions: u32,
    pub mail_attempts: u64,
    pub mail_sent: u64,
    pub connect_failures: u64,
    pub last_failure: Option<Failure>,
    /// Mails per session learned from a "too many messages" reply (0: none yet).
    pub learned_mails: u32,
    /// Recipients per transaction learned from a "too many recipients" reply (0: none).
    pub learned_rcpts: u32,
    /// Connections at once learned from a connection refused (at connect or greeting,
    /// or a 421 greeting) while this many others were open and working (0: none).
    pub learned_connections: u32,
    /// When `learned_connections` was last set: one more connection is tried
    /// (probed) once ConnectRetry has passed since.
    pub learned_connections_at: Option<Instant>,
    /// Last reply to a final ".", for the operator.
    pub last_reply: Option<String>,
}

impl Target {
    fn new(index: usize, resolved: Resolved) -> Self {
        Self {
            index,
            addr: resolved.addr,
            tls_name: server_name(resolved.tls_name.as_deref(), resolved.addr.ip()),
            origin: resolved.origin,
            secure: resolved.secure,
            message_size: resolved.message_size,
            max_mails: resolved.max_mails,
            max_rcpts: resolved.max_rcpts,
            max_connections: resolved.max_connections,
            preference: resolved.preference,
            state: Mutex::new(TargetState::default()),
            progress: tokio::sync::watch::Sender::new(0),
            tickets: std::sync::atomic::AtomicU64::new(0),
            greeted: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Where the target's progress stands now (see [`Router::connect_failed`]).
    pub fn progress(&self) -> u64 {
        *self.progress.borrow()
    }

    /// A connection to it is started: its ticket, in order of starting.
    pub fn ticket(&self) -> u64 {
        self.tickets
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .saturating_add(1)
    }

    /// The connection with `ticket` was greeted.
    pub fn greeted(&self, ticket: u64) {
        self.greeted.send_if_modified(|g| {
            let later = ticket > *g;
            if later {
                *g = ticket;
            }
            later
        });
    }

    /// Resolves once a connection started after the one with `ticket` was greeted.
    pub async fn later_greeted(&self, ticket: u64) {
        let mut rx = self.greeted.subscribe();
        if rx.wait_for(|&g| g > ticket).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    fn advance(&self) {
        self.progress.send_modify(|n| *n += 1);
    }

    /// A copy of the target's state.
    pub fn state(&self) -> TargetState {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TargetState> {
        // A poisoned lock only means another thread panicked while holding it; the state
        // is plain data and still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The mails-per-session limit in force and where it comes from (0: none).
    pub fn mails_limit(&self) -> (u32, &'static str) {
        effective(self.max_mails, self.lock().learned_mails)
    }

    /// The per-target connection limit and where it comes from (0: none): the lower of
    /// the configured `MaxConnections` and the one learned from refused connections.
    pub fn connections_limit(&self) -> (u32, &'static str) {
        effective(self.max_connections, self.lock().learned_connections)
    }

    /// True when the target has as many connections (open or being opened) as it may
    /// have. With `probe_after`, a learned limit lets one connection more in once that
    /// long has passed since it was learned or last raised (see [`Router::opened`]).
    fn at_limit(&self, st: &TargetState, probe_after: Option<Duration>) -> bool {
        let mut learned = st.learned_connections;
        if learned > 0
            && let Some(after) = probe_after
            && st
                .learned_connections_at
                .is_none_or(|at| Instant::now() >= at + after)
        {
            learned = learned.saturating_add(1);
        }
        let (limit, _) = effective(self.max_connections, learned);
        limit > 0 && st.connections >= limit
    }

    /// The recipients-per-transaction limit in force and where it comes from (0: none).
    pub fn rcpts_limit(&self) -> (u32, &'static str) {
        effective(self.max_rcpts, self.lock().learned_rcpts)
    }

    /// Remembers limits met: `mails` per session, `rcpts` per transaction (0: nothing
    /// learned); the lowest met is kept.
    pub fn learn(&self, mails: u32, rcpts: u32) {
        let mut st = self.lock();
        let st = &mut *st;
        for (slot, new) in [
            (&mut st.learned_mails, mails),
            (&mut st.learned_rcpts, rcpts),
        ] {
            if new > 0 && (*slot == 0 || new < *slot) {
                *slot = new;
            }
        }
    }

    /// The largest mail this target takes: SIZE from EHLO when advertised with a limit,
    /// else the configured MessageSize (0: no limit).
    fn size_limit(&self, caps: Option<&Capabilities>) -> u64 {
        match caps {
            Some(c) if c.size_advertised && c.size_limit > 0 => c.size_limit,
            _ => self.message_size,
        }
    }
}

/// The lower nonzero of a configured and a learned limit, with its source.
fn effective(configured: u32, learned: u32) -> (u32, &'static str) {
    match (configured, learned) {
        (0, 0) => (0, "none"),
        (c, l) if l == 0 || (c > 0 && c <= l) => (c, "configured"),
        (_, l) => (l, "learned"),
    }
}

/// How targets that fit a mail are ranked: lower is better.
type Rank = (u16, u32, usize);

/// Where a mail should go now.
#[derive(Debug)]
pub enum Choice {
    Use(Arc<Target>),
    /// Every target that could take it is down, and so is every other: wait until then,
    /// or until a change (back-pressure).
    Wait(Instant),
    /// A target that could take it is up but has as many connections as it may have
    /// (configured or learned `MaxConnections`), and none other can: the mail is for a
    /// session already open (handed over, see the worker), or waits until one of those
    /// connections ends or a change.
    Full(Instant),
    /// No target can ever take it (size, TLS, 8BITMIME): undeliverable.
    Unroutable(Failure),
    /// Targets that could take it are failing TLS, or are down while a reachable target
    /// cannot take it: try the mail again later (charged to the RetryLimit schedule).
    Later(Failure),
}

/// The target list and its health.
pub struct Router {
    targets: RwLock<Arc<[Arc<Target>]>>,
    connect_retry: Duration,
    changed: Notify,
    choosing: Mutex<()>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Router({} targets)", self.targets().len())
    }
}

impl Router {
    pub fn new(resolved: Vec<Resolved>, connect_retry: Duration) -> Self {
        let router = Self {
            targets: RwLock::new(Arc::from(Vec::new())),
            connect_retry,
            changed: Notify::new(),
            choosing: Mutex::new(()),
        };
        router.set_targets(resolved);
        router
    }

    /// Replaces the target list (after resolving again, or REFRESH). A target whose
    /// address was already in the list keeps what is known of it (health, capabilities,
    /// counters); sessions open to the old list are closed by their workers when their
    /// next mail finds their target gone.
    pub fn set_targets(&self, resolved: Vec<Resolved>) {
        let old = self.targets();
        let targets: Vec<Arc<Target>> = resolved
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let target = Target::new(i, r);
                if let Some(before) = old.iter().find(|t| t.addr == target.addr) {
                    let mut st = before.state();
                    // Connections to the old entry are counted (and released) there.
                    st.connections = 0;
                    *target.lock() = st;
                }
                Arc::new(target)
            })
            .collect();
        *self
            .targets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::from(targets);
        self.changed.notify_waiters();
    }

    /// The current targets.
    pub fn targets(&self) -> Arc<[Arc<Target>]> {
        Arc::clone(
            &self
                .targets
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Chooses a target for a mail of `size` bytes (with 8-bit text when `eight_bit`);
    /// `current` is the target of the caller's open session, preferred when it fits.
    ///
    /// When the choice is another target than `current`, a connection to it is counted
    /// at once (so that workers choosing at the same moment spread out); the caller must
    /// then report [`opened`](Self::opened) or [`connect_failed`](Self::connect_failed).
    pub fn choose(
        &self,
        needs_tls: bool,
        size: u64,
        eight_bit: bool,
        current: Option<&Arc<Target>>,
    ) -> Choice {
        let now = Instant::now();
        let targets = self.targets();
        if targets.is_empty() {
            return Choice::Wait(now + self.connect_retry);
        }
        let mut too_big = false;
        let mut no_8bit = false;
        // A target that is up but cannot take this mail.
        let mut reachable_unfit = false;
        let mut down_failure: Option<Failure> = None;
        let mut earliest_up: Option<Instant> = None;
        let mut tls_failure: Option<Failure> = None;
        // A target that could take it has all the connections it may have.
        let mut full = false;
        // The best target so far, ranked by (MX preference, connections, list order).
        let mut best: Option<(&Arc<Target>, Rank)> = None;
        // Choices are made one at a time so that connection counts stay exact.
        let _choosing = self
            .choosing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for target in targets.iter() {
            let st = target.lock();
            let down = st.down_until.filter(|&u| u > now);
            let tls_needed = needs_tls || target.secure;
            if tls_needed && st.caps.as_ref().is_some_and(|c| !c.starttls) {
                reachable_unfit |= down.is_none();
                continue;
            }
            let limit = target.size_limit(st.caps.as_ref());
            if limit > 0 && size > limit {
                too_big = true;
                reachable_unfit |= down.is_none();
                continue;
            }
            // Until a target was reached, it may offer 8BITMIME.
            if eight_bit && st.caps.as_ref().is_some_and(|c| !c.eight_bit_mime) {
                no_8bit = true;
                reachable_unfit |= down.is_none();
                continue;
            }
            if let Some(until) = down {
                earliest_up = Some(earliest_up.map_or(until, |e| e.min(until)));
                if down_failure.is_none() {
                    down_failure = st.last_failure.clone();
                }
                continue;
            }
            if tls_needed && st.tls_broken_until.is_some_and(|u| u > now) {
                tls_failure = st.last_failure.clone();
                continue;
            }
            if current.is_some_and(|c| Arc::ptr_eq(c, target)) {
                return Choice::Use(Arc::clone(target));
            }
            if target.at_limit(&st, Some(self.connect_retry)) {
                full = true;
                continue;
            }
            let rank = (target.preference, st.connections, target.index);
            if best.as_ref().is_none_or(|(_, r)| rank < *r) {
                best = Some((target, rank));
            }
        }
        if let Some((target, _)) = best {
            target.lock().connections += 1;
            return Choice::Use(Arc::clone(target));
        }
        if full {
            // A connection to it will free: `closed`/`connect_failed` signal a change.
            let until = now + self.connect_retry;
            return Choice::Full(earliest_up.map_or(until, |e| e.min(until)));
        }
        if let Some(until) = earliest_up {
            if reachable_unfit {
                // Waiting for the down targets could be for ever (issue 10 point 5).
                let last =
                    down_failure.map_or_else(|| "target server down".to_owned(), |f| f.to_string());
                return Choice::Later(Failure::new(
                    Stage::Route,
                    None,
                    Problem::OnlyDownTargets(last),
                ));
            }
            return Choice::Wait(until);
        }
        if let Some(failure) = tls_failure {
            return Choice::Later(failure);
        }
        let problem = if too_big {
            Problem::TooBig { size }
        } else if no_8bit {
            Problem::No8BitTarget
        } else {
            Problem::NoTlsTarget
        };
        Choice::Unroutable(Failure::new(Stage::Route, None, problem))
    }

    /// REFRESHTARGETS: every target may be tried again at once (down and TLS-broken
    /// marks cleared); returns how many targets there are.
    pub fn reset_health(&self) -> usize {
        let targets = self.targets();
        for t in targets.iter() {
            let mut st = t.lock();
            st.down_until = None;
            st.tls_broken_until = None;
        }
        self.changed.notify_waiters();
        targets.len()
    }

    /// True when some target may be tried now (intake back-pressure).
    pub fn any_usable(&self) -> bool {
        let now = Instant::now();
        self.targets()
            .iter()
            .any(|t| t.lock().down_until.is_none_or(|u| u <= now))
    }

    /// The earliest time a down target may be tried again.
    pub fn next_retry(&self) -> Option<Instant> {
        self.targets()
            .iter()
            .filter_map(|t| t.lock().down_until)
            .min()
    }

    /// Waits until the target list or a target's health changes, or a connection to a
    /// target at its `MaxConnections` is released.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The same as [`changed`](Self::changed), for a caller that must not miss a change
    /// made before it starts waiting: it receives every change from its creation.
    pub fn changes(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Releases a connection counted for `target`; wakes the waiters when the target was
    /// at its `MaxConnections` (configured or learned).
    fn release(&self, target: &Target, st: &mut TargetState) {
        let was_full = target.at_limit(st, None);
        st.connections = st.connections.saturating_sub(1);
        if was_full {
            self.changed.notify_waiters();
        }
    }

    /// A session was opened: the target is up and offers `caps`. More sessions open at
    /// once than a learned connection limit (a probe, or connections already under way
    /// when it was learned) raise it to their number.
    pub fn opened(&self, target: &Target, caps: Capabilities) {
        target.advance();
        let (was_down, raised) = {
            let mut st = target.lock();
            let was_down = st.down_until.is_some();
            st.down_until = None;
            st.open_sessions += 1;
            st.caps = Some(caps);
            let raised = st.learned_connections > 0 && st.open_sessions > st.learned_connections;
            if raised {
                st.learned_connections = st.open_sessions;
                st.learned_connections_at = Some(Instant::now());
            }
            (was_down, raised.then_some(st.open_sessions))
        };
        if let Some(n) = raised {
            tracing::info!(
                target_addr = %target.addr,
                "CSM3032I Target server {} ({}) works with {n} connections at once: at most {n} are opened to it (learned)",
                target.addr, target.origin
            );
        }
        if was_down {
            tracing::info!(target_addr = %target.addr, "CSM3002I Target server {} ({}) is available again", target.addr, target.origin);
            self.changed.notify_waiters();
        }
    }

    /// Capabilities from a session's latest EHLO. Over TLS, a server no longer offers
    /// STARTTLS (RFC 3207 §4.2): what its plain sessions offer is kept.
    pub fn capabilities(&self, target: &Target, mut caps: Capabilities, over_tls: bool) {
        let mut st = target.lock();
        if over_tls {
            caps.starttls = true;
            st.tls_broken_until = None;
        }
        st.caps = Some(caps);
    }

    /// A session was closed.
    pub fn closed(&self, target: &Target) {
        let mut st = target.lock();
        self.release(target, &mut st);
        st.open_sessions = st.open_sessions.saturating_sub(1);
    }

    /// Connecting (or greeting, or EHLO) failed: the connection counted by
    /// [`choose`](Self::choose) is released and the failure counted. `since` is the
    /// target's [`progress`](Target::progress) when the connection was started: when
    /// another session was greeted or a mail sent since, or another session with it is
    /// open or being opened, this connection failed alone and the target stays in service (returns false;
    /// the caller tries a fresh connection, a bounded number of times, then passes
    /// `since: None`). Otherwise the target is down for ConnectRetry (returns true).
    ///
    /// `refused`: the server refused or closed this connection, or greeted it with a
    /// reply other than 220 (not a connection given up for want of a greeting). When
    /// other sessions with the target are open then, it tolerates no more connections
    /// at once than those: that number is its learned connection limit (CSM3032I), and
    /// mail beyond goes to the open sessions or other targets (see [`Router::opened`]
    /// for how the limit rises again).
    pub fn connect_failed(
        &self,
        target: &Target,
        failure: Failure,
        since: Option<u64>,
        refused: bool,
    ) -> bool {
        if refused {
            self.learn_connections(target);
        }
        let lone = since.is_some_and(|since| {
            let st = target.lock();
            // Other sessions open, or other connections under way (this one counted).
            target.progress() > since
                || st.open_sessions > 0
                || st.connections > st.open_sessions.saturating_add(1)
        });
        if lone {
            let mut st = target.lock();
            self.release(target, &mut st);
            st.connect_failures += 1;
            st.last_failure = Some(failure);
            return false;
        }
        let until = Instant::now() + self.connect_retry;
        let first = {
            let mut st = target.lock();
            self.release(target, &mut st);
            st.connect_failures += 1;
            let first = st.down_until.is_none();
            st.down_until = Some(until);
            st.last_failure = Some(failure.clone());
            first
        };
        if first {
            tracing::warn!(
                target_addr = %target.addr,
                "CSM3001W Target server {} ({}) is not available: {}; retrying every {} seconds",
                target.addr, target.origin, crate::escape::data(&failure.to_string()), self.connect_retry.as_secs()
            );
        }
        self.changed.notify_waiters();
        true
    }

    /// A connection to `target` was refused: the sessions open with it now are as many as
    /// it tolerates at once.
    fn learn_connections(&self, target: &Target) {
        let learned = {
            let mut st = target.lock();
            let open = st.open_sessions;
            if open == 0 {
                return;
            }
            let changed = st.learned_connections != open;
            st.learned_connections = open;
            st.learned_connections_at = Some(Instant::now());
            changed.then_some(open)
        };
        if let Some(n) = learned {
            tracing::info!(
                target_addr = %target.addr,
                "CSM3032I Target server {} ({}) refused a connection while {n} were open: at most {n} are opened to it (learned; one more is tried every {} seconds)",
                target.addr, target.origin, self.connect_retry.as_secs()
            );
        }
    }

    /// STARTTLS or the handshake failed: keep mail that needs TLS away for ConnectRetry.
    pub fn tls_failed(&self, target: &Target, failure: Failure) {
        tracing::warn!(target_addr = %target.addr, "CSM3003W TLS with target server {} failed: {}", target.addr, crate::escape::data(&failure.to_string()));
        let mut st = target.lock();
        st.tls_broken_until = Some(Instant::now() + self.connect_retry);
        st.last_failure = Some(failure);
    }

    /// A mail was handed to a target: `sent` when at least one recipient was accepted.
    pub fn mail_result(&self, target: &Target, sent: bool, last_reply: Option<String>) {
        if sent {
            target.advance();
        }
        let mut st = target.lock();
        st.mail_attempts += 1;
        if sent {
            st.mail_sent += 1;
        }
        if last_reply.is_some() {
            st.last_reply = last_reply;
        }
    }
}

#[cfg(test)]
mod tests {
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
        assert_eq!(target.connections_limit(), (0, "none"));
        let fourth = use_it(&router);
        let refused = Failure::new(
            Stage::Greeting,
            Some("127.0.0.1:25".into()),
            Problem::Connection("closed by the server".into()),
        );
        let since = Some(fourth.progress());
        assert!(
            !router.connect_failed(&fourth, refused.clone(), since, true),
            "the target stays in service"
        );
        assert!(target.state().down_until.is_none());
        assert_eq!(target.connections_limit(), (3, "learned"));
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
        assert_eq!(target.connections_limit(), (3, "learned"));
        assert!(matches!(
            router.choose(false, 10, false, None),
            Choice::Full(_)
        ));
        // Greeted: the limit rises by one.
        tokio::time::advance(Duration::from_secs(120)).await;
        let probe = use_it(&router);
        router.opened(&probe, caps(0, false));
        assert_eq!(target.connections_limit(), (4, "learned"));
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
        assert_eq!(target.connections_limit(), (4, "learned"));
        // A configured MaxConnections below the learned limit is the one in force.
        let mut capped = resolved(1, 0);
        capped.max_connections = 2;
        router.set_targets(vec![capped]);
        assert_eq!(router.targets()[0].connections_limit(), (2, "configured"));
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
                Some("127.0.0.2:25".into()),
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
}
