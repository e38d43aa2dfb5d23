//! A delivery worker: takes mails from the queue and sends them, keeping its session
//! open for the next mail to the same target.
//!
//! Stopping is checked between mails: a transaction in progress runs to its end, until
//! the shutdown deadline (`cutoff`) passes; then it is abandoned unless its final "."
//! is out, its reply not yet read ([`super::cutoff`]): cssmtp never stops between the
//! final "." and its reply.

use std::sync::Arc;
use std::time::SystemTime;

use rustls::ClientConfig;
use tokio::sync::oneshot;
use tokio::time::{Duration, sleep};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use super::cutoff::Dots;
use super::outcome::{RcptResult, Rotate, session_matter};
use super::router::{Router, Target};
use super::session::{Session, SessionParams};
use super::{MailJob, MailOutcome};
use crate::config::Timeouts;
use crate::telemetry::{Event, SessionEnd, Telemetry};

mod attempt;
use attempt::attempt;

/// An idle session is closed (QUIT) after this long without mail.
const IDLE: Duration = Duration::from_secs(10);
/// In one attempt, a mail goes again at once (a fresh session, or a following
/// transaction) after a failure about the session rather than the mail at most this many
/// times without any recipient delivered in between; then the failure is an ordinary one
/// (long retry), so that nothing loops.
const MAX_REQUEUES: u32 = 3;

/// A mail handed over by a worker that found its target at its connection limit, for a
/// worker with an open session to carry (issue 10 point 2): the first to take it sends
/// it and answers on the channel; the worker that handed it over may take it back while
/// no one has.
type Handed = (MailJob, oneshot::Sender<Vec<RcptResult>>);

struct Handoff(std::sync::Mutex<Option<Handed>>);

impl Handoff {
    fn take(&self) -> Option<Handed> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

/// What every worker shares.
pub struct DeliveryContext {
    pub router: Arc<Router>,
    pub timeouts: Timeouts,
    pub helo_name: String,
    pub tls: TlsConnector,
    /// What people are told (statistics, CONNECT records).
    pub telemetry: Telemetry,
    /// The global `TlsCaFile`s, for targets with a TLS configuration of their own.
    pub ca_files: Vec<std::path::PathBuf>,
    /// `SourceAddress`: the local address connections are made from (a target's own
    /// first).
    pub source: Option<std::net::IpAddr>,
    /// Mails handed over to workers with an open session (see [`Handoff`]).
    handoff: (
        async_channel::Sender<Arc<Handoff>>,
        async_channel::Receiver<Arc<Handoff>>,
    ),
}

impl DeliveryContext {
    pub fn new(
        router: Arc<Router>,
        timeouts: Timeouts,
        helo_name: String,
        tls: Arc<ClientConfig>,
        telemetry: Telemetry,
    ) -> Self {
        Self {
            router,
            timeouts,
            helo_name,
            tls: TlsConnector::from(tls),
            telemetry,
            ca_files: Vec::new(),
            source: None,
            handoff: async_channel::unbounded(),
        }
    }

    /// With the global `TlsCaFile`s (see [`Self::ca_files`]).
    #[must_use]
    /// Connections are made from `source` (`SourceAddress`).
    pub fn with_source(mut self, source: Option<std::net::IpAddr>) -> Self {
        self.source = source;
        self
    }

    pub fn with_ca_files(mut self, ca_files: Vec<std::path::PathBuf>) -> Self {
        self.ca_files = ca_files;
        self
    }

    /// The connector for `target`: its own, or the global one.
    ///
    /// # Errors
    /// Why its own cannot be built.
    pub(crate) fn connector(&self, target: &Target) -> Result<TlsConnector, String> {
        if !target.tls.own_config() {
            return Ok(self.tls.clone());
        }
        target
            .tls_connector
            .0
            .get_or_init(|| super::tls_policy::connector(&target.tls, &self.ca_files))
            .clone()
    }

    fn params(&self) -> SessionParams<'_> {
        SessionParams {
            helo_name: &self.helo_name,
            timeouts: &self.timeouts,
        }
    }
}

struct Open {
    target: Arc<Target>,
    session: Session,
    opened: SystemTime,
    /// Counted as a session without TLS (TlsMode Opportunistic).
    plain_counted: bool,
}

/// Tells people a session ended (`how`: quit or dropped).
fn session_ended(ctx: &DeliveryContext, open: &Open, how: &str) {
    ctx.telemetry.emit(Event::SessionEnded(SessionEnd {
        target: open.target.addr,
        origin: &open.target.origin,
        opened: open.opened,
        mails: u64::from(open.session.mails),
        tls: open.session.is_tls(),
        esmtp: open.session.caps.esmtp,
        auth: open.session.authenticated.map(|m| m.name()),
        tls_protocol: open.session.tls_info.as_ref().map(|t| t.0.as_str()),
        tls_cipher: open.session.tls_info.as_ref().map(|t| t.1.as_str()),
        how,
    }));
}

