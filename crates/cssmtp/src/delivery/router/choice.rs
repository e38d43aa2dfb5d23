//! Which target a mail goes to now.

use std::sync::Arc;

use tokio::time::{Duration, Instant};

use super::super::outcome::{Failure, Problem, Stage};
use super::{Router, Target, TargetState};

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
    /// No target can ever take it (size, TLS, 8BITMIME, SMTPUTF8): undeliverable.
    Unroutable(Failure),
    /// Targets that could take it are failing TLS, or are down while a reachable target
    /// cannot take it: try the mail again later (charged to the RetryLimit schedule).
    Later(Failure),
}

/// What a mail asks of a target, and when.
struct Ask<'c> {
    /// The mail must go over TLS (or the target is `Secure Yes`, see [`Target::secure`]).
    tls: bool,
    size: u64,
    eight_bit: bool,
    /// UTF-8 addresses: SMTPUTF8 needed (RFC 6531).
    utf8: bool,
    /// The target of the caller's open session.
    current: Option<&'c Arc<Target>>,
    now: Instant,
    /// When a down or full target may be tried again at the latest.
    retry_at: Instant,
}

/// Why a target can never take a mail as it is.
enum Unfit {
    NoTls,
    TooBig,
    No8Bit,
    NoUtf8,
}

/// What the walk over the targets found so far.
#[derive(Default)]
struct Scan<'a> {
    too_big: bool,
    no_8bit: bool,
    no_utf8: bool,
    /// A target that is up but cannot take this mail.
    reachable_unfit: bool,
    down_failure: Option<Failure>,
    earliest_up: Option<Instant>,
    tls_failure: Option<Failure>,
    /// A target that could take it has all the connections it may have.
    full: bool,
    /// The best target so far, ranked by (MX preference, connections, list order).
    best: Option<(&'a Arc<Target>, Rank)>,
}

impl Router {
    /// Chooses a target for a mail of `size` bytes (with 8-bit text when `eight_bit`,
    /// UTF-8 addresses when `needs.utf8`);
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
        self.choose_for(needs_tls, size, (eight_bit, false), current)
    }

    /// [`Self::choose`], with `(eight_bit, utf8)`: 8-bit text, UTF-8 addresses.
    pub fn choose_for(
        &self,
        needs_tls: bool,
        size: u64,
        (eight_bit, utf8): (bool, bool),
        current: Option<&Arc<Target>>,
    ) -> Choice {
        let now = Instant::now();
        let targets = self.targets();
        if targets.is_empty() {
            return Choice::Wait(now + self.connect_retry);
        }
        let ask = Ask {
            tls: needs_tls,
            size,
            eight_bit,
            utf8,
            current,
            now,
            retry_at: now + self.connect_retry,
        };
        let mut scan = Scan::default();
        // Choices are made one at a time so that connection counts stay exact.
        let _choosing = self
            .choosing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for target in targets.iter() {
            if scan.consider(target, &ask, self.connect_retry) {
                return Choice::Use(Arc::clone(target));
            }
        }
        if let Some((target, _)) = scan.best {
            target.lock().connections += 1;
            return Choice::Use(Arc::clone(target));
        }
        scan.verdict(&ask)
    }
}

/// Why `target` can never take the mail `ask` describes, as far as is known of it.
/// Until a target was reached, it may offer anything.
fn unfit(target: &Target, st: &TargetState, ask: &Ask<'_>) -> Option<Unfit> {
    let caps = st.caps.as_ref();
    let tls_needed = ask.tls || target.secure;
    if tls_needed && caps.is_some_and(|c| !c.starttls) {
        return Some(Unfit::NoTls);
    }
    let limit = target.size_limit(caps);
    if limit > 0 && ask.size > limit {
        return Some(Unfit::TooBig);
    }
    if ask.eight_bit && caps.is_some_and(|c| !c.eight_bit_mime) {
        return Some(Unfit::No8Bit);
    }
    if ask.utf8 && caps.is_some_and(|c| !c.smtputf8) {
        return Some(Unfit::NoUtf8);
    }
    None
}

impl<'a> Scan<'a> {
    /// Notes what `target` is for the mail; true when it is the caller's current
    /// target and can take the mail now (it is then the choice at once).
    fn consider(&mut self, target: &'a Arc<Target>, ask: &Ask<'_>, probe_after: Duration) -> bool {
        let st = target.lock();
        let down = st.down_until.filter(|&u| u > ask.now);
        if let Some(why) = unfit(target, &st, ask) {
            match why {
                Unfit::TooBig => self.too_big = true,
                Unfit::No8Bit => self.no_8bit = true,
                Unfit::NoUtf8 => self.no_utf8 = true,
                Unfit::NoTls => {}
            }
            self.reachable_unfit |= down.is_none();
            return false;
        }
        if let Some(until) = down {
            self.earliest_up = Some(self.earliest_up.map_or(until, |e| e.min(until)));
            if self.down_failure.is_none() {
                self.down_failure = st.last_failure.clone();
            }
            return false;
        }
        // AUTH goes only over TLS: a target whose TLS fails is avoided for every mail.
        let tls_needed = ask.tls || target.secure || target.auth_needs_tls();
        if tls_needed && st.tls_broken_until.is_some_and(|u| u > ask.now) {
            self.tls_failure = st.last_failure.clone();
            return false;
        }
        if ask.current.is_some_and(|c| Arc::ptr_eq(c, target)) {
            return true;
        }
        if target.at_limit(&st, Some(probe_after)) {
            self.full = true;
            return false;
        }
        let rank = (target.preference, st.connections, target.index);
        if self.best.as_ref().is_none_or(|(_, r)| rank < *r) {
            self.best = Some((target, rank));
        }
        false
    }

    /// The choice when no target can take the mail now.
    fn verdict(self, ask: &Ask<'_>) -> Choice {
        if self.full {
            // A connection to it will free: `closed`/`connect_failed` signal a change.
            let until = ask.retry_at;
            return Choice::Full(self.earliest_up.map_or(until, |e| e.min(until)));
        }
        if let Some(until) = self.earliest_up {
            if self.reachable_unfit {
                // Waiting for the down targets could be for ever (issue 10 point 5).
                let last = self
                    .down_failure
                    .map_or_else(|| "target server down".to_owned(), |f| f.to_string());
                return Choice::Later(Failure::new(
                    Stage::Route,
                    None,
                    Problem::OnlyDownTargets(last),
                ));
            }
            return Choice::Wait(until);
        }
        if let Some(failure) = self.tls_failure {
            return Choice::Later(failure);
        }
        let problem = if self.too_big {
            Problem::TooBig { size: ask.size }
        } else if self.no_utf8 {
            Problem::NoUtf8Target
        } else if self.no_8bit {
            Problem::No8BitTarget
        } else {
            Problem::NoTlsTarget
        };
        Choice::Unroutable(Failure::new(Stage::Route, None, problem))
    }
}
