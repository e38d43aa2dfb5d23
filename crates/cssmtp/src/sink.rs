//! `cssmtp sink`: a small receiving SMTP server that keeps what it receives.
//!
//! Users test their setups with it; cssmtp's tests and `cssmtp demo` use it as a target
//! server. Commands are parsed with `smtp-proto`'s request parser. Behaviour is scripted
//! by the recipient's local part:
//!
//! | local part starts with | effect |
//! |---|---|
//! | `tempfail-once` | RCPT TO answered `451 4.2.1` the first time, accepted after |
//! | `tempfail2`…`tempfail9` | the same for the first 2…9 times |
//! | `tempfail` | RCPT TO answered `451 4.2.1` |
//! | `reject`, `permfail`, `unknown` | RCPT TO answered `550 5.1.1` |
//! | `data-tempfail` | the mail's final "." answered `451 4.3.0` |
//! | `data-reject` | the mail's final "." answered `554 5.6.0` |
//! | `drop-at-rcpt` | the connection is closed at that RCPT TO |
//! | `drop-in-data` | the connection is closed after the text, before the reply |
//! | `early-250` | the 354 to DATA comes with a `250` in the same write, before the text; the text's final "." is then refused with `554 5.6.0` (a server that answers before it is due) |
//! | `early-250-once` | the same the first time only, a normal mail after |
//! | `extra-reply` | the mail is accepted, and its `250` is followed by an unsolicited `554 5.7.0` no command asked for |
//! | `extra-reply-once` | the same the first time only |
//! | `close-at-data` | DATA answered `421 4.3.2 … closing`, then the connection closed (`close-at-data-once`: the first time only) |
//! | `close-after-dot` | the text's final "." answered `421 4.3.2 … closing` (the mail discarded), then the connection closed (`close-after-dot-once`: the first time only) |
//!
//! A reverse path whose local part starts with `reject` is refused at MAIL FROM (`550`).
//! With [`SinkOptions::scripted`] off (`--accept-all`), every sender and recipient is
//! accepted.
//!
//! Tests can also arm a [`Gate`]: the next mail to reach it is held there, its
//! connection left waiting for a reply that never comes, so that a test can kill the
//! client at that exact point; or, with [`Gate::PauseAtData`], until the test calls
//! [`Sink::release`], so that it can act while the client waits at a known point.
//!
//! Options offer or hide PIPELINING, SIZE, 8BITMIME, STARTTLS and EHLO itself, and choose how the
//! end of the mail text is found: strictly (`<CRLF>.<CRLF>` only, and a text with a bare
//! CR or LF is refused, as hardened servers do) or leniently (`<LF>.<LF>`, `<CR>.<CR>`…
//! also end it, as servers vulnerable to SMTP smuggling do). A sink that hides 8BITMIME
//! refuses `BODY=8BITMIME` at MAIL FROM (`555`); with [`SinkOptions::strict_8bit`], a
//! text holding bytes ≥ 0x80 sent without `BODY=8BITMIME` is refused (`554 5.6.1`,
//! RFC 6152 §3).
//! Session limits are scripted too: mails per session, recipients per transaction, and
//! sessions at once ([`SinkOptions::max_connections`]: a connection beyond is greeted
//! with `421` and closed, or closed at once).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{
    EXT_8BIT_MIME, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING, EXT_SIZE, EXT_START_TLS,
    EhloResponse, MAIL_BODY_8BITMIME, Request,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_rustls::{TlsAcceptor, TlsStream};
use tokio_util::sync::CancellationToken;

use crate::net::Conn;

