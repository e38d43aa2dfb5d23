//! Carrying out the queue's effects for one file: delivery, durable records, holding,
//! parking, returns, the file's report, and what people are told (through
//! [`crate::telemetry`]).

use std::sync::Arc;

use super::state::{Effect, Event, Mail, MailSummary, Note};
use super::task::{Payload, Task};
use crate::delivery::{MailJob, MailKey, MailText};
use crate::domain::outcome::MailLife;
use crate::notify::{FailedRecipient, MailOrigin, Original, deadletter};
use crate::retry::extended;
use crate::spool::report::Undeliverable;
use crate::storage::MailCopy;
use crate::telemetry::{At, Event as TelemetryEvent};
use crate::userexit;

/// Undeliverable recipients listed in a report (all are counted).
const MAX_LISTED: usize = 1000;
/// Most of a mail's header read for its notification: a header of any size costs fixed
/// memory (a longer one is cut).
const HEADER_MAX: u64 = 256 * 1024;

impl Task {
    /// Carries out effects in order; an effect answered at once (hold, park) has its
    /// answer's effects carried out before the next. False when cssmtp is stopping.
    pub(super) async fn execute(&mut self, effects: Vec<Effect>) -> bool {
        // A stack of what is left, the next effect last (no queue to allocate: most
        // events give one or two effects and no answer).
        let mut todo = effects;
        todo.reverse();
        while let Some(effect) = todo.pop() {
            let answer = match effect {
                Effect::Send { mail, rcpts } => {
                    if !self.send(mail, rcpts).await {
                        return false;
                    }
                    None
                }
                Effect::Record(change) => {
                    if let Some(store) = &self.store {
                        store.record(&change);
                    }
                    None
                }
                Effect::HoldInDoubt { mail, rcpts } => {
                    let ok = self.hold_in_doubt(mail, &rcpts).await;
                    Some(Event::HoldDone { mail, ok })
                }
                Effect::Park { mail, rcpts } => {
                    let ok = self.park(mail, &rcpts).await;
                    Some(Event::ParkDone { mail, ok })
                }
                Effect::Return { mail } => {
                    self.start_return(mail).await;
                    None
                }
                Effect::MailFinal { mail, summary } => {
                    let life = self.trace_final(mail);
                    self.mail_final(mail, &summary, &life);
                    None
                }
                // Parked mails are the parked driver's (queue/parked.rs).
                Effect::Forget { .. } | Effect::FileDone | Effect::Repark { .. } => None,
                Effect::Note(note) => {
                    self.note(note);
                    None
                }
            };
            if let Some(event) = answer {
                let more = self.queue.apply(event);
                todo.extend(more.into_iter().rev());
            }
        }
        true
    }

