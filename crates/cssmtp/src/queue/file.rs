//! The per-file driver (CSSMTP's "JES task"): one claimed spool file, from its first
//! line to its disposition.
//!
//! It owns no recipient state: it feeds what happens (mails parsed, delivery results,
//! retry timers, SUSPEND and the store's health, FLUSHRETRY, what storage and returns
//! did) to the file's [`FileQueue`] and carries out the [`Effect`]s it answers with
//! ([`super::effects`]). A parser on a blocking thread streams mails in; each is queued
//! for delivery with its headers built once; while recipients wait to be retried the
//! spool file stays claimed and their text is read again from it when sent. When the
//! queue releases the file, [`super::finish`] disposes of it.

use std::io::BufReader;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use chrono::Local;
use cssmtp_batch::{Mail, Summary};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::state::{Event, FileQueue, NewMail, Policy};
use super::task::{Payload, Task, TaskShared};
use crate::config::PossiblyDelivered;
use crate::delivery::{MailOutcome, MailText, RcptResult, SpoolText};
use crate::headers::{self, MailFacts, Origin};
use crate::notify::{FailedRecipient, Returned};
use crate::spool::layout::Opened;
use crate::spool::name::JobIdentity;
use crate::spool::reader::{Parsed, parse_all, parse_into};
use crate::spool::report::{Disposition, FileReport};
use crate::spool::status::{Suspend, TaskStatus};
use crate::storage::SpoolClaim;

/// Recipients of one file's tracked mails beyond which the parser waits (with
/// [`MAX_PENDING_MAILS`]): ten mails at the 2000-recipient limit, so that a file of such
/// mails costs no more memory than a few of them.
const MAX_PENDING_RCPTS: usize = 20_000;

fn new_report(tkid: u32, job: &JobIdentity, test_mode: bool) -> FileReport {
    FileReport {
        tkid,
        job: job.clone(),
        owner: String::new(),
        mails: 0,
        rcpts_delivered: 0,
        undeliverable_count: 0,
        undeliverable: Vec::new(),
        rcpts_extended: 0,
        possibly_delivered_held: 0,
        returns: Vec::new(),
        errors: Vec::new(),
        file_problem: None,
        test_mode,
        needs_tls: false,
        unreturned: Vec::new(),
        disposition: Disposition::LeftActive,
        report: None,
        must_hold: false,
    }
}

