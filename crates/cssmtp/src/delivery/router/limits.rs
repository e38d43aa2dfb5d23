//! Limits in force for a target: configured ones, and the lower ones learned from its
//! replies (mails per session, recipients per transaction) and refused connections.

use serde::Serialize;
use tokio::time::{Duration, Instant};

use super::{Router, Target, TargetState};

impl Target {
    /// The mails-per-session limit in force and where it comes from (0: none).
    pub fn mails_limit(&self) -> (u32, LimitSource) {
        effective(self.max_mails, self.lock().learned_mails)
    }

    /// The per-target connection limit and where it comes from (0: none): the lower of
    /// the configured `MaxConnections` and the one learned from refused connections.
    pub fn connections_limit(&self) -> (u32, LimitSource) {
        effective(self.max_connections, self.lock().learned_connections)
    }

    /// True when the target has as many connections (open or being opened) as it may
    /// have. With `probe_after`, a learned limit lets one connection more in once that
    /// long has passed since it was learned or last raised (see [`Router::opened`]).
    pub(super) fn at_limit(&self, st: &TargetState, probe_after: Option<Duration>) -> bool {
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
    pub fn rcpts_limit(&self) -> (u32, LimitSource) {
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
}

/// Where a limit in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LimitSource {
    /// No limit (0).
    None,
    /// The configuration's.
    Configured,
    /// Learned from the target's replies or refused connections.
    Learned,
}

impl LimitSource {
    /// The word DISPLAY TARGETS and the JSON reply show.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Configured => "configured",
            Self::Learned => "learned",
        }
    }
}

impl std::fmt::Display for LimitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The lower nonzero of a configured and a learned limit, with its source.
fn effective(configured: u32, learned: u32) -> (u32, LimitSource) {
    match (configured, learned) {
        (0, 0) => (0, LimitSource::None),
        (c, l) if l == 0 || (c > 0 && c <= l) => (c, LimitSource::Configured),
        (_, l) => (l, LimitSource::Learned),
    }
}

impl Router {
    /// A connection to `target` was refused: the sessions open with it now are as many as
    /// it tolerates at once.
    pub(super) fn learn_connections(&self, target: &Target) {
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
}
