//! What the sessions of one sink share: mails received, counters, gates, the fault mix.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::options::{FaultLog, Faults};

/// A mail the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// 1-based, in order of acceptance.
    pub id: u64,
    pub peer: SocketAddr,
    pub helo: String,
    /// Received over TLS.
    pub tls: bool,
    pub mail_from: String,
    /// The `SIZE=` parameter of its MAIL FROM, when given.
    pub size: Option<u64>,
    /// Its MAIL FROM said `BODY=8BITMIME`.
    pub body_8bitmime: bool,
    /// Its MAIL FROM said `SMTPUTF8`.
    pub smtputf8: bool,
    /// The sizes of the BDAT chunks its text came in, in order (empty: it came after
    /// DATA).
    pub bdat_chunks: Vec<u64>,
    pub rcpt_to: Vec<String>,
    /// The text as received, with dot-stuffing removed.
    pub data: Vec<u8>,
}

impl Received {
    /// The text as a string (lossy), for assertions and display.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).into_owned()
    }

    /// The value of the first header field `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        crate::headers::header_value(&self.data, name)
    }
}

/// Counts a session as open while it lives.
pub(super) struct OpenSession(pub(super) Arc<Shared>);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.open_now.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub(super) struct Shared {
    pub(super) received: Mutex<Vec<Received>>,
    pub(super) notify: Notify,
    pub(super) sessions: AtomicU64,
    /// 452/421 "too many" replies sent (session and recipient limits).
    pub(super) limit_refusals: AtomicU64,
    /// Connections refused beyond `max_connections`.
    pub(super) connection_refusals: AtomicU64,
    /// Sessions open now, and the most ever open at once.
    pub(super) open_now: AtomicU64,
    pub(super) max_open: AtomicU64,
    pub(super) next_id: AtomicU64,
    /// Mails accepted (also those not kept).
    pub(super) accepted: AtomicU64,
    /// How many `tempfail-once`/`tempfailN` refusals each address got.
    pub(super) refusals: Mutex<HashMap<String, u32>>,
    /// Gates armed, and the mails held at them.
    pub(super) gates: Mutex<(Vec<Gate>, Vec<Held>)>,
    /// The fault mix's draws so far, and what it did.
    pub(super) draws: AtomicU64,
    pub(super) fault_log: Mutex<FaultLog>,
    /// Releases granted by [`Sink::release`] and not yet used by a paused session.
    pub(super) releases: Mutex<u64>,
}

/// Where an armed gate holds the next mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// At the DATA command: no 354 is sent (the client has not started the text).
    AtData,
    /// After the final ".": the mail is accepted (kept and counted, as a server that
    /// committed it would have), but its reply is never sent.
    AfterDot,
    /// At the DATA command, until [`Sink::release`]: the replies before DATA are sent,
    /// the 354 waits; after the release the mail goes on as usual.
    PauseAtData,
}

/// A mail held at a gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub gate: Gate,
    pub rcpt_to: Vec<String>,
}

/// A fault the mix chose at one decision point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fault {
    TempFail,
    PermFail,
}

impl Shared {
    /// The next pseudo-random number in 0..1000 (SplitMix64 over a counter).
    pub(super) fn draw(&self, seed: u64) -> u32 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        u32::try_from(z % 1000).unwrap_or(0)
    }

    /// True with probability `rate`/1000 (false without a fault mix).
    pub(super) fn chance(&self, faults: Option<&Faults>, rate: impl Fn(&Faults) -> u32) -> bool {
        faults.is_some_and(|f| rate(f) > 0 && self.draw(f.seed) < rate(f))
    }

    pub(super) fn logged(&self, update: impl FnOnce(&mut FaultLog)) {
        if let Ok(mut log) = self.fault_log.lock() {
            update(&mut log);
        }
    }

    /// A temporary or permanent failure in place of a reply, or none.
    pub(super) fn reply_fault(&self, faults: Option<&Faults>) -> Option<Fault> {
        if self.chance(faults, |f| f.temp_fail) {
            self.logged(|l| l.temp_fails += 1);
            Some(Fault::TempFail)
        } else if self.chance(faults, |f| f.perm_fail) {
            self.logged(|l| l.perm_fails += 1);
            Some(Fault::PermFail)
        } else {
            None
        }
    }

    /// Waits a while when the mix says so.
    pub(super) async fn maybe_delay(&self, faults: Option<&Faults>) {
        if let Some(f) = faults
            && self.chance(faults, |f| f.delay)
        {
            self.logged(|l| l.delays += 1);
            let ms = u64::from(self.draw(f.seed)) * f.max_delay_ms / 1000;
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }

    /// Takes the gate if it is armed; records the mail held.
    pub(super) fn pass(&self, gate: Gate, rcpt_to: &[String]) -> bool {
        let Ok(mut gates) = self.gates.lock() else {
            return false;
        };
        let Some(at) = gates.0.iter().position(|g| *g == gate) else {
            return false;
        };
        gates.0.remove(at);
        gates.1.push(Held {
            gate,
            rcpt_to: rcpt_to.to_vec(),
        });
        drop(gates);
        self.notify.notify_waiters();
        true
    }

    /// Waits for a release ([`Sink::release`]) and uses it.
    pub(super) async fn wait_release(&self) {
        loop {
            let notified = self.notify.notified();
            if let Ok(mut releases) = self.releases.lock()
                && *releases > 0
            {
                *releases -= 1;
                return;
            }
            notified.await;
        }
    }

    /// Counts one more time an address met a `…-once` script; true the first time.
    pub(super) fn first_time(&self, key: &str) -> bool {
        self.refusals.lock().is_ok_and(|mut counts| {
            let count = counts.entry(key.to_ascii_lowercase()).or_default();
            *count += 1;
            *count <= 1
        })
    }
}