/// Processes one claimed spool file (`claim`), opened by intake
/// ([`crate::spool::layout::SpoolLayout::open_claimed`]); an error opening it is a problem of the file
/// (reported, and the file held or removed as BadSpoolDisp says).
pub async fn run(
    tkid: u32,
    claim: Arc<dyn SpoolClaim>,
    opened: std::io::Result<Opened>,
    shared: Arc<TaskShared>,
) -> FileReport {
    // The name as shown and recorded: escaped (names are data).
    let name = claim.name().to_owned();
    let job = JobIdentity::from_file_name(&name);
    let config = shared.config.current();
    let (status, flush_requests) = TaskStatus::new(tkid, &name, &job.job_name, &job.job_id);
    let registered = shared.tasks.register(status);
    let status = Arc::clone(&registered.status);
    let mut report = new_report(tkid, &job, config.options.test_mode);
    let (file, reader, meta, id, path) = match opened {
        Ok(o) => (o.file, o.reader, o.meta, o.id, o.path),
        Err(e) => {
            tracing::info!(
                tkid,
                "CSM2001I Task {tkid} processing spool file {name} (job {} {})",
                job.job_name,
                job.job_id
            );
            report.file_problem = Some(format!("cannot read the spool file: {e}"));
            return super::finish::finish(&shared, &*claim, report, None).await;
        }
    };
    // The owner's name (looked up once a minute per user), then who may send
    // (PermitUser, PermitGroup: the user and group databases are asked on a blocking
    // thread, only when they are configured).
    let uid = meta.uid();
    let (owner, refusal) = owner_and_permit(&config, uid).await;
    report.owner = owner;
    if let Ok(mut shown) = status.owner.lock() {
        shown.clone_from(&report.owner);
    }
    tracing::info!(
        tkid,
        "CSM2001I Task {tkid} processing spool file {name} (job {} {}, owner {})",
        job.job_name,
        job.job_id,
        report.owner
    );
    let (recovered, store) = match &shared.store {
        Some(s) => {
            let (recovered, store) = s.open(&id);
            (recovered, Some(store))
        }
        None => (Default::default(), None),
    };
    if !recovered.is_empty() {
        tracing::info!(
            tkid,
            "CSM2300I Task {tkid} resuming spool file {name} from the checkpoint: {} mail(s) known",
            recovered.len()
        );
    }
    if let Some(refusal) = refusal {
        tracing::warn!(
            tkid,
            "CSM4020W Task {tkid}: spool file {name} (job {} {}) is held: its owner {} (uid {uid}) is not permitted to send (PermitUser, PermitGroup)",
            job.job_name,
            job.job_id,
            report.owner
        );
        report.file_problem = Some(refusal);
        report.must_hold = true;
        return super::finish::finish(&shared, &*claim, report, store.as_deref()).await;
    }
    let limit = config.jes_job_size;
    if limit > 0 && meta.len() > limit.saturating_mul(1000) {
        report.file_problem = Some(format!(
            "552 5.3.4 Spool file size {} bytes exceeds JESJobSize {limit} (thousands of bytes); no mail sent",
            meta.len()
        ));
        return super::finish::finish(&shared, &*claim, report, store.as_deref()).await;
    }
    // A mainframe-format (EBCDIC) file is read through its UTF-8 conversion (Translate).
    let (file, reader, len, converted) =
        match translated(&config, tkid, &name, &path, (file, reader, meta.len())).await {
            Ok(files) => files,
            Err(problem) => {
                // Held: nothing of it is guessed at, and the producer can submit it again.
                report.file_problem = Some(problem);
                report.must_hold = true;
                return super::finish::finish(&shared, &*claim, report, store.as_deref()).await;
            }
        };
    let (parsed_rx, parser) = start_parser(reader, len, config.batch_limits());
    let (outcomes, outcome_rx) = mpsc::unbounded_channel();
    let spool = Arc::new(SpoolText {
        file,
        truncate: config.options.data_line_trunc,
        translated: converted,
    });
    let policy = Policy {
        retry_count: config.retry_limit.count,
        retry_interval: config.retry_limit.interval,
        extended: config.extended_retry.is_some(),
        hold_possibly_delivered: config.possibly_delivered == PossiblyDelivered::Hold,
    };
    let mut task = Task {
        tkid,
        shared: Arc::clone(&shared),
        spool,
        claim: Arc::clone(&claim),
        job,
        arrival: Local::now(),
        queue: FileQueue::new(policy),
        outcomes,
        returns: JoinSet::new(),
        report,
        store,
        recovered,
        config,
        status,
        suspend: shared.suspend.clone(),
        flushed: None,
        lives: std::collections::HashMap::new(),
    };
    let channels = Channels {
        parsed: parsed_rx,
        outcomes: outcome_rx,
        flush: flush_requests,
    };
    match task.drive(channels).await {
        Ended::Stopped | Ended::Lost => {
            if let Some(parser) = parser {
                parser.abort();
            }
            task.report
        }
        Ended::Released(summary) => {
            if let Some(summary) = summary {
                task.report.errors = summary.errors;
            }
            let store = task.store.take();
            super::finish::finish(&shared, &*claim, task.report, store.as_deref()).await
        }
    }
}

