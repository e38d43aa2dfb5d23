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
//!
//! The module is split by concern: `target` holds a target and what is known of it,
//! `limits` the configured and learned session and connection limits, `choice` how a
//! mail's target is chosen, `health` what sessions report back.

mod choice;
mod health;
mod limits;
mod target;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;
use tokio::time::{Duration, Instant};

use super::resolve::Resolved;

pub use choice::Choice;
pub use limits::LimitSource;
pub use target::{Target, TargetState};

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
}