/// How the sink behaves.
#[derive(Clone)]
pub struct SinkOptions {
    pub hostname: String,
    pub pipelining: bool,
    /// False: EHLO is refused with 502, so clients fall back to HELO.
    pub ehlo: bool,
    /// Advertise and enforce `SIZE n` (`SIZE 0`: advertised, no limit, RFC 1870 §4).
    pub size: Option<u64>,
    /// Advertise 8BITMIME (on by default); off: `BODY=8BITMIME` is refused.
    pub eight_bit_mime: bool,
    /// Refuse 8-bit text (a byte ≥ 0x80) not announced by `BODY=8BITMIME`.
    pub strict_8bit: bool,
    /// Offer STARTTLS with this server configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse mail text holding a bare CR or LF.
    pub strict_line_ends: bool,
    /// Also end the text at `<LF>.<LF>`, `<CR>.<CR>` and the like (a vulnerable server).
    pub lenient_end_of_data: bool,
    /// Write each mail to `<dir>/<n>.eml`.
    pub store: Option<PathBuf>,
    /// Print a line per mail on standard output.
    pub print: bool,
    /// Keep every mail in memory for [`Sink::received`] (tests, the demo); off for a
    /// long-running `cssmtp sink`, which must not grow with the mail it receives.
    pub keep: bool,
    /// Script behaviour by the recipient's local part (see above); off: every
    /// recipient and sender is accepted.
    pub scripted: bool,
    /// Inject faults at random (see [`Faults`]); none by default.
    pub faults: Option<Faults>,
    /// Accept at most this many mails per session: the next MAIL FROM is answered
    /// `452 4.5.3 Too many messages in this session` (RFC 5321 §4.5.3.1.10), or with
    /// `close_at_limit`, `421 4.7.0 … closing` and the connection is closed (as Exim
    /// does).
    pub max_mails_per_session: Option<u32>,
    /// With `max_mails_per_session`: answer 421 and close instead of 452.
    pub close_at_limit: bool,
    /// Accept at most this many recipients per transaction: RCPT TO beyond it is answered
    /// `452 4.5.3 Too many recipients` (RFC 5321 §4.5.3.1.8).
    pub max_rcpts: Option<u32>,
    /// Connections (1-based, in order of acceptance) that are accepted and never greeted:
    /// held open and silent, as one whose final ACK a full listen backlog dropped.
    pub silent_connections: Vec<u64>,
    /// Connections (1-based) that are closed at once, without a greeting.
    pub reset_connections: Vec<u64>,
    /// Serve at most this many sessions at once: a connection beyond is greeted with
    /// `421 4.7.0 Too many concurrent connections, closing` and closed (as Exim's
    /// `smtp_accept_max` and Postfix's per-client limits do), or with
    /// `close_beyond_max`, closed at once without a greeting.
    pub max_connections: Option<u32>,
    /// With `max_connections`: close a connection beyond at once instead of a 421.
    pub close_beyond_max: bool,
}

/// A fault mix for soak tests: each decision point draws from a pseudo-random sequence
/// seeded by `seed`, so a run is reproducible up to the order in which concurrent
/// sessions reach the sink. Rates are per thousand.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    pub seed: u64,
    /// A `421` greeting, then the connection is closed.
    pub greeting_421: u32,
    /// A MAIL FROM, RCPT TO, DATA or final-"." reply replaced by a `451`.
    pub temp_fail: u32,
    /// The same, replaced by a `554` (at MAIL FROM and DATA) or a `550` (at RCPT TO).
    pub perm_fail: u32,
    /// A reply delayed by up to `max_delay_ms` (tokio time: paused in tests).
    pub delay: u32,
    pub max_delay_ms: u64,
    /// The connection closed after the text, before the final "." is answered, with
    /// the mail discarded.
    pub drop_before_dot: u32,
    /// The connection closed after the final "." with the mail kept (as a server that
    /// committed it and then died): the client may send it again.
    pub drop_after_dot: u32,
    /// The TLS handshake after `220` to STARTTLS is abandoned (the connection closed).
    pub tls_fail: u32,
}

impl Faults {
    /// Parses `name=rate,...` (names as the fields, `-` for `_`; `delay=RATE:MS`).
    ///
    /// # Errors
    /// A text naming the part that is wrong.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let mut faults = Self::default();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected NAME=RATE"))?;
            let number = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("{part:?}: {v:?} is not a number"))
            };
            let rate = |v: &str| -> Result<u32, String> {
                let n = number(v)?;
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n <= 1000)
                    .ok_or_else(|| format!("{part:?}: a rate is per thousand, 0-1000"))
            };
            match name.replace('-', "_").as_str() {
                "seed" => faults.seed = number(value)?,
                "greeting_421" => faults.greeting_421 = rate(value)?,
                "temp_fail" => faults.temp_fail = rate(value)?,
                "perm_fail" => faults.perm_fail = rate(value)?,
                "drop_before_dot" => faults.drop_before_dot = rate(value)?,
                "drop_after_dot" => faults.drop_after_dot = rate(value)?,
                "tls_fail" => faults.tls_fail = rate(value)?,
                "delay" => {
                    let (r, ms) = value.split_once(':').unwrap_or((value, "100"));
                    faults.delay = rate(r)?;
                    faults.max_delay_ms = number(ms)?;
                }
                other => return Err(format!("{other:?}: no such fault")),
            }
        }
        Ok(faults)
    }
}

/// What the fault mix did, for a soak test's accounting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultLog {
    pub greetings_421: u64,
    pub temp_fails: u64,
    pub perm_fails: u64,
    pub delays: u64,
    pub drops_before_dot: u64,
    pub tls_fails: u64,
    /// The mails kept and then cut off after their final ".": the client cannot know
    /// they were delivered, and may deliver them again.
    pub dropped_after_dot: Vec<Cut>,
}

