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
use tokio::time::{Duration, sleep, sleep_until};
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use cssmtp_wire::{EnhancedStatus, Reply};

use super::cutoff::Dots;
use super::outcome::{Failure, Problem, RcptResult, Rotate, Stage, session_matter, too_many};
use super::router::{Choice, Router, Target};
use super::session::{Session, SessionParams};
use super::{MailJob, MailOutcome};
use crate::config::Timeouts;
use crate::telemetry::{Event, SessionEnd, Telemetry};

/// An idle session is closed (QUIT) after this long without mail.
const IDLE: Duration = Duration::from_secs(10);
/// A connection still waiting for its greeting is given up this long after a connection
/// to the same target started after it was greeted: the
/// server works, this connection is lost (a full listen backlog drops the final ACK of a
/// handshake the client thinks complete), and a fresh one is tried (issue 10 point 3).
const GREETING_GRACE: Duration = Duration::from_secs(2);
/// In one attempt, a mail tries a fresh connection after one failed alone (while the
/// target works) at most this many times; the next failure marks the target down.
const MAX_LONE_FAILURES: u32 = 3;
/// A mail is passed between targets at most this many times in one attempt.
const MAX_HOPS: usize = 12;
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
            handoff: async_channel::unbounded(),
        }
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

/// One pass of a mail: one target, one transaction. Returns one result per recipient of
/// `job`.
async fn attempt(
    ctx: &DeliveryContext,
    job: &MailJob,
    open: &mut Option<Open>,
    stop: &CancellationToken,
) -> Vec<RcptResult> {
    let params = ctx.params();
    let mut lone_failures = 0u32;
    for _ in 0..MAX_HOPS {
        // A session kept open must have nothing waiting from its server: bytes there
        // would be read as this mail's replies.
        if let Some(o) = open.as_mut()
            && !o.session.is_quiet().await
        {
            drop_session(ctx, open);
        }
        // A session that carried as many mails as its target takes is ended (QUIT)
        // before the server has to refuse one (MaxMailsPerSession, or learned).
        if let Some(o) = open.as_ref()
            && let (limit @ 1.., _) = o.target.mails_limit()
            && o.session.mails >= limit
        {
            close(ctx, open.take()).await;
        }
        // Created before choosing, so that a connection released meanwhile (to a target
        // at its MaxConnections) is not missed while waiting.
        let changes = ctx.router.changes();
        let current = open.as_ref().map(|o| &o.target);
        let target = match ctx
            .router
            .choose(job.needs_tls, job.size, job.eight_bit, current)
        {
            Choice::Use(target) => target,
            Choice::Unroutable(failure) => {
                return all(job, &RcptResult::Undeliverable(failure));
            }
            Choice::Later(failure) => return all(job, &RcptResult::Retry(failure)),
            Choice::Wait(until) => {
                // Every target that could take this mail is down or has all the
                // connections it may have: wait (back-pressure).
                close(ctx, open.take()).await;
                tokio::select! {
                    () = sleep_until(until) => {}
                    () = changes => {}
                    () = stop.cancelled() => {
                        let failure = Failure::new(Stage::Route, None, Problem::Stopping);
                        return all(job, &RcptResult::Retry(failure));
                    }
                }
                continue;
            }
            Choice::Full(until) => {
                // The target that can take it has all the connections it may have: a
                // worker with a session open carries it at once.
                close(ctx, open.take()).await;
                if let Some(results) = hand_over(ctx, job, until, changes, stop).await {
                    return results;
                }
                continue;
            }
        };
        if open
            .as_ref()
            .is_none_or(|o| !Arc::ptr_eq(&o.target, &target))
        {
            close(ctx, open.take()).await;
            let since = target.progress();
            let ticket = target.ticket();
            // `given_up`: no greeting came while later connections were greeted.
            let (opening, given_up) = tokio::select! {
                opened = Session::open(target.addr, &params) => (opened, false),
                () = async {
                    target.later_greeted(ticket).await;
                    sleep(GREETING_GRACE).await;
                } => (Err(Failure::new(
                    Stage::Greeting,
                    Some(target.addr),
                    Problem::Connection(format!(
                        "no greeting {} seconds after a connection started later was greeted",
                        GREETING_GRACE.as_secs()
                    )),
                )), true),
            };
            match opening {
                Ok(session) => {
                    target.greeted(ticket);
                    ctx.router.opened(&target, session.caps);
                    ctx.telemetry.emit(Event::Connected);
                    *open = Some(Open {
                        target: Arc::clone(&target),
                        session,
                        opened: SystemTime::now(),
                    });
                }
                Err(failure) => {
                    // While other sessions with it work, the target is not down
                    // (issue 10 point 3): after MAX_LONE_FAILURES the mail goes on one of
                    // them instead. With none, the target is down after as many.
                    let working = target.state().open_sessions > 0;
                    let since = (lone_failures < MAX_LONE_FAILURES || working).then_some(since);
                    // Refused, closed or not greeted with 220 by a server that answers:
                    // what a server at its connection limit does (issue 10 point 2).
                    let refused = !given_up
                        && matches!(failure.stage, Stage::Connect | Stage::Greeting)
                        && !matches!(failure.problem, Problem::Timeout(_));
                    if !ctx
                        .router
                        .connect_failed(&target, failure.clone(), since, refused)
                    {
                        lone_failures += 1;
                        // Other connections to it work: this one failed alone; a fresh
                        // connection at once (bounded by MAX_HOPS).
                        tracing::info!(
                            target_addr = %target.addr,
                            "CSM3031I A connection to target server {} ({}) failed while others work: {}; trying a new connection",
                            target.addr,
                            target.origin,
                            crate::escape::data(&failure.to_string())
                        );
                        if lone_failures >= MAX_LONE_FAILURES && working {
                            let changes = ctx.router.changes();
                            let until = tokio::time::Instant::now() + ctx.timeouts.connect_retry;
                            if let Some(results) = hand_over(ctx, job, until, changes, stop).await {
                                return results;
                            }
                        }
                    }
                    continue;
                }
            }
        }
        let Some(o) = open.as_mut() else { continue };
        if (job.needs_tls || target.secure) && !o.session.is_tls() {
            if !o.session.caps.starttls {
                // The router now knows it lacks STARTTLS and will not choose it.
                continue;
            }
            match o
                .session
                .starttls(&ctx.tls, target.tls_name.clone(), &params)
                .await
            {
                Ok(()) => ctx.router.capabilities(&target, o.session.caps, true),
                Err(failure) => {
                    ctx.router.tls_failed(&target, failure);
                    drop_session(ctx, open);
                    continue;
                }
            }
        }
        let Some(o) = open.as_mut() else { continue };
        // The router checked SIZE with what it knew; check with this session's EHLO.
        let caps = o.session.caps;
        let limit = if caps.size_advertised && caps.size_limit > 0 {
            caps.size_limit
        } else {
            target.message_size
        };
        // 8-bit text only where 8BITMIME is offered (RFC 6152), as the router will know.
        if (limit > 0 && job.size > limit) || (job.eight_bit && !caps.eight_bit_mime) {
            ctx.router.capabilities(&target, caps, o.session.is_tls());
            continue;
        }
        // More recipients than a transaction takes: the first ones now, the others in
        // a following transaction (as after a 452 "too many recipients").
        let (rcpt_limit, _) = target.rcpts_limit();
        let split = rcpt_limit > 0 && job.recipients.len() > rcpt_limit as usize;
        let mut results = if split {
            let first: Vec<usize> = (0..rcpt_limit as usize).collect();
            o.session.send_mail(&part(job, &first), &params).await
        } else {
            o.session.send_mail(job, &params).await
        };
        learn_limits(&target, o.session.mails, &results);
        if split {
            let reply = Reply::new(
                452,
                Some(EnhancedStatus {
                    class: 4,
                    subject: 5,
                    detail: 3,
                }),
                &format!("too many recipients (at most {rcpt_limit} per mail to this target)"),
            );
            let failure = Failure::new(Stage::RcptTo, Some(target.addr), Problem::Reply(reply));
            results.resize(job.recipients.len(), RcptResult::Retry(failure));
        }
        let sent = results
            .iter()
            .any(|r| matches!(r, RcptResult::Delivered { .. }));
        let last = results.iter().find_map(|r| match r {
            RcptResult::Delivered { reply, .. } => Some(reply.to_string()),
            RcptResult::Retry(f) | RcptResult::Undeliverable(f) => {
                f.reply().map(|reply| format!("{reply} (at {})", f.stage))
            }
        });
        ctx.router.mail_result(&target, sent, last);
        ctx.telemetry.emit(Event::Attempted { sent });
        if !o.session.is_usable() {
            drop_session(ctx, open);
        }
        return results;
    }
    let failure = Failure::new(
        Stage::Route,
        None,
        Problem::Protocol("target servers kept changing; mail will be retried".into()),
    );
    all(job, &RcptResult::Retry(failure))
}

