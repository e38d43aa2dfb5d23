//! One target address and what is known of it.

use std::sync::Mutex;

use cssmtp_wire::Capabilities;
use rustls::pki_types::ServerName;
use tokio::time::Instant;

use super::super::outcome::Failure;
use super::super::resolve::Resolved;
use super::super::tls::server_name;

/// A target's own TLS connector, built when first needed (or why it cannot be).
#[derive(Default)]
pub(crate) struct OwnConnector(pub std::sync::OnceLock<Result<tokio_rustls::TlsConnector, String>>);

impl std::fmt::Debug for OwnConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnConnector")
    }
}

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
    /// `SourceAddress` in its block: the local address to connect from.
    pub source: Option<std::net::IpAddr>,
    /// `Chunking`: BDAT when the server offers CHUNKING (RFC 3030).
    pub chunking: bool,
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
    /// SMTP AUTH with it: every session logs in once, after EHLO (and STARTTLS).
    pub auth: Option<std::sync::Arc<crate::config::AuthSpec>>,
    /// Its TLS policy.
    pub tls: std::sync::Arc<crate::config::TlsPolicy>,
    /// `Charset`: the code page of text translated from EBCDIC.
    pub charset: crate::config::Charset,
    /// The connector of a TLS configuration of its own, built when first needed.
    pub(crate) tls_connector: OwnConnector,
    pub(super) state: Mutex<TargetState>,
    /// Counts sessions greeted and mails sent: a connection that fails while this moved
    /// on failed alone (issue 10 point 3), the target is not down.
    pub(super) progress: tokio::sync::watch::Sender<u64>,
    /// Numbers the connections started to it, in order.
    pub(super) tickets: std::sync::atomic::AtomicU64,
    /// The highest ticket of a connection greeted so far.
    pub(super) greeted: tokio::sync::watch::Sender<u64>,
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
    /// AUTH failed (refused, not offered, no secret): the target was taken out of
    /// service for ConnectRetry each time.
    pub auth_failures: u64,
    /// STARTTLS or the handshake failed (certificate verification included).
    pub tls_failures: u64,
    /// Sessions of a `TlsMode Opportunistic` target that went without TLS (the server
    /// offered no STARTTLS, or its TLS had failed).
    pub tls_not_used: u64,
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
    pub(super) fn new(index: usize, resolved: Resolved) -> Self {
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
            auth: resolved.auth,
            tls: resolved.tls,
            source: resolved.source,
            charset: resolved.charset,
            chunking: resolved.chunking,
            tls_connector: OwnConnector::default(),
            state: Mutex::new(TargetState::default()),
            progress: tokio::sync::watch::Sender::new(0),
            tickets: std::sync::atomic::AtomicU64::new(0),
            greeted: tokio::sync::watch::Sender::new(0),
        }
    }

    /// Whether every session with it goes over TLS before AUTH (AUTH configured, without
    /// `InsecureAuth Yes`).
    pub fn auth_needs_tls(&self) -> bool {
        self.auth.as_ref().is_some_and(|a| a.needs_tls())
    }

    /// Whether its TLS failed less than ConnectRetry ago.
    pub fn tls_broken(&self) -> bool {
        self.lock()
            .tls_broken_until
            .is_some_and(|u| u > Instant::now())
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

    pub(super) fn advance(&self) {
        self.progress.send_modify(|n| *n += 1);
    }

    /// A copy of the target's state.
    pub fn state(&self) -> TargetState {
        self.lock().clone()
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, TargetState> {
        // A poisoned lock only means another thread panicked while holding it; the state
        // is plain data and still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The largest mail this target takes: SIZE from EHLO when advertised with a limit,
    /// else the configured MessageSize (0: no limit).
    pub(super) fn size_limit(&self, caps: Option<&Capabilities>) -> u64 {
        match caps {
            Some(c) if c.size_advertised && c.size_limit > 0 => c.size_limit,
            _ => self.message_size,
        }
    }
}
