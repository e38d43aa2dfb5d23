//! The spool task (CSSMTP's "JES task"): one claimed spool file, from its first line to
//! its disposition.
//!
//! The task owns the state of every recipient of every mail in its file. A parser on a
//! blocking thread streams mails in; each mail is queued for delivery with its headers
//! built once; results come back per recipient. Recipients that got a 4xx are tried
//! again every `RetryLimit Interval`, at most `Count` times, while the file stays
//! claimed (CSSMTP's long retry); the text is read again from the file each time. The
//! file is removed only when every recipient of every mail is final; a file with syntax
//! errors or undeliverable recipients goes to `hold/` with a report (BadSpoolDisp Hold)
//! or is removed (BadSpoolDisp Delete).

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cssmtp_batch::{Mail, Summary, SyntaxError};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::layout::{DirSync, SpoolLayout, sync_dir};
use super::name::JobIdentity;
use super::reader::{Parsed, parse_into};
use crate::config::{BadSpoolDisp, Config};
use crate::delivery::{MailJob, MailKey, MailOutcome, RcptResult, SpoolText};
use crate::headers::{self, MailFacts, Origin};
use crate::stats::Stats;

/// Mails of one file tracked at once (in delivery or waiting to retry); the parser waits
/// beyond this, so memory stays bounded whatever the file's size.
const MAX_PENDING_MAILS: usize = 1024;
/// Undeliverable recipients listed in a report (all are counted).
const MAX_LISTED: usize = 1000;

/// What spool tasks share.
pub struct TaskShared {
    pub config: Arc<Config>,
    pub host_name: String,
    pub layout: SpoolLayout,
    pub queue: async_channel::Sender<MailJob>,
    pub stats: Arc<Stats>,
    pub stop: CancellationToken,
    /// Group commit of removals from `active/`.
    pub active_sync: DirSync,
}

/// A recipient that will not get the mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undeliverable {
    pub mail: u32,
    /// Line of the RCPT TO.
    pub line: u32,
    pub address: String,
    pub reason: String,
}

/// What became of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Every recipient delivered, no errors: removed.
    Deleted,
    /// Problems: moved to `hold/` (path of the file there).
    Held(PathBuf),
    /// Problems, BadSpoolDisp Delete: removed.
    Removed,
    /// cssmtp stopped first: the file stays in `active/` for the next start.
    LeftActive,
}

/// The result of one spool file.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub tkid: u32,
    pub job: JobIdentity,
    pub mails: u32,
    pub rcpts_delivered: u64,
    pub undeliverable_count: u64,
    pub undeliverable: Vec<Undeliverable>,
    pub errors: Vec<SyntaxError>,
    /// A problem with the file as a whole (unreadable, JESJobSize).
    pub file_problem: Option<String>,
    pub disposition: Disposition,
}

impl FileReport {
    /// True when the file had anything to report.
    pub fn has_problems(&self) -> bool {
        self.undeliverable_count > 0 || !self.errors.is_empty() || self.file_problem.is_some()
    }
}

#[derive(Debug, Clone)]
enum Rcpt {
    Pending,
    Delivered,
    Retry,
    Final,
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
}

impl MailState {
    fn is_final(&self) -> bool {
        !self.in_flight
            && self
                .rcpts
                .iter()
                .all(|r| matches!(r, Rcpt::Delivered | Rcpt::Final))
    }
}

struct Task {
    tkid: u32,
    shared: Arc<TaskShared>,
    spool: Arc<SpoolText>,
    job: JobIdentity,
    owner: String,
    mails: HashMap<u32, MailState>,
    due: BTreeSet<(Instant, u32)>,
    outcomes: mpsc::UnboundedSender<MailOutcome>,
    report: FileReport,
}