/// Hands `job` to a worker with a session open (see [`Handoff`]) and waits for its
/// results. Returns None when none took it before `until` or a change (`changes`: a
/// connection released, a target's health): it is taken back, and the caller chooses
/// again. When cssmtp stops first, the results say so (retry: stopping).
async fn hand_over(
    ctx: &DeliveryContext,
    job: &MailJob,
    until: tokio::time::Instant,
    changes: tokio::sync::futures::Notified<'_>,
    stop: &CancellationToken,
) -> Option<Vec<RcptResult>> {
    let every: Vec<usize> = (0..job.recipients.len()).collect();
    let (answer, mut results) = oneshot::channel();
    let handed = Arc::new(Handoff(std::sync::Mutex::new(Some((
        part(job, &every),
        answer,
    )))));
    // Unbounded: never full; never closed while this context lives.
    let _ = ctx.handoff.0.try_send(Arc::clone(&handed));
    // No answer only when the worker carrying it was stopped.
    let stopped = || {
        let failure = Failure::new(Stage::Route, None, Problem::Stopping);
        all(job, &RcptResult::Retry(failure))
    };
    tokio::select! {
        r = &mut results => return Some(r.unwrap_or_else(|_| stopped())),
        () = sleep_until(until) => {}
        () = changes => {}
        () = stop.cancelled() => {}
    }
    if handed.take().is_some() {
        // Taken back: the mail goes on, unless cssmtp is stopping.
        return stop.is_cancelled().then(&stopped);
    }
    // Taken: the worker carrying it answers.
    Some(results.await.unwrap_or_else(|_| stopped()))
}

/// Remembers a target's limits from a "too many messages" reply at MAIL FROM (the
/// mails the session carried before) or "too many recipients" at RCPT TO (the recipients
/// accepted before), so that later sessions and transactions stay within them.
fn learn_limits(target: &Target, session_mails: u32, results: &[RcptResult]) {
    let mut mails = 0;
    let mut rcpts = 0;
    for result in results {
        if let RcptResult::Retry(f) = result {
            match too_many(f) {
                Some(Rotate::Session) => mails = session_mails.saturating_sub(1),
                Some(Rotate::Transaction) => {
                    rcpts = results
                        .iter()
                        .filter(|r| matches!(r, RcptResult::Delivered { .. }))
                        .count() as u32;
                }
                None => {}
            }
        }
    }
    if mails > 0 || rcpts > 0 {
        target.learn(mails, rcpts);
    }
}
