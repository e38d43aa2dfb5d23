//! The spool task (CSSMTP's "JES task"): one claimed spool file, from its first line to
//! its disposition.
//!
//! The task owns the state of every recipient of every mail in its file:
//!
//! ```text
//! pending ──▶ delivered
//!    │   ╲──▶ retrying (4xx: again every RetryLimit Interval, at most Count times)
//!    │             ╲──▶ extended (RetryLimit exhausted, ExtendedRetry active: MailDirectory)
//!    ╰──▶ failed (5xx, no target can take it, RetryLimit exhausted) ──▶ returned:
//!           notification to the originator, dead letter, or logged (ReturnToMailFrom No)
//! ```
//!
//! A parser on a blocking thread streams mails in; each mail is queued for delivery with
//! its headers built once; results come back per recipient. While recipients wait to be
//! retried, the spool file stays claimed and their text is read again from it when sent.
//! When every recipient of a mail is final, its undeliverable recipients are returned
//! (one notification per mail) and those bound for extended retry are written to the
//! MailDirectory. When every mail is final, the file is deleted, or, when it had errors
//! of its own (syntax, JESJobSize, unreadable), held or removed as `BadSpoolDisp` says;
//! a file with problems gets an error report as `Report` says.

use std::collections::{BTreeSet, HashMap};
use std::io::BufReader;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Local};
use cssmtp_batch::{Mail, Summary};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::layout::{Opened, Reaper, SpoolLayout};
use super::name::JobIdentity;
use super::reader::{Parsed, parse_into};
use super::status::{Suspend, TaskRegistry, TaskStatus};
use crate::accounting::{self, Accounting, Kind};
use crate::config::{BadSpoolDisp, Config, LiveConfig, PossiblyDelivered};
use crate::delivery::{
    Checkpoint, MailJob, MailKey, MailOutcome, MailText, Problem, RcptResult, SpoolText,
};
use crate::headers::{self, MailFacts, Origin};
use crate::journal::{self, FailedRcpt, FileCheckpoint, Journal, MailCheckpoint, Outcome, Record};
use crate::notify::{
    FailedRecipient, MailOrigin, Notifier, Original, Returned, deadletter, report,
};
use crate::retry::extended;
use crate::stats::Stats;

/// Mails of one file tracked at once (in delivery, waiting to retry, or being returned);
/// the parser waits beyond this, so memory stays bounded whatever the file's size.
/// `ChkPointSizeLimit`, shared by the spool tasks, may lower it.
const MAX_PENDING_MAILS: usize = 1024;
/// Recipients of one file's tracked mails beyond which the parser waits (with
/// [`MAX_PENDING_MAILS`]): ten mails at the 2000-recipient limit, so that a file of such
/// mails costs no more memory than a few of them.
const MAX_PENDING_RCPTS: usize = 20_000;
/// Undeliverable recipients listed in a report (all are counted).
const MAX_LISTED: usize = 1000;

/// What spool tasks share.
pub struct TaskShared {
    /// The configuration in force; a task takes it when it starts on a file.
    pub config: Arc<LiveConfig>,
    pub host_name: String,
    pub layout: SpoolLayout,
    pub queue: async_channel::Sender<MailJob>,
    pub stats: Arc<Stats>,
    pub stop: CancellationToken,
    /// Cancelled once every delivery worker has ended (after `stop`, each ends when its
    /// transaction in progress has).
    pub workers_done: CancellationToken,
    /// Removes finished files from `active/` (in groups).
    pub reaper: Reaper,
    pub notifier: Arc<Notifier>,
    /// Tells extended retry about the mails written to the MailDirectory (None when
    /// ExtendedRetry is inactive).
    pub extended: Option<mpsc::UnboundedSender<PathBuf>>,
    /// The checkpoint journal (`ChkPoint Yes`, not in TestMode).
    pub journal: Option<Journal>,
    /// What the journal knew at start of the files left in `active/`; each task takes
    /// its file's.
    pub recovered: std::sync::Mutex<HashMap<String, FileCheckpoint>>,
    /// The tasks running now (DISPLAY SPOOLSTATUS, FLUSHRETRY).
    pub tasks: Arc<TaskRegistry>,
    /// SUSPEND and RESUME.
    pub suspend: watch::Receiver<Suspend>,
    /// MAIL and SPOOL accounting records.
    pub accounting: Accounting,
}

impl TaskShared {
    /// Mails one spool task tracks at once.
    pub fn max_pending_mails(&self) -> usize {
        let config = self.config.current();
        let share = config.chk_point_size_limit as usize / config.spool_tasks.max(1);
        share.clamp(1, MAX_PENDING_MAILS)
    }
}

pub use super::report::{Disposition, FileReport, Undeliverable};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rcpt {
    Pending,
    Delivered,
    Retry,
    Failed,
    Extended,
    /// In extended retry since before a restart (the MailDirectory has it).
    Kept,
    /// Possibly delivered before a restart, held for the operator (`PossiblyDelivered
    /// Hold`).
    Held,
}

struct MailState {
    line: u32,
    reverse_path: String,
    addresses: Vec<String>,
    lines: Vec<u32>,
    rcpts: Vec<Rcpt>,
    needs_tls: bool,
    headers: Arc<[u8]>,
    data: cssmtp_batch::DataSpan,
    size: u64,
    attempts: u32,
    in_flight: bool,
    /// Recipients that will not get the mail, with why.
    failed: Vec<FailedRecipient>,
    /// Its undeliverable recipients were returned before a restart.
    returned: bool,
    /// It went into long retry (counted once).
    retried: bool,
}

impl MailState {
    fn is_final(&self) -> bool {
        !self.in_flight
            && self
                .rcpts
                .iter()
                .all(|r| !matches!(r, Rcpt::Pending | Rcpt::Retry))
    }
}