/// Processes one claimed spool file (at `path`, in `active/`).
pub async fn run(tkid: u32, path: PathBuf, shared: Arc<TaskShared>) -> FileReport {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("?")
        .to_owned();
    let job = JobIdentity::from_file_name(&name);
    let mut report = FileReport {
        tkid,
        job: job.clone(),
        mails: 0,
        rcpts_delivered: 0,
        undeliverable_count: 0,
        undeliverable: Vec::new(),
        errors: Vec::new(),
        file_problem: None,
        disposition: Disposition::LeftActive,
    };
    tracing::info!(
        tkid,
        "CSM2001I Task {tkid} processing spool file {name} (job {} {})",
        job.job_name,
        job.job_id
    );
    let opened = File::open(&path).and_then(|f| f.metadata().map(|m| (f, m)));
    let (file, meta) = match opened {
        Ok(x) => x,
        Err(e) => {
            report.file_problem = Some(format!("cannot read the spool file: {e}"));
            return finish(&shared, &path, report).await;
        }
    };
    let limit = shared.config.jes_job_size;
    if limit > 0 && meta.len() > limit.saturating_mul(1000) {
        report.file_problem = Some(format!(
            "552 5.3.4 Spool file size {} bytes exceeds JESJobSize {limit} (thousands of bytes); no mail sent",
            meta.len()
        ));
        return finish(&shared, &path, report).await;
    }
    let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(meta.uid()))
        .ok()
        .flatten()
        .map_or_else(|| meta.uid().to_string(), |u| u.name);
    let reader = match file.try_clone() {
        Ok(f) => f,
        Err(e) => {
            report.file_problem = Some(format!("cannot read the spool file: {e}"));
            return finish(&shared, &path, report).await;
        }
    };
    let (parsed_tx, mut parsed_rx) = mpsc::channel(16);
    let limits = shared.config.batch_limits();
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
        truncate: shared.config.options.data_line_trunc,
    });
    let mut task = Task {
        tkid,
        shared: Arc::clone(&shared),
        spool,
        job,
        owner,
        mails: HashMap::new(),
        due: BTreeSet::new(),
        outcomes,
        report,
    };
    let stop = shared.stop.clone();
    let mut summary: Option<Summary> = None;
    let mut parse_done = false;
    loop {
        if parse_done && task.mails.is_empty() {
            break;
        }
        let next_due = task.due.first().map(|(at, _)| *at);
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                parser.abort();
                tracing::info!(tkid, "CSM2009I Task {tkid} stopped; spool file {} stays claimed for the next start", task.job.file_name);
                return task.report;
            }
            Some(outcome) = outcome_rx.recv() => task.apply(outcome),
            () = sleep_until(next_due.unwrap_or_else(Instant::now)), if next_due.is_some() => {
                if !task.retry_due(&stop).await {
                    return task.report;
                }
            }
            parsed = parsed_rx.recv(), if !parse_done && task.mails.len() < MAX_PENDING_MAILS => match parsed {
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
    finish(&shared, &path, report).await
}

impl Task {
    /// Takes a parsed mail: records its refused recipients and queues it.
    async fn accept(&mut self, mail: Mail, stop: &CancellationToken) -> bool {
        self.report.mails += 1;
        for rejected in &mail.rejected {
            self.undeliverable(
                mail.ordinal,
                rejected.error.line,
                &rejected.text,
                rejected.error.to_string(),
            );
        }
        if mail.recipients.is_empty() {
            return true;
        }
        let config = &self.shared.config;
        let origin = Origin {
            host: &self.shared.host_name,
            writer: &config.ext_wrt_name,
            job: &self.job,
            owner: &self.owner,
        };
        let facts = MailFacts {
            ordinal: mail.ordinal,
            helo: &mail.helo,
            esmtp: mail.esmtp,
            has_date: mail.data.has_date,
            has_message_id: mail.data.has_message_id,
        };
        let headers: Arc<[u8]> = Arc::from(headers::build(
            &origin,
            &facts,
            config.header,
            chrono::Local::now(),
        ));
        let separator = if mail.data.missing_separator_at.is_some() {
            2
        } else {
            0
        };
        let size = headers.len() as u64 + mail.data.wire_size + separator;
        let count = mail.recipients.len();
        let state = MailState {
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
        };
        self.mails.insert(mail.ordinal, state);
        self.dispatch(mail.ordinal, stop).await
    }

    /// Queues the pending recipients of a mail; false when cssmtp is stopping.
    async fn dispatch(&mut self, ordinal: u32, stop: &CancellationToken) -> bool {
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
            spool: Arc::clone(&self.spool),
            reverse_path: state.reverse_path.clone(),
            recipients: rcpt_index
                .iter()
                .filter_map(|&i| state.addresses.get(i).cloned())
                .collect(),
            rcpt_index,
            needs_tls: state.needs_tls,
            headers: Arc::clone(&state.headers),
            data: state.data.clone(),
            size: state.size,
            reply: self.outcomes.clone(),
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
                    if matches!(r, Rcpt::Retry) {
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

    fn undeliverable(&mut self, mail: u32, line: u32, address: &str, reason: String) {
        self.shared.stats.rcpt_undeliverable();
        self.report.undeliverable_count += 1;
        tracing::warn!(
            tkid = self.tkid,
            "CSM2102W Mail {mail} (line {line}) of {} is undeliverable to <{address}>: {reason}",
            self.job.file_name
        );
        if self.report.undeliverable.len() < MAX_LISTED {
            self.report.undeliverable.push(Undeliverable {
                mail,
                line,
                address: address.to_owned(),
                reason,
            });
        }
    }

    fn apply(&mut self, outcome: MailOutcome) {
        let ordinal = outcome.key.ordinal;
        let retry = self.shared.config.retry_limit;
        let mut delivered = 0usize;
        let mut target = None;
        let mut final_reply = None;
        let mut failed: Vec<(u32, String, String)> = Vec::new();
        let mut any_retry = false;
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
                RcptResult::Retry(failure) if may_retry => {
                    self.shared.stats.rcpt_retried();
                    tracing::info!(
                        tkid = self.tkid,
                        "CSM2103I Mail {ordinal} of {} to <{address}> will be tried again in {} s (attempt {} of {}): {failure}",
                        self.job.file_name,
                        retry.interval.as_secs(),
                        state.attempts,
                        retry.count + 1
                    );
                    *slot = Rcpt::Retry;
                    any_retry = true;
                }
                RcptResult::Retry(failure) => {
                    *slot = Rcpt::Final;
                    let reason = if retry.count == 0 || retry.interval.is_zero() {
                        format!("{failure}; no retry (RetryLimit)")
                    } else {
                        format!("{failure}; RetryLimit of {} retries exhausted", retry.count)
                    };
                    failed.push((line, address, reason));
                }
                RcptResult::Undeliverable(failure) => {
                    *slot = Rcpt::Final;
                    failed.push((line, address, failure.to_string()));
                }
            }
        }
        if any_retry {
            self.due.insert((Instant::now() + retry.interval, ordinal));
        }
        let done = state.is_final();
        if delivered > 0 {
            tracing::info!(
                tkid = self.tkid,
                "CSM2100I Mail {ordinal} of {} sent to {}: {delivered} recipient(s) accepted ({})",
                self.job.file_name,
                target.unwrap_or_default(),
                final_reply.map(|r| r.to_string()).unwrap_or_default()
            );
        }
        for (line, address, reason) in failed {
            self.undeliverable(ordinal, line, &address, reason);
        }
        if done {
            self.mails.remove(&ordinal);
        }
    }
}

