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

use std::net::SocketAddr;

use cssmtp_wire::{Capabilities, Command, Reply, ReplyParser};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::{Duration, Instant, timeout, timeout_at};
use tokio_rustls::{TlsConnector, TlsStream};

use super::body::{Body, TextError};
use super::outcome::{Failure, Problem, RcptResult, Stage};
use super::{MailJob, NotRecorded};
use crate::config::Timeouts;
use crate::net::Conn;

/// Text is sent to the socket in writes of about this size.
const WRITE_BATCH: usize = 64 * 1024;
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
}

impl Session {
    /// Connects, reads the greeting and says EHLO (or HELO).
    ///
    /// # Errors
    /// The [`Failure`] of the stage that failed.
    pub async fn open(peer: SocketAddr, params: &SessionParams<'_>) -> Result<Self, Failure> {
        let wait = params.timeouts.initial_msg;
        let stream = match timeout(wait, TcpStream::connect(peer)).await {
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

    async fn transaction(
        &mut self,
        job: &MailJob,
        params: &SessionParams<'_>,
        results: &mut [Option<RcptResult>],
    ) -> Result<(), Failure> {
        let t = params.timeouts;
        let size = self.caps.size_advertised.then_some(job.size);
        let mut mail = Vec::new();
        if let Err(e) = (Command::MailFrom {
            path: &job.reverse_path,
            size,
            // The worker sends 8-bit text only where 8BITMIME is offered.
            eight_bit: job.eight_bit && self.caps.eight_bit_mime,
        })
        .write_to(&mut mail)
        {
            return Err(self.failure(Stage::MailFrom, Problem::UnsafeArgument(e.to_string())));
        }
        // RCPT commands; a recipient that cannot be sent safely fails alone.
        let mut rcpts: Vec<(usize, Vec<u8>)> = Vec::with_capacity(job.recipients.len());
        for (i, address) in job.recipients.iter().enumerate() {
            let mut line = Vec::new();
            match Command::RcptTo(address).write_to(&mut line) {
                Ok(()) => rcpts.push((i, line)),
                Err(e) => {
                    if let Some(slot) = results.get_mut(i) {
                        *slot = Some(RcptResult::failed(
                            self.failure(Stage::RcptTo, Problem::UnsafeArgument(e.to_string())),
                        ));
                    }
                }
            }
        }
        if rcpts.is_empty() {
            return Ok(());
        }
        let pipelining = self.caps.pipelining;
        let mut accepted: Vec<usize> = Vec::new();
        let data_reply;
        if pipelining {
            // MAIL, every RCPT and DATA in one write; replies come back in order.
            let mut group = mail;
            for (_, line) in &rcpts {
                group.extend_from_slice(line);
            }
            group.extend_from_slice(b"DATA\r\n");
            self.send_group(&group, Stage::MailFrom, t.mail_cmd).await?;
            let mail_reply = self.read_reply(Stage::MailFrom, t.mail_cmd).await?;
            let mut rcpt_replies = Vec::with_capacity(rcpts.len());
            for _ in &rcpts {
                rcpt_replies.push(self.read_reply(Stage::RcptTo, t.rcpt_cmd).await?);
            }
            let reply = self.read_reply(Stage::Data, t.data_cmd).await?;
            if !mail_reply.is_positive() {
                self.fail_all(results, &rcpts, Stage::MailFrom, &mail_reply);
                return self.abandon(reply.code == 354, params).await;
            }
            for ((i, _), reply) in rcpts.iter().zip(rcpt_replies) {
                self.record_rcpt(results, *i, reply, &mut accepted);
            }
            if accepted.is_empty() {
                return self.abandon(reply.code == 354, params).await;
            }
            data_reply = reply;
        } else {
            self.send_group(&mail, Stage::MailFrom, t.mail_cmd).await?;
            let mail_reply = self.read_reply(Stage::MailFrom, t.mail_cmd).await?;
            if !mail_reply.is_positive() {
                self.fail_all(results, &rcpts, Stage::MailFrom, &mail_reply);
                return self.abandon(false, params).await;
            }
            for (i, line) in &rcpts {
                self.send_group(line, Stage::RcptTo, t.rcpt_cmd).await?;
                let reply = self.read_reply(Stage::RcptTo, t.rcpt_cmd).await?;
                self.record_rcpt(results, *i, reply, &mut accepted);
            }
            if accepted.is_empty() {
                return self.abandon(false, params).await;
            }
            self.send_group(b"DATA\r\n", Stage::Data, t.data_cmd)
                .await?;
            data_reply = self.read_reply(Stage::Data, t.data_cmd).await?;
        }
        if data_reply.code != 354 {
            let stage_failure = self.failure(Stage::Data, Problem::Reply(data_reply));
            for i in &accepted {
                if let Some(slot) = results.get_mut(*i) {
                    *slot = Some(RcptResult::failed(stage_failure.clone()));
                }
            }
            return self.abandon(false, params).await;
        }
        // Every reply due is in: anything more (a 250 sent with the 354) came early.
        self.expect_quiet(Stage::Data).await?;
        // The owner records that these recipients may get the mail once the final "."
        // goes: before it goes.
        let rcpts = match &job.ack {
            Some(_) => global_indexes(job, &accepted),
            None => Vec::new(),
        };
        let sent = match job.ack.as_ref().map(|ack| ack.before_dot(&rcpts)) {
            Some(Ok(sent)) => sent,
            None => None,
            Some(Err(NotRecorded(why))) => {
                // No record, no final ".": the connection goes, the mail is tried again.
                self.close().await;
                return Err(self.failure(Stage::DataBlock, Problem::NotRecorded(why)));
            }
        };
        let replied = match self.send_text(job, t, sent).await {
            Ok(()) => self.read_reply(Stage::DataTerm, t.data_term).await,
            Err(failure) => Err(failure),
        };
        if replied.is_ok() {
            // The reply to "." was due and stands; bytes after it were not: the session
            // is dropped (the next mail must not read them as its replies).
            let _ = self.expect_quiet(Stage::DataTerm).await;
        }
        if let Some(ack) = &job.ack {
            // Told before this connection's next "sent": one mail per connection is
            // ever in doubt.
            ack.after_dot(&rcpts, matches!(&replied, Ok(reply) if reply.is_positive()));
        }
        let final_reply = replied?;
        let target = self.peer;
        for i in &accepted {
            let result = if final_reply.is_positive() {
                RcptResult::Delivered {
                    target,
                    reply: final_reply.clone(),
                }
            } else {
                RcptResult::failed(
                    self.failure(Stage::DataTerm, Problem::Reply(final_reply.clone())),
                )
            };
            if let Some(slot) = results.get_mut(*i) {
                *slot = Some(result);
            }
        }
        Ok(())
    }

    fn record_rcpt(
        &self,
        results: &mut [Option<RcptResult>],
        i: usize,
        reply: Reply,
        accepted: &mut Vec<usize>,
    ) {
        if reply.is_positive() {
            accepted.push(i);
        } else if let Some(slot) = results.get_mut(i) {
            *slot = Some(RcptResult::failed(
                self.failure(Stage::RcptTo, Problem::Reply(reply)),
            ));
        }
    }

    fn fail_all(
        &self,
        results: &mut [Option<RcptResult>],
        rcpts: &[(usize, Vec<u8>)],
        stage: Stage,
        reply: &Reply,
    ) {
        for (i, _) in rcpts {
            if let Some(slot) = results.get_mut(*i) {
                *slot = Some(RcptResult::failed(
                    self.failure(stage, Problem::Reply(reply.clone())),
                ));
            }
        }
    }

    /// Ends a transaction that will not carry text: a lone "." when a pipelined DATA was
    /// accepted anyway (RFC 2920 §3.1), then RSET.
    async fn abandon(
        &mut self,
        data_open: bool,
        params: &SessionParams<'_>,
    ) -> Result<(), Failure> {
        let t = params.timeouts;
        if data_open {
            self.send_group(b".\r\n", Stage::DataBlock, t.data_block)
                .await?;
            self.read_reply(Stage::DataTerm, t.data_term).await?;
        }
        self.send_group(b"RSET\r\n", Stage::Rset, t.any_cmd).await?;
        let reply = self.read_reply(Stage::Rset, t.any_cmd).await?;
        if !reply.is_positive() {
            self.close().await;
        }
        Ok(())
    }

    /// Streams the added headers and the text, ending with "." in the same write; that
    /// last write waits for `durable` (the sync of the mail's checkpoint, with
    /// `ChkPointSync Mail`).
    async fn send_text(
        &mut self,
        job: &MailJob,
        t: &Timeouts,
        durable: Option<oneshot::Receiver<()>>,
    ) -> Result<(), Failure> {
        let mut out = std::mem::take(&mut self.wbuf);
        let mut raw = std::mem::take(&mut self.raw);
        let result = self.stream_text(job, t, &mut out, &mut raw, durable).await;
        // Keep the buffers for the next mail, unless a huge mail made them grow.
        out.clear();
        raw.clear();
        if out.capacity() <= 4 * WRITE_BATCH {
            self.wbuf = out;
        }
        if raw.capacity() <= 4 * WRITE_BATCH {
            self.raw = raw;
        }
        result
    }

    async fn stream_text(
        &mut self,
        job: &MailJob,
        t: &Timeouts,
        out: &mut Vec<u8>,
        raw: &mut Vec<u8>,
        durable: Option<oneshot::Receiver<()>>,
    ) -> Result<(), Failure> {
        if let Err(why) = cssmtp_wire::data::check_text(&job.headers) {
            self.close().await;
            return Err(self.failure(
                Stage::DataBlock,
                Problem::TextChanged(format!("the header fields cssmtp adds have {why}")),
            ));
        }
        out.extend_from_slice(&job.headers);
        let mut body = Body::new(&job.text);
        loop {
            match body.next_chunk(raw, out).await {
                Ok(true) => {
                    if out.len() >= WRITE_BATCH {
                        self.write(out, Stage::DataBlock, t.data_block).await?;
                        out.clear();
                    }
                }
                Ok(false) => break,
                Err(e) => {
                    // The text cannot be completed: drop the connection without the
                    // final "." so that the server discards the partial mail.
                    self.close().await;
                    let problem = match e {
                        TextError::Changed(why) => Problem::TextChanged(why),
                        TextError::Io(_) => Problem::Connection(e.to_string()),
                    };
                    return Err(self.failure(Stage::DataBlock, problem));
                }
            }
        }
        out.extend_from_slice(b".\r\n");
        if let Some(durable) = durable {
            // Resolves once the journal has synced (or has failed, which it reports).
            let _ = durable.await;
        }
        // A reply before the text is complete (an early 250, or a refusal) was not due.
        self.expect_quiet(Stage::DataBlock).await?;
        self.write(out, Stage::DataBlock, t.data_block).await
    }

    async fn command(
        &mut self,
        command: Command<'_>,
        stage: Stage,
        wait: Duration,
    ) -> Result<(), Failure> {
        let mut line = Vec::with_capacity(64);
        if let Err(e) = command.write_to(&mut line) {
            return Err(self.failure(stage, Problem::UnsafeArgument(e.to_string())));
        }
        self.send_group(&line, stage, wait).await
    }

    /// Writes a command group, once nothing is waiting from the server.
    async fn send_group(
        &mut self,
        bytes: &[u8],
        stage: Stage,
        wait: Duration,
    ) -> Result<(), Failure> {
        self.expect_quiet(stage).await?;
        self.write(bytes, stage, wait).await
    }

    /// Where no reply is due: anything already read, or waiting on the socket now, is a
    /// protocol error that drops the connection (logged once, CSM3020W).
    async fn expect_quiet(&mut self, stage: Stage) -> Result<(), Failure> {
        if self.rbuf.is_empty() {
            let Some(conn) = self.conn.as_mut() else {
                return Err(self.failure(
                    stage,
                    Problem::Connection("connection already closed".into()),
                ));
            };
            match conn.read_now(&mut self.rbuf).await {
                Ok(None) => return Ok(()),
                Ok(Some(0)) => {
                    self.conn = None;
                    return Err(
                        self.failure(stage, Problem::Connection("closed by the server".into()))
                    );
                }
                Ok(Some(_)) => {}
                Err(e) => {
                    self.conn = None;
                    return Err(self.failure(stage, Problem::Connection(e.to_string())));
                }
            }
        }
        let shown: String = self
            .rbuf
            .iter()
            .take(80)
            .flat_map(|&b| std::ascii::escape_default(b))
            .map(char::from)
            .collect();
        self.rbuf.clear();
        self.parser.reset();
        self.close().await;
        let why = format!("the server sent data where no reply was due (\"{shown}\")");
        tracing::warn!(
            "CSM3020W Target server {} at {stage}: {why}; session dropped",
            self.peer
        );
        Err(self.failure(stage, Problem::Protocol(why)))
    }

    /// True when nothing is waiting from the server (a session kept open between mails
    /// is checked before it is used again); else the session is no longer usable.
    pub async fn is_quiet(&mut self) -> bool {
        self.conn.is_some() && self.expect_quiet(Stage::MailFrom).await.is_ok()
    }

    async fn write(&mut self, bytes: &[u8], stage: Stage, wait: Duration) -> Result<(), Failure> {
        let Some(conn) = self.conn.as_mut() else {
            return Err(self.failure(
                stage,
                Problem::Connection("connection already closed".into()),
            ));
        };
        match timeout(wait, conn.send(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                self.conn = None;
                Err(self.failure(stage, Problem::Connection(e.to_string())))
            }
            Err(_) => {
                self.conn = None;
                Err(self.failure(stage, Problem::Timeout(wait)))
            }
        }
    }

    async fn read_reply(&mut self, stage: Stage, wait: Duration) -> Result<Reply, Failure> {
        let deadline = Instant::now() + wait;
        loop {
            if !self.rbuf.is_empty() {
                match self.parser.parse(&self.rbuf) {
                    Ok(Some((reply, used))) => {
                        self.rbuf.drain(..used);
                        if reply.code == 421 && stage != Stage::Quit {
                            // The server is closing (RFC 5321 §3.8): the session ends
                            // here, with the server's words and this stage; no command
                            // goes on the dead session, no later reply is awaited.
                            self.close().await;
                            return Err(self.failure(stage, Problem::Reply(reply)));
                        }
                        return Ok(reply);
                    }
                    Ok(None) => self.rbuf.clear(),
                    Err(e) => {
                        self.conn = None;
                        return Err(self.failure(stage, Problem::Protocol(e.to_string())));
                    }
                }
            }
            let Some(conn) = self.conn.as_mut() else {
                return Err(self.failure(
                    stage,
                    Problem::Connection("connection already closed".into()),
                ));
            };
            let problem = match timeout_at(deadline, conn.read_some(&mut self.rbuf)).await {
                Ok(Ok(0)) => Problem::Connection("closed by the server".into()),
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => Problem::Connection(e.to_string()),
                Err(_) => Problem::Timeout(wait),
            };
            self.conn = None;
            return Err(self.failure(stage, problem));
        }
    }

    async fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.shutdown().await;
        }
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

/// The indexes among the mail's recipients of `accepted` (indexes among the job's).
fn global_indexes(job: &MailJob, accepted: &[usize]) -> Vec<usize> {
    accepted
        .iter()
        .filter_map(|&i| job.rcpt_index.get(i).copied())
        .collect()
}
