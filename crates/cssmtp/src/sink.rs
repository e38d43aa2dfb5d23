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
//! Options offer or hide PIPELINING, SIZE, STARTTLS and EHLO itself, and choose how the
//! end of the mail text is found: strictly (`<CRLF>.<CRLF>` only, and a text with a bare
//! CR or LF is refused, as hardened servers do) or leniently (`<LF>.<LF>`, `<CR>.<CR>`…
//! also end it, as servers vulnerable to SMTP smuggling do).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{
    EXT_8BIT_MIME, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING, EXT_SIZE, EXT_START_TLS,
    EhloResponse, Request,
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
    /// Advertise and enforce `SIZE n`.
    pub size: Option<u64>,
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
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self {
            hostname: "sink.localhost".into(),
            pipelining: true,
            ehlo: true,
            size: None,
            tls: None,
            strict_line_ends: false,
            lenient_end_of_data: false,
            store: None,
            print: false,
            keep: true,
            scripted: true,
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

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    notify: Notify,
    sessions: AtomicU64,
    next_id: AtomicU64,
    /// Mails accepted (also those not kept).
    accepted: AtomicU64,
    /// How many `tempfail-once`/`tempfailN` refusals each address got.
    refusals: Mutex<HashMap<String, u32>>,
    /// Gates armed, and the mails held at them.
    gates: Mutex<(Vec<Gate>, Vec<Held>)>,
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

impl Shared {
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
                        s.sessions.fetch_add(1, Ordering::Relaxed);
                        let (s, o, st) = (Arc::clone(&s), Arc::clone(&options), st.clone());
                        tokio::spawn(async move {
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
}

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
    let greeting = format!("220 {} ESMTP cssmtp sink\r\n", options.hostname);
    if conn.send(greeting.as_bytes()).await.is_err() {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    let mut helo = String::new();
    let mut env = Envelope::default();
    let mut after_data = Scripted::Accept;
    let mut out = Vec::new();
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
                    ehlo.capabilities = EXT_8BIT_MIME | EXT_ENHANCED_STATUS_CODES;
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
                    } else if options.scripted
                        && from.address.to_ascii_lowercase().starts_with("reject")
                    {
                        out.extend_from_slice(b"550 5.7.1 Sender refused (scripted)\r\n");
                    } else if options.size.is_some_and(|max| from.size as u64 > max) {
                        out.extend_from_slice(b"552 5.3.4 Message size exceeds fixed limit\r\n");
                    } else {
                        env.mail_from = Some(from.address.into_owned());
                        env.size = from.size as u64;
                        out.extend_from_slice(b"250 2.1.0 Sender OK\r\n");
                    }
                }
                Ok(Request::Rcpt { to }) => {
                    if env.mail_from.is_none() {
                        out.extend_from_slice(b"503 5.5.1 Need MAIL before RCPT\r\n");
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
    if options.size.is_some_and(|max| data.len() as u64 > max) {
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
        Scripted::Accept | Scripted::TempFail | Scripted::ExtraReply => {}
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let mail = Received {
        id,
        peer,
        helo: helo.to_owned(),
        tls,
        mail_from: envelope.mail_from.unwrap_or_default(),
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
