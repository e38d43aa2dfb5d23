//! What sessions report about a target: opened, closed, failed, mails sent.

use cssmtp_wire::Capabilities;
use tokio::time::Instant;

use super::super::outcome::Failure;
use super::{Router, Target, TargetState};

impl Router {
    /// Releases a connection counted for `target`; wakes the waiters when the target was
    /// at its `MaxConnections` (configured or learned).
    pub(super) fn release(&self, target: &Target, st: &mut TargetState) {
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

    /// STARTTLS or the handshake failed: keep mail that needs TLS away for ConnectRetry.
    pub fn tls_failed(&self, target: &Target, failure: Failure) {
        tracing::warn!(target_addr = %target.addr, "CSM3003W TLS with target server {} failed: {}", target.addr, crate::escape::data(&failure.to_string()));
        let mut st = target.lock();
        st.tls_broken_until = Some(Instant::now() + self.connect_retry);
        st.tls_failures += 1;
        st.last_failure = Some(failure);
    }

    /// AUTH with the target failed (not offered, not possible, or refused): the target's
    /// failure, never the mail's. It is counted and out of service for ConnectRetry
    /// (CSM3300W), so mail goes to another target or waits (nothing is charged to it).
    pub fn auth_failed(&self, target: &Target, failure: Failure) {
        tracing::warn!(
            target_addr = %target.addr,
            "CSM3300W Authentication with target server {} ({}) failed: {}; not used for {} seconds",
            target.addr,
            target.origin,
            crate::escape::data(&failure.to_string()),
            self.connect_retry.as_secs()
        );
        {
            let mut st = target.lock();
            st.auth_failures += 1;
            st.down_until = Some(Instant::now() + self.connect_retry);
            st.last_failure = Some(failure);
        }
        self.changed.notify_waiters();
    }

    /// A session of a `TlsMode Opportunistic` target goes without TLS (CSM3320W): its
    /// server offers no STARTTLS, or its TLS failed less than ConnectRetry ago.
    pub fn tls_not_used(&self, target: &Target, why: &str) {
        tracing::warn!(
            target_addr = %target.addr,
            "CSM3320W Session with target server {} ({}) without TLS (TlsMode Opportunistic): {why}",
            target.addr,
            target.origin
        );
        target.lock().tls_not_used += 1;
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
