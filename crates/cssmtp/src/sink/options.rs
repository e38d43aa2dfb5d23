//! How a sink behaves: its options and the random fault mix of soak tests.

use std::path::PathBuf;
use std::sync::Arc;

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
    /// Advertise SMTPUTF8 (RFC 6531); off: `SMTPUTF8` is refused, and so is a non-ASCII
    /// address in any case without it.
    pub smtputf8: bool,
    /// Advertise CHUNKING (RFC 3030) and take BDAT; off: BDAT is refused.
    pub chunking: bool,
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
            smtputf8: false,
            chunking: false,
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
