//! One SMTP session with the sink: the greeting, then command by command, each answered
//! as the options, the recipients' scripts, the armed gates and the fault mix say.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use smtp_proto::{
    EXT_8BIT_MIME, EXT_CHUNKING, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING, EXT_SIZE,
    EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse, MAIL_BODY_8BITMIME, MAIL_SMTPUTF8, MailFrom,
    Request,
};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsStream};

use super::options::{Cut, Faults, SinkOptions};
use super::script::{AtRcpt, CLOSING, EARLY_250, FaultAt, Scripted, fault_reply, script_for};
use super::shared::{Gate, Shared};
use super::store::{Arrival, Envelope, Verdict, finish_mail};
use super::text::read_data;
use crate::net::Conn;

/// What the session does after a command.
enum Next {
    /// Goes on with the next command.
    Go,
    /// Ends (the connection was closed, or is dropped).
    End,
    /// Holds the connection open without a word until the sink stops (a gate).
    Hold,
}

/// The state of one session.
struct Session {
    peer: SocketAddr,
    options: Arc<SinkOptions>,
    shared: Arc<Shared>,
    /// Bytes read and not yet handled.
    buf: Vec<u8>,
    /// Replies not yet sent.
    out: Vec<u8>,
    helo: String,
    env: Envelope,
    /// What the recipients' scripts do to the mail under way.
    after_data: Scripted,
    /// Mails accepted on this session (for `max_mails_per_session`).
    session_mails: u32,
    /// The text of the mail under way, from its BDAT chunks so far.
    bdat_data: Vec<u8>,
}

/// A BDAT chunk larger than this is refused and the connection closed.
const MAX_BDAT_CHUNK: usize = 64 << 20;

