//! The driver of a generated mail (a notification, an error report): an ordinary queued
//! mail of the queue core with a one-attempt policy.
//!
//! The mail is one [`FileQueue`] of its own, made with [`Policy::ONE_ATTEMPT`] (no
//! retry, no extended retry, nothing held): its [`Effect::Send`] goes to the delivery
//! queue like any spool mail's, its results go back into the machine, and the machine
//! decides. What would be a return for a spool mail ([`Effect::Return`]) is, for a
//! generated mail, never a notification about a notification: the driver hands its
//! failures back to the composer ([`crate::notify::Notifier`]), which stores them as a
//! dead letter. Nothing of a generated mail is recorded durably ([`Effect::Record`]):
//! it lives only as long as this call.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::state::{Effect, Event, FileQueue, NewMail, Policy};
use crate::delivery::{MailJob, MailKey, MailText, RcptResult};

/// The one mail of a generated mail's queue.
const ORDINAL: u32 = 1;

/// Why a generated mail did not reach its recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// It never reached a connection (cssmtp is stopping): nothing was attempted.
    NotSent(String),
    /// It was tried once: one line per recipient that did not get it. For a spool mail
    /// this would be its return; for a generated mail it becomes a dead letter.
    Failed(Vec<String>),
}

/// A generated mail, wire form (dot-stuffed, CRLF lines).
pub struct GeneratedMail<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    pub wire: &'a [u8],
    /// Only over TLS (the router and the session enforce it as for spool mail).
    pub needs_tls: bool,
}

/// The generated-mail driver: where its attempts go (the delivery queue, as for spool
/// mail) and when to give up (cssmtp stopping). The composer holds this, not the queue.
#[derive(Clone)]
pub struct Driver {
    queue: async_channel::Sender<MailJob>,
    stop: CancellationToken,
}

impl Driver {
    pub fn new(queue: async_channel::Sender<MailJob>, stop: CancellationToken) -> Self {
        Self { queue, stop }
    }

    /// Sends a generated mail through the queue core, once; the failures when any
    /// recipient did not get it.
    pub async fn send(&self, mail: GeneratedMail<'_>) -> Result<(), SendFailure> {
        send(&self.queue, &self.stop, mail).await
    }
}

/// Sends a generated mail through the queue core, once; the failures when any recipient
/// did not get it.
async fn send(
    queue: &async_channel::Sender<MailJob>,
    stop: &CancellationToken,
    mail: GeneratedMail<'_>,
) -> Result<(), SendFailure> {
    let mut machine = FileQueue::<()>::new(Policy::ONE_ATTEMPT);
    let mut effects = machine.apply(Event::Accept(NewMail {
        ordinal: ORDINAL,
        line: 0,
        reverse_path: mail.from.to_owned(),
        size: mail.wire.len() as u64,
        rcpts: mail.to.iter().map(|a| (a.clone(), 0)).collect(),
        rejected: Vec::new(),
        recovered: None,
        payload: (),
    }));
    effects.extend(machine.apply(Event::ParseDone));
    let mut failures = Vec::new();
    let mut returned = false;
    while !effects.is_empty() {
        let mut next = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send { mail: m, rcpts } => {
                    let mut results = attempt(queue, stop, &mail, &rcpts).await?;
                    // Every recipient sent gets a result (a missing one is a failure).
                    for &i in &rcpts {
                        if !results.iter().any(|(r, _)| *r == i) {
                            results.push((i, super::state::no_result()));
                        }
                    }
                    failures.extend(failure_lines(mail.to, &results));
                    next.extend(machine.apply(Event::Delivered {
                        mail: m,
                        results,
                        now: std::time::Instant::now(),
                    }));
                }
                // Never a notification about a notification: the composer dead-letters it.
                Effect::Return { mail: m } => {
                    returned = true;
                    next.extend(machine.apply(Event::Returned {
                        mail: m,
                        done: true,
                    }));
                }
                // One attempt, nothing parked or held, nothing durable: the rest is the
                // machine's bookkeeping.
                Effect::Record(_)
                | Effect::HoldInDoubt { .. }
                | Effect::Park { .. }
                | Effect::MailFinal { .. }
                | Effect::Forget { .. }
                | Effect::Note(_)
                | Effect::FileDone
                | Effect::Repark { .. } => {}
            }
        }
        effects = next;
    }
    if returned || !failures.is_empty() {
        Err(SendFailure::Failed(failures))
    } else if machine.is_released() {
        Ok(())
    } else {
        Err(SendFailure::NotSent(
            "cssmtp stopped before it was sent".into(),
        ))
    }
}

/// One attempt: the mail to the delivery queue, its results back.
async fn attempt(
    queue: &async_channel::Sender<MailJob>,
    stop: &CancellationToken,
    mail: &GeneratedMail<'_>,
    rcpts: &[usize],
) -> Result<Vec<(usize, RcptResult)>, SendFailure> {
    let (reply, mut results) = mpsc::unbounded_channel();
    let text = MailText::Memory(Arc::from(mail.wire));
    let job = MailJob {
        key: MailKey::GENERATED,
        reverse_path: mail.from.to_owned(),
        recipients: rcpts
            .iter()
            .filter_map(|&i| mail.to.get(i).cloned())
            .collect(),
        rcpt_index: rcpts.to_vec(),
        needs_tls: mail.needs_tls,
        eight_bit: text.eight_bit(),
        headers: Arc::from(Vec::new()),
        size: text.message_size(),
        text,
        reply,
        ack: None,
    };
    let sent = tokio::select! {
        () = stop.cancelled() => false,
        sent = queue.send(job) => sent.is_ok(),
    };
    if !sent {
        return Err(SendFailure::NotSent(
            "cssmtp stopped before it could be sent".into(),
        ));
    }
    match results.recv().await {
        Some(outcome) => Ok(outcome.results),
        None => Err(SendFailure::NotSent(
            "cssmtp stopped before it was sent".into(),
        )),
    }
}