/// A mail the sink kept, then closed the connection without answering its final ".".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// Its [`Received::id`].
    pub id: u64,
    pub rcpt_to: Vec<String>,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            hostname: "sink.localhost".into(),
            pipelining: true,
            ehlo: true,
            size: None,
            eight_bit_mime: true,
            strict_8bit: false,
            tls: None,
            strict_line_ends: false,
            lenient_end_of_data: false,
            store: None,
            print: false,
            keep: true,
            scripted: true,
            faults: None,
            max_mails_per_session: None,
            silent_connections: Vec::new(),
            reset_connections: Vec::new(),
            close_at_limit: false,
            max_rcpts: None,
            max_connections: None,
            close_beyond_max: false,
        }
    }
}

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
struct OpenSession(Arc<Shared>);

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.0.open_now.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    notify: Notify,
    sessions: AtomicU64,
    /// 452/421 "too many" replies sent (session and recipient limits).
    limit_refusals: AtomicU64,
    /// Connections refused beyond `max_connections`.
    connection_refusals: AtomicU64,
    /// Sessions open now, and the most ever open at once.
    open_now: AtomicU64,
    max_open: AtomicU64,
    next_id: AtomicU64,
    /// Mails accepted (also those not kept).
    accepted: AtomicU64,
    /// How many `tempfail-once`/`tempfailN` refusals each address got.
    refusals: Mutex<HashMap<String, u32>>,
    /// Gates armed, and the mails held at them.
    gates: Mutex<(Vec<Gate>, Vec<Held>)>,
    /// The fault mix's draws so far, and what it did.
    draws: AtomicU64,
    fault_log: Mutex<FaultLog>,
    /// Releases granted by [`Sink::release`] and not yet used by a paused session.
    releases: Mutex<u64>,
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
enum Fault {
    TempFail,
    PermFail,
}

impl Shared {
    /// The next pseudo-random number in 0..1000 (SplitMix64 over a counter).
    fn draw(&self, seed: u64) -> u32 {
        let n = self.draws.fetch_add(1, Ordering::Relaxed);
        let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        u32::try_from(z % 1000).unwrap_or(0)
    }

    /// True with probability `rate`/1000 (false without a fault mix).
    fn chance(&self, faults: Option<&Faults>, rate: impl Fn(&Faults) -> u32) -> bool {
        faults.is_some_and(|f| rate(f) > 0 && self.draw(f.seed) < rate(f))
    }

    fn logged(&self, update: impl FnOnce(&mut FaultLog)) {
        if let Ok(mut log) = self.fault_log.lock() {
            update(&mut log);
        }
    }

