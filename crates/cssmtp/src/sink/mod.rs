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
//! | `data-reject` | the mail's final "." answered `554 5.6.0` (with BDAT: its `LAST` chunk) |
//! | `bdat-reject` | with CHUNKING offered, the first BDAT chunk before the last answered `554 5.6.0` (the transaction is over: the chunks after it get `503`) |
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
//! RFC 6152 §3). `--smtputf8` offers SMTPUTF8 (without it, `SMTPUTF8` is refused with
//! `555` and a non-ASCII address with `553 5.6.7`); `--chunking` offers CHUNKING and
//! takes BDAT, recording the size of each chunk ([`Received::bdat_chunks`]).
//! Session limits are scripted too: mails per session, recipients per transaction, and
//! sessions at once ([`SinkOptions::max_connections`]: a connection beyond is greeted
//! with `421` and closed, or closed at once).//!
//! The module holds the options and fault mix (`options`), what sessions share
//! (`shared`), the recipient scripts (`script`), one session's dialogue (`session`), the
//! reading of mail text (`text`) and what becomes of an accepted mail (`store`).

mod options;
mod script;
mod session;
mod shared;
mod store;
#[cfg(test)]
mod tests;
mod text;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::net::Conn;

pub use options::{Cut, FaultLog, Faults, SinkOptions};
pub use shared::{Gate, Held, Received};
use shared::{OpenSession, Shared};

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
                        admit(stream, peer, &options, &s, &st);
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

/// Takes a new connection: closes or refuses it as the options say, or serves it until
/// the sink stops.
fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    options: &Arc<SinkOptions>,
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) {
    let number = shared.sessions.fetch_add(1, Ordering::Relaxed) + 1;
    if options.reset_connections.contains(&number) {
        drop(stream);
        return;
    }
    if let Some(max) = options.max_connections
        && shared.open_now.load(Ordering::Relaxed) >= u64::from(max)
    {
        // Beyond the limit: not counted as open, refused.
        shared.connection_refusals.fetch_add(1, Ordering::Relaxed);
        refuse(stream, options.close_beyond_max);
        return;
    }
    let silent = options.silent_connections.contains(&number);
    let (s, o, st) = (Arc::clone(shared), Arc::clone(options), stop.clone());
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
            () = session::serve(stream, peer, o, s) => {}
        }
    });
}

/// Refuses a connection beyond `max_connections`: closed at once, or greeted with 421
/// and closed.
fn refuse(stream: TcpStream, close_at_once: bool) {
    if close_at_once {
        drop(stream);
        return;
    }
    tokio::spawn(async move {
        let mut conn = Conn::Plain(stream);
        let _ = conn
            .send(b"421 4.7.0 Too many concurrent connections, closing\r\n")
            .await;
        conn.shutdown().await;
    });
}