struct Task {
    tkid: u32,
    shared: Arc<TaskShared>,
    spool: Arc<SpoolText>,
    job: JobIdentity,
    arrival: DateTime<Local>,
    mails: HashMap<u32, MailState>,
    /// Recipients of the mails in `mails` (at most about [`MAX_PENDING_RCPTS`]).
    rcpts_tracked: usize,
    due: BTreeSet<(Instant, u32)>,
    outcomes: mpsc::UnboundedSender<MailOutcome>,
    /// Mails being returned to their originators.
    returns: JoinSet<(u32, Returned)>,
    report: FileReport,
    /// The journal and this file's key in it.
    checkpoint: Option<(Journal, Arc<str>)>,
    /// What the journal knew of this file at start (warm restart).
    recovered: FileCheckpoint,
    /// The configuration in force when the task started.
    config: Arc<Config>,
    /// What DISPLAY SPOOLSTATUS shows of this task.
    status: Arc<TaskStatus>,
    suspend: watch::Receiver<Suspend>,
    /// Mails held back by SUSPEND,IMMEDIATE, sent on RESUME.
    parked: BTreeSet<u32>,
}

/// Processes one claimed spool file (at `path`, in `active/`), opened by intake
/// ([`super::layout::SpoolLayout::open_claimed`]); an error opening it is a problem of
/// the file (reported, and the file held or removed as BadSpoolDisp says).
pub async fn run(
    tkid: u32,
    path: PathBuf,
    opened: std::io::Result<Opened>,
    shared: Arc<TaskShared>,
) -> FileReport {
    // The name as shown and recorded: escaped (names are data).
    let name = crate::escape::name(path.file_name().unwrap_or(path.as_os_str()));
    let job = JobIdentity::from_file_name(&name);
    let config = shared.config.current();
    let (status, mut flush_requests) = TaskStatus::new(tkid, &name, &job.job_name, &job.job_id);
    let registered = shared.tasks.register(status);
    let status = Arc::clone(&registered.status);
    let mut report = FileReport {
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
        test_mode: config.options.test_mode,
        needs_tls: false,
        unreturned: Vec::new(),
        disposition: Disposition::LeftActive,
        report: None,
        must_hold: false,
    };
    tracing::info!(
        tkid,
        "CSM2001I Task {tkid} processing spool file {name} (job {} {})",
        job.job_name,
        job.job_id
    );
    let (file, reader, meta) = match opened {
        Ok(o) => (o.file, o.reader, o.meta),
        Err(e) => {
            report.file_problem = Some(format!("cannot read the spool file: {e}"));
            return finish(&shared, &path, report, None).await;
        }
    };
    // A user look-up may ask a directory service: on a blocking thread.
    let uid = meta.uid();
    report.owner = tokio::task::spawn_blocking(move || {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| uid.to_string());
    let key: Arc<str> = Arc::from(journal::file_key(&name, meta.ino()));
    let recovered = shared
        .recovered
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&*key);
    let checkpoint = shared.journal.clone().map(|j| (j, Arc::clone(&key)));
    if let Some(known) = &recovered {
        tracing::info!(
            tkid,
            "CSM2300I Task {tkid} resuming spool file {name} from the checkpoint: {} mail(s) known",
            known.mails.len()
        );
    }
    let limit = config.jes_job_size;
    if limit > 0 && meta.len() > limit.saturating_mul(1000) {
        report.file_problem = Some(format!(
            "552 5.3.4 Spool file size {} bytes exceeds JESJobSize {limit} (thousands of bytes); no mail sent",
            meta.len()
        ));
        return finish(&shared, &path, report, checkpoint.as_ref()).await;
    }
    let (parsed_tx, mut parsed_rx) = mpsc::channel(16);
    let limits = config.batch_limits();
    let parser = tokio::task::spawn_blocking(move || {
        parse_into(
            BufReader::with_capacity(64 * 1024, reader),
            limits,
            &parsed_tx,
        );
    });
    let (outcomes, mut outcome_rx) = mpsc::unbounded_channel();
    let spool = Arc::new(SpoolText {
        file,
        truncate: config.options.data_line_trunc,
    });
    let mut task = Task {
        tkid,
        shared: Arc::clone(&shared),
        spool,
        job,
        arrival: Local::now(),
        mails: HashMap::new(),
        rcpts_tracked: 0,
        due: BTreeSet::new(),
        outcomes,
        returns: JoinSet::new(),
        report,
        checkpoint,
        recovered: recovered.unwrap_or_default(),
        config,
        status,
        suspend: shared.suspend.clone(),
        parked: BTreeSet::new(),
    };
    let mut resumed = shared.suspend.clone();
    // While the journal cannot be written, mails are held back (parked) as by SUSPEND.
    let mut journal_state = task.checkpoint.as_ref().map(|(j, _)| j.writable());
    let max_pending = shared.max_pending_mails();
    let stop = shared.stop.clone();
    let mut summary: Option<Summary> = None;
    let mut parse_done = false;
    loop {
        if parse_done && task.mails.is_empty() && task.returns.is_empty() {
            break;
        }
        task.publish();
        let next_due = task.due.first().map(|(at, _)| *at);
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                parser.abort();
                task.count_until_workers_end(&mut outcome_rx).await;
                tracing::info!(tkid, "CSM2009I Task {tkid} stopped; spool file {} stays claimed for the next start", task.job.file_name);
                return task.report;
            }
            Some(outcome) = outcome_rx.recv() => task.apply(outcome).await,
            Some(answer) = flush_requests.recv() => {
                let flushed = task.flush_retry().await;
                let _ = answer.send(flushed);
            }
            Ok(()) = resumed.changed(), if !task.parked.is_empty() => {
                let now = *resumed.borrow_and_update();
                if now != Suspend::Immediate && !task.release_parked(&stop).await {
                    return task.report;
                }
            }
            Some(()) = async {
                match journal_state.as_mut() {
                    Some(state) => state.changed().await.ok(),
                    None => std::future::pending().await,
                }
            }, if !task.parked.is_empty() => {
                if !task.release_parked(&stop).await {
                    return task.report;
                }
            }
            Some(done) = task.returns.join_next(), if !task.returns.is_empty() => {
                match done {
                    Ok((mail, returned)) => task.returned(mail, &returned),
                    Err(e) => task.report.unreturned.push((0, format!("returning a mail failed: {e}"))),
                }
            }
            () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                if !task.retry_due(&stop).await {
                    return task.report;
                }
            }
            parsed = parsed_rx.recv(), if !parse_done && task.mails.len() < max_pending && task.rcpts_tracked < MAX_PENDING_RCPTS => match parsed {
                Some(Parsed::Mails(mails)) => {
                    for mail in mails {
                        if !task.accept(mail, &stop).await {
                            return task.report;
                        }
                    }
                }
                Some(Parsed::Done(s)) => {
                    parse_done = true;
                    summary = Some(s);
                }
                Some(Parsed::Failed(e)) => {
                    parse_done = true;
                    task.report.file_problem = Some(format!("reading the spool file failed: {e}"));
                }
                None => {
                    parse_done = true;
                    task.report.file_problem.get_or_insert_with(|| "the spool file parser stopped unexpectedly".into());
                }
            },
        }
    }
    if let Some(summary) = summary {
        task.report.errors = summary.errors;
    }
    let report = task.report;
    let checkpoint = task.checkpoint;
    finish(&shared, &path, report, checkpoint.as_ref()).await
}