/// One line per recipient that did not get the mail, as its dead letter says it.
fn failure_lines(to: &[String], results: &[(usize, RcptResult)]) -> Vec<String> {
    results
        .iter()
        .filter_map(|(i, r)| match r {
            RcptResult::Delivered { .. } => None,
            RcptResult::Retry(f) | RcptResult::Undeliverable(f) => {
                Some(format!("<{}>: {f}", to.get(*i).map_or("?", String::as_str)))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::MailOutcome;
    use crate::delivery::outcome::{Failure, Problem, Stage};
    use cssmtp_wire::Reply;

    fn reply(code: u16) -> RcptResult {
        let target = "192.0.2.1:25".parse().ok();
        match code {
            250 => RcptResult::Delivered {
                target: target.unwrap_or_else(|| unreachable!()),
                reply: Reply::new(250, None, "ok"),
            },
            400..=499 => RcptResult::Retry(Failure::new(
                Stage::DataTerm,
                target,
                Problem::Reply(Reply::new(code, None, "later")),
            )),
            _ => RcptResult::Undeliverable(Failure::new(
                Stage::DataTerm,
                target,
                Problem::Reply(Reply::new(code, None, "no")),
            )),
        }
    }

    /// The delivery's side of the queue: answers each job with `codes` (one per
    /// recipient); counts the jobs.
    fn delivery(
        codes: Vec<u16>,
    ) -> (
        async_channel::Sender<MailJob>,
        tokio::task::JoinHandle<usize>,
    ) {
        let (tx, rx) = async_channel::unbounded::<MailJob>();
        let worker = tokio::spawn(async move {
            let mut jobs = 0;
            while let Ok(job) = rx.recv().await {
                jobs += 1;
                assert_eq!(job.key, MailKey::GENERATED);
                let results = (job.rcpt_index.iter().zip(&codes))
                    .map(|(&i, &c)| (i, reply(c)))
                    .collect();
                let _ = job.reply.send(MailOutcome {
                    key: job.key,
                    results,
                });
            }
            jobs
        });
        (tx, worker)
    }

    async fn send_to(codes: Vec<u16>, to: &[String]) -> (Result<(), SendFailure>, usize) {
        let (tx, worker) = delivery(codes);
        let mail = GeneratedMail {
            from: "",
            to,
            wire: b"Subject: x\r\n\r\nbody\r\n",
            needs_tls: false,
        };
        let sent = Driver::new(tx.clone(), CancellationToken::new())
            .send(mail)
            .await;
        drop(tx);
        (sent, worker.await.unwrap_or(usize::MAX))
    }

    fn to(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("r{i}@example.com")).collect()
    }

    #[tokio::test]
    async fn a_delivered_generated_mail_is_sent_once() {
        assert_eq!(send_to(vec![250, 250], &to(2)).await, (Ok(()), 1));
    }

    #[tokio::test]
    async fn a_temporary_failure_is_not_retried_and_comes_back_for_the_dead_letter() {
        let (sent, jobs) = send_to(vec![250, 451], &to(2)).await;
        assert_eq!(jobs, 1, "one attempt");
        let Err(SendFailure::Failed(lines)) = sent else {
            panic!("{sent:?}");
        };
        assert_eq!(lines.len(), 1);
        assert!(
            lines
                .iter()
                .all(|l| l.starts_with("<r1@example.com>: ") && l.contains("451"))
        );
    }

    #[tokio::test]
    async fn a_permanent_failure_comes_back_for_the_dead_letter() {
        let (sent, jobs) = send_to(vec![550], &to(1)).await;
        assert_eq!(jobs, 1);
        assert!(matches!(sent, Err(SendFailure::Failed(l)) if l.len() == 1));
    }

    #[tokio::test]
    async fn a_missing_result_is_a_failure() {
        let (sent, jobs) = send_to(Vec::new(), &to(1)).await;
        assert_eq!(jobs, 1);
        assert!(matches!(sent, Err(SendFailure::Failed(l)) if l.len() == 1));
    }

    #[tokio::test]
    async fn stopping_sends_nothing() {
        let (tx, rx) = async_channel::bounded::<MailJob>(1);
        let stop = CancellationToken::new();
        stop.cancel();
        // The queue is full: only the stop can end the wait.
        let (reply, _keep) = mpsc::unbounded_channel();
        let filler = MailJob {
            key: MailKey::GENERATED,
            reverse_path: String::new(),
            recipients: Vec::new(),
            rcpt_index: Vec::new(),
            needs_tls: false,
            eight_bit: false,
            headers: Arc::from(Vec::new()),
            text: MailText::Memory(Arc::from(&b""[..])),
            size: 0,
            reply,
            ack: None,
        };
        assert!(tx.send(filler).await.is_ok());
        let recipients = to(1);
        let mail = GeneratedMail {
            from: "",
            to: &recipients,
            wire: b"x\r\n",
            needs_tls: false,
        };
        let sent = send(&tx, &stop, mail).await;
        assert!(matches!(sent, Err(SendFailure::NotSent(_))), "{sent:?}");
        assert_eq!(rx.len(), 1, "nothing more queued");
    }
}