    /// A temporary or permanent failure in place of a reply, or none.
    fn reply_fault(&self, faults: Option<&Faults>) -> Option<Fault> {
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
    async fn maybe_delay(&self, faults: Option<&Faults>) {
        if let Some(f) = faults
            && self.chance(faults, |f| f.delay)
        {
            self.logged(|l| l.delays += 1);
            let ms = u64::from(self.draw(f.seed)) * f.max_delay_ms / 1000;
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
    }

    /// Takes the gate if it is armed; records the mail held.
    fn pass(&self, gate: Gate, rcpt_to: &[String]) -> bool {
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
    async fn wait_release(&self) {
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
    fn first_time(&self, key: &str) -> bool {
        self.refusals.lock().is_ok_and(|mut counts| {
            let count = counts.entry(key.to_ascii_lowercase()).or_default();
            *count += 1;
            *count <= 1
        })
    }
}

/// A running sink.
pub struct Sink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Sink {
    /// Listens on `addr` (port 0 for any free port).
    ///
    /// # Errors
    /// An I/O error binding the address.
    pub async fn bind(addr: SocketAddr, options: SinkOptions) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Self::start(listener, options))
    }

    /// Serves connections on `listener` until dropped or stopped.
    pub fn start(listener: TcpListener, options: SinkOptions) -> Self {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        let shared = Arc::new(Shared::default());
        let stop = CancellationToken::new();
        let options = Arc::new(options);
        let (s, st) = (Arc::clone(&shared), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = st.cancelled() => break,
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        let number = s.sessions.fetch_add(1, Ordering::Relaxed) + 1;
                        if options.reset_connections.contains(&number) {
                            drop(stream);
                            continue;
                        }
                        if let Some(max) = options.max_connections
                            && s.open_now.load(Ordering::Relaxed) >= u64::from(max)
                        {
                            // Beyond the limit: not counted as open, refused.
                            s.connection_refusals.fetch_add(1, Ordering::Relaxed);
                            if options.close_beyond_max {
                                drop(stream);
                            } else {
                                tokio::spawn(async move {
                                    let mut conn = Conn::Plain(stream);
                                    let _ = conn
                                        .send(b"421 4.7.0 Too many concurrent connections, closing\r\n")
                                        .await;
                                    conn.shutdown().await;
                                });
                            }
                            continue;
                        }
                        let silent = options.silent_connections.contains(&number);
                        let (s, o, st) = (Arc::clone(&s), Arc::clone(&options), st.clone());
                        let now = s.open_now.fetch_add(1, Ordering::Relaxed) + 1;
                        s.max_open.fetch_max(now, Ordering::Relaxed);
                        tokio::spawn(async move {
                            let _open = OpenSession(Arc::clone(&s));
                            if silent {
                                // Held open, never greeted, until the sink stops.
                                st.cancelled().await;
                                drop(stream);
                                return;
                            }
                            tokio::select! {
                                () = st.cancelled() => {}
                                () = serve(stream, peer, o, s) => {}
                            }
                        });
                    }
                }
            }
        });
        Self { addr, shared, stop }
    }

    /// Every mail accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Waits until at least `n` mails were accepted; returns those kept.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        loop {
            let notified = self.shared.notify.notified();
            if self.count() >= n as u64 {
                return self.received();
            }
            notified.await;
        }
    }

    /// Mails accepted so far.
    pub fn count(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }

    /// How many connections it refused beyond `max_connections` (421 or closed).
    pub fn connection_refusals(&self) -> u64 {
        self.shared.connection_refusals.load(Ordering::Relaxed)
    }

    /// How many 452/421 "too many messages/recipients" replies it sent.
    pub fn limit_refusals(&self) -> u64 {
        self.shared.limit_refusals.load(Ordering::Relaxed)
    }

    /// The most sessions that were open at once (high-water mark).
    pub fn max_concurrent(&self) -> u64 {
        self.shared.max_open.load(Ordering::Relaxed)
    }

    /// Connections accepted so far.
    pub fn sessions(&self) -> u64 {
        self.shared.sessions.load(Ordering::Relaxed)
    }

    /// Arms `gate` for the next mail that reaches it.
    pub fn arm(&self, gate: Gate) {
        if let Ok(mut gates) = self.shared.gates.lock() {
            gates.0.push(gate);
        }
    }

    /// Waits until at least `n` mails were held at gates; returns them.
    pub async fn wait_held(&self, n: usize) -> Vec<Held> {
        loop {
            let notified = self.shared.notify.notified();
            let held = self
                .shared
                .gates
                .lock()
                .map(|g| g.1.clone())
                .unwrap_or_default();
            if held.len() >= n {
                return held;
            }
            notified.await;
        }
    }

    /// What the fault mix did so far.
    pub fn fault_log(&self) -> FaultLog {
        self.shared
            .fault_log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }

    /// Lets one session paused at [`Gate::PauseAtData`] (now or later) go on.
    pub fn release(&self) {
        if let Ok(mut releases) = self.shared.releases.lock() {
            *releases += 1;
        }
        self.shared.notify.notify_waiters();
    }

    /// Stops listening and closes every connection.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

#[derive(Default)]
struct Envelope {
    mail_from: Option<String>,
    rcpt_to: Vec<String>,
    size: u64,
    body_8bitmime: bool,
}

#[derive(Clone, Copy)]
enum Scripted {
    Accept,
    TempFail,
    DataTempFail,
    DataReject,
    DropInData,
    /// A 250 sent with the 354, the final "." refused.
    EarlyReply,
    /// An unsolicited reply after the mail's 250.
    ExtraReply,
    /// DATA answered 421, the connection closed.
    CloseAtData,
    /// The final "." answered 421 (the mail discarded), the connection closed.
    CloseAfterDot,
}

/// The reply of a server closing the session (RFC 5321 §3.8).
const CLOSING: &str = "421 4.3.2 Service shutting down, closing (scripted)\r\n";

const EARLY_250: &str = "250 2.0.0 Ok: queued (scripted, sent before the text)\r\n";
const EXTRA_REPLY: &str = "554 5.7.0 Unsolicited reply no command asked for (scripted)\r\n";

const TEMPFAIL: &str = "451 4.2.1 Mailbox busy, try again later (scripted)\r\n";

