//! Serving local clients without letting them stop the daemon: the file-descriptor
//! limit, a cap on connections per listener, and what to do when `accept` fails.
//!
//! The metrics endpoint and the control socket are reachable by local users, who may be
//! slow, many or hostile. Each listener holds at most a fixed number of connections (the
//! rest are closed at once), and running out of file descriptors while accepting
//! (EMFILE/ENFILE) pauses that listener for 100 ms, doubling up to 1 s, instead of
//! spinning or ending the daemon.

use std::io;
use std::time::Duration;

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio_util::sync::CancellationToken;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit, as servers do. Returns the soft
/// limit now in force (`None` when it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return Some(hard);
    }
    Some(soft)
}

/// The soft `RLIMIT_NOFILE` now.
pub fn nofile_limit() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// At most `wanted` connections, and never more than a `share`-th of the descriptors
/// the process may open (at least 2), so that a full listener leaves descriptors for
/// spool files and target connections.
pub fn connection_cap(wanted: usize, share: u64) -> usize {
    let by_limit = nofile_limit()
        .map(|n| usize::try_from(n / share.max(1)).unwrap_or(usize::MAX))
        .unwrap_or(wanted);
    wanted.min(by_limit).max(2)
}

/// True for the errors that mean "no file descriptor (or kernel memory) for a new
/// socket right now": waiting helps, giving up does not.
pub fn is_resource_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc_errno::EMFILE | libc_errno::ENFILE | libc_errno::ENOBUFS | libc_errno::ENOMEM)
    )
}

mod libc_errno {
    pub const EMFILE: i32 = nix::errno::Errno::EMFILE as i32;
    pub const ENFILE: i32 = nix::errno::Errno::ENFILE as i32;
    pub const ENOBUFS: i32 = nix::errno::Errno::ENOBUFS as i32;
    pub const ENOMEM: i32 = nix::errno::Errno::ENOMEM as i32;
}

/// The pause after a failed `accept`: 100 ms, doubling up to 1 s while failures go
/// on; reset by a successful accept. Logs CSM1071W once per episode and CSM1072I when
/// accepting works again.
#[derive(Debug)]
pub struct AcceptBackoff {
    what: &'static str,
    delay: Option<Duration>,
}

const FIRST_DELAY: Duration = Duration::from_millis(100);
const LONGEST_DELAY: Duration = Duration::from_secs(1);

impl AcceptBackoff {
    pub fn new(what: &'static str) -> Self {
        Self { what, delay: None }
    }

    /// A connection was accepted.
    pub fn accepted(&mut self) {
        if self.delay.take().is_some() {
            tracing::info!("CSM1072I The {} accepts connections again", self.what);
        }
    }

    /// `accept` failed with `e`: waits as long as it should (or until `stop`).
    pub async fn failed(&mut self, e: &io::Error, stop: &CancellationToken) {
        if !is_resource_exhaustion(e) {
            // A connection that went away before it was accepted, and the like: the
            // next one is unaffected. A short pause still keeps a persistent error
            // from spinning.
            tokio::select! {
                () = stop.cancelled() => {}
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            return;
        }
        let delay = match self.delay {
            None => {
                tracing::warn!(
                    "CSM1071W The {} cannot accept a connection: {e}; pausing it (100 ms, up to 1 s) until descriptors are free",
                    self.what
                );
                FIRST_DELAY
            }
            Some(d) => (d * 2).min(LONGEST_DELAY),
        };
        self.delay = Some(delay);
        tokio::select! {
            () = stop.cancelled() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_is_told_from_other_accept_errors() {
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            nix::errno::Errno::EMFILE as i32
        )));
        assert!(is_resource_exhaustion(&io::Error::from_raw_os_error(
            nix::errno::Errno::ENFILE as i32
        )));
        assert!(!is_resource_exhaustion(&io::Error::from_raw_os_error(
            nix::errno::Errno::ECONNABORTED as i32
        )));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_to_one_second_and_resets() {
        let stop = CancellationToken::new();
        let mut b = AcceptBackoff::new("test listener");
        let emfile = io::Error::from_raw_os_error(nix::errno::Errno::EMFILE as i32);
        let mut waits = Vec::new();
        for _ in 0..6 {
            let start = tokio::time::Instant::now();
            b.failed(&emfile, &stop).await;
            waits.push(start.elapsed().as_millis());
        }
        assert_eq!(waits, [100, 200, 400, 800, 1000, 1000]);
        b.accepted();
        let start = tokio::time::Instant::now();
        b.failed(&emfile, &stop).await;
        assert_eq!(start.elapsed().as_millis(), 100);
    }

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest() {
        let limit = nofile_limit().unwrap();
        let cap = connection_cap(64, 4);
        assert!((2..=64).contains(&cap));
        assert!(cap as u64 <= (limit / 4).max(2));
    }
}