/// Runs one worker until the queue closes or `stop` is cancelled; a transaction in
/// progress at the stop ends, or is abandoned once `cutoff` is cancelled (see
/// [`super::cutoff`]).
pub async fn run(
    ctx: Arc<DeliveryContext>,
    queue: async_channel::Receiver<MailJob>,
    stop: CancellationToken,
    cutoff: CancellationToken,
) {
    let mut open: Option<Open> = None;
    let dots = Dots::new();
    loop {
        let mut job = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            // Mail handed over by workers waiting for a target at its connection limit
            // goes first, on this worker's open session (or wherever it fits).
            handed = ctx.handoff.1.recv(), if open.is_some() => {
                if let Ok(handed) = handed
                    && let Some((mut job, answer)) = handed.take()
                {
                    dots.watch(&mut job);
                    let work = attempt(&ctx, &job, &mut open, &stop);
                    let Some(results) = dots.unless_cut(work, &cutoff).await else {
                        cut(&ctx, job.key, &mut open);
                        break;
                    };
                    // The worker that handed it over waits for this answer.
                    let _ = answer.send(results);
                }
                continue;
            }
            job = queue.recv() => match job {
                Ok(job) => job,
                Err(_) => break,
            },
            () = sleep(IDLE), if open.is_some() => {
                close(&ctx, open.take()).await;
                continue;
            }
        };
        dots.watch(&mut job);
        let key = job.key;
        let work = deliver(&ctx, job, &mut open, &stop);
        if dots.unless_cut(work, &cutoff).await.is_none() {
            cut(&ctx, key, &mut open);
            break;
        }
    }
    close(&ctx, open.take()).await;
}

/// A transaction abandoned at the shutdown deadline: its connection is dropped.
fn cut(ctx: &DeliveryContext, key: super::MailKey, open: &mut Option<Open>) {
    let target = open.as_ref().map(|o| o.target.addr);
    tracing::warn!(
        "CSM1081W Mail {} of spool task {}: its transaction{} was abandoned at the shutdown deadline, before its final \".\"; its recipients are not final and go at the next start",
        key.ordinal,
        key.tkid,
        target.map(|t| format!(" with {t}")).unwrap_or_default()
    );
    drop_session(ctx, open);
}

async fn close(ctx: &DeliveryContext, open: Option<Open>) {
    if let Some(open) = open {
        session_ended(ctx, &open, "quit");
        let target = Arc::clone(&open.target);
        open.session.quit(&ctx.params()).await;
        // Released once the connection is gone, so that a target's MaxConnections holds.
        ctx.router.closed(&target);
    }
}

fn drop_session(ctx: &DeliveryContext, open: &mut Option<Open>) {
    if let Some(o) = open.take() {
        session_ended(ctx, &o, "dropped");
        ctx.router.closed(&o.target);
    }
}

fn finish(job: &MailJob, results: Vec<RcptResult>) {
    let results = job.rcpt_index.iter().copied().zip(results).collect();
    // The spool task may be gone (stopping); its file stays claimed for the next start.
    let _ = job.reply.send(MailOutcome {
        key: job.key,
        results,
    });
}

fn all(job: &MailJob, result: &RcptResult) -> Vec<RcptResult> {
    vec![result.clone(); job.recipients.len()]
}

/// The recipients `todo` (indexes among `job.recipients`) of a mail, as a job of their
/// own.
fn part(job: &MailJob, todo: &[usize]) -> MailJob {
    MailJob {
        key: job.key,
        reverse_path: job.reverse_path.clone(),
        recipients: todo
            .iter()
            .filter_map(|&i| job.recipients.get(i).cloned())
            .collect(),
        rcpt_index: todo
            .iter()
            .filter_map(|&i| job.rcpt_index.get(i).copied())
            .collect(),
        needs_tls: job.needs_tls,
        eight_bit: job.eight_bit,
        headers: Arc::clone(&job.headers),
        text: job.text.clone(),
        size: job.size,
        reply: job.reply.clone(),
        ack: job.ack.clone(),
    }
}

/// Sends a mail; a failure about the session rather than the mail (see
/// [`session_matter`]) sends its recipients again at once: on a fresh session when the
/// server ended the session or takes no more mail on it, in a following transaction when
/// it took all the recipients one transaction may have. Bounded by [`MAX_REQUEUES`].
async fn deliver(
    ctx: &DeliveryContext,
    job: MailJob,
    open: &mut Option<Open>,
    stop: &CancellationToken,
) {
    let mut results: Vec<RcptResult> = attempt(ctx, &job, open, stop).await;
    let mut stalls = 0u32;
    loop {
        let mut todo = Vec::new();
        let mut rotate_session = None;
        for (i, result) in results.iter().enumerate() {
            if let RcptResult::Retry(f) = result
                && let Some(rotate) = session_matter(f)
            {
                todo.push(i);
                if rotate == Rotate::Session && rotate_session.is_none() {
                    rotate_session = Some(f.clone());
                }
            }
        }
        if todo.is_empty() || stop.is_cancelled() || stalls >= MAX_REQUEUES {
            break;
        }
        if let Some(f) = &rotate_session {
            tracing::info!(
                "CSM3030I Mail {} of spool task {}: {f}; {} recipient(s) go again at once on a new session",
                job.key.ordinal,
                job.key.tkid,
                todo.len()
            );
            // A session the server will take no more mail on is ended (QUIT).
            close(ctx, open.take()).await;
        }
        let again = attempt(ctx, &part(&job, &todo), open, stop).await;
        let progress = again
            .iter()
            .any(|r| matches!(r, RcptResult::Delivered { .. }));
        stalls = if progress { 0 } else { stalls + 1 };
        for (i, result) in todo.into_iter().zip(again) {
            if let Some(slot) = results.get_mut(i) {
                *slot = result;
            }
        }
    }
    finish(&job, results);
}