impl Task {
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
                        self.returned(mail, &returned);
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
                self.returned(mail, &returned);
            }
        }
        self.returns.abort_all();
    }

    /// A mail was returned (notification sent, or dead letter).
    /// Recorded as returned only when it was: else the file stays, and the next start
    /// returns it.
    fn returned(&mut self, mail: u32, returned: &crate::notify::Returned) {
        if returned.is_done() {
            self.record(|f| Record::Returned { f, m: mail });
        } else {
            self.report.unreturned.push((mail, returned.to_string()));
        }
        self.report.returns.push((mail, returned.to_string()));
    }

    fn count_delivered(&mut self, outcome: &MailOutcome) {
        for (_, result) in &outcome.results {
            if matches!(result, RcptResult::Delivered { .. }) {
                self.shared.stats.rcpt_delivered();
                self.report.rcpts_delivered += 1;
            }
        }
    }

    /// Takes a parsed mail: records its refused recipients and queues it.
    async fn accept(&mut self, mail: Mail, stop: &CancellationToken) -> bool {
        self.report.mails += 1;
        self.report.needs_tls |= mail.starttls;
        let failed: Vec<FailedRecipient> = mail
            .rejected
            .iter()
            .map(|r| FailedRecipient::from_syntax(&r.text, &r.error))
            .collect();
        for f in &failed {
            self.undeliverable(mail.ordinal, f);
        }
        if self.config.options.test_mode {
            tracing::info!(
                tkid = self.tkid,
                "CSM2110I TestMode: mail {} of {} to {} recipient(s) read, not sent",
                mail.ordinal,
                self.job.file_name,
                mail.recipients.len()
            );
            return true;
        }
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
        let headers: Arc<[u8]> =
            Arc::from(headers::build(&origin, &facts, config.header, Local::now()));
        let separator = if mail.data.missing_separator_at.is_some() {
            2
        } else {
            0
        };
        // As the receiver stores it: the stuffed dots are not counted (RFC 1870).
        let size = headers.len() as u64 + mail.data.message_size() + separator;
        let count = mail.recipients.len();
        let mut state = MailState {
            line: mail.line,
            reverse_path: mail.reverse_path,
            addresses: mail.recipients.iter().map(|r| r.address.clone()).collect(),
            lines: mail.recipients.iter().map(|r| r.line).collect(),
            rcpts: vec![Rcpt::Pending; count],
            needs_tls: mail.starttls,
            headers,
            data: mail.data,
            size,
            attempts: 0,
            in_flight: false,
            failed,
            returned: false,
            retried: false,
        };
        if let Some(known) = self.recovered.mails.remove(&mail.ordinal) {
            let held = self.restore(mail.ordinal, &mut state, known);
            if !held.is_empty() {
                self.hold_possibly_delivered(mail.ordinal, &mut state, &held)
                    .await;
            }
        }
        let done = state.is_final();
        self.rcpts_tracked += state.rcpts.len();
        self.mails.insert(mail.ordinal, state);
        if done {
            // Only refused recipients (nothing to send, something to return), or every
            // recipient final before a restart.
            self.complete(mail.ordinal).await;
            return true;
        }
        self.dispatch(mail.ordinal, stop).await
    }

    /// Applies what the journal knew of a mail before a restart; returns the recipients
    /// possibly delivered that `PossiblyDelivered Hold` keeps from being sent again.
    fn restore(
        &mut self,
        ordinal: u32,
        state: &mut MailState,
        known: MailCheckpoint,
    ) -> Vec<usize> {
        state.attempts = known.attempts;
        state.returned = known.returned;
        let mut held = Vec::new();
        for (i, slot) in state.rcpts.iter_mut().enumerate() {
            if known.delivered.contains(&i) {
                *slot = Rcpt::Delivered;
                self.report.rcpts_delivered += 1;
            } else if known.extended.contains(&i) {
                *slot = Rcpt::Kept;
                self.report.rcpts_extended += 1;
            } else if known.held.contains(&i) {
                *slot = Rcpt::Held;
                self.report.possibly_delivered_held += 1;
            } else if let Some(f) = known.failed.get(&i) {
                *slot = Rcpt::Failed;
                let f = FailedRecipient {
                    address: state.addresses.get(i).cloned().unwrap_or_default(),
                    line: state.lines.get(i).copied().unwrap_or(state.line),
                    status: f.status.clone(),
                    diagnostic: f.diagnostic.clone(),
                    remote_mta: f.remote.clone(),
                    reason: f.reason.clone(),
                };
                self.report.undeliverable_count += 1;
                if self.report.undeliverable.len() < MAX_LISTED {
                    self.report.undeliverable.push(Undeliverable {
                        mail: ordinal,
                        line: f.line,
                        address: f.address.clone(),
                        reason: f.reason.clone(),
                    });
                }
                state.failed.push(f);
            } else if known.in_doubt.contains(&i) {
                let address = state.addresses.get(i).map_or("", String::as_str);
                let policy = self.config.possibly_delivered;
                tracing::warn!(
                    tkid = self.tkid,
                    "CSM2301W Mail {ordinal} of {} was possibly delivered to <{}> before the restart (the final \".\" was sent, its reply not read); {}",
                    self.job.file_name,
                    crate::escape::data(address),
                    match policy {
                        PossiblyDelivered::Resend => "sending it again (PossiblyDelivered Resend)",
                        PossiblyDelivered::Hold =>
                            "holding it for the operator (PossiblyDelivered Hold)",
                    }
                );
                if policy == PossiblyDelivered::Hold {
                    *slot = Rcpt::Held;
                    held.push(i);
                }
            }
        }
        held
    }

    /// Writes the mail, for its possibly delivered recipients, into `hold/` as a batch
    /// SMTP file the operator may release into `incoming/` (or delete).
    async fn hold_possibly_delivered(
        &mut self,
        ordinal: u32,
        state: &mut MailState,
        held: &[usize],
    ) {
        let rcpts: Vec<String> = held
            .iter()
            .filter_map(|&i| state.addresses.get(i).cloned())
            .collect();
        let full = self.full_mail(state);
        let written = deadletter::store(
            self.shared.layout.hold.clone(),
            format!("{}.mail{ordinal}.possibly-delivered", self.job.file_name),
            &self.shared.host_name,
            "cssmtp: possibly delivered before a restart (PossiblyDelivered Hold); move this file into incoming/ to send it again",
            &[format!(
                "from spool file {} mail {ordinal} (line {})",
                self.job.file_name, state.line
            )],
            &deadletter::Letter {
                from: &state.reverse_path,
                to: &rcpts,
                text: deadletter::Text::Mail(&full),
                starttls: state.needs_tls,
            },
        )
        .await;
        match written {
            Ok(path) => {
                tracing::warn!(
                    tkid = self.tkid,
                    "CSM2302W Mail {ordinal} of {} to {} possibly delivered recipient(s) held as {}",
                    self.job.file_name,
                    rcpts.len(),
                    crate::escape::path(&path)
                );
                self.report.possibly_delivered_held += rcpts.len() as u64;
                let (a, h) = (state.attempts, held.to_vec());
                self.record(|f| Record::Result {
                    f,
                    m: ordinal,
                    o: Outcome {
                        a,
                        h,
                        ..Outcome::default()
                    },
                });
            }
            Err(e) => {
                // Never lose mail: when it cannot be held, it is sent again.
                tracing::error!(
                    "CSM2008E Cannot hold mail {ordinal} of {} in hold/: {e}; sending it again",
                    self.job.file_name
                );
                for &i in held {
                    if let Some(slot) = state.rcpts.get_mut(i) {
                        *slot = Rcpt::Pending;
                    }
                }
            }
        }
    }

    /// Appends a record about this file to the journal (when there is one).
    fn record(&self, make: impl FnOnce(String) -> Record) {
        if let Some((journal, key)) = &self.checkpoint {
            journal.append(&make(key.to_string()));
        }
    }

    /// Updates what DISPLAY SPOOLSTATUS shows of the task.
    fn publish(&self) {
        let s = &self.status;
        let set = |c: &std::sync::atomic::AtomicU64, v: u64| {
            c.store(v, std::sync::atomic::Ordering::Relaxed);
        };
        set(&s.mails_read, u64::from(self.report.mails));
        set(&s.mails_pending, self.mails.len() as u64);
        set(&s.mails_retry, self.due.len() as u64);
        set(&s.rcpts_delivered, self.report.rcpts_delivered);
        set(&s.rcpts_undeliverable, self.report.undeliverable_count);
        set(&s.rcpts_extended, self.report.rcpts_extended);
        if let Ok(mut next) = s.next_retry.lock() {
            *next = self.due.first().map(|(at, _)| {
                std::time::SystemTime::now() + at.saturating_duration_since(Instant::now())
            });
        }
    }

    /// FLUSHRETRY: the mails waiting in long retry leave it now, to extended retry when
    /// it is active, else undeliverable (returned). Returns how many mails.
    async fn flush_retry(&mut self) -> u64 {
        let extended = self.config.extended_retry.is_some();
        let waiting: Vec<u32> = std::mem::take(&mut self.due)
            .into_iter()
            .map(|(_, ordinal)| ordinal)
            .collect();
        let mut flushed = 0;
        for ordinal in waiting {
            let Some(state) = self.mails.get_mut(&ordinal) else {
                continue;
            };
            let mut failed = Vec::new();
            let mut failed_at = Vec::new();
            let mut again = Vec::new();
            for (i, slot) in state.rcpts.iter_mut().enumerate() {
                if *slot != Rcpt::Retry {
                    continue;
                }
                if extended {
                    *slot = Rcpt::Extended;
                    again.push(i);
                } else {
                    *slot = Rcpt::Failed;
                    failed_at.push(i);
                    failed.push(FailedRecipient {
                        address: state.addresses.get(i).cloned().unwrap_or_default(),
                        line: state.lines.get(i).copied().unwrap_or(state.line),
                        status: "4.4.7".into(),
                        diagnostic: None,
                        remote_mta: None,
                        reason: "long retry ended by the operator (FLUSHRETRY); not delivered"
                            .into(),
                    });
                }
            }
            let attempts = state.attempts;
            flushed += 1;
            self.conclude(ordinal, attempts, again, &failed_at, failed)
                .await;
        }
        tracing::info!(
            tkid = self.tkid,
            "CSM2114I Task {}: {flushed} mail(s) of {} taken out of long retry (FLUSHRETRY), to {}",
            self.tkid,
            self.job.file_name,
            if extended {
                "extended retry"
            } else {
                "undeliverable"
            }
        );
        flushed
    }

    /// RESUME: the mails SUSPEND,IMMEDIATE held back go out; false when cssmtp is
    /// stopping.
    async fn release_parked(&mut self, stop: &CancellationToken) -> bool {
        for ordinal in std::mem::take(&mut self.parked) {
            if !self.dispatch(ordinal, stop).await {
                return false;
            }
        }
        true
    }

    /// Queues the pending recipients of a mail; false when cssmtp is stopping.
    async fn dispatch(&mut self, ordinal: u32, stop: &CancellationToken) -> bool {
        // SUSPEND,IMMEDIATE: no new mail goes out until RESUME; the task goes on
        // with everything else (results, FLUSHRETRY, returns).
        // A journal that cannot be written holds them back too: no mail's final "." goes
        // without its record.
        let journal_blocked = self
            .checkpoint
            .as_ref()
            .is_some_and(|(j, _)| !j.is_writable());
        if *self.suspend.borrow() == Suspend::Immediate || journal_blocked {
            self.parked.insert(ordinal);
            return true;
        }
        let Some(state) = self.mails.get_mut(&ordinal) else {
            return true;
        };
        let rcpt_index: Vec<usize> = state
            .rcpts
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r, Rcpt::Pending))
            .map(|(i, _)| i)
            .collect();
        if rcpt_index.is_empty() {
            return true;
        }
        state.in_flight = true;
        state.attempts += 1;
        let job = MailJob {
            key: MailKey {
                tkid: self.tkid,
                ordinal,
            },
            reverse_path: state.reverse_path.clone(),
            recipients: rcpt_index
                .iter()
                .filter_map(|&i| state.addresses.get(i).cloned())
                .collect(),
            rcpt_index,
            needs_tls: state.needs_tls,
            // The added headers are cssmtp's own (ASCII), checked all the same.
            eight_bit: state.data.eight_bit || !state.headers.is_ascii(),
            headers: Arc::clone(&state.headers),
            text: MailText::Spool {
                spool: Arc::clone(&self.spool),
                data: state.data.clone(),
            },
            size: state.size,
            reply: self.outcomes.clone(),
            checkpoint: self.checkpoint.as_ref().map(|(journal, file)| Checkpoint {
                journal: journal.clone(),
                file: Arc::clone(file),
                mail: ordinal,
            }),
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => false,
            sent = self.shared.queue.send(job) => sent.is_ok(),
        }
    }

    async fn retry_due(&mut self, stop: &CancellationToken) -> bool {
        let now = Instant::now();
        while let Some(&(at, ordinal)) = self.due.first() {
            if at > now {
                break;
            }
            self.due.remove(&(at, ordinal));
            if let Some(state) = self.mails.get_mut(&ordinal) {
                for r in &mut state.rcpts {
                    if *r == Rcpt::Retry {
                        *r = Rcpt::Pending;
                    }
                }
            }
            if !self.dispatch(ordinal, stop).await {
                return false;
            }
        }
        true
    }

    /// Counts and lists a recipient that will not get its mail.
    fn undeliverable(&mut self, mail: u32, f: &FailedRecipient) {
        self.shared.stats.rcpt_undeliverable();
        self.report.undeliverable_count += 1;
        tracing::warn!(
            tkid = self.tkid,
            "CSM2102W Mail {mail} (line {}) of {} is undeliverable to <{}>: {}",
            f.line,
            self.job.file_name,
            crate::escape::data(&f.address),
            crate::escape::data(&f.reason)
        );
        if self.report.undeliverable.len() < MAX_LISTED {
            self.report.undeliverable.push(Undeliverable {
                mail,
                line: f.line,
                address: f.address.clone(),
                reason: f.reason.clone(),
            });
        }
    }

    async fn apply(&mut self, outcome: MailOutcome) {
        let ordinal = outcome.key.ordinal;
        let retry = self.config.retry_limit;
        let extended = self.config.extended_retry.is_some();
        let mut delivered = 0usize;
        let mut target = None;
        let mut final_reply = None;
        let mut failed: Vec<FailedRecipient> = Vec::new();
        // For the journal: not final yet (retry, or extended retry until the
        // MailDirectory has the mail), and failed.
        let mut again: Vec<usize> = Vec::new();
        let mut failed_at: Vec<usize> = Vec::new();
        let mut any_retry = false;
        let mut changed = None;
        let mut unrecorded = false;
        let Some(state) = self.mails.get_mut(&ordinal) else {
            return;
        };
        state.in_flight = false;
        let may_retry =
            retry.count > 0 && !retry.interval.is_zero() && state.attempts <= retry.count;
        for (i, result) in outcome.results {
            let Some(slot) = state.rcpts.get_mut(i) else {
                continue;
            };
            let address = state.addresses.get(i).cloned().unwrap_or_default();
            let line = state.lines.get(i).copied().unwrap_or(state.line);
            match result {
                RcptResult::Delivered { target: t, reply } => {
                    *slot = Rcpt::Delivered;
                    delivered += 1;
                    target = Some(t);
                    final_reply = Some(reply);
                    self.shared.stats.rcpt_delivered();
                    self.report.rcpts_delivered += 1;
                }
                // Not sent, not retried, not returned: held with the file.
                RcptResult::Retry(failure)
                    if matches!(failure.problem, Problem::TextChanged(_)) =>
                {
                    *slot = Rcpt::Held;
                    changed = Some(failure);
                }
                RcptResult::Retry(failure) if journal_not_written(&failure) => {
                    // Not sent for want of its journal record: not an attempt; it goes
                    // again at once (held back until the journal can be written).
                    *slot = Rcpt::Retry;
                    again.push(i);
                    unrecorded = true;
                }
                RcptResult::Retry(failure) if may_retry => {
                    self.shared.stats.rcpt_retried();
                    tracing::info!(
                        "CSM2103I Mail {ordinal} of {} to <{}> will be tried again in {} s (attempt {} of {}): {}",
                        self.job.file_name,
                        crate::escape::data(&address),
                        retry.interval.as_secs(),
                        state.attempts,
                        retry.count + 1,
                        crate::escape::data(&failure.to_string())
                    );
                    *slot = Rcpt::Retry;
                    again.push(i);
                    any_retry = true;
                }
                RcptResult::Retry(failure) if extended => {
                    tracing::info!(
                        "CSM2111I Mail {ordinal} of {} to <{}> goes to extended retry: {}",
                        self.job.file_name,
                        crate::escape::data(&address),
                        crate::escape::data(&failure.to_string())
                    );
                    *slot = Rcpt::Extended;
                    again.push(i);
                }
                RcptResult::Retry(failure) => {
                    *slot = Rcpt::Failed;
                    failed_at.push(i);
                    let note = if retry.count == 0 || retry.interval.is_zero() {
                        "no retry (RetryLimit)".to_owned()
                    } else {
                        format!("RetryLimit of {} retries exhausted", retry.count)
                    };
                    failed.push(FailedRecipient::from_failure(
                        &address,
                        line,
                        &failure,
                        Some(&note),
                    ));
                }
                RcptResult::Undeliverable(failure) => {
                    *slot = Rcpt::Failed;
                    failed_at.push(i);
                    failed.push(FailedRecipient::from_failure(
                        &address, line, &failure, None,
                    ));
                }
            }
        }
        if let Some(failure) = changed {
            let problem = format!(
                "mail {ordinal} (line {}) was not sent and is held with the file: {failure}",
                state.line
            );
            tracing::warn!(
                tkid = self.tkid,
                "CSM2140W Spool file {}: {problem}",
                self.job.file_name
            );
            self.report.must_hold = true;
            self.report.file_problem = Some(match self.report.file_problem.take() {
                Some(earlier) => format!("{earlier}; {problem}"),
                None => problem,
            });
        }
        if unrecorded {
            state.attempts = state.attempts.saturating_sub(1);
        }
        let attempts = state.attempts;
        if any_retry || unrecorded {
            let wait = if any_retry {
                retry.interval
            } else {
                std::time::Duration::ZERO
            };
            self.due.insert((Instant::now() + wait, ordinal));
        }
        if any_retry && !state.retried {
            state.retried = true;
            self.shared.stats.mail_into_retry();
        }
        if delivered > 0 {
            tracing::info!(
                tkid = self.tkid,
                "CSM2100I Mail {ordinal} of {} sent to {}: {delivered} recipient(s) accepted ({})",
                self.job.file_name,
                target.unwrap_or_default(),
                crate::escape::data(&final_reply.map(|r| r.to_string()).unwrap_or_default())
            );
        }
        // Deliveries are recorded by the session, as soon as the server's reply is read.
        self.conclude(ordinal, attempts, again, &failed_at, failed)
            .await;
    }

    /// After an attempt (or FLUSHRETRY): records the recipients of a mail not final yet
    /// (`again`) and those that failed, counts and lists the failed ones, and completes
    /// the mail when every recipient is final.
    async fn conclude(
        &mut self,
        ordinal: u32,
        attempts: u32,
        again: Vec<usize>,
        failed_at: &[usize],
        failed: Vec<FailedRecipient>,
    ) {
        if !again.is_empty() || !failed.is_empty() {
            let u = failed_at
                .iter()
                .zip(&failed)
                .map(|(&i, f)| failed_rcpt(i, f))
                .collect();
            self.record(|f| Record::Result {
                f,
                m: ordinal,
                o: Outcome {
                    a: attempts,
                    retry: again,
                    u,
                    ..Outcome::default()
                },
            });
        }
        for f in &failed {
            self.undeliverable(ordinal, f);
        }
        if let Some(state) = self.mails.get_mut(&ordinal) {
            state.failed.extend(failed);
            if state.is_final() {
                self.complete(ordinal).await;
            }
        }
    }

    /// The MAIL accounting record of a mail now final.
    fn mail_record(&self, ordinal: u32, state: &MailState) {
        if !self.shared.accounting.wants(Kind::Mail) {
            return;
        }
        let count = |f: fn(&Rcpt) -> bool| state.rcpts.iter().filter(|r| f(r)).count();
        self.shared.accounting.record(
            Kind::Mail,
            serde_json::json!({
                "spool_file": self.job.file_name,
                "job_name": self.job.job_name,
                "job_id": self.job.job_id,
                "tkid": self.tkid,
                "mail": ordinal,
                "line": state.line,
                "from": state.reverse_path,
                "rcpts": state.rcpts.len() + state.failed.len() - count(|r| *r == Rcpt::Failed),
                "delivered": count(|r| *r == Rcpt::Delivered),
                "undeliverable": state.failed.len(),
                "extended_retry": count(|r| matches!(r, Rcpt::Extended | Rcpt::Kept)),
                "held": count(|r| *r == Rcpt::Held),
                "size": state.size,
                "attempts": state.attempts,
                "arrival": accounting::time(std::time::SystemTime::from(self.arrival)),
            }),
        );
    }

    /// Every recipient of a mail is final: hand the extended ones to extended retry and
    /// return the failed ones.
    async fn complete(&mut self, ordinal: u32) {
        let Some(state) = self.mails.remove(&ordinal) else {
            return;
        };
        self.rcpts_tracked = self.rcpts_tracked.saturating_sub(state.rcpts.len());
        if state.rcpts.iter().all(|r| *r == Rcpt::Delivered) && state.failed.is_empty() {
            self.shared.stats.mail_all_sent();
        }
        self.mail_record(ordinal, &state);
        let extended: Vec<usize> = (0..state.rcpts.len())
            .filter(|&i| state.rcpts.get(i) == Some(&Rcpt::Extended))
            .collect();
        let kept = if extended.is_empty() {
            Ok(())
        } else {
            self.keep_for_extended_retry(ordinal, &state, &extended)
                .await
        };
        if let Err(e) = kept {
            // The spool file is the only copy: it stays in active/ and the journal keeps
            // these recipients not final, so that the next start sends them again.
            tracing::error!(
                "CSM2112E Mail {ordinal} of {} cannot be kept for extended retry in {}: {e}; the spool file is kept",
                self.job.file_name,
                self.config.mail_directory().display()
            );
            self.report.unreturned.push((
                ordinal,
                format!(
                    "{} recipient(s) could not be kept for extended retry: {e}",
                    extended.len()
                ),
            ));
        } else if !extended.is_empty() {
            // The MailDirectory has it (durably) now. A crash just before this record
            // leaves it in both places: sent again from the spool file, and from there.
            let a = state.attempts;
            self.record(|f| Record::Result {
                f,
                m: ordinal,
                o: Outcome {
                    a,
                    x: extended,
                    ..Outcome::default()
                },
            });
        }
        if state.failed.is_empty() || state.returned || self.config.options.test_mode {
            return;
        }
        self.shared.stats.mail_undeliverable();
        // Read what the notification or dead letter needs while the file is claimed (an
        // unreadable text leaves cssmtp's headers only).
        let header = self
            .read_header(&state)
            .await
            .unwrap_or_else(|_| state.headers.to_vec());
        let header = cssmtp_wire::data::dot_unstuff(&header);
        // The whole mail stays in the spool file: a dead letter or notification copies
        // what it needs from there, a chunk at a time.
        let full = Some(self.full_mail(&state));
        let original = Original {
            reverse_path: state.reverse_path.clone(),
            auto_submitted: state.data.auto_submitted,
            header,
            full,
            needs_tls: state.needs_tls,
        };
        let notifier = Arc::clone(&self.shared.notifier);
        let (job, arrival, line, failed) =
            (self.job.clone(), self.arrival, state.line, state.failed);
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

    /// A mail as sent, its text left in the claimed spool file (read when needed).
    fn full_mail(&self, state: &MailState) -> deadletter::FullMail {
        deadletter::FullMail {
            headers: Arc::clone(&state.headers),
            text: MailText::Spool {
                spool: Arc::clone(&self.spool),
                data: state.data.clone(),
            },
        }
    }

    /// A mail's header as sent: cssmtp's headers, then the text's header (at most
    /// [`HEADER_MAX`] of it), read again from the claimed spool file.
    async fn read_header(&self, state: &MailState) -> std::io::Result<Vec<u8>> {
        let data = cssmtp_batch::DataSpan {
            end: state
                .data
                .header_end
                .min(state.data.start.saturating_add(HEADER_MAX)),
            missing_separator_at: None,
            ..state.data.clone()
        };
        let text = MailText::Spool {
            spool: Arc::clone(&self.spool),
            data,
        };
        let mut wire = state.headers.to_vec();
        wire.extend(extended::read_all(&text).await?);
        Ok(wire)
    }

    /// Writes the mail, for its `extended` recipients, into the MailDirectory.
    async fn keep_for_extended_retry(
        &mut self,
        ordinal: u32,
        state: &MailState,
        extended: &[usize],
    ) -> std::io::Result<()> {
        let meta = extended::Meta {
            spool_file: self.job.file_name.clone(),
            job_name: self.job.job_name.clone(),
            job_id: self.job.job_id.clone(),
            mail: ordinal,
            line: state.line,
            first_attempt: std::time::SystemTime::from(self.arrival),
            rcpt_lines: extended
                .iter()
                .map(|&i| state.lines.get(i).copied().unwrap_or(state.line))
                .collect(),
        };
        let rcpts: Vec<String> = extended
            .iter()
            .filter_map(|&i| state.addresses.get(i).cloned())
            .collect();
        let count = rcpts.len() as u64;
        let path = extended::store_streamed(
            self.config.mail_directory(),
            &self.shared.host_name,
            &meta,
            state.needs_tls,
            &state.reverse_path,
            &rcpts,
            &self.full_mail(state),
        )
        .await?;
        self.report.rcpts_extended += count;
        self.shared.stats.rcpts_extended(count);
        tracing::info!(
            "CSM2113I Mail {ordinal} of {} kept for extended retry as {}",
            self.job.file_name,
            crate::escape::path(&path)
        );
        if let Some(tx) = &self.shared.extended {
            let _ = tx.send(path);
        }
        Ok(())
    }
}