    /// Queues an attempt of a mail; false when cssmtp is stopping.
    async fn send(&mut self, ordinal: u32, rcpt_index: Vec<usize>) -> bool {
        let Some(mail) = self.queue.mail(ordinal) else {
            return true;
        };
        let p = &mail.payload;
        let job = MailJob {
            key: MailKey {
                tkid: self.tkid,
                ordinal,
            },
            reverse_path: mail.reverse_path.clone(),
            recipients: rcpt_index
                .iter()
                .filter_map(|&i| mail.rcpts.get(i).map(|r| r.address.clone()))
                .collect(),
            rcpt_index,
            needs_tls: p.needs_tls,
            // The added headers are cssmtp's own (ASCII), checked all the same.
            eight_bit: p.data.eight_bit || !p.headers.is_ascii(),
            headers: Arc::clone(&p.headers),
            text: MailText::Spool {
                spool: Arc::clone(&self.spool),
                data: p.data.clone(),
            },
            size: p.size,
            reply: self.outcomes.clone(),
            ack: self.store.as_ref().map(|s| s.ack(ordinal)),
        };
        let stop = self.shared.stop.clone();
        // The user exit (UserExit), when one is on, decides first.
        let exit = (self.shared.config.current().user_exit.clone())
            .filter(|e| e.level != crate::config::ExitLevel::None);
        let job = match exit {
            None => job,
            Some(exit) => {
                let who = userexit::Who {
                    file: &self.job.file_name,
                    job_name: &self.job.job_name,
                    job_id: &self.job.job_id,
                };
                let config = self.shared.config.current();
                let gated = tokio::select! {
                    biased;
                    () = stop.cancelled() => return false,
                    gated = userexit::gate(&exit, &config.dkim, job, &who) => gated,
                };
                match gated {
                    Ok(job) => job,
                    Err((job, results)) => {
                        // Decided without a target: the results go back to the queue as
                        // any attempt's do.
                        let results = job.rcpt_index.iter().copied().zip(results).collect();
                        let _ = self.outcomes.send(crate::delivery::MailOutcome {
                            key: job.key,
                            results,
                        });
                        return true;
                    }
                }
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => false,
            sent = self.shared.queue.send(job) => sent.is_ok(),
        }
    }

    /// One of this file's mails, as people are told of it.
    fn at(&self, mail: u32) -> At<'_> {
        At {
            tkid: Some(self.tkid),
            file: &self.job.file_name,
            mail,
        }
    }

    /// Tells people what a change means (through the telemetry), and keeps the file's
    /// report.
    fn note(&mut self, note: Note) {
        self.trace_note(&note);
        let telemetry = &self.shared.telemetry;
        match note {
            Note::Undeliverable { mail, failed } => self.undeliverable(mail, &failed),
            Note::Delivered {
                mail,
                count,
                target,
                reply,
            } => {
                self.report.rcpts_delivered += count as u64;
                telemetry.emit(TelemetryEvent::Delivered {
                    at: self.at(mail),
                    count,
                    target: &target,
                    reply: &reply,
                });
            }
            Note::Retrying {
                mail,
                address,
                attempt,
                failure,
            } => {
                let retry = self.config.retry_limit;
                telemetry.emit(TelemetryEvent::Retrying {
                    at: self.at(mail),
                    address: &address,
                    attempt,
                    attempts: retry.count + 1,
                    interval: retry.interval,
                    failure: &failure,
                });
            }
            Note::IntoRetry { .. } => telemetry.emit(TelemetryEvent::IntoRetry),
            Note::ToExtended {
                mail,
                address,
                failure,
            } => telemetry.emit(TelemetryEvent::ToExtended {
                at: self.at(mail),
                address: &address,
                failure: &failure,
            }),
            Note::TextChanged {
                mail,
                line,
                failure,
            } => {
                let file = &self.job.file_name;
                let problem = format!(
                    "mail {mail} (line {line}) was not sent and is held with the file: {failure}"
                );
                tracing::warn!(tkid = self.tkid, "CSM2140W Spool file {file}: {problem}");
                self.report.must_hold = true;
                self.report.file_problem = Some(match self.report.file_problem.take() {
                    Some(earlier) => format!("{earlier}; {problem}"),
                    None => problem,
                });
            }
            Note::PossiblyDelivered { mail, address } => {
                let hold = self.config.possibly_delivered == crate::config::PossiblyDelivered::Hold;
                tracing::warn!(
                    tkid = self.tkid,
                    "CSM2301W Mail {mail} of {} was possibly delivered to <{}> before the restart (the final \".\" was sent, its reply not read); {}",
                    self.job.file_name,
                    crate::escape::data(&address),
                    if hold {
                        "holding it for the operator (PossiblyDelivered Hold)"
                    } else {
                        "sending it again (PossiblyDelivered Resend)"
                    }
                );
            }
            Note::Restored {
                mail,
                delivered,
                parked,
                held,
                failed,
            } => {
                self.report.rcpts_delivered += delivered as u64;
                self.report.rcpts_extended += parked as u64;
                self.report.possibly_delivered_held += held as u64;
                for f in failed {
                    self.report.undeliverable_count += 1;
                    self.list(mail, &f);
                }
            }
            Note::StaysParked { .. } | Note::Expired { .. } => {}
            Note::Flushed { count } => {
                let extended = self.config.extended_retry.is_some();
                tracing::info!(
                    tkid = self.tkid,
                    "CSM2114I Task {}: {count} mail(s) of {} taken out of long retry (FLUSHRETRY), to {}",
                    self.tkid,
                    self.job.file_name,
                    if extended {
                        "extended retry"
                    } else {
                        "undeliverable"
                    }
                );
                self.flushed = Some(count);
            }
        }
    }

