//! One mail's transaction on an open session: MAIL FROM, every RCPT TO, DATA, the text
//! (checked as it is written) and the final ".", with each recipient's result; or, when
//! the server offers CHUNKING and the target's `Chunking` allows it, the text in BDAT
//! chunks instead of DATA (see `bdat.rs`).

use cssmtp_wire::{Command, Reply};
use tokio::sync::oneshot;

use super::Session;
use super::SessionParams;
use crate::config::Timeouts;
use crate::delivery::body::{Body, TextError};
use crate::delivery::outcome::{Failure, Problem, RcptResult, Stage};
use crate::delivery::{MailJob, NotRecorded};

/// Text is sent to the socket in writes of about this size (and BDAT chunks are).
pub(super) const WRITE_BATCH: usize = 64 * 1024;

/// Each RCPT TO command with its recipient's index in the job.
type Rcpts = Vec<(usize, Vec<u8>)>;

/// How the envelope (MAIL, RCPT, DATA) ended.
enum Envelope {
    /// DATA was answered (`data`; None: no DATA, the text goes in BDAT chunks), with
    /// these recipients accepted.
    Answered {
        accepted: Vec<usize>,
        data: Option<Reply>,
    },
    /// No text goes (MAIL refused, or no recipient accepted); `after_354`: the server
    /// already said go ahead to a pipelined DATA.
    Abandoned { after_354: bool },
}

impl Session {
    /// One mail: the envelope, DATA, the text and the final "."; each recipient's
    /// result goes in `results` (by index in `job.recipients`).
    pub(super) async fn transaction(
        &mut self,
        job: &MailJob,
        params: &SessionParams<'_>,
        results: &mut [Option<RcptResult>],
    ) -> Result<(), Failure> {
        let Some((mail, rcpts)) = self.commands(job, results)? else {
            return Ok(());
        };
        let bdat = self.use_chunking && self.caps.chunking;
        let envelope = if self.caps.pipelining {
            self.envelope_pipelined(mail, &rcpts, results, params.timeouts, !bdat)
                .await?
        } else {
            self.envelope_stepwise(&mail, &rcpts, results, params.timeouts, !bdat)
                .await?
        };
        let (accepted, data_reply) = match envelope {
            Envelope::Answered {
                accepted,
                data: Some(data),
            } => (accepted, data),
            Envelope::Answered {
                accepted,
                data: None,
            } => {
                return self
                    .text_and_dot(job, &accepted, results, params.timeouts, true)
                    .await;
            }
            Envelope::Abandoned { after_354 } => return self.abandon(after_354, params).await,
        };
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
        self.text_and_dot(job, &accepted, results, params.timeouts, false)
            .await
    }

    /// The MAIL FROM command and each RCPT TO command with its recipient's index; a
    /// recipient that cannot be sent safely fails alone. None: no recipient is left.
    fn commands(
        &self,
        job: &MailJob,
        results: &mut [Option<RcptResult>],
    ) -> Result<Option<(Vec<u8>, Rcpts)>, Failure> {
        let size = self.caps.size_advertised.then_some(job.size);
        let mut mail = Vec::new();
        if let Err(e) = (Command::MailFrom {
            path: &job.reverse_path,
            size,
            // The worker sends 8-bit text only where 8BITMIME is offered, UTF-8
            // addresses only where SMTPUTF8 is.
            eight_bit: job.eight_bit && self.caps.eight_bit_mime,
            smtputf8: job.smtputf8() && self.caps.smtputf8,
        })
        .write_to(&mut mail)
        {
            return Err(self.failure(Stage::MailFrom, Problem::UnsafeArgument(e.to_string())));
        }
        let mut rcpts: Rcpts = Vec::with_capacity(job.recipients.len());
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
        Ok((!rcpts.is_empty()).then_some((mail, rcpts)))
    }