/// Most of a mail's header read for its notification: a header of any size costs fixed
/// memory (a longer one is cut).
const HEADER_MAX: u64 = 256 * 1024;

/// Disposes of the file, sends its error report and logs the result. Nothing that was
/// neither delivered nor returned goes: a file with mails that could not be returned
/// stays in `active/` (the journal says what is left), and a file whose error report
/// could be neither written nor sent is held.
async fn finish(
    shared: &TaskShared,
    path: &Path,
    mut report: FileReport,
    checkpoint: Option<&(Journal, Arc<str>)>,
) -> FileReport {
    let name = report.job.file_name.clone();
    for e in report.errors.iter().filter(|e| !e.is_recipient_error()) {
        tracing::warn!(tkid = report.tkid, "CSM2010W {name} line {}: {e}", e.line);
    }
    let config = shared.config.current();
    let problems = report.has_problems();
    let unreturned = report
        .unreturned
        .iter()
        .map(|(m, why)| format!("mail {m}: {why}"))
        .collect::<Vec<_>>()
        .join("; ");
    if !report.unreturned.is_empty() && checkpoint.is_some() {
        // The journal knows what was delivered: the next start returns (or sends) the
        // rest, and nothing else.
        tracing::error!(
            tkid = report.tkid,
            "CSM2130E Spool file {name} is kept in active/: {unreturned}; once the cause is fixed, the next start of cssmtp returns (or sends) what is left"
        );
        report.disposition = Disposition::LeftActive;
        if problems {
            report.report = shared.notifier.report(&report).await.unwrap_or_else(Some);
        }
        return logged(shared, report, problems);
    }
    // Without a journal a restart would send the whole file again: it is held instead,
    // for the operator (its report lists what was not returned).
    let kept = !report.unreturned.is_empty();
    if kept {
        tracing::error!(
            tkid = report.tkid,
            "CSM2130E Spool file {name} is held (no checkpoint journal): {unreturned}; its report lists what was not returned"
        );
    }
    let mut hold = kept
        || (report.is_bad() && (config.bad_spool_disp == BadSpoolDisp::Hold || report.must_hold));
    let reported = !hold && problems;
    if reported {
        // The report before the file goes: a report that cannot be made keeps it.
        report.disposition = if report.is_bad() {
            Disposition::Removed
        } else {
            Disposition::Deleted
        };
        match shared.notifier.report(&report).await {
            Ok(done) => report.report = done,
            Err(why) => {
                tracing::error!(
                    tkid = report.tkid,
                    "CSM2131E The error report for spool file {name} could not be made ({why}); the file is held instead of deleted"
                );
                report.report = Some(why);
                hold = true;
            }
        }
    }
    let disposition = if !hold {
        // Every recipient is final. The reaper makes that durable (with every record
        // before) before the file goes, so that a file a power failure brings back is
        // not sent again. (A failing journal has said so, CSM2303E; the file goes all
        // the same: keeping it would send it all again.)
        let key = checkpoint.map(|(journal, key)| {
            let disp = if report.is_bad() {
                "removed"
            } else {
                "deleted"
            };
            journal.append(&Record::Done {
                f: key.to_string(),
                disp: disp.into(),
            });
            Arc::clone(key)
        });
        shared.reaper.remove(path.to_owned(), key);
        Ok(if report.is_bad() {
            Disposition::Removed
        } else {
            Disposition::Deleted
        })
    } else {
        // Moved, then recorded (a file back in active/ after `held` is a released one,
        // so the move must be durable first). The move and the directory syncs run on a
        // blocking thread.
        let (layout, path) = (shared.layout.clone(), path.to_owned());
        tokio::task::spawn_blocking(move || {
            layout.hold(&path).and_then(|to| {
                crate::durable::sync_dir(&layout.hold)?;
                crate::durable::sync_dir(&layout.active)?;
                Ok(Disposition::Held(to))
            })
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    report.disposition = match disposition {
        Ok(d) => {
            if let Some((journal, key)) = checkpoint.filter(|_| hold) {
                journal.append(&Record::Done {
                    f: key.to_string(),
                    disp: "held".into(),
                });
                journal.forget(key);
            }
            d
        }
        Err(e) => {
            tracing::error!(
                "CSM2008E Cannot dispose of spool file {}: {e}; it stays in active/",
                crate::escape::path(path)
            );
            Disposition::LeftActive
        }
    };
    if let Disposition::Held(held) = &report.disposition {
        // The report beside the held file, whatever `Report` says: the operator who
        // finds the file finds why.
        let mut beside = held.clone().into_os_string();
        beside.push(".report");
        let text = report::text(&report, &shared.host_name, &config.ext_wrt_name);
        let to = PathBuf::from(&beside);
        let written = tokio::task::spawn_blocking(move || {
            crate::durable::replace(&to, text.as_bytes(), 0o640)
        })
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
        if let Err(e) = written {
            tracing::error!(
                "CSM2008E Cannot write {}: {e}",
                crate::escape::path(Path::new(&beside))
            );
        }
    }
    if problems && !reported {
        // A held file: it stays whatever becomes of its report.
        report.report = shared.notifier.report(&report).await.unwrap_or_else(Some);
    }
    logged(shared, report, problems)
}

/// Logs and accounts for a finished file.
fn logged(shared: &TaskShared, report: FileReport, problems: bool) -> FileReport {
    let name = report.job.file_name.clone();
    let summary = format!(
        "{} mail(s), {} recipient(s) delivered, {} undeliverable, {} in extended retry, {} error(s){}{}",
        report.mails,
        report.rcpts_delivered,
        report.undeliverable_count,
        report.rcpts_extended,
        report.errors.len(),
        report
            .file_problem
            .as_ref()
            .map(|p| format!("; {p}"))
            .unwrap_or_default(),
        if report.test_mode {
            "; TestMode: nothing sent"
        } else {
            ""
        }
    );
    match &report.disposition {
        Disposition::Deleted => tracing::info!(
            tkid = report.tkid,
            "CSM2002I Spool file {name} complete: {summary}; deleted"
        ),
        Disposition::Held(to) => tracing::warn!(
            tkid = report.tkid,
            "CSM2003W Spool file {name} held as {}: {summary}; report in {}.report",
            crate::escape::path(to),
            crate::escape::path(to)
        ),
        Disposition::Removed => tracing::warn!(
            tkid = report.tkid,
            "CSM2004W Spool file {name} removed (BadSpoolDisp Delete): {summary}"
        ),
        Disposition::LeftActive => {}
    }
    shared
        .stats
        .file_done(matches!(report.disposition, Disposition::Held(_)), problems);
    if shared.accounting.wants(Kind::Spool) {
        shared.accounting.record(
            Kind::Spool,
            serde_json::json!({
                "spool_file": name,
                "job_name": report.job.job_name,
                "job_id": report.job.job_id,
                "owner": report.owner,
                "tkid": report.tkid,
                "mails": report.mails,
                "rcpts_delivered": report.rcpts_delivered,
                "rcpts_undeliverable": report.undeliverable_count,
                "rcpts_extended_retry": report.rcpts_extended,
                "errors": report.errors.len(),
                "problem": report.file_problem,
                "test_mode": report.test_mode,
                "disposition": match &report.disposition {
                    Disposition::Deleted => "deleted".to_owned(),
                    Disposition::Held(to) => format!("held {}", crate::escape::path(to)),
                    Disposition::Removed => "removed".to_owned(),
                    Disposition::LeftActive => "left in active/".to_owned(),
                },
            }),
        );
    }
    report
}

/// The mail was not sent because its `sent` record could not be written.
fn journal_not_written(failure: &crate::delivery::Failure) -> bool {
    matches!(&failure.problem, crate::delivery::Problem::Connection(why) if *why == journal::NotWritten.to_string())
}

/// A failed recipient as the journal keeps it.
fn failed_rcpt(i: usize, f: &FailedRecipient) -> FailedRcpt {
    FailedRcpt {
        i,
        status: f.status.clone(),
        diagnostic: f.diagnostic.clone(),
        remote: f.remote_mta.clone(),
        reason: f.reason.clone(),
    }
}
