//! The wire under a session: command groups written once nothing is waiting from the
//! server, replies read within their stage's timeout.

use cssmtp_wire::{Command, Reply};
use tokio::time::{Duration, Instant, timeout, timeout_at};

use super::Session;
use crate::delivery::outcome::{Failure, Problem, Stage};

impl Session {
    pub(super) async fn command(
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
    pub(super) async fn send_group(
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
    pub(super) async fn expect_quiet(&mut self, stage: Stage) -> Result<(), Failure> {
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

    pub(super) async fn write(
        &mut self,
        bytes: &[u8],
        stage: Stage,
        wait: Duration,
    ) -> Result<(), Failure> {
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

    pub(super) async fn read_reply(
        &mut self,
        stage: Stage,
        wait: Duration,
    ) -> Result<Reply, Failure> {
        let deadline = Instant::now() + wait;
        loop {
            if !self.rbuf.is_empty() {
                match self.parser.parse(&self.rbuf) {
                    Ok(Some((reply, used))) => {
                        self.rbuf.drain(..used);
                        let reply = trusted(reply, self.caps.enhanced_status_codes);
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

    pub(super) async fn close(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.shutdown().await;
        }
    }
}

/// The reply with its enhanced status code (RFC 3463) kept only when the server offered
/// ENHANCEDSTATUSCODES (RFC 2034) and the code's class is the reply's (a `250 5.1.1` or a
/// `550 2.0.0` says nothing reliable); otherwise the code goes back into the text, so that
/// the words are kept for logs and `Diagnostic-Code:`, and the status becomes the one
/// cssmtp derives (`X.0.0`).
fn trusted(reply: Reply, offered: bool) -> Reply {
    match reply.enhanced {
        Some(e) if !offered || u16::from(e.class) != reply.code / 100 => {
            Reply::new(reply.code, None, &format!("{e} {}", reply.text()))
        }
        _ => reply,
    }
}

#[cfg(test)]
mod tests {
    use cssmtp_wire::{EnhancedStatus, Reply};

    use super::trusted;

    #[test]
    fn enhanced_codes_are_taken_when_offered_and_of_the_reply_class() {
        let code = |c, s, d| {
            Some(EnhancedStatus {
                class: c,
                subject: s,
                detail: d,
            })
        };
        let offered = trusted(Reply::new(550, code(5, 1, 1), "no such user"), true);
        assert_eq!(offered.enhanced, code(5, 1, 1));
        assert_eq!(offered.to_string(), "550 5.1.1 no such user");
        // Not offered: the code is text, the words are the same.
        let plain = trusted(Reply::new(550, code(5, 1, 1), "no such user"), false);
        assert_eq!(plain.enhanced, None);
        assert_eq!(plain.to_string(), "550 5.1.1 no such user");
        // Offered, but of another class than the reply: not trusted.
        let odd = trusted(Reply::new(250, code(5, 1, 1), "ok"), true);
        assert_eq!(odd.enhanced, None);
        assert_eq!(odd.to_string(), "250 5.1.1 ok");
        let none = trusted(Reply::new(250, None, "ok"), false);
        assert_eq!(none.to_string(), "250 ok");
    }
}
