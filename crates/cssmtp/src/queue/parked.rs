//! The driver of parked mail (extended retry): every `Interval` a parked mail is read
//! back through the storage seam ([`ParkedStore`]; the MailDirectory,
//! [`MailDirectory`]) and given its turn
//! in the queue core's state machine ([`FileQueue::parked`], `Event::Unpark`), whose
//! effects this driver carries out: send it, return its failed recipients, then park it
//! again for the recipients left (rewritten, touched) or remove it. It decides nothing
//! itself: delivered, failed, returned and age-expired are the core's transitions, with
//! ExtendedRetry's Age and Interval as data ([`ParkPolicy`]).
//!
//! In daemon mode it runs until stopped; in drain mode it tries the mails due now once,
//! then ends.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Local};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::config::ExtendedRetry;
use crate::delivery::{MailJob, MailKey, MailText, RcptResult};
use crate::notify::{FailedRecipient, MailOrigin, Notifier, Original};
use crate::queue::state::{Effect, Event, FileQueue, NewMail, Note, ParkPolicy, Unparked};
use crate::retry::extended;
use crate::spool::Mode;
use crate::storage::parked::{Parked, ParkedId, ParkedRead, ParkedStore};
use crate::telemetry::{At, Event as TelemetryEvent, Telemetry};

/// Attempts in flight at once.
const PARALLEL: usize = 8;

/// Runs extended retry over the parked mails.
pub struct Manager {
    pub settings: ExtendedRetry,
    pub notifier: Arc<Notifier>,
    /// The delivery queue, where a parked mail's attempts go.
    pub queue: async_channel::Sender<MailJob>,
    pub telemetry: Telemetry,
    /// Where parked mail is kept (the MailDirectory).
    pub store: Arc<dyn ParkedStore>,
    /// Mails in extended retry now (DISPLAY TARGETS, metrics).
    pub current: Arc<std::sync::atomic::AtomicU64>,
}

#[derive(Debug)]
enum Attempt {
    /// Nothing left to do: the file is gone.
    Done,
    /// FLUSHRETRY,AGE=: not old enough; left as it was.
    Young,
    /// Try again after this long.
    Again(Duration),
    /// It cannot be read: kept as it is and skipped (not listed again).
    Skipped,
}

impl Manager {
    fn policy(&self) -> ParkPolicy {
        ParkPolicy {
            interval: self.settings.interval,
            age: self.settings.age,
        }
    }

