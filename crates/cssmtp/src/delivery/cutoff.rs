//! The shutdown deadline, as a delivery worker sees it: once it has passed, a
//! transaction in progress is abandoned (its connection dropped, no QUIT) — unless a
//! final "." is on its way or sent and its reply not yet read. That one runs to its
//! end (bounded by `Timeout DataTerm`): cssmtp never stops between a "." and its reply,
//! so a stop never makes a mail "possibly delivered".
//!
//! Abandoning before the "." is safe: the owner has not recorded the recipients as
//! possibly delivered (that record is written by [`DeliveryAck::before_dot`], which this
//! module watches), so they stay not final in the checkpoint journal and the next start
//! sends them once.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use super::{DeliveryAck, MailJob, NotRecorded};

/// Counts, for one worker, the final "." told to the owner ([`DeliveryAck::before_dot`])
/// whose reply was not yet read ([`DeliveryAck::after_dot`]).
#[derive(Clone)]
pub(crate) struct Dots(Arc<watch::Sender<u32>>);

impl Dots {
    pub(crate) fn new() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }

    /// Puts `job`'s acknowledgement (if any) behind this counter. A job without one
    /// (generated mail, `ChkPoint No`) is watched too. A worker carries one job at a
    /// time: the count starts again from none.
    pub(crate) fn watch(&self, job: &mut MailJob) {
        self.0.send_replace(0);
        job.ack = Some(Arc::new(Watched {
            inner: job.ack.take(),
            dots: Arc::clone(&self.0),
        }));
    }

    /// Runs `work` to its end, or, once `cutoff` is cancelled, until it may be dropped:
    /// at once when no "." awaits its reply, else as soon as none does. `None` when it
    /// was dropped (abandoned).
    ///
    /// Between two polls of `work` nothing of it runs, so the count read here cannot
    /// change before `work` is dropped.
    pub(crate) async fn unless_cut<F: Future>(
        &self,
        work: F,
        cutoff: &CancellationToken,
    ) -> Option<F::Output> {
        let mut dots = self.0.subscribe();
        tokio::pin!(work);
        tokio::select! {
            biased;
            out = &mut work => return Some(out),
            () = cutoff.cancelled() => {}
        }
        loop {
            if *dots.borrow_and_update() == 0 {
                return None;
            }
            tokio::select! {
                biased;
                out = &mut work => return Some(out),
                changed = dots.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
            }
        }
    }
}

/// A job's acknowledgement, counted by a worker's [`Dots`].
struct Watched {
    inner: Option<Arc<dyn DeliveryAck>>,
    dots: Arc<watch::Sender<u32>>,
}

impl DeliveryAck for Watched {
    fn before_dot(&self, rcpts: &[usize]) -> Result<Option<oneshot::Receiver<()>>, NotRecorded> {
        let recorded = match &self.inner {
            Some(inner) => inner.before_dot(rcpts)?,
            None => None,
        };
        self.dots.send_modify(|n| *n += 1);
        Ok(recorded)
    }

    fn after_dot(&self, rcpts: &[usize], delivered: bool) {
        if let Some(inner) = &self.inner {
            inner.after_dot(rcpts, delivered);
        }
        self.dots.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_before_a_dot_is_dropped_at_the_cutoff_and_work_after_one_runs_to_its_end() {
        let dots = Dots::new();
        let cutoff = CancellationToken::new();
        cutoff.cancel();
        // Nothing told: dropped.
        let out = dots.unless_cut(std::future::pending::<()>(), &cutoff).await;
        assert!(out.is_none());

        // A "." told, its reply read later: waited for.
        let (tx, rx) = oneshot::channel::<()>();
        let watched = Watched {
            inner: None,
            dots: Arc::clone(&dots.0),
        };
        assert!(watched.before_dot(&[0]).is_ok());
        let work = async move {
            let _ = rx.await;
            watched.after_dot(&[0], true);
            7
        };
        let releaser = tokio::spawn(async move {
            tokio::task::yield_now().await;
            let _ = tx.send(());
        });
        assert_eq!(dots.unless_cut(work, &cutoff).await, Some(7));
        releaser.await.unwrap();
        assert_eq!(*dots.0.borrow(), 0);
    }
}