fn script_for(rcpt: &str, shared: &Shared) -> (Option<&'static str>, Option<Scripted>) {
    let local = rcpt.split('@').next().unwrap_or("").to_ascii_lowercase();
    let starts = |p: &str| local.starts_with(p);
    let times = if starts("tempfail-once") {
        Some(1)
    } else {
        local
            .strip_prefix("tempfail")
            .and_then(|rest| rest.chars().next())
            .and_then(|c| c.to_digit(10))
    };
    if let Some(times) = times {
        let refused = shared.refusals.lock().is_ok_and(|mut counts| {
            let count = counts.entry(rcpt.to_ascii_lowercase()).or_default();
            *count += 1;
            *count <= times
        });
        if refused {
            (Some(TEMPFAIL), None)
        } else {
            (None, Some(Scripted::Accept))
        }
    } else if starts("early-250") || starts("extra-reply") {
        let once = local.contains("-once");
        let misbehave = !once || shared.first_time(rcpt);
        let script = match (misbehave, starts("early-250")) {
            (false, _) => Scripted::Accept,
            (true, true) => Scripted::EarlyReply,
            (true, false) => Scripted::ExtraReply,
        };
        (None, Some(script))
    } else if starts("close-at-data") || starts("close-after-dot") {
        let misbehave = !local.contains("-once") || shared.first_time(rcpt);
        let script = match (misbehave, starts("close-at-data")) {
            (false, _) => Scripted::Accept,
            (true, true) => Scripted::CloseAtData,
            (true, false) => Scripted::CloseAfterDot,
        };
        (None, Some(script))
    } else if starts("data-tempfail") {
        (None, Some(Scripted::DataTempFail))
    } else if starts("data-reject") {
        (None, Some(Scripted::DataReject))
    } else if starts("drop-in-data") {
        (None, Some(Scripted::DropInData))
    } else if starts("drop-at-rcpt") {
        (Some("drop"), None)
    } else if starts("tempfail") {
        (
            Some("451 4.2.1 Mailbox busy, try again later (scripted)\r\n"),
            Some(Scripted::TempFail),
        )
    } else if starts("reject") || starts("permfail") || starts("unknown") {
        (Some("550 5.1.1 No such user here (scripted)\r\n"), None)
    } else {
        (None, Some(Scripted::Accept))
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    options: Arc<SinkOptions>,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::Plain(stream);
    let faults = options.faults.as_ref();
    if shared.chance(faults, |f| f.greeting_421) {
        shared.logged(|l| l.greetings_421 += 1);
        let _ = conn
            .send(b"421 4.3.2 Service not available, closing (injected fault)\r\n")
            .await;
        conn.shutdown().await;
        return;
    }
    let greeting = format!("220 {} ESMTP cssmtp sink\r\n", options.hostname);
    if conn.send(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut helo = String::new();
    let mut env = Envelope::default();
    let mut after_data = Scripted::Accept;
    let mut out = Vec::new();
    // Mails accepted on this session (for `max_mails_per_session`).
    let mut session_mails: u32 = 0;
    loop {
        // Answer every complete command line in the buffer, then send the replies.
        while let Some(lf) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=lf).collect();
            let request = Request::parse(&mut line.iter());
            match request {
                Ok(Request::Ehlo { host }) if options.ehlo => {
                    helo = host.into_owned();
                    env = Envelope::default();
                    let mut ehlo = EhloResponse::new(options.hostname.as_str());
                    ehlo.capabilities = EXT_ENHANCED_STATUS_CODES;
                    if options.eight_bit_mime {
                        ehlo.capabilities |= EXT_8BIT_MIME;
                    }
                    if options.pipelining {
                        ehlo.capabilities |= EXT_PIPELINING;
                    }
                    if let Some(size) = options.size {
                        ehlo.capabilities |= EXT_SIZE;
                        ehlo.size = usize::try_from(size).unwrap_or(usize::MAX);
                    }
                    if options.tls.is_some() && !conn.is_tls() {
                        ehlo.capabilities |= EXT_START_TLS;
                    }
                    let _ = ehlo.write(&mut out);
                }
                Ok(Request::Ehlo { .. }) => {
                    out.extend_from_slice(b"502 5.5.1 EHLO not implemented\r\n")
                }
                Ok(Request::Helo { host }) => {
                    helo = host.into_owned();
                    env = Envelope::default();
                    out.extend_from_slice(format!("250 {}\r\n", options.hostname).as_bytes());
                }
                Ok(Request::StartTls) => {
                    let Some(tls) = options.tls.clone().filter(|_| !conn.is_tls()) else {
                        out.extend_from_slice(b"502 5.5.1 STARTTLS not available\r\n");
                        continue;
                    };
                    out.extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
                    if conn.send(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    buf.clear();
                    if shared.chance(faults, |f| f.tls_fail) {
                        shared.logged(|l| l.tls_fails += 1);
                        conn.shutdown().await;
                        return;
                    }
                    let Conn::Plain(tcp) = conn else { return };
                    match TlsAcceptor::from(tls).accept(tcp).await {
                        Ok(stream) => conn = Conn::Tls(Box::new(TlsStream::Server(stream))),
                        Err(_) => return,
                    }
                    helo.clear();
                    env = Envelope::default();
                }
                Ok(Request::Mail { from }) => {
                    if helo.is_empty() {
                        out.extend_from_slice(b"503 5.5.1 Say HELO or EHLO first\r\n");
                    } else if env.mail_from.is_some() {
                        out.extend_from_slice(b"503 5.5.1 Nested MAIL command\r\n");
                    } else if options
                        .max_mails_per_session
                        .is_some_and(|max| session_mails >= max)
                    {
                        shared.limit_refusals.fetch_add(1, Ordering::Relaxed);
                        if options.close_at_limit {
                            out.extend_from_slice(
                                b"421 4.7.0 Too many messages in this session, closing\r\n",
                            );
                            let _ = conn.send(&out).await;
                            conn.shutdown().await;
                            return;
                        }
                        out.extend_from_slice(b"452 4.5.3 Too many messages in this session\r\n");
                    } else if options.scripted
                        && from.address.to_ascii_lowercase().starts_with("reject")
                    {
                        out.extend_from_slice(b"550 5.7.1 Sender refused (scripted)\r\n");
                    } else if options
                        .size
                        .is_some_and(|max| max > 0 && from.size as u64 > max)
                    {
                        out.extend_from_slice(b"552 5.3.4 Message size exceeds fixed limit\r\n");
                    } else if !options.eight_bit_mime && from.flags & MAIL_BODY_8BITMIME != 0 {
                        out.extend_from_slice(b"555 5.5.4 BODY=8BITMIME not supported\r\n");
                    } else if let Some(fault) = shared.reply_fault(faults) {
                        out.extend_from_slice(fault_reply(fault, "MAIL FROM").as_bytes());
                    } else {
                        env.mail_from = Some(from.address.into_owned());
                        env.size = from.size as u64;
                        env.body_8bitmime = from.flags & MAIL_BODY_8BITMIME != 0;
                        out.extend_from_slice(b"250 2.1.0 Sender OK\r\n");
                    }
                }
                Ok(Request::Rcpt { to }) => {
                    if env.mail_from.is_none() {
                        out.extend_from_slice(b"503 5.5.1 Need MAIL before RCPT\r\n");
                        continue;
                    }
                    if options
                        .max_rcpts
                        .is_some_and(|max| env.rcpt_to.len() >= max as usize)
                    {
                        shared.limit_refusals.fetch_add(1, Ordering::Relaxed);
                        out.extend_from_slice(b"452 4.5.3 Too many recipients\r\n");
                        continue;
                    }
                    let address = to.address.into_owned();
                    let script = if options.scripted {
                        script_for(&address, &shared)
                    } else {
                        (None, Some(Scripted::Accept))
                    };
                    match script {
                        (Some("drop"), _) => {
                            let _ = conn.send(&out).await;
                            conn.shutdown().await;
                            return;
                        }
                        (Some(reply), _) => out.extend_from_slice(reply.as_bytes()),
                        (None, _) if let Some(fault) = shared.reply_fault(faults) => {
                            out.extend_from_slice(fault_reply(fault, "RCPT TO").as_bytes());
                        }
                        (None, script) => {
                            after_data = match (after_data, script) {
                                (Scripted::Accept, Some(s)) => s,
                                (current, _) => current,
                            };
                            env.rcpt_to.push(address);
                            out.extend_from_slice(b"250 2.1.5 Recipient OK\r\n");
                        }
                    }
                }
                Ok(Request::Data) => {
                    if env.rcpt_to.is_empty() {
                        out.extend_from_slice(b"554 5.5.1 No valid recipients\r\n");
                        continue;
                    }
                    if let Some(fault) = shared.reply_fault(faults) {
                        out.extend_from_slice(fault_reply(fault, "DATA").as_bytes());
                        continue;
                    }
                    if shared.pass(Gate::AtData, &env.rcpt_to) {
                        let _ = conn.send(&out).await;
                        return std::future::pending().await;
                    }
                    if shared.pass(Gate::PauseAtData, &env.rcpt_to) {
                        if conn.send(&out).await.is_err() {
                            return;
                        }
                        out.clear();
                        shared.wait_release().await;
                    }
                    if matches!(after_data, Scripted::CloseAtData) {
                        out.extend_from_slice(CLOSING.as_bytes());
                        let _ = conn.send(&out).await;
                        conn.shutdown().await;
                        return;
                    }
                    out.extend_from_slice(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
                    if matches!(after_data, Scripted::EarlyReply) {
                        out.extend_from_slice(EARLY_250.as_bytes());
                    }
                    if conn.send(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    let Some(data) = read_data(&mut conn, &mut buf, &options).await else {
                        return;
                    };
                    let script = std::mem::replace(&mut after_data, Scripted::Accept);
                    let rcpt_to = env.rcpt_to.clone();
                    if shared.chance(faults, |f| f.drop_before_dot) {
                        shared.logged(|l| l.drops_before_dot += 1);
                        conn.shutdown().await;
                        return;
                    }
                    if let Some(fault) = shared.reply_fault(faults) {
                        env = Envelope::default();
                        out.extend_from_slice(fault_reply(fault, "the final \".\"").as_bytes());
                        continue;
                    }
                    session_mails = session_mails.saturating_add(1);
                    let reply = finish_mail(
                        data,
                        &mut env,
                        &helo,
                        peer,
                        conn.is_tls(),
                        script,
                        &options,
                        &shared,
                    );
                    match reply {
                        Some(reply)
                            if reply.starts_with("250")
                                && shared.pass(Gate::AfterDot, &rcpt_to) =>
                        {
                            return std::future::pending().await;
                        }
                        Some(reply)
                            if reply.starts_with("250")
                                && shared.chance(faults, |f| f.drop_after_dot) =>
                        {
                            let id = reply
                                .trim_end()
                                .rsplit(' ')
                                .next()
                                .and_then(|id| id.parse().ok())
                                .unwrap_or(0);
                            shared.logged(|l| l.dropped_after_dot.push(Cut { id, rcpt_to }));
                            conn.shutdown().await;
                            return;
                        }
                        Some(reply) if reply == CLOSING => {
                            out.extend_from_slice(reply.as_bytes());
                            let _ = conn.send(&out).await;
                            conn.shutdown().await;
                            return;
                        }
                        Some(reply) => out.extend_from_slice(reply.as_bytes()),
                        None => {
                            conn.shutdown().await;
                            return;
                        }
                    }
                }
                Ok(Request::Rset) => {
                    env = Envelope::default();
                    after_data = Scripted::Accept;
                    out.extend_from_slice(b"250 2.0.0 Reset\r\n");
                }
                Ok(Request::Noop { .. }) => out.extend_from_slice(b"250 2.0.0 OK\r\n"),
                Ok(Request::Quit) => {
                    out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                    let _ = conn.send(&out).await;
                    conn.shutdown().await;
                    return;
                }
                Ok(_) => out.extend_from_slice(b"502 5.5.1 Command not implemented\r\n"),
                Err(_) => out.extend_from_slice(b"500 5.5.2 Syntax error\r\n"),
            }
        }
        if !out.is_empty() {
            shared.maybe_delay(faults).await;
            if conn.send(&out).await.is_err() {
                return;
            }
            out.clear();
        }
        if buf.len() > 64 * 1024 {
            return;
        }
        match conn.read_some(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The reply an injected fault gives in place of the real one.
fn fault_reply(fault: Fault, stage: &str) -> String {
    match (fault, stage) {
        (Fault::TempFail, _) => {
            format!("451 4.3.0 Temporary failure at {stage} (injected fault)\r\n")
        }
        (Fault::PermFail, "RCPT TO") => "550 5.1.1 Mailbox refused (injected fault)\r\n".to_owned(),
        (Fault::PermFail, _) => format!("554 5.3.0 Refused at {stage} (injected fault)\r\n"),
    }
}

/// Reads the mail text; what follows its end stays in `buf` as commands.
async fn read_data(conn: &mut Conn, buf: &mut Vec<u8>, options: &SinkOptions) -> Option<Vec<u8>> {
    if options.lenient_end_of_data {
        loop {
            if let Some((data, rest)) = lenient_end(buf) {
                *buf = rest;
                return Some(data);
            }
            if conn.read_some(buf).await.ok()? == 0 {
                return None;
            }
        }
    }
    let mut receiver = DataReceiver::new();
    // The text starts at the beginning of a line: prime the receiver with a line end so
    // that a first line of "." or ".." is read correctly.
    let mut scratch = Vec::new();
    receiver.ingest(&mut b"\r\n".iter(), &mut scratch);
    let mut data = Vec::new();
    loop {
        let mut iter = buf.iter();
        let done = receiver.ingest(&mut iter, &mut data);
        let rest = iter.as_slice().to_vec();
        *buf = rest;
        if done {
            return Some(data);
        }
        if conn.read_some(buf).await.ok()? == 0 {
            return None;
        }
    }
}

/// A lenient end of text: "." alone between any two line ends (CR, LF or CRLF).
fn lenient_end(buf: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let is_end = |b: u8| b == b'\r' || b == b'\n';
    let mut i = 0;
    while i < buf.len() {
        let at_line_start = i == 0 || buf.get(i - 1).copied().is_some_and(is_end);
        if at_line_start && buf.get(i) == Some(&b'.') && buf.get(i + 1).copied().is_some_and(is_end)
        {
            let mut after = i + 2;
            if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                after += 1;
            }
            let data = cssmtp_wire::data::dot_unstuff(buf.get(..i).unwrap_or_default());
            return Some((data, buf.get(after..).unwrap_or_default().to_vec()));
        }
        i += 1;
    }
    None
}

fn has_bare_line_end(data: &[u8]) -> bool {
    data.iter().enumerate().any(|(i, &b)| {
        (b == b'\r' && data.get(i + 1) != Some(&b'\n'))
            || (b == b'\n' && (i == 0 || data.get(i - 1) != Some(&b'\r')))
    })
}

#[allow(clippy::too_many_arguments)]
fn finish_mail(
    data: Vec<u8>,
    env: &mut Envelope,
    helo: &str,
    peer: SocketAddr,
    tls: bool,
    script: Scripted,
    options: &SinkOptions,
    shared: &Shared,
) -> Option<String> {
    let envelope = std::mem::take(env);
    if options.strict_line_ends && has_bare_line_end(&data) {
        return Some("554 5.6.11 Bare CR or LF in mail text not allowed\r\n".into());
    }
    if options.strict_8bit && !envelope.body_8bitmime && !data.is_ascii() {
        return Some("554 5.6.1 8-bit text sent without BODY=8BITMIME\r\n".into());
    }
    if options
        .size
        .is_some_and(|max| max > 0 && data.len() as u64 > max)
    {
        return Some("552 5.3.4 Message size exceeds fixed limit\r\n".into());
    }
    match script {
        Scripted::DropInData => return None,
        Scripted::DataTempFail => {
            return Some("451 4.3.0 Temporary failure storing the mail (scripted)\r\n".into());
        }
        Scripted::DataReject | Scripted::EarlyReply => {
            return Some("554 5.6.0 Mail content refused (scripted)\r\n".into());
        }
        Scripted::CloseAfterDot => return Some(CLOSING.into()),
        Scripted::CloseAtData => {}
        Scripted::Accept | Scripted::TempFail | Scripted::ExtraReply => {}
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let mail = Received {
        id,
        peer,
        helo: helo.to_owned(),
        tls,
        mail_from: envelope.mail_from.unwrap_or_default(),
        size: (envelope.size > 0).then_some(envelope.size),
        body_8bitmime: envelope.body_8bitmime,
        rcpt_to: envelope.rcpt_to,
        data,
    };
    if let Some(dir) = &options.store {
        let mut file = format!("X-Sink-Envelope-From: <{}>\r\n", mail.mail_from).into_bytes();
        for rcpt in &mail.rcpt_to {
            file.extend_from_slice(format!("X-Sink-Envelope-To: <{rcpt}>\r\n").as_bytes());
        }
        file.extend_from_slice(&mail.data);
        if let Err(e) = std::fs::write(dir.join(format!("{id:06}.eml")), file) {
            return Some(format!("451 4.3.0 Cannot store the mail: {e}\r\n"));
        }
    }
    if options.print {
        println!(
            "sink: mail {id} from <{}> to {} ({} bytes{})",
            mail.mail_from,
            mail.rcpt_to
                .iter()
                .map(|r| format!("<{r}>"))
                .collect::<Vec<_>>()
                .join(", "),
            mail.data.len(),
            if tls { ", TLS" } else { "" }
        );
    }
    if options.keep
        && let Ok(mut received) = shared.received.lock()
    {
        received.push(mail);
    }
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    shared.notify.notify_waiters();
    let mut reply = format!("250 2.0.0 Ok: queued as {id}\r\n");
    if matches!(script, Scripted::ExtraReply) {
        reply.push_str(EXTRA_REPLY);
    }
    Some(reply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_end_of_data_finds_smuggling_shapes() {
        let (data, rest) = lenient_end(b"a\r\nb\n.\nMAIL FROM:<x>\r\n").unwrap();
        assert_eq!(data, b"a\r\nb\n");
        assert_eq!(rest, b"MAIL FROM:<x>\r\n");
        let (data, _) = lenient_end(b"x\r\n..y\r\n.\r\n").unwrap();
        assert_eq!(data, b"x\r\n.y\r\n");
        assert!(lenient_end(b"x\r\n.y\r\n").is_none());
    }

    #[test]
    fn bare_line_ends() {
        assert!(!has_bare_line_end(b"a\r\nb\r\n"));
        assert!(has_bare_line_end(b"a\rb\r\n"));
        assert!(has_bare_line_end(b"a\nb\r\n"));
    }
}