    /// Counts and lists a recipient that will not get its mail.
    pub(super) fn undeliverable(&mut self, mail: u32, f: &FailedRecipient) {
        self.report.undeliverable_count += 1;
        self.shared.telemetry.emit(TelemetryEvent::Undeliverable {
            at: self.at(mail),
            line: f.line,
            address: &f.address,
            reason: &f.reason,
        });
        self.list(mail, f);
    }

    fn list(&mut self, mail: u32, f: &FailedRecipient) {
        if self.report.undeliverable.len() < MAX_LISTED {
            self.report.undeliverable.push(Undeliverable {
                mail,
                line: f.line,
                address: f.address.clone(),
                reason: f.reason.clone(),
            });
        }
    }

    /// A mail is final: statistics and its MAIL accounting record.
    fn mail_final(&self, ordinal: u32, mail: &MailSummary, life: &MailLife) {
        self.shared.telemetry.emit(TelemetryEvent::MailFinal {
            job: &self.job,
            owner: &self.report.owner,
            tkid: self.tkid,
            mail: ordinal,
            summary: mail,
            life,
            arrival: std::time::SystemTime::from(self.arrival),
        });
    }

    /// A mail as sent, its text left in the claimed spool file (read when needed).
    fn full_mail(&self, mail: &Mail<Payload>) -> deadletter::FullMail {
        deadletter::FullMail {
            headers: Arc::clone(&mail.payload.headers),
            text: MailText::Spool {
                spool: Arc::clone(&self.spool),
                data: mail.payload.data.clone(),
            },
        }
    }

