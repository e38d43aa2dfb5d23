//! One pass of a mail through a worker: choose a target, have a session with it (open,
//! STARTTLS), check that the mail fits, send it. Each step either goes on, sends the
//! worker back to choosing ([`Step::Again`], bounded by [`MAX_HOPS`]), or ends the
//! attempt with its results.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::oneshot;
use tokio::time::{Duration, sleep, sleep_until};
use tokio_util::sync::CancellationToken;

use cssmtp_wire::{EnhancedStatus, Reply};

use super::super::outcome::{Failure, Problem, RcptResult, Rotate, Stage, too_many};
use super::super::router::{Choice, Target};
use super::super::session::Session;
use super::{DeliveryContext, Handoff, MailJob, Open, all, close, drop_session, part};
use crate::telemetry::Event;

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

/// What one step of an attempt came to.
enum Step<T> {
    /// Go on, with this.
    Go(T),
    /// Choose a target again (the next hop).
    Again,
    /// The attempt is over, with these results.
    Done(Vec<RcptResult>),
}

/// Unwraps a [`Step::Go`], or takes the loop to its next hop, or returns the results.
macro_rules! step {
    ($step:expr) => {
        match $step {
            Step::Go(value) => value,
            Step::Again => continue,
            Step::Done(results) => return results,
        }
    };
}