    /// Runs until stopped (or, in drain mode, until the mails due now were tried).
    pub async fn run(
        self,
        mut new_files: mpsc::UnboundedReceiver<ParkedId>,
        mut flush: mpsc::UnboundedReceiver<crate::control::FlushAge>,
        stop: CancellationToken,
        mode: Mode,
    ) {
        let manager = Arc::new(self);
        let interval = manager.policy().interval;
        let store = Arc::clone(&manager.store);
        let mut due: BTreeSet<(Instant, ParkedId)> = BTreeSet::new();
        for (path, last) in store.list().await {
            let elapsed = crate::clock::now().duration_since(last).unwrap_or_default();
            due.insert((Instant::now() + interval.saturating_sub(elapsed), path));
        }
        if !due.is_empty() {
            tracing::info!(
                "CSM2201I {} mail(s) in extended retry in {}",
                due.len(),
                store.shown()
            );
        }
        let mut attempts: JoinSet<(ParkedId, Attempt)> = JoinSet::new();
        let mut in_flight: BTreeSet<ParkedId> = BTreeSet::new();
        // A shared store is listed again now and then: mail parked by other instances
        // (one that died) is driven here too, its turns leased.
        let relist_every = store.relist_every();
        let mut next_relist = relist_every.map(|every| Instant::now() + every);
        let mut skipped: BTreeSet<ParkedId> = BTreeSet::new();
        loop {
            manager.current.store(
                (due.len() + in_flight.len()) as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            let now = Instant::now();
            while attempts.len() < PARALLEL {
                let Some(first) = due.first().cloned().filter(|(at, _)| *at <= now) else {
                    break;
                };
                due.remove(&first);
                let (_, path) = first;
                if in_flight.insert(path.clone()) {
                    let (m, store) = (Arc::clone(&manager), Arc::clone(&store));
                    attempts.spawn(async move {
                        let outcome = m.attempt(store.as_ref(), &path, None).await;
                        (path, outcome)
                    });
                }
            }
            if mode == Mode::Drain
                && attempts.is_empty()
                && due.first().is_none_or(|(at, _)| *at > Instant::now())
            {
                break;
            }
            let next = due.first().map(|(at, _)| *at);
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(done) = attempts.join_next(), if !attempts.is_empty() => {
                    if let Ok((path, outcome)) = done {
                        in_flight.remove(&path);
                        match outcome {
                            Attempt::Again(after) => {
                                due.insert((Instant::now() + after, path));
                            }
                            Attempt::Young => {
                                due.insert((Instant::now() + interval, path));
                            }
                            Attempt::Done => {}
                            Attempt::Skipped => {
                                skipped.insert(path);
                            }
                        }
                    }
                }
                () = async {
                    match next_relist {
                        Some(at) => sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {
                    next_relist = relist_every.map(|every| Instant::now() + every);
                    let known: BTreeSet<ParkedId> = (due.iter().map(|(_, id)| id.clone()))
                        .chain(in_flight.iter().cloned())
                        .chain(skipped.iter().cloned())
                        .collect();
                    for (id, last) in store.list().await {
                        if !known.contains(&id) {
                            let elapsed =
                                crate::clock::now().duration_since(last).unwrap_or_default();
                            due.insert((Instant::now() + interval.saturating_sub(elapsed), id));
                        }
                    }
                }
                Some(id) = new_files.recv() => {
                    due.insert((Instant::now() + interval, id));
                }
                Some((age, answer)) = flush.recv() => {
                    // Mails being tried now are left to their attempt.
                    let mut returned = 0;
                    for (at, path) in std::mem::take(&mut due) {
                        match manager.attempt(store.as_ref(), &path, Some(age)).await {
                            Attempt::Done => returned += 1,
                            Attempt::Skipped => {
                                skipped.insert(path);
                            }
                            Attempt::Young | Attempt::Again(_) => {
                                due.insert((at, path));
                            }
                        }
                    }
                    tracing::info!(
                        "CSM2210I FLUSHRETRY: {returned} mail(s) in extended retry for {} day(s) or more returned",
                        age.as_secs() / 86_400
                    );
                    let _ = answer.send(returned);
                }
                () = async {
                    match next {
                        Some(at) => sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
        }
        // Attempts in progress complete their transaction (never stopped between "."
        // and its reply).
        while attempts.join_next().await.is_some() {}
    }

    /// One turn of one parked mail. With `flush_age` (FLUSHRETRY,AGE=), no attempt: the
    /// mail is returned when it has been in extended retry that long.
    async fn attempt(
        &self,
        store: &dyn ParkedStore,
        path: &ParkedId,
        flush_age: Option<Duration>,
    ) -> Attempt {
        let interval = self.policy().interval;
        let parked = match store.load(path).await {
            ParkedRead::Found(parked) => *parked,
            ParkedRead::Gone => return Attempt::Done,
            ParkedRead::Unreadable(e) => {
                tracing::error!(
                    "CSM2209E Cannot read {path} in extended retry: {e}; it is kept and skipped"
                );
                return Attempt::Skipped;
            }
            // Another instance gives it its turn; looked at again an Interval later
            // (when that instance is gone, its lease has expired by then).
            ParkedRead::Busy => return Attempt::Again(interval),
            ParkedRead::NotNow(e) => {
                tracing::error!("CSM2209E Cannot read {path} in extended retry: {e}");
                return Attempt::Again(interval);
            }
        };
        let meta = &parked.meta;
        let age = crate::clock::now()
            .duration_since(meta.first_attempt)
            .unwrap_or_default();
        let line = |i: usize| meta.rcpt_lines.get(i).copied().unwrap_or(meta.line);
        let new = NewMail {
            ordinal: meta.mail,
            line: meta.line,
            reverse_path: parked.mail.reverse_path.clone(),
            size: parked.text.message_size(),
            rcpts: (parked.mail.recipients.iter().enumerate())
                .map(|(i, r)| (r.address.clone(), line(i)))
                .collect(),
            rejected: Vec::new(),
            recovered: None,
            payload: (),
        };
        let mut queue = FileQueue::parked(self.policy());
        let mut todo: VecDeque<Effect> = queue
            .apply(Event::Unpark(Unparked {
                mail: new,
                age,
                flush_age,
            }))
            .into();
        while let Some(effect) = todo.pop_front() {
            let answer = match effect {
                Effect::Send { mail, rcpts } => match self.send(&parked, rcpts).await {
                    Some(results) => Some(Event::Delivered {
                        mail,
                        results,
                        now: Instant::now().into_std(),
                    }),
                    // Not sent (cssmtp is stopping): left as it was.
                    None => return Attempt::Again(interval),
                },
                Effect::Return { mail } => {
                    let failed = queue.mail(mail).map(|m| m.failed.clone());
                    let done = self.give_back(&parked, &failed.unwrap_or_default()).await;
                    Some(Event::Returned { mail, done })
                }
                Effect::Note(note) => {
                    self.note(&parked, note);
                    None
                }
                Effect::Repark {
                    keep, again_after, ..
                } => return repark(store, path, &parked, &keep, again_after).await,
                // A parked mail's state is its parked copy (`Repark` keeps it); it has
                // no journal records and no accounting record of its own.
                Effect::Record(_)
                | Effect::MailFinal { .. }
                | Effect::Forget { .. }
                | Effect::FileDone
                | Effect::HoldInDoubt { .. }
                | Effect::Park { .. } => None,
            };
            if let Some(event) = answer {
                for effect in queue.apply(event).into_iter().rev() {
                    todo.push_front(effect);
                }
            }
        }
        Attempt::Again(interval)
    }

    /// Sends the parked mail to these recipients; `None` when it cannot be queued.
    async fn send(
        &self,
        parked: &Parked,
        rcpt_index: Vec<usize>,
    ) -> Option<Vec<(usize, RcptResult)>> {
        let (reply, mut results) = mpsc::unbounded_channel();
        let mail = &parked.mail;
        let job = MailJob {
            key: MailKey {
                tkid: 0,
                ordinal: parked.meta.mail,
            },
            reverse_path: mail.reverse_path.clone(),
            recipients: (rcpt_index.iter())
                .filter_map(|&i| mail.recipients.get(i).map(|r| r.address.clone()))
                .collect(),
            rcpt_index,
            needs_tls: mail.starttls,
            eight_bit: parked.text.eight_bit(),
            headers: Arc::from(Vec::new()),
            size: parked.text.message_size(),
            text: parked.text.clone(),
            reply,
            ack: None,
        };
        // The user exit (UserExit), when one is on, decides first, as for any mail.
        let exit = (self.notifier.config.current().user_exit.clone())
            .filter(|e| e.level != crate::config::ExitLevel::None);
        let job = match exit {
            None => job,
            Some(exit) => {
                let who = crate::userexit::Who {
                    file: &parked.meta.spool_file,
                    job_name: &parked.meta.job_name,
                    job_id: &parked.meta.job_id,
                };
                match crate::userexit::gate(&exit, &self.notifier.config.current().dkim, job, &who)
                    .await
                {
                    Ok(job) => job,
                    Err((job, results)) => {
                        return Some(job.rcpt_index.iter().copied().zip(results).collect());
                    }
                }
            }
        };
        self.queue.send(job).await.ok()?;
        results.recv().await.map(|outcome| outcome.results)
    }

    /// Tells people what the turn did (through the telemetry).
    fn note(&self, parked: &Parked, note: Note) {
        let meta = &parked.meta;
        match note {
            Note::Expired { reason, .. } => tracing::warn!(
                "CSM2204W Mail {} of {} is undeliverable: {reason}",
                meta.mail,
                meta.spool_file
            ),
            Note::Undeliverable { .. } => self.telemetry.emit(TelemetryEvent::ExpiredInParked),
            Note::StaysParked {
                address, failure, ..
            } => tracing::info!(
                "CSM2202I Mail {} of {} to <{address}> stays in extended retry: {failure}",
                meta.mail,
                meta.spool_file
            ),
            Note::Delivered { count, .. } => {
                self.telemetry.emit(TelemetryEvent::DeliveredFromParked {
                    at: At {
                        tkid: None,
                        file: &meta.spool_file,
                        mail: meta.mail,
                    },
                    count,
                });
            }
            _ => {}
        }
    }

    /// Returns the failed recipients of a parked mail; true when it was returned.
    async fn give_back(&self, parked: &Parked, failed: &[FailedRecipient]) -> bool {
        let (meta, mail, text) = (&parked.meta, &parked.mail, &parked.text);
        let job = meta.job();
        let origin = MailOrigin {
            host: &self.notifier.host,
            job: &job,
            mail: meta.mail,
            line: meta.line,
            arrival: DateTime::<Local>::from(meta.first_attempt),
        };
        // Only the header is read here (at most 256 KiB of it); the whole mail stays in
        // its file, copied from there a chunk at a time when needed.
        let header_text = match text {
            MailText::Spool { spool, data } => MailText::Spool {
                spool: Arc::clone(spool),
                data: cssmtp_batch::DataSpan {
                    end: data.end.min(data.start.saturating_add(256 * 1024)),
                    missing_separator_at: None,
                    ..data.clone()
                },
            },
            MailText::Memory(_) => text.clone(),
        };
        let wire = extended::read_all(&header_text).await.unwrap_or_default();
        let header_end =
            usize::try_from(mail.data.header_end.saturating_sub(mail.data.start)).unwrap_or(0);
        let header = cssmtp_wire::data::dot_unstuff(&extended::crlf_header(&wire, header_end));
        let original = Original {
            reverse_path: mail.reverse_path.clone(),
            auto_submitted: mail.data.auto_submitted,
            header,
            full: Some(crate::notify::deadletter::FullMail {
                headers: Arc::from(Vec::new()),
                text: text.clone(),
            }),
            needs_tls: mail.starttls,
        };
        let returned = self.notifier.return_mail(&origin, &original, failed).await;
        tracing::info!(
            "CSM2205I Mail {} of {} from extended retry: {returned}",
            meta.mail,
            meta.spool_file
        );
        returned.is_done()
    }
}

/// The turn is over: the parked copy is removed, kept for fewer recipients, touched (its
/// time is the last attempt) or, not tried, left as it was.
async fn repark(
    store: &dyn ParkedStore,
    id: &ParkedId,
    parked: &Parked,
    keep: &[usize],
    again_after: Option<Duration>,
) -> Attempt {
    let Some(after) = again_after else {
        return Attempt::Young;
    };
    if keep.is_empty() {
        store.remove(id).await;
        return Attempt::Done;
    }
    if let Err(e) = store.keep(id, parked, keep).await {
        tracing::error!(
            "CSM2209E Cannot rewrite mail {} of {} in extended retry ({e}); recipients already delivered may be sent again",
            parked.meta.mail,
            parked.meta.spool_file
        );
    }
    Attempt::Again(after)
}