    /// A copy of a mail for `rcpts` (indexes among its recipients).
    fn copy<'a>(
        &'a self,
        ordinal: u32,
        mail: &'a Mail<Payload>,
        rcpts: &[usize],
        text: &'a deadletter::FullMail,
    ) -> MailCopy<'a> {
        MailCopy {
            job: &self.job,
            mail: ordinal,
            line: mail.line,
            first_attempt: std::time::SystemTime::from(self.arrival),
            reverse_path: &mail.reverse_path,
            rcpts: rcpts
                .iter()
                .filter_map(|&i| mail.rcpts.get(i).map(|r| (r.address.clone(), r.line)))
                .collect(),
            needs_tls: mail.payload.needs_tls,
            text,
        }
    }

    /// Keeps the mail, for its possibly delivered recipients, for the operator (the
    /// directory spool: a batch SMTP file in `hold/` they may release into `incoming/`).
    async fn hold_in_doubt(&mut self, ordinal: u32, held: &[usize]) -> bool {
        let Some(mail) = self.queue.mail(ordinal) else {
            return false;
        };
        let full = self.full_mail(mail);
        let copy = self.copy(ordinal, mail, held, &full);
        let count = copy.rcpts.len();
        match self.claim.hold_in_doubt(&copy).await {
            Ok(shown) => {
                tracing::warn!(
                    tkid = self.tkid,
                    "CSM2302W Mail {ordinal} of {} to {count} possibly delivered recipient(s) held as {shown}",
                    self.job.file_name,
                );
                self.report.possibly_delivered_held += count as u64;
                true
            }
            Err(e) => {
                // Never lose mail: when it cannot be held, it is sent again.
                tracing::error!(
                    "CSM2008E Cannot hold mail {ordinal} of {} in hold/: {e}; sending it again",
                    self.job.file_name
                );
                false
            }
        }
    }

    /// Parks the mail, for its `rcpts`, in extended retry (the MailDirectory).
    async fn park(&mut self, ordinal: u32, parked: &[usize]) -> bool {
        let Some(mail) = self.queue.mail(ordinal) else {
            return false;
        };
        let full = self.full_mail(mail);
        let copy = self.copy(ordinal, mail, parked, &full);
        let count = copy.rcpts.len() as u64;
        match self.claim.park(&copy).await {
            Ok(shown) => {
                self.report.rcpts_extended += count;
                let until = self
                    .config
                    .extended_retry
                    .as_ref()
                    .filter(|e| !e.age.is_zero())
                    .map(|e| std::time::SystemTime::from(self.arrival) + e.age);
                self.shared.telemetry.emit(TelemetryEvent::Parked {
                    at: self.at(ordinal),
                    count,
                    shown: &shown,
                    until,
                });
                true
            }
            Err(e) => {
                // The spool file is the only copy: it stays in active/ and the journal
                // keeps these recipients not final, so that the next start sends them
                // again.
                tracing::error!(
                    "CSM2112E Mail {ordinal} of {} cannot be kept for extended retry in {}: {e}; the spool file is kept",
                    self.job.file_name,
                    self.config.mail_directory().display()
                );
                self.report.unreturned.push((
                    ordinal,
                    format!("{count} recipient(s) could not be kept for extended retry: {e}"),
                ));
                false
            }
        }
    }

    /// Starts returning a mail's failed recipients to its originator (a notification,
    /// or a dead letter); its end comes back as [`Event::Returned`].
    async fn start_return(&mut self, ordinal: u32) {
        let Some(mail) = self.queue.mail(ordinal) else {
            return;
        };
        self.shared.telemetry.emit(TelemetryEvent::Returning);
        // Read what the notification or dead letter needs while the file is claimed (an
        // unreadable text leaves cssmtp's headers only).
        let header = self
            .read_header(mail)
            .await
            .unwrap_or_else(|_| mail.payload.headers.to_vec());
        let header = cssmtp_wire::data::dot_unstuff(&header);
        // The whole mail stays in the spool file: a dead letter or notification copies
        // what it needs from there, a chunk at a time.
        let original = Original {
            reverse_path: mail.reverse_path.clone(),
            auto_submitted: mail.payload.data.auto_submitted,
            header,
            full: Some(self.full_mail(mail)),
            needs_tls: mail.payload.needs_tls,
        };
        let notifier = Arc::clone(&self.shared.notifier);
        let (job, arrival, line, failed) = (
            self.job.clone(),
            self.arrival,
            mail.line,
            mail.failed.clone(),
        );
        self.returns.spawn(async move {
            let origin = MailOrigin {
                host: &notifier.host,
                job: &job,
                mail: ordinal,
                line,
                arrival,
            };
            let returned = notifier.return_mail(&origin, &original, &failed).await;
            (ordinal, returned)
        });
    }

    /// A mail's header as sent: cssmtp's headers, then the text's header (at most
    /// [`HEADER_MAX`] of it), read again from the claimed spool file.
    async fn read_header(&self, mail: &Mail<Payload>) -> std::io::Result<Vec<u8>> {
        let data = &mail.payload.data;
        let data = cssmtp_batch::DataSpan {
            end: data.header_end.min(data.start.saturating_add(HEADER_MAX)),
            missing_separator_at: None,
            ..data.clone()
        };
        let text = MailText::Spool {
            spool: Arc::clone(&self.spool),
            data,
        };
        let mut wire = mail.payload.headers.to_vec();
        wire.extend(extended::read_all(&text).await?);
        Ok(wire)
    }
}