    /// MAIL, every RCPT and DATA (unless `with_data` is false: BDAT follows) in one
    /// write (PIPELINING); the replies come back in order.
    async fn envelope_pipelined(
        &mut self,
        mut group: Vec<u8>,
        rcpts: &Rcpts,
        results: &mut [Option<RcptResult>],
        t: &Timeouts,
        with_data: bool,
    ) -> Result<Envelope, Failure> {
        for (_, line) in rcpts {
            group.extend_from_slice(line);
        }
        if with_data {
            group.extend_from_slice(b"DATA\r\n");
        }
        self.send_group(&group, Stage::MailFrom, t.mail_cmd).await?;
        let mail_reply = self.read_reply(Stage::MailFrom, t.mail_cmd).await?;
        let mut rcpt_replies = Vec::with_capacity(rcpts.len());
        for _ in rcpts {
            rcpt_replies.push(self.read_reply(Stage::RcptTo, t.rcpt_cmd).await?);
        }
        let data = match with_data {
            true => Some(self.read_reply(Stage::Data, t.data_cmd).await?),
            false => None,
        };
        let after_354 = data.as_ref().is_some_and(|d| d.code == 354);
        if !mail_reply.is_positive() {
            self.fail_all(results, rcpts, Stage::MailFrom, &mail_reply);
            return Ok(Envelope::Abandoned { after_354 });
        }
        let mut accepted = Vec::new();
        for ((i, _), reply) in rcpts.iter().zip(rcpt_replies) {
            self.record_rcpt(results, *i, reply, &mut accepted);
        }
        if accepted.is_empty() {
            return Ok(Envelope::Abandoned { after_354 });
        }
        Ok(Envelope::Answered { accepted, data })
    }

    /// MAIL, each RCPT and DATA one at a time, each waiting for its reply.
    async fn envelope_stepwise(
        &mut self,
        mail: &[u8],
        rcpts: &Rcpts,
        results: &mut [Option<RcptResult>],
        t: &Timeouts,
        with_data: bool,
    ) -> Result<Envelope, Failure> {
        let abandoned = Envelope::Abandoned { after_354: false };
        self.send_group(mail, Stage::MailFrom, t.mail_cmd).await?;
        let mail_reply = self.read_reply(Stage::MailFrom, t.mail_cmd).await?;
        if !mail_reply.is_positive() {
            self.fail_all(results, rcpts, Stage::MailFrom, &mail_reply);
            return Ok(abandoned);
        }
        let mut accepted = Vec::new();
        for (i, line) in rcpts {
            self.send_group(line, Stage::RcptTo, t.rcpt_cmd).await?;
            let reply = self.read_reply(Stage::RcptTo, t.rcpt_cmd).await?;
            self.record_rcpt(results, *i, reply, &mut accepted);
        }
        if accepted.is_empty() {
            return Ok(abandoned);
        }
        if !with_data {
            return Ok(Envelope::Answered {
                accepted,
                data: None,
            });
        }
        self.send_group(b"DATA\r\n", Stage::Data, t.data_cmd)
            .await?;
        let data = self.read_reply(Stage::Data, t.data_cmd).await?;
        Ok(Envelope::Answered {
            accepted,
            data: Some(data),
        })
    }