/// Disposes of the file and logs the result.
async fn finish(shared: &TaskShared, path: &Path, mut report: FileReport) -> FileReport {
    let name = report.job.file_name.clone();
    for e in &report.errors {
        tracing::warn!(tkid = report.tkid, "CSM2010W {name} line {}: {e}", e.line);
    }
    let problems = report.has_problems();
    let disposition = if !problems {
        std::fs::remove_file(path).map(|()| Disposition::Deleted)
    } else {
        match shared.config.bad_spool_disp {
            BadSpoolDisp::Delete => std::fs::remove_file(path).map(|()| Disposition::Removed),
            BadSpoolDisp::Hold => hold(&shared.layout, path, &report),
        }
    };
    shared.active_sync.request();
    report.disposition = match disposition {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(
                "CSM2008E Cannot dispose of spool file {}: {e}; it stays in active/",
                path.display()
            );
            Disposition::LeftActive
        }
    };
    let summary = format!(
        "{} mail(s), {} recipient(s) delivered, {} undeliverable, {} error(s){}",
        report.mails,
        report.rcpts_delivered,
        report.undeliverable_count,
        report.errors.len(),
        report
            .file_problem
            .as_ref()
            .map(|p| format!("; {p}"))
            .unwrap_or_default()
    );
    match &report.disposition {
        Disposition::Deleted => tracing::info!(
            tkid = report.tkid,
            "CSM2002I Spool file {name} complete: {summary}; deleted"
        ),
        Disposition::Held(to) => tracing::warn!(
            tkid = report.tkid,
            "CSM2003W Spool file {name} held as {}: {summary}; report in {}.report",
            to.display(),
            to.display()
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
    report
}

/// Moves the file to `hold/` and writes `<name>.report` next to it.
fn hold(layout: &SpoolLayout, path: &Path, report: &FileReport) -> io::Result<Disposition> {
    let held = layout.hold(path)?;
    let mut report_path = held.clone().into_os_string();
    report_path.push(".report");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&report_path)?;
    file.write_all(render_report(report).as_bytes())?;
    file.sync_all()?;
    sync_dir(&layout.hold)?;
    Ok(Disposition::Held(held))
}

/// The text of a hold report: what went wrong, line by line.
pub fn render_report(report: &FileReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Spool file: {}", report.job.file_name);
    let _ = writeln!(out, "Job: {} {}", report.job.job_name, report.job.job_id);
    let _ = writeln!(
        out,
        "Mails: {}; recipients delivered: {}; undeliverable: {}",
        report.mails, report.rcpts_delivered, report.undeliverable_count
    );
    if let Some(problem) = &report.file_problem {
        let _ = writeln!(out, "\nProblem with the file: {problem}");
    }
    if !report.errors.is_empty() {
        let _ = writeln!(out, "\nErrors:");
        for e in &report.errors {
            let _ = writeln!(out, "  line {}: {e}", e.line);
        }
    }
    if !report.undeliverable.is_empty() {
        let _ = writeln!(out, "\nUndeliverable recipients:");
        for u in &report.undeliverable {
            let _ = writeln!(
                out,
                "  mail {} line {} <{}>: {}",
                u.mail, u.line, u.address, u.reason
            );
        }
        if report.undeliverable_count > report.undeliverable.len() as u64 {
            let _ = writeln!(
                out,
                "  ... and {} more",
                report.undeliverable_count - report.undeliverable.len() as u64
            );
        }
    }
    out
}
