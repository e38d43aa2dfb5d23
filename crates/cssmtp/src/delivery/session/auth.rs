//! SMTP AUTH on a session (RFC 4954): the exchange of [`cssmtp_wire::sasl`], once per
//! session, after EHLO (and STARTTLS). The lines carrying credentials are never logged
//! and never appear in a failure: only the server's replies do.

use cssmtp_wire::Reply;
use cssmtp_wire::sasl::Exchange;

use super::{Session, SessionParams};
use crate::delivery::outcome::{Failure, Problem, Stage};

/// More `334` challenges than any mechanism cssmtp speaks needs: a confused server.
const MAX_CHALLENGES: usize = 4;

impl Session {
    /// Logs in with `exchange`. Returns the server's `235` reply.
    ///
    /// # Errors
    /// A [`Failure`] at [`Stage::Auth`]: the server's negative reply (a `535`), or the
    /// connection's failure (the session is then unusable).
    pub async fn authenticate(
        &mut self,
        mut exchange: Exchange,
        params: &SessionParams<'_>,
    ) -> Result<Reply, Failure> {
        let wait = params.timeouts.any_cmd;
        self.send_group(exchange.first_line(), Stage::Auth, wait)
            .await?;
        for _ in 0..=MAX_CHALLENGES {
            let reply = self.read_reply(Stage::Auth, wait).await?;
            match reply.code {
                235 => {
                    self.authenticated = Some(exchange.mechanism());
                    return Ok(reply);
                }
                334 => {
                    let line = exchange.answer();
                    self.send_group(&line, Stage::Auth, wait).await?;
                }
                _ => return Err(self.failure(Stage::Auth, Problem::Reply(reply))),
            }
        }
        self.close().await;
        Err(self.failure(
            Stage::Auth,
            Problem::Protocol("the server kept sending AUTH challenges".into()),
        ))
    }
}