/// Serves one connection until it ends.
pub(super) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    options: Arc<SinkOptions>,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let mut conn = Conn::Plain(stream);
    if !greet(&mut conn, &options, &shared).await {
        return;
    }
    let mut session = Session {
        peer,
        options,
        shared,
        buf: Vec::with_capacity(8192),
        out: Vec::new(),
        helo: String::new(),
        env: Envelope::default(),
        after_data: Scripted::Accept,
        session_mails: 0,
        bdat_data: Vec::new(),
    };
    loop {
        // Answer every complete command line in the buffer, then send the replies.
        while let Some(lf) = session.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = session.buf.drain(..=lf).collect();
            let next = match Request::parse(&mut line.iter()) {
                // STARTTLS replaces the connection itself.
                Ok(Request::StartTls) => {
                    let Some(upgraded) = session.start_tls(conn).await else {
                        return;
                    };
                    conn = upgraded;
                    Next::Go
                }
                request => session.command(request, &mut conn).await,
            };
            match next {
                Next::Go => {}
                Next::End => return,
                Next::Hold => return std::future::pending().await,
            }
        }
        if !session.flush(&mut conn).await || session.buf.len() > 64 * 1024 {
            return;
        }
        match conn.read_some(&mut session.buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Greets the client; false when the connection is to end (a `421` fault, or an error).
async fn greet(conn: &mut Conn, options: &SinkOptions, shared: &Shared) -> bool {
    if shared.chance(options.faults.as_ref(), |f| f.greeting_421) {
        shared.logged(|l| l.greetings_421 += 1);
        let _ = conn
            .send(b"421 4.3.2 Service not available, closing (injected fault)\r\n")
            .await;
        conn.shutdown().await;
        return false;
    }
    let greeting = format!("220 {} ESMTP cssmtp sink\r\n", options.hostname);
    conn.send(greeting.as_bytes()).await.is_ok()
}

impl Session {
    fn faults(&self) -> Option<&Faults> {
        self.options.faults.as_ref()
    }

    /// Queues `reply` to be sent with the others of this round.
    fn reply(&mut self, reply: &[u8]) -> Next {
        self.out.extend_from_slice(reply);
        Next::Go
    }

    /// Sends the replies queued (after a delay when the fault mix says so); false when
    /// the connection failed.
    async fn flush(&mut self, conn: &mut Conn) -> bool {
        if self.out.is_empty() {
            return true;
        }
        self.shared.maybe_delay(self.faults()).await;
        if conn.send(&self.out).await.is_err() {
            return false;
        }
        self.out.clear();
        true
    }

    /// Sends what is queued, then closes the connection.
    async fn close(&mut self, conn: &mut Conn) -> Next {
        let _ = conn.send(&self.out).await;
        conn.shutdown().await;
        Next::End
    }

    /// Answers one command (all but STARTTLS).
    async fn command(
        &mut self,
        request: Result<Request<Cow<'_, str>>, smtp_proto::Error>,
        conn: &mut Conn,
    ) -> Next {
        match request {
            Ok(Request::Ehlo { host }) if self.options.ehlo => {
                self.ehlo(host.into_owned(), conn.is_tls())
            }
            Ok(Request::Ehlo { .. }) => self.reply(b"502 5.5.1 EHLO not implemented\r\n"),
            Ok(Request::Helo { host }) => {
                self.helo = host.into_owned();
                self.env = Envelope::default();
                let reply = format!("250 {}\r\n", self.options.hostname);
                self.reply(reply.as_bytes())
            }
            Ok(Request::Mail { from }) => self.mail(from, conn).await,
            Ok(Request::Rcpt { to }) => self.rcpt(to.address.into_owned(), conn).await,
            Ok(Request::Data) => self.data(conn).await,
            Ok(Request::Bdat {
                chunk_size,
                is_last,
            }) => self.bdat(chunk_size, is_last, conn).await,
            Ok(Request::Rset) => {
                self.env = Envelope::default();
                self.bdat_data = Vec::new();
                self.after_data = Scripted::Accept;
                self.reply(b"250 2.0.0 Reset\r\n")
            }
            Ok(Request::Noop { .. }) => self.reply(b"250 2.0.0 OK\r\n"),
            Ok(Request::Quit) => {
                self.out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                self.close(conn).await
            }
            Ok(_) => self.reply(b"502 5.5.1 Command not implemented\r\n"),
            Err(_) => self.reply(b"500 5.5.2 Syntax error\r\n"),
        }
    }

    /// EHLO: the capabilities the options offer.
    fn ehlo(&mut self, host: String, tls: bool) -> Next {
        self.helo = host;
        self.env = Envelope::default();
        let options = &self.options;
        let mut ehlo = EhloResponse::new(options.hostname.as_str());
        ehlo.capabilities = EXT_ENHANCED_STATUS_CODES;
        if options.eight_bit_mime {
            ehlo.capabilities |= EXT_8BIT_MIME;
        }
        if options.smtputf8 {
            ehlo.capabilities |= EXT_SMTP_UTF8;
        }
        if options.chunking {
            ehlo.capabilities |= EXT_CHUNKING;
        }
        if options.pipelining {
            ehlo.capabilities |= EXT_PIPELINING;
        }
        if let Some(size) = options.size {
            ehlo.capabilities |= EXT_SIZE;
            ehlo.size = usize::try_from(size).unwrap_or(usize::MAX);
        }
        if options.tls.is_some() && !tls {
            ehlo.capabilities |= EXT_START_TLS;
        }
        let _ = ehlo.write(&mut self.out);
        Next::Go
    }

    /// STARTTLS: the TLS connection, or the same one when TLS is not offered; None when
    /// the connection ends.
    async fn start_tls(&mut self, mut conn: Conn) -> Option<Conn> {
        let Some(tls) = self.options.tls.clone().filter(|_| !conn.is_tls()) else {
            self.out
                .extend_from_slice(b"502 5.5.1 STARTTLS not available\r\n");
            return Some(conn);
        };
        self.out
            .extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
        if conn.send(&self.out).await.is_err() {
            return None;
        }
        self.out.clear();
        self.buf.clear();
        if self.shared.chance(self.faults(), |f| f.tls_fail) {
            self.shared.logged(|l| l.tls_fails += 1);
            conn.shutdown().await;
            return None;
        }
        let Conn::Plain(tcp) = conn else { return None };
        let stream = TlsAcceptor::from(tls).accept(tcp).await.ok()?;
        self.helo.clear();
        self.env = Envelope::default();
        Some(Conn::Tls(Box::new(TlsStream::Server(stream))))
    }

    /// MAIL FROM.
    async fn mail(&mut self, from: MailFrom<Cow<'_, str>>, conn: &mut Conn) -> Next {
        let options = Arc::clone(&self.options);
        let eight_bit = from.flags & MAIL_BODY_8BITMIME != 0;
        let smtputf8 = from.flags & MAIL_SMTPUTF8 != 0;
        if self.helo.is_empty() {
            self.reply(b"503 5.5.1 Say HELO or EHLO first\r\n")
        } else if self.env.mail_from.is_some() {
            self.reply(b"503 5.5.1 Nested MAIL command\r\n")
        } else if options
            .max_mails_per_session
            .is_some_and(|max| self.session_mails >= max)
        {
            self.shared.limit_refusals.fetch_add(1, Ordering::Relaxed);
            if options.close_at_limit {
                self.out
                    .extend_from_slice(b"421 4.7.0 Too many messages in this session, closing\r\n");
                return self.close(conn).await;
            }
            self.reply(b"452 4.5.3 Too many messages in this session\r\n")
        } else if options.scripted && from.address.to_ascii_lowercase().starts_with("reject") {
            self.reply(b"550 5.7.1 Sender refused (scripted)\r\n")
        } else if options
            .size
            .is_some_and(|max| max > 0 && from.size as u64 > max)
        {
            self.reply(b"552 5.3.4 Message size exceeds fixed limit\r\n")
        } else if !options.eight_bit_mime && eight_bit {
            self.reply(b"555 5.5.4 BODY=8BITMIME not supported\r\n")
        } else if !options.smtputf8 && smtputf8 {
            self.reply(b"555 5.5.4 SMTPUTF8 not supported\r\n")
        } else if !smtputf8 && !from.address.is_ascii() {
            self.reply(b"553 5.6.7 Non-ASCII address without SMTPUTF8\r\n")
        } else if let Some(fault) = self.shared.reply_fault(self.faults()) {
            self.reply(fault_reply(fault, FaultAt::MailFrom).as_bytes())
        } else {
            self.env.mail_from = Some(from.address.into_owned());
            self.env.size = from.size as u64;
            self.env.body_8bitmime = eight_bit;
            self.env.smtputf8 = smtputf8;
            self.reply(b"250 2.1.0 Sender OK\r\n")
        }
    }

    /// RCPT TO.
    async fn rcpt(&mut self, address: String, conn: &mut Conn) -> Next {
        if self.env.mail_from.is_none() {
            return self.reply(b"503 5.5.1 Need MAIL before RCPT\r\n");
        }
        if !self.env.smtputf8 && !address.is_ascii() {
            return self.reply(b"553 5.6.7 Non-ASCII address without SMTPUTF8\r\n");
        }
        if self
            .options
            .max_rcpts
            .is_some_and(|max| self.env.rcpt_to.len() >= max as usize)
        {
            self.shared.limit_refusals.fetch_add(1, Ordering::Relaxed);
            return self.reply(b"452 4.5.3 Too many recipients\r\n");
        }
        let script = if self.options.scripted {
            script_for(&address, &self.shared)
        } else {
            AtRcpt::Accept(Scripted::Accept)
        };
        match script {
            AtRcpt::Drop => self.close(conn).await,
            AtRcpt::Refuse(reply) => self.reply(reply.as_bytes()),
            AtRcpt::Accept(_) if let Some(fault) = self.shared.reply_fault(self.faults()) => {
                self.reply(fault_reply(fault, FaultAt::RcptTo).as_bytes())
            }
            AtRcpt::Accept(script) => {
                if matches!(self.after_data, Scripted::Accept) {
                    self.after_data = script;
                }
                self.env.rcpt_to.push(address);
                self.reply(b"250 2.1.5 Recipient OK\r\n")
            }
        }
    }

    /// DATA: the gates and scripts that act before the text, then the text itself.
    async fn data(&mut self, conn: &mut Conn) -> Next {
        if self.env.rcpt_to.is_empty() {
            return self.reply(b"554 5.5.1 No valid recipients\r\n");
        }
        if let Some(fault) = self.shared.reply_fault(self.faults()) {
            return self.reply(fault_reply(fault, FaultAt::Data).as_bytes());
        }
        if self.shared.pass(Gate::AtData, &self.env.rcpt_to) {
            let _ = conn.send(&self.out).await;
            return Next::Hold;
        }
        if self.shared.pass(Gate::PauseAtData, &self.env.rcpt_to) {
            if conn.send(&self.out).await.is_err() {
                return Next::End;
            }
            self.out.clear();
            self.shared.wait_release().await;
        }
        if matches!(self.after_data, Scripted::CloseAtData) {
            self.out.extend_from_slice(CLOSING.as_bytes());
            return self.close(conn).await;
        }
        self.out
            .extend_from_slice(b"354 Start mail input; end with <CRLF>.<CRLF>\r\n");
        if matches!(self.after_data, Scripted::EarlyReply) {
            self.out.extend_from_slice(EARLY_250.as_bytes());
        }
        if conn.send(&self.out).await.is_err() {
            return Next::End;
        }
        self.out.clear();
        let Some(text) = read_data(conn, &mut self.buf, &self.options).await else {
            return Next::End;
        };
        self.text_received(text, conn).await
    }

    /// BDAT (RFC 3030): the chunk's bytes are read whatever the answer; the last one
    /// completes the text, which then goes as after the final "." of DATA.
    async fn bdat(&mut self, size: usize, last: bool, conn: &mut Conn) -> Next {
        if size > MAX_BDAT_CHUNK {
            self.out
                .extend_from_slice(b"552 5.3.4 BDAT chunk too large, closing\r\n");
            return self.close(conn).await;
        }
        // Replies queued go before waiting for the chunk's bytes.
        if !self.flush(conn).await {
            return Next::End;
        }
        while self.buf.len() < size {
            match conn.read_some(&mut self.buf).await {
                Ok(0) | Err(_) => return Next::End,
                Ok(_) => {}
            }
        }
        let chunk: Vec<u8> = self.buf.drain(..size).collect();
        if !self.options.chunking {
            return self.reply(b"502 5.5.1 BDAT not offered\r\n");
        }
        if self.env.mail_from.is_none() {
            return self.reply(b"503 5.5.1 Need MAIL before BDAT\r\n");
        }
        if self.env.rcpt_to.is_empty() {
            return self.reply(b"554 5.5.1 No valid recipients\r\n");
        }
        if !last
            && self.options.scripted
            && self
                .env
                .rcpt_to
                .iter()
                .any(|r| r.to_ascii_lowercase().starts_with("bdat-reject"))
        {
            // Scripted: a chunk before the last refused; the transaction is over, the
            // chunks that follow are refused too (no MAIL), RFC 3030 §4.2.
            self.env = Envelope::default();
            self.bdat_data = Vec::new();
            self.after_data = Scripted::Accept;
            return self.reply(b"554 5.6.0 BDAT chunk refused (scripted)\r\n");
        }
        self.bdat_data.extend_from_slice(&chunk);
        self.env.bdat_chunks.push(size as u64);
        if !last {
            let reply = format!("250 2.0.0 {size} octets received\r\n");
            return self.reply(reply.as_bytes());
        }
        let text = std::mem::take(&mut self.bdat_data);
        self.text_received(text, conn).await
    }

    /// The text's final "." came: the faults, the mail's verdict and the gate after it.
    async fn text_received(&mut self, text: Vec<u8>, conn: &mut Conn) -> Next {
        let script = std::mem::replace(&mut self.after_data, Scripted::Accept);
        let rcpt_to = self.env.rcpt_to.clone();
        if self.shared.chance(self.faults(), |f| f.drop_before_dot) {
            self.shared.logged(|l| l.drops_before_dot += 1);
            conn.shutdown().await;
            return Next::End;
        }
        if let Some(fault) = self.shared.reply_fault(self.faults()) {
            self.env = Envelope::default();
            return self.reply(fault_reply(fault, FaultAt::Dot).as_bytes());
        }
        self.session_mails = self.session_mails.saturating_add(1);
        let arrival = Arrival {
            helo: &self.helo,
            peer: self.peer,
            tls: conn.is_tls(),
        };
        let envelope = std::mem::take(&mut self.env);
        let verdict = finish_mail(
            text,
            envelope,
            &arrival,
            script,
            &self.options,
            &self.shared,
        );
        match verdict {
            Verdict::Queued { .. } if self.shared.pass(Gate::AfterDot, &rcpt_to) => Next::Hold,
            Verdict::Queued { id, .. }
                if self.shared.chance(self.faults(), |f| f.drop_after_dot) =>
            {
                self.shared
                    .logged(|l| l.dropped_after_dot.push(Cut { id, rcpt_to }));
                conn.shutdown().await;
                Next::End
            }
            Verdict::Closing => {
                self.out.extend_from_slice(verdict.reply().as_bytes());
                self.close(conn).await
            }
            Verdict::Drop => {
                conn.shutdown().await;
                Next::End
            }
            Verdict::Queued { .. } | Verdict::Refused(_) => self.reply(verdict.reply().as_bytes()),
        }
    }
}
