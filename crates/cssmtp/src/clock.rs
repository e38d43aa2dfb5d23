//! Wall-clock time that advances with tokio's clock.
//!
//! Extended retry counts ages in days across restarts, so it needs wall-clock time; tests
//! need to make days pass without waiting. This clock is the system's wall clock plus how
//! far tokio's clock is ahead of the real monotonic clock: in production the two agree
//! and this is plain wall-clock time; under tokio's paused clock it moves when a test
//! advances time.

use std::time::SystemTime;

/// The current wall-clock time, as this clock sees it.
pub fn now() -> SystemTime {
    let ahead = tokio::time::Instant::now()
        .into_std()
        .saturating_duration_since(std::time::Instant::now());
    SystemTime::now() + ahead
}