/// The owner's name (looked up once a minute per user, escaped) and, with PermitUser or
/// PermitGroup, why it may not send (the user and group databases are asked on a
/// blocking thread, only when those statements are there).
async fn owner_and_permit(
    config: &Arc<crate::config::Config>,
    uid: u32,
) -> (String, Option<String>) {
    let owner = crate::spool::owner::name(uid).await;
    let shown = crate::escape::os(std::ffi::OsStr::new(&owner)).to_string();
    if config.permit_users.is_empty() && config.permit_groups.is_empty() {
        return (shown, None);
    }
    let permit_config = Arc::clone(config);
    let refusal = tokio::task::spawn_blocking(move || {
        crate::spool::permit::refusal(&permit_config, uid, &owner)
    })
    .await
    .unwrap_or_else(|_| Some("the owner of the spool file could not be checked".into()));
    (shown, refusal)
}

/// The file and reader to take the mail from, and its length: a file in EBCDIC
/// (`Translate`) is read through its conversion, converted on a blocking thread (its
/// length is the conversion's); others as they are. Err: why it cannot be read.
async fn translated(
    config: &crate::config::Config,
    tkid: u32,
    name: &str,
    path: &std::path::Path,
    (file, reader, len): (std::fs::File, std::fs::File, u64),
) -> Result<(std::fs::File, std::fs::File, u64, bool), String> {
    let (rules, always) = match crate::spool::translate::Rules::for_file(config, name) {
        Ok(Some(rules)) => rules,
        Ok(None) => return Ok((file, reader, len, false)),
        Err(problem) => {
            tracing::error!(
                tkid,
                "CSM4036E Task {tkid}: spool file {name} cannot be read: {problem}"
            );
            return Err(problem);
        }
    };
    let page = rules.page;
    let dir = path.parent().map(std::path::Path::to_path_buf);
    let converted = tokio::task::spawn_blocking(move || {
        crate::spool::translate::open_converted(rules, always, dir.as_deref(), file, reader)
    })
    .await;
    match converted {
        Ok(Ok((file, reader, converted))) => {
            let converted_any = converted.is_some();
            if let Some(done) = converted {
                tracing::info!(
                    tkid,
                    "CSM4030I Task {tkid}: spool file {name} is read as EBCDIC {} ({}): {} record(s), {} joined by continuation",
                    page.name(),
                    done.layout,
                    done.records,
                    done.continued
                );
            }
            // A converted file's length is its own.
            let len = if converted_any {
                reader.metadata().map_or(u64::MAX, |m| m.len())
            } else {
                len
            };
            Ok((file, reader, len, converted_any))
        }
        Ok(Err(e)) => {
            let problem = format!("cannot translate the spool file from {}: {e}", page.name());
            tracing::error!(
                tkid,
                "CSM4036E Task {tkid}: spool file {name} cannot be read: {problem}"
            );
            Err(problem)
        }
        Err(e) => Err(format!("cannot translate the spool file: {e}")),
    }
}

/// Spool files up to this size are parsed at once on the task's thread: a producer
/// has just written them, so they are read from the page cache in one call, and the
/// thread hand-off a larger file's streaming parser needs would cost more than the read
/// (most spool files hold one small mail).
const PARSE_AT_ONCE: u64 = 64 * 1024;

/// Starts parsing the file (`len` bytes): at once when it is small, else streamed from
/// a blocking thread with bounded memory. What it gives comes on the receiver.
fn start_parser(
    reader: std::fs::File,
    len: u64,
    limits: cssmtp_batch::Limits,
) -> (mpsc::Receiver<Parsed>, Option<tokio::task::JoinHandle<()>>) {
    if len <= PARSE_AT_ONCE {
        let buffer = usize::try_from(len).unwrap_or(0).clamp(4096, 64 * 1024 + 1);
        let parsed = parse_all(BufReader::with_capacity(buffer, reader), limits);
        let (tx, rx) = mpsc::channel(parsed.len().max(1));
        for p in parsed {
            // The channel holds them all.
            let _ = tx.try_send(p);
        }
        return (rx, None);
    }
    let (tx, rx) = mpsc::channel(16);
    let parser = tokio::task::spawn_blocking(move || {
        parse_into(BufReader::with_capacity(64 * 1024, reader), limits, &tx);
    });
    (rx, Some(parser))
}

