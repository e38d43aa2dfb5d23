//! Counters since start, for the end-of-run report, the demo, DISPLAY TARGETS, the
//! accounting STATS records and the metrics; changed only by [`super::Telemetry::emit`].

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters (changed by the telemetry's events only).
#[derive(Debug, Default)]
pub struct Stats {
    mails_attempted: AtomicU64,
    mails_sent: AtomicU64,
    rcpts_delivered: AtomicU64,
    rcpts_undeliverable: AtomicU64,
    rcpts_retried: AtomicU64,
    files_done: AtomicU64,
    files_held: AtomicU64,
    files_with_errors: AtomicU64,
    notifications: AtomicU64,
    dead_letters: AtomicU64,
    reports: AtomicU64,
    rcpts_extended: AtomicU64,
    mails_all_sent: AtomicU64,
    mails_total_retry: AtomicU64,
    mails_undeliverable: AtomicU64,
    connections: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Mails handed to a target.
    pub mails_attempted: u64,
    /// Mails a target accepted for at least one recipient.
    pub mails_sent: u64,
    pub rcpts_delivered: u64,
    pub rcpts_undeliverable: u64,
    /// Recipient attempts that ended in "try again".
    pub rcpts_retried: u64,
    /// Spool files finished (deleted, held or removed).
    pub files_done: u64,
    pub files_held: u64,
    /// Spool files that had syntax errors or undeliverable recipients.
    pub files_with_errors: u64,
    /// Undeliverable notifications sent.
    pub notifications: u64,
    /// Dead letters (stored or not).
    pub dead_letters: u64,
    /// Error reports sent or written.
    pub reports: u64,
    /// Recipients handed to extended retry.
    pub rcpts_extended: u64,
    /// Mails final with every recipient delivered (DISPLAY TARGETS: MAIL SENT).
    pub mails_all_sent: u64,
    /// Mails that went into long retry (TOTAL RETRY).
    pub mails_total_retry: u64,
    /// Mails with undeliverable recipients (UNDELIVER).
    pub mails_undeliverable: u64,
    /// Connections opened to target servers.
    pub connections: u64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Stats {
    pub(super) fn mail_attempted(&self, sent: bool) {
        add(&self.mails_attempted, 1);
        if sent {
            add(&self.mails_sent, 1);
        }
    }

    pub(super) fn rcpts_delivered(&self, n: u64) {
        add(&self.rcpts_delivered, n);
    }

    pub(super) fn rcpt_undeliverable(&self) {
        add(&self.rcpts_undeliverable, 1);
    }

    pub(super) fn rcpt_retried(&self) {
        add(&self.rcpts_retried, 1);
    }

    pub(super) fn file_done(&self, held: bool, had_errors: bool) {
        add(&self.files_done, 1);
        if held {
            add(&self.files_held, 1);
        }
        if had_errors {
            add(&self.files_with_errors, 1);
        }
    }

    pub(super) fn notification_sent(&self) {
        add(&self.notifications, 1);
    }

    pub(super) fn dead_letter(&self) {
        add(&self.dead_letters, 1);
    }

    pub(super) fn report_made(&self) {
        add(&self.reports, 1);
    }

    pub(super) fn rcpts_extended(&self, n: u64) {
        add(&self.rcpts_extended, n);
    }

    pub(super) fn mail_all_sent(&self) {
        add(&self.mails_all_sent, 1);
    }

    pub(super) fn mail_into_retry(&self) {
        add(&self.mails_total_retry, 1);
    }

    pub(super) fn mail_undeliverable(&self) {
        add(&self.mails_undeliverable, 1);
    }

    pub(super) fn connection_opened(&self) {
        add(&self.connections, 1);
    }

    pub fn snapshot(&self) -> Snapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            mails_attempted: get(&self.mails_attempted),
            mails_sent: get(&self.mails_sent),
            rcpts_delivered: get(&self.rcpts_delivered),
            rcpts_undeliverable: get(&self.rcpts_undeliverable),
            rcpts_retried: get(&self.rcpts_retried),
            files_done: get(&self.files_done),
            files_held: get(&self.files_held),
            files_with_errors: get(&self.files_with_errors),
            notifications: get(&self.notifications),
            dead_letters: get(&self.dead_letters),
            reports: get(&self.reports),
            rcpts_extended: get(&self.rcpts_extended),
            mails_all_sent: get(&self.mails_all_sent),
            mails_total_retry: get(&self.mails_total_retry),
            mails_undeliverable: get(&self.mails_undeliverable),
            connections: get(&self.connections),
        }
    }
}
