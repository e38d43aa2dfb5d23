//! One SMTP client session with a target server.
//!
//! The dialogue (RFC 5321, 1870, 2920, 3207): greeting, EHLO (HELO when EHLO is
//! refused), STARTTLS when the mail or the target requires it (refusing any byte the
//! server sent after its 220, then EHLO again over TLS), then transactions: MAIL FROM
//! with SIZE, every RCPT TO, DATA, the text and "." — pipelined in one write when the
//! server offers PIPELINING. Each recipient gets its own result; DATA goes ahead when at
//! least one recipient was accepted. Every wait has the timeout of its stage, and every
//! failure records its stage.
//!
//! Replies are taken only when due: before each command group is written, after the 354
//! and before the final ".", nothing may be waiting from the server (what was read, and
//! what a read that does not wait finds). Bytes there are a reply sent early (a `250`
//! with the `354`) or one no command asked for: a protocol error that drops the session,
//! so that no reply is ever charged to the wrong command or the next mail. The mail is
//! then retried; a mail whose final reply was followed by such bytes keeps that reply.
//!
//! A `421` at any stage ends the session at once: the failure keeps the reply and its
//! stage, and every recipient without a result gets it (the worker sends them again at
//! once on a fresh session, see [`super::outcome::session_matter`]).
//!
//! The text is checked as it is written (see [`super::body`]): when it is not what was
//! parsed, the session is dropped before the final "." ([`Problem::TextChanged`]).
//!
//! This file opens, greets (EHLO, STARTTLS) and closes; `auth.rs` logs in (AUTH, once
//! per session, after EHLO and STARTTLS); `transaction.rs` sends one mail
//! (MAIL FROM … the final "."), `bdat.rs` its text in BDAT chunks (RFC 3030) when the
//! server offers CHUNKING; `wire.rs` writes command groups and reads replies, with
//! the check that nothing arrives before it is due.

mod auth;
mod bdat;
mod transaction;
mod wire;

use std::net::SocketAddr;

use cssmtp_wire::{Capabilities, Command, ReplyParser};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::{Duration, timeout};
use tokio_rustls::{TlsConnector, TlsStream};

use super::MailJob;
use super::outcome::{Failure, Problem, RcptResult, Stage};
use crate::config::Timeouts;
use crate::net::Conn;

/// QUIT never waits longer than this for its reply.
const QUIT_WAIT: Duration = Duration::from_secs(10);

/// What a session needs to know about its surroundings.
pub struct SessionParams<'a> {
    /// The name cssmtp gives in EHLO/HELO.
    pub helo_name: &'a str,
    pub timeouts: &'a Timeouts,
}

/// An open session.
pub struct Session {
    conn: Option<Conn>,
    rbuf: Vec<u8>,
    parser: ReplyParser,
    peer: SocketAddr,
    /// Reused for every mail: the text on its way out, and the raw bytes read for it.
    wbuf: Vec<u8>,
    raw: Vec<u8>,
    /// What the server offered in its last EHLO reply.
    pub caps: Capabilities,
    /// Mails sent on this session.
    pub mails: u32,
    /// The mechanism of a successful AUTH on this session (one per session).
    pub authenticated: Option<cssmtp_wire::sasl::Mechanism>,
    /// The negotiated TLS protocol version and cipher suite, after STARTTLS.
    pub tls_info: Option<(String, String)>,
    /// The target's `Charset`: text translated from EBCDIC goes in it.
    pub charset: crate::config::Charset,
    /// BDAT may be used when the server offers CHUNKING (the target's `Chunking`).
    pub use_chunking: bool,
}

impl Session {
    /// Connects, reads the greeting and says EHLO (or HELO).
    ///
    /// # Errors
    /// The [`Failure`] of the stage that failed.
    pub async fn open(
        peer: SocketAddr,
        source: Option<std::net::IpAddr>,
        params: &SessionParams<'_>,
    ) -> Result<Self, Failure> {
        let wait = params.timeouts.initial_msg;
        let stream = match timeout(wait, connect(peer, source)).await {
            Err(_) => {
                return Err(Failure::new(
                    Stage::Connect,
                    Some(peer),
                    Problem::Timeout(wait),
                ));
            }
            Ok(Err(e)) => {
                return Err(Failure::new(
                    Stage::Connect,
                    Some(peer),
                    Problem::Connection(e.to_string()),
                ));
            }
            Ok(Ok(stream)) => stream,
        };
        // Nagle plus delayed ACK would hold each small write for ~40 ms.
        let _ = stream.set_nodelay(true);
        let mut session = Self {
            conn: Some(Conn::Plain(stream)),
            rbuf: Vec::with_capacity(4096),
            parser: ReplyParser::new(),
            peer,
            wbuf: Vec::new(),
            raw: Vec::new(),
            caps: Capabilities::plain_smtp(),
            mails: 0,
            authenticated: None,
            tls_info: None,
            charset: crate::config::Charset::Latin1,
            use_chunking: true,
        };
        let greeting = session.read_reply(Stage::Greeting, wait).await?;
        if greeting.code != 220 {
            session.close().await;
            return Err(session.failure(Stage::Greeting, Problem::Reply(greeting)));
        }
        session.hello(params).await?;
        Ok(session)
    }

    pub fn is_tls(&self) -> bool {
        self.conn.as_ref().is_some_and(Conn::is_tls)
    }

    /// False once the connection failed: the session must be dropped.
    pub fn is_usable(&self) -> bool {
        self.conn.is_some()
    }

    fn failure(&self, stage: Stage, problem: Problem) -> Failure {
        Failure::new(stage, Some(self.peer), problem)
    }