/// What a task listens to.
struct Channels {
    parsed: mpsc::Receiver<Parsed>,
    outcomes: mpsc::UnboundedReceiver<MailOutcome>,
    flush: mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<u64>>,
}

enum Ended {
    /// cssmtp is stopping: the file stays claimed for the next start.
    Stopped,
    /// Another instance took the file over (a shared spool): the task ends here.
    Lost,
    /// Every mail is done (with the parser's summary, when it read to the end).
    Released(Option<Summary>),
}

impl Task {
    /// Feeds the queue until it releases the file, or cssmtp stops.
    async fn drive(&mut self, mut ch: Channels) -> Ended {
        let mut resumed = self.shared.suspend.clone();
        // MODIFY USEREXIT: the mails waiting in long retry go now.
        let mut retry_now = crate::userexit::retry_now().subscribe();
        // While the journal cannot be written, mails are held back as by SUSPEND.
        let mut journal_state = self.store.as_ref().map(|s| s.writable());
        let max_pending = self.shared.max_pending_mails();
        let stop = self.shared.stop.clone();
        let mut summary: Option<Summary> = None;
        let mut parse_done = false;
        loop {
            if self.queue.is_released() && self.returns.is_empty() {
                return Ended::Released(summary);
            }
            // Taken over by another instance: nothing more can be recorded or sent from
            // here; the task ends and frees its slot (mail in flight sends no final ".").
            if self.store.as_ref().is_some_and(|s| s.is_lost()) {
                tracing::warn!(
                    tkid = self.tkid,
                    "CSM2613W Task {}: spool file {} was taken over by another instance; the task ends",
                    self.tkid,
                    self.job.file_name
                );
                return Ended::Lost;
            }
            self.publish();
            let next_due = self.queue.next_due().map(Instant::from_std);
            let held_back = self.queue.held_back() > 0;
            let go = tokio::select! {
                biased;
                () = stop.cancelled() => {
                    self.count_until_workers_end(&mut ch.outcomes).await;
                    tracing::info!(tkid = self.tkid, "CSM2009I Task {} stopped; spool file {} stays claimed for the next start", self.tkid, self.job.file_name);
                    return Ended::Stopped;
                }
                Some(outcome) = ch.outcomes.recv() => {
                    let now = Instant::now().into_std();
                    self.apply(Event::Delivered { mail: outcome.key.ordinal, results: outcome.results, now }).await
                }
                Ok(()) = retry_now.changed() => {
                    retry_now.borrow_and_update();
                    self.apply(Event::RetryNow).await
                }
                Some(answer) = ch.flush.recv() => {
                    let go = self.apply(Event::FlushRetry).await;
                    let _ = answer.send(self.flushed.take().unwrap_or(0));
                    go
                }
                Ok(()) = resumed.changed(), if held_back => {
                    resumed.borrow_and_update();
                    self.apply_gate().await
                }
                Some(()) = async {
                    match journal_state.as_mut() {
                        Some(state) => state.changed().await.ok(),
                        None => std::future::pending().await,
                    }
                }, if held_back => self.apply_gate().await,
                Some(done) = self.returns.join_next(), if !self.returns.is_empty() => {
                    match done {
                        Ok((mail, returned)) => self.returned(mail, &returned).await,
                        Err(e) => {
                            self.report.unreturned.push((0, format!("returning a mail failed: {e}")));
                            true
                        }
                    }
                }
                () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                    self.apply(Event::Due { now: Instant::now().into_std() }).await
                }
                parsed = ch.parsed.recv(), if !parse_done && self.queue.mails() < max_pending && self.queue.rcpts() < MAX_PENDING_RCPTS => {
                    let mut go = true;
                    let ended = !matches!(parsed, Some(Parsed::Mails(_)));
                    match parsed {
                        Some(Parsed::Mails(mails)) => {
                            for mail in mails {
                                go = self.accept(mail).await;
                                if !go {
                                    break;
                                }
                            }
                        }
                        Some(Parsed::Done(s)) => summary = Some(s),
                        Some(Parsed::Failed(e)) => {
                            self.report.file_problem = Some(format!("reading the spool file failed: {e}"));
                        }
                        None => {
                            self.report.file_problem.get_or_insert_with(|| "the spool file parser stopped unexpectedly".into());
                        }
                    }
                    if go && ended {
                        parse_done = true;
                        go = self.apply(Event::ParseDone).await;
                    }
                    go
                }
            };
            if !go {
                return Ended::Stopped;
            }
        }
    }

    /// Whether sending must wait: SUSPEND,IMMEDIATE, or a journal that cannot be
    /// written (no mail's final "." goes without its record).
    fn blocked(&self) -> bool {
        *self.suspend.borrow() == Suspend::Immediate
            || self.store.as_ref().is_some_and(|s| !s.is_writable())
    }

    /// Tells the queue whether sending may go on (when that changed); false when
    /// cssmtp is stopping.
    async fn apply_gate(&mut self) -> bool {
        let blocked = self.blocked();
        if blocked == self.queue.is_blocked() {
            return true;
        }
        let effects = self.queue.apply(Event::Blocked(blocked));
        self.execute(effects).await
    }

    /// Applies an event to the queue and carries out its effects; false when cssmtp is
    /// stopping.
    pub(super) async fn apply(&mut self, event: Event<Payload>) -> bool {
        if !self.apply_gate().await {
            return false;
        }
        let effects = self.queue.apply(event);
        self.execute(effects).await
    }

    /// After a stop: transactions in progress run to their end, and the session records
    /// their deliveries in the journal; count them too (the next start skips them), so
    /// that this run's statistics say what it delivered. Nothing else is decided now:
    /// the next start takes the file up from the journal.
    async fn count_until_workers_end(
        &mut self,
        outcome_rx: &mut mpsc::UnboundedReceiver<MailOutcome>,
    ) {
        let done = self.shared.workers_done.clone();
        loop {
            tokio::select! {
                biased;
                Some(outcome) = outcome_rx.recv() => self.count_delivered(&outcome),
                Some(returned) = self.returns.join_next(), if !self.returns.is_empty() => {
                    if let Ok((mail, returned)) = returned {
                        self.returned(mail, &returned).await;
                    }
                }
                () = done.cancelled() => break,
            }
        }
        while let Ok(outcome) = outcome_rx.try_recv() {
            self.count_delivered(&outcome);
        }
        // Notifications still waiting for a connection were not sent: the next start
        // returns those mails.
        while let Some(returned) = self.returns.try_join_next() {
            if let Ok((mail, returned)) = returned {
                self.returned(mail, &returned).await;
            }
        }
        self.returns.abort_all();
    }

    fn count_delivered(&mut self, outcome: &MailOutcome) {
        let count = outcome
            .results
            .iter()
            .filter(|(_, result)| matches!(result, RcptResult::Delivered { .. }))
            .count();
        self.report.rcpts_delivered += count as u64;
        self.shared
            .telemetry
            .emit(crate::telemetry::Event::DeliveredAtStop { count });
    }

    /// A mail was returned (notification sent, or dead letter). Recorded as returned
    /// only when it was: else the file stays, and the next start returns it.
    async fn returned(&mut self, mail: u32, returned: &Returned) -> bool {
        if !returned.is_done() {
            self.report.unreturned.push((mail, returned.to_string()));
        }
        self.report.returns.push((mail, returned.to_string()));
        let done = returned.is_done();
        self.apply(Event::Returned { mail, done }).await
    }

    /// Takes a parsed mail: its refused recipients, its headers, what the journal knew
    /// of it; false when cssmtp is stopping.
    async fn accept(&mut self, mail: Mail) -> bool {
        self.report.mails += 1;
        self.report.needs_tls |= mail.starttls;
        let rejected: Vec<FailedRecipient> = mail
            .rejected
            .iter()
            .map(|r| FailedRecipient::from_syntax(&r.text, &r.error))
            .collect();
        if self.config.options.test_mode {
            for f in &rejected {
                self.undeliverable(mail.ordinal, f);
            }
            tracing::info!(
                tkid = self.tkid,
                "CSM2110I TestMode: mail {} of {} to {} recipient(s) read, not sent",
                mail.ordinal,
                self.job.file_name,
                mail.recipients.len()
            );
            return true;
        }
        let headers = self.signed(self.headers(&mail), &mail).await;
        let separator = if mail.data.missing_separator_at.is_some() {
            2
        } else {
            0
        };
        // As the receiver stores it: the stuffed dots are not counted (RFC 1870).
        let size = headers.len() as u64 + mail.data.message_size() + separator;
        let recovered = self.recovered.remove(&mail.ordinal);
        self.trace_accepted(mail.ordinal, mail.data.message_id.as_deref(), &headers);
        let new = NewMail {
            ordinal: mail.ordinal,
            line: mail.line,
            reverse_path: mail.reverse_path,
            size,
            rcpts: mail
                .recipients
                .into_iter()
                .map(|r| (r.address, r.line))
                .collect(),
            rejected,
            recovered,
            payload: Payload {
                headers,
                data: mail.data,
                needs_tls: mail.starttls,
                size,
            },
        };
        self.apply(Event::Accept(new)).await
    }

    /// The DKIM-Signature fields of the mail (`DkimKey` for its From: domain) before
    /// the header fields cssmtp adds: signed once, as it goes on the wire.
    async fn signed(&self, headers: Arc<[u8]>, mail: &Mail) -> Arc<[u8]> {
        if self.config.dkim.keys.is_empty() {
            return headers;
        }
        let text = MailText::Spool {
            spool: Arc::clone(&self.spool),
            data: mail.data.clone(),
        };
        let what = format!("mail {} of {}", mail.ordinal, self.job.file_name);
        let mut fields =
            crate::delivery::dkim::sign(&self.config.dkim, &headers, &text, &what).await;
        if fields.is_empty() {
            return headers;
        }
        fields.extend_from_slice(&headers);
        Arc::from(fields)
    }

    /// The header fields cssmtp adds to a mail.
    fn headers(&self, mail: &Mail) -> Arc<[u8]> {
        let config = &self.config;
        let origin = Origin {
            host: &self.shared.host_name,
            writer: &config.ext_wrt_name,
            job: &self.job,
            owner: &self.report.owner,
        };
        let facts = MailFacts {
            ordinal: mail.ordinal,
            helo: &mail.helo,
            esmtp: mail.esmtp,
            has_date: mail.data.has_date,
            has_message_id: mail.data.has_message_id,
        };
        Arc::from(headers::build(&origin, &facts, config.header, Local::now()))
    }

    /// Updates what DISPLAY SPOOLSTATUS shows of the task.
    fn publish(&self) {
        let s = &self.status;
        let set = |c: &std::sync::atomic::AtomicU64, v: u64| {
            c.store(v, std::sync::atomic::Ordering::Relaxed);
        };
        set(&s.mails_read, u64::from(self.report.mails));
        set(&s.mails_pending, self.queue.mails() as u64);
        set(&s.mails_retry, self.queue.waiting() as u64);
        set(&s.rcpts_delivered, self.report.rcpts_delivered);
        set(&s.rcpts_undeliverable, self.report.undeliverable_count);
        set(&s.rcpts_extended, self.report.rcpts_extended);
        if let Ok(mut next) = s.next_retry.lock() {
            *next = self.queue.next_due().map(|at| {
                std::time::SystemTime::now()
                    + at.saturating_duration_since(Instant::now().into_std())
            });
        }
    }
}
