//! The service manager's notifications (sd_notify, through the sd-notify crate), for
//! `Type=notify` units: `READY=1` once cssmtp serves (intake about to start, the
//! control socket listening: `systemctl start` returns then, and `systemctl reload`
//! can reach it), `STOPPING=1` when it begins to stop, and `WATCHDOG=1` every half
//! `WatchdogSec=` while the runtime runs. Without `NOTIFY_SOCKET` (not under systemd)
//! each is nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

/// The notifications of one run.
pub(super) struct Systemd {
    /// Ends the watchdog and stop tasks with the run.
    done: CancellationToken,
}

/// Whether a failed notification was logged (the first is; a watchdog ping failing
/// every few seconds would flood the log).
static WARNED: AtomicBool = AtomicBool::new(false);

/// One notification; never fatal.
fn notify(state: &[NotifyState<'_>], what: &str) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!("CSM1096W Cannot tell systemd {what}: {e} (later failures are not logged)");
    }
}

impl Systemd {
    /// Says READY=1 (with a STATUS line), starts the watchdog pings when systemd asks
    /// for them, and says STOPPING=1 as soon as `stop` is cancelled.
    pub(super) fn ready(stop: &CancellationToken, status: &str) -> Self {
        let done = CancellationToken::new();
        notify(
            &[NotifyState::Ready, NotifyState::Status(status)],
            "READY=1",
        );
        if let Some(interval) = sd_notify::watchdog_enabled() {
            let every = (interval / 2).max(Duration::from_millis(100));
            tracing::info!(
                "CSM1097I systemd watchdog: WatchdogSec={}s, a ping every {} ms",
                interval.as_secs_f64(),
                every.as_millis()
            );
            let done = done.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        _ = ticks.tick() => notify(&[NotifyState::Watchdog], "WATCHDOG=1"),
                        () = done.cancelled() => break,
                    }
                }
            });
        }
        let (stop, watch) = (stop.clone(), done.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => stopping(),
                () = watch.cancelled() => {}
            }
        });
        Self { done }
    }

    /// The run is ending (drained, or stopped): STOPPING=1 (again, when a stop said it
    /// already: harmless), and the pings continue until the shutdown ends.
    pub(super) fn stopping(&self) {
        stopping();
    }
}

fn stopping() {
    notify(
        &[NotifyState::Stopping, NotifyState::Status("stopping")],
        "STOPPING=1",
    );
}

impl Drop for Systemd {
    fn drop(&mut self) {
        self.done.cancel();
    }
}