    async fn hello(&mut self, params: &SessionParams<'_>) -> Result<(), Failure> {
        let wait = params.timeouts.any_cmd;
        self.command(Command::Ehlo(params.helo_name), Stage::Ehlo, wait)
            .await?;
        let reply = self.read_reply(Stage::Ehlo, wait).await?;
        if reply.code == 250 {
            self.caps = Capabilities::parse(self.parser.last_raw());
            return Ok(());
        }
        if !matches!(reply.code, 500..=504 | 550) {
            return Err(self.failure(Stage::Ehlo, Problem::Reply(reply)));
        }
        // A plain SMTP server: fall back to HELO.
        self.command(Command::Helo(params.helo_name), Stage::Helo, wait)
            .await?;
        let reply = self.read_reply(Stage::Helo, wait).await?;
        if reply.code != 250 {
            return Err(self.failure(Stage::Helo, Problem::Reply(reply)));
        }
        self.caps = Capabilities::plain_smtp();
        Ok(())
    }

    /// Upgrades the session to TLS (RFC 3207) and says EHLO again.
    ///
    /// # Errors
    /// A [`Failure`] at [`Stage::StartTls`] or [`Stage::TlsHandshake`]; the session is
    /// then unusable unless the server merely refused STARTTLS.
    pub async fn starttls(
        &mut self,
        connector: &TlsConnector,
        name: ServerName<'static>,
        params: &SessionParams<'_>,
    ) -> Result<(), Failure> {
        let wait = params.timeouts.any_cmd;
        self.command(Command::StartTls, Stage::StartTls, wait)
            .await?;
        let reply = self.read_reply(Stage::StartTls, wait).await?;
        if reply.code != 220 {
            return Err(self.failure(Stage::StartTls, Problem::Reply(reply)));
        }
        if !self.rbuf.is_empty() {
            // Bytes sent before the handshake could be answers to commands we never
            // sent (STARTTLS response injection): the session cannot be trusted.
            self.conn = None;
            return Err(self.failure(
                Stage::StartTls,
                Problem::Protocol(
                    "server sent data after its STARTTLS reply (possible injection)".into(),
                ),
            ));
        }
        let Some(Conn::Plain(tcp)) = self.conn.take() else {
            return Err(self.failure(
                Stage::StartTls,
                Problem::Protocol("session is already TLS".into()),
            ));
        };
        let tls = match timeout(wait, connector.connect(name, tcp)).await {
            Err(_) => return Err(self.failure(Stage::TlsHandshake, Problem::Timeout(wait))),
            Ok(Err(e)) => {
                return Err(self.failure(Stage::TlsHandshake, Problem::Tls(e.to_string())));
            }
            Ok(Ok(tls)) => tls,
        };
        let (_, connection) = tls.get_ref();
        self.tls_info = Some((
            connection
                .protocol_version()
                .map_or_else(|| "unknown".to_owned(), |v| format!("{v:?}")),
            connection
                .negotiated_cipher_suite()
                .map_or_else(|| "unknown".to_owned(), |c| format!("{:?}", c.suite())),
        ));
        self.conn = Some(Conn::Tls(Box::new(TlsStream::Client(tls))));
        self.parser.reset();
        self.rbuf.clear();
        self.caps = Capabilities::plain_smtp();
        self.hello(params).await
    }

    /// Sends one mail to the recipients of `job`; returns one result per recipient, in
    /// the order of `job.recipients`.
    pub async fn send_mail(
        &mut self,
        job: &MailJob,
        params: &SessionParams<'_>,
    ) -> Vec<RcptResult> {
        let mut results: Vec<Option<RcptResult>> = vec![None; job.recipients.len()];
        if let Err(failure) = self.transaction(job, params, &mut results).await {
            for slot in results.iter_mut().filter(|r| r.is_none()) {
                *slot = Some(RcptResult::failed(failure.clone()));
            }
        }
        self.mails += 1;
        let fallback = self.failure(Stage::Route, Problem::Protocol("no result recorded".into()));
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| RcptResult::Retry(fallback.clone())))
            .collect()
    }

    /// Says QUIT (waiting briefly for the reply) and closes the connection.
    pub async fn quit(mut self, params: &SessionParams<'_>) {
        let wait = params.timeouts.any_cmd.min(QUIT_WAIT);
        if self.conn.is_some() && self.write(b"QUIT\r\n", Stage::Quit, wait).await.is_ok() {
            let _ = self.read_reply(Stage::Quit, wait).await;
        }
        self.close().await;
    }
}

/// A TCP connection to `peer`, from `source` when one is set (`SourceAddress`).
async fn connect(peer: SocketAddr, source: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(source) = source else {
        return TcpStream::connect(peer).await;
    };
    if source.is_ipv4() != peer.is_ipv4() {
        return Err(std::io::Error::other(format!(
            "SourceAddress {source} cannot reach {peer}: another address family"
        )));
    }
    let socket = if source.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(source, 0)).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot use SourceAddress {source}: {e}"))
    })?;
    socket.connect(peer).await
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_source_address_of_the_other_family_says_so_and_one_of_the_same_is_used() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = listener.local_addr().unwrap();
        let err = super::connect(peer, Some("::1".parse().unwrap()))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("another address family"), "{err}");
        let stream = super::connect(peer, Some("127.0.0.4".parse().unwrap()))
            .await
            .unwrap();
        assert_eq!(stream.local_addr().unwrap().ip().to_string(), "127.0.0.4");
        let (_, from) = listener.accept().await.unwrap();
        assert_eq!(from.ip().to_string(), "127.0.0.4");
    }
}