/// One pass of a mail: one target, one transaction. Returns one result per recipient of
/// `job`.
pub(super) async fn attempt(
    ctx: &DeliveryContext,
    job: &MailJob,
    open: &mut Option<Open>,
    stop: &CancellationToken,
) -> Vec<RcptResult> {
    let mut lone_failures = 0u32;
    for _ in 0..MAX_HOPS {
        keep_or_end(ctx, open).await;
        let target = step!(route(ctx, job, open, stop).await);
        step!(connect(ctx, job, open, &target, &mut lone_failures, stop).await);
        step!(secure(ctx, job, open, &target).await);
        step!(authenticate(ctx, open, &target).await);
        let o = step!(fitting(ctx, job, open, &target));
        let results = send(ctx, job, o, &target).await;
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

/// Ends a session kept open that cannot carry the next mail: bytes waiting from its
/// server (they would be read as this mail's replies), or as many mails as its target
/// takes carried (QUIT before the server has to refuse one: MaxMailsPerSession, or
/// learned).
async fn keep_or_end(ctx: &DeliveryContext, open: &mut Option<Open>) {
    if let Some(o) = open.as_mut()
        && !o.session.is_quiet().await
    {
        drop_session(ctx, open);
    }
    if let Some(o) = open.as_ref()
        && let (limit @ 1.., _) = o.target.mails_limit()
        && o.session.mails >= limit
    {
        close(ctx, open.take()).await;
    }
}

/// The target for this mail, waiting while every one that could take it is down or at
/// its connection limit, or handing the mail to a worker with a session open.
async fn route(
    ctx: &DeliveryContext,
    job: &MailJob,
    open: &mut Option<Open>,
    stop: &CancellationToken,
) -> Step<Arc<Target>> {
    // Created before choosing, so that a connection released meanwhile (to a target at
    // its MaxConnections) is not missed while waiting.
    let changes = ctx.router.changes();
    let current = open.as_ref().map(|o| &o.target);
    match ctx.router.choose_for(
        job.needs_tls,
        job.size,
        (job.eight_bit, job.smtputf8()),
        current,
    ) {
        Choice::Use(target) => Step::Go(target),
        Choice::Unroutable(failure) => Step::Done(all(job, &RcptResult::Undeliverable(failure))),
        Choice::Later(failure) => Step::Done(all(job, &RcptResult::Retry(failure))),
        Choice::Wait(until) => {
            // Every target that could take this mail is down or has all the connections
            // it may have: wait (back-pressure).
            close(ctx, open.take()).await;
            tokio::select! {
                () = sleep_until(until) => Step::Again,
                () = changes => Step::Again,
                () = stop.cancelled() => {
                    let failure = Failure::new(Stage::Route, None, Problem::Stopping);
                    Step::Done(all(job, &RcptResult::Retry(failure)))
                }
            }
        }
        Choice::Full(until) => {
            // The target that can take it has all the connections it may have: a worker
            // with a session open carries it at once.
            close(ctx, open.take()).await;
            match hand_over(ctx, job, until, changes, stop).await {
                Some(results) => Step::Done(results),
                None => Step::Again,
            }
        }
    }
}

/// A session with `target`: the one open, or a new one.
async fn connect(
    ctx: &DeliveryContext,
    job: &MailJob,
    open: &mut Option<Open>,
    target: &Arc<Target>,
    lone_failures: &mut u32,
    stop: &CancellationToken,
) -> Step<()> {
    if open
        .as_ref()
        .is_some_and(|o| Arc::ptr_eq(&o.target, target))
    {
        return Step::Go(());
    }
    close(ctx, open.take()).await;
    let since = target.progress();
    let ticket = target.ticket();
    let params = ctx.params();
    // `given_up`: no greeting came while later connections were greeted.
    let (opening, given_up) = tokio::select! {
        opened = Session::open(target.addr, target.source.or(ctx.source), &params) => (opened, false),
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
    let failure = match opening {
        Ok(mut session) => {
            session.charset = target.charset;
            target.greeted(ticket);
            ctx.router.opened(target, session.caps);
            ctx.telemetry.emit(Event::Connected);
            *open = Some(Open {
                target: Arc::clone(target),
                session,
                opened: SystemTime::now(),
                plain_counted: false,
            });
            return Step::Go(());
        }
        Err(failure) => failure,
    };
    // While other sessions with it work, the target is not down (issue 10 point 3):
    // after MAX_LONE_FAILURES the mail goes on one of them instead. With none, the
    // target is down after as many.
    let working = target.state().open_sessions > 0;
    let since = (*lone_failures < MAX_LONE_FAILURES || working).then_some(since);
    // Refused, closed or not greeted with 220 by a server that answers: what a server
    // at its connection limit does (issue 10 point 2).
    let refused = !given_up
        && matches!(failure.stage, Stage::Connect | Stage::Greeting)
        && !matches!(failure.problem, Problem::Timeout(_));
    if ctx
        .router
        .connect_failed(target, failure.clone(), since, refused)
    {
        return Step::Again;
    }
    *lone_failures += 1;
    // Other connections to it work: this one failed alone; a fresh connection at once
    // (bounded by MAX_HOPS).
    tracing::info!(
        target_addr = %target.addr,
        "CSM3031I A connection to target server {} ({}) failed while others work: {}; trying a new connection",
        target.addr,
        target.origin,
        crate::escape::data(&failure.to_string())
    );
    if *lone_failures >= MAX_LONE_FAILURES && working {
        let changes = ctx.router.changes();
        let until = tokio::time::Instant::now() + ctx.timeouts.connect_retry;
        if let Some(results) = hand_over(ctx, job, until, changes, stop).await {
            return Step::Done(results);
        }
    }
    Step::Again
}

/// STARTTLS on the session where the mail or the target needs TLS.
async fn secure(
    ctx: &DeliveryContext,
    job: &MailJob,
    open: &mut Option<Open>,
    target: &Arc<Target>,
) -> Step<()> {
    let Some(o) = open.as_mut() else {
        return Step::Again;
    };
    let for_mail = job.needs_tls || target.secure;
    let required = for_mail || target.auth_needs_tls();
    if !(required || target.tls.opportunistic) || o.session.is_tls() {
        return Step::Go(());
    }
    // TlsMode Opportunistic, and TLS not required by anything: without TLS when the
    // server offers none or its TLS failed lately, counted once per session.
    let plain_why = if !o.session.caps.starttls {
        Some("the server offers no STARTTLS")
    } else if target.tls_broken() {
        Some("its TLS failed less than ConnectRetry ago")
    } else {
        None
    };
    if let Some(why) = plain_why
        && !required
    {
        if !o.plain_counted {
            o.plain_counted = true;
            ctx.router.tls_not_used(target, why);
        }
        return Step::Go(());
    }
    if !o.session.caps.starttls {
        if !for_mail {
            // Only AUTH needs TLS: the next step refuses it (the target's failure).
            return Step::Go(());
        }
        // TLS is required and the server offers none: never in clear. Counted and
        // visible as the target's TLS failure (a refused downgrade); the router now
        // knows it lacks STARTTLS and will not choose it for mail that needs TLS.
        let failure = Failure::new(
            Stage::StartTls,
            Some(target.addr),
            Problem::Tls("the server offers no STARTTLS, and TLS is required".into()),
        );
        ctx.router.tls_failed(target, failure);
        return Step::Again;
    }
    let connector = match ctx.connector(target) {
        Ok(connector) => connector,
        Err(why) => {
            let failure = Failure::new(Stage::StartTls, Some(target.addr), Problem::Tls(why));
            ctx.router.tls_failed(target, failure);
            close(ctx, open.take()).await;
            return Step::Again;
        }
    };
    match o
        .session
        .starttls(&connector, target.tls_name.clone(), &ctx.params())
        .await
    {
        Ok(()) => {
            ctx.router.capabilities(target, o.session.caps, true);
            Step::Go(())
        }
        Err(failure) => {
            ctx.router.tls_failed(target, failure);
            drop_session(ctx, open);
            Step::Again
        }
    }
}

/// AUTH on a new session with a target that has it configured (once per session):
/// failing, the target is out of service for ConnectRetry (counted, CSM3300W) and the
/// mail chooses again: it never goes unauthenticated, and is never charged for it.
async fn authenticate(
    ctx: &DeliveryContext,
    open: &mut Option<Open>,
    target: &Arc<Target>,
) -> Step<()> {
    let Some(auth) = target.auth.as_ref() else {
        return Step::Go(());
    };
    let Some(o) = open.as_mut() else {
        return Step::Again;
    };
    if o.session.authenticated.is_some() {
        return Step::Go(());
    }
    match crate::delivery::auth::log_in(&mut o.session, auth, &ctx.params(), target.addr).await {
        Ok(mechanism) => {
            tracing::debug!(
                target_addr = %target.addr,
                "CSM3301I Authenticated with target server {} ({}) as {} (AUTH {mechanism})",
                target.addr,
                target.origin,
                crate::escape::data(&auth.user)
            );
            Step::Go(())
        }
        Err(failure) => {
            ctx.router.auth_failed(target, failure);
            close(ctx, open.take()).await;
            Step::Again
        }
    }
}

/// The session, when the mail fits what its EHLO offered (the router checked SIZE,
/// 8BITMIME and SMTPUTF8 with what it knew before; it learns the session's offer
/// otherwise).
fn fitting<'a>(
    ctx: &DeliveryContext,
    job: &MailJob,
    open: &'a mut Option<Open>,
    target: &Arc<Target>,
) -> Step<&'a mut Open> {
    let Some(o) = open.as_mut() else {
        return Step::Again;
    };
    let caps = o.session.caps;
    let limit = if caps.size_advertised && caps.size_limit > 0 {
        caps.size_limit
    } else {
        target.message_size
    };
    // 8-bit text only where 8BITMIME is offered (RFC 6152), UTF-8 addresses only where
    // SMTPUTF8 is (RFC 6531): never mangled.
    if (limit > 0 && job.size > limit)
        || (job.eight_bit && !caps.eight_bit_mime)
        || (job.smtputf8() && !caps.smtputf8)
    {
        ctx.router.capabilities(target, caps, o.session.is_tls());
        return Step::Again;
    }
    o.session.use_chunking = target.chunking;
    Step::Go(o)
}

/// One transaction; more recipients than a transaction takes: the first ones now, the
/// others in a following transaction (as after a 452 "too many recipients").
async fn send(
    ctx: &DeliveryContext,
    job: &MailJob,
    o: &mut Open,
    target: &Arc<Target>,
) -> Vec<RcptResult> {
    let params = ctx.params();
    let (rcpt_limit, _) = target.rcpts_limit();
    let split = rcpt_limit > 0 && job.recipients.len() > rcpt_limit as usize;
    let mut results = if split {
        let first: Vec<usize> = (0..rcpt_limit as usize).collect();
        o.session.send_mail(&part(job, &first), &params).await
    } else {
        o.session.send_mail(job, &params).await
    };
    learn_limits(target, o.session.mails, &results);
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
    ctx.router.mail_result(target, sent, last);
    ctx.telemetry.emit(Event::Attempted { sent });
    results
}

/// Hands `job` to a worker with a session open (see [`Handoff`]) and waits for its
/// results. Returns None when none took it before `until` or a change (`changes`: a
/// connection released, a target's health): it is taken back, and the caller chooses
/// again. When cssmtp stops first, the results say so (retry: stopping).
pub(super) async fn hand_over(
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