    /// After the 354 (or, `bdat`, after the envelope): the owner's record, the text, the
    /// final "." (or `BDAT n LAST`) and its reply, for the `accepted` recipients.
    async fn text_and_dot(
        &mut self,
        job: &MailJob,
        accepted: &[usize],
        results: &mut [Option<RcptResult>],
        t: &Timeouts,
        bdat: bool,
    ) -> Result<(), Failure> {
        // The owner records that these recipients may get the mail once the final "."
        // goes: before it goes.
        let rcpts = match &job.ack {
            Some(_) => global_indexes(job, accepted),
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
        // A BDAT chunk before the last one refused: its reply is the mail's, at the text.
        let mut stage = Stage::DataTerm;
        let replied = match self.send_text(job, t, sent, bdat).await {
            Ok(None) => self.read_reply(Stage::DataTerm, t.data_term).await,
            Ok(Some(refused)) => {
                stage = Stage::DataBlock;
                Ok(refused)
            }
            Err(failure) => Err(failure),
        };
        if replied.is_ok() && stage == Stage::DataTerm {
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
        for i in accepted {
            let result = if final_reply.is_positive() {
                RcptResult::Delivered {
                    target,
                    reply: final_reply.clone(),
                }
            } else {
                RcptResult::failed(self.failure(stage, Problem::Reply(final_reply.clone())))
            };
            if let Some(slot) = results.get_mut(*i) {
                *slot = Some(result);
            }
        }
        if stage == Stage::DataBlock {
            // The server refused a chunk and discarded the rest (RFC 3030 §4.2): the
            // transaction is reset before the next one.
            self.send_group(b"RSET\r\n", Stage::Rset, t.any_cmd).await?;
            let reply = self.read_reply(Stage::Rset, t.any_cmd).await?;
            if !reply.is_positive() {
                self.close().await;
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
    /// With `bdat`, the text goes in BDAT chunks (see `bdat.rs`); Some: the refusal of
    /// a chunk before the last, which ends the mail's transaction.
    async fn send_text(
        &mut self,
        job: &MailJob,
        t: &Timeouts,
        durable: Option<oneshot::Receiver<()>>,
        bdat: bool,
    ) -> Result<Option<Reply>, Failure> {
        let mut out = std::mem::take(&mut self.wbuf);
        let mut raw = std::mem::take(&mut self.raw);
        let result = if bdat {
            self.stream_bdat(job, t, &mut out, &mut raw, durable).await
        } else {
            self.stream_text(job, t, &mut out, &mut raw, durable)
                .await
                .map(|()| None)
        };
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
        let (mut body, mut text) = self.begin_text(job, out).await?;
        while self.next_text(&mut body, raw, out, &mut text).await? {
            if out.len() >= WRITE_BATCH {
                self.write(out, Stage::DataBlock, t.data_block).await?;
                out.clear();
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
}

/// A mail's text on its way to this target: the same for DATA and BDAT.
pub(super) struct TextOut {
    /// Text translated from EBCDIC goes in ISO-8859-1 (the target's `Charset`).
    latin1: bool,
    /// Lines gone so far (to name the line of a character ISO-8859-1 lacks).
    lines: u64,
}

impl Session {
    /// Starts a mail's text in `out` with the header fields cssmtp adds (checked); the
    /// reader of the rest.
    pub(super) async fn begin_text(
        &mut self,
        job: &MailJob,
        out: &mut Vec<u8>,
    ) -> Result<(Body, TextOut), Failure> {
        if let Err(why) = cssmtp_wire::data::check_text(&job.headers) {
            self.close().await;
            return Err(self.failure(
                Stage::DataBlock,
                Problem::TextChanged(format!("the header fields cssmtp adds have {why}")),
            ));
        }
        out.extend_from_slice(&job.headers);
        // Text translated from EBCDIC goes in the target's Charset (UTF-8 as read).
        let latin1 = self.charset == crate::config::Charset::Latin1
            && matches!(&job.text, crate::delivery::MailText::Spool { spool, .. } if spool.translated);
        Ok((Body::new(&job.text), TextOut { latin1, lines: 0 }))
    }

    /// Appends the next chunk of the text (wire form) to `out`, in the target's
    /// Charset; false at its end. A text that cannot be completed, or holds a character
    /// the Charset lacks (never sent as '?'), drops the connection before its end (no
    /// final "." nor `LAST`: the server discards the partial mail) and fails the mail.
    pub(super) async fn next_text(
        &mut self,
        body: &mut Body,
        raw: &mut Vec<u8>,
        out: &mut Vec<u8>,
        text: &mut TextOut,
    ) -> Result<bool, Failure> {
        let start = out.len();
        match body.next_chunk(raw, out).await {
            Ok(true) => {
                if text.latin1
                    && let Err(why) =
                        crate::delivery::charset::to_latin1(out, start, &mut text.lines)
                {
                    self.close().await;
                    let why = format!(
                        "{why}, which ISO8859-1 (the Charset of target {}) cannot represent; mail not sent",
                        self.peer
                    );
                    let enhanced = cssmtp_wire::EnhancedStatus {
                        class: 5,
                        subject: 6,
                        detail: 5,
                    };
                    let reply = cssmtp_wire::Reply::from_string(554, Some(enhanced), why);
                    return Err(self.failure(Stage::DataBlock, Problem::Reply(reply)));
                }
                Ok(true)
            }
            Ok(false) => Ok(false),
            Err(e) => {
                self.close().await;
                let problem = match e {
                    TextError::Changed(why) => Problem::TextChanged(why),
                    TextError::Io(_) => Problem::Connection(e.to_string()),
                };
                Err(self.failure(Stage::DataBlock, problem))
            }
        }
    }
}

/// The indexes among the mail's recipients of `accepted` (indexes among the job's).
fn global_indexes(job: &MailJob, accepted: &[usize]) -> Vec<usize> {
    accepted
        .iter()
        .filter_map(|&i| job.rcpt_index.get(i).copied())
        .collect()
}
