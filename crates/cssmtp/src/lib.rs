//! cssmtp: a spool-driven mail forwarder, the Linux reimplementation of z/OS
//! Communications Server CSSMTP.
//!
//! ```text
//! producers ──atomic rename──▶ <SpoolDirectory>/<ExtWrtName>/        spool::intake
//!                                 │ claim (rename into active/)
//!                                 ▼
//!   driver per file ("JES task")  ── cssmtp_batch parser ──▶ mails   queue::file
//!         │ queue core: per-recipient state machine (pure), retry timers   queue::state
//!         │ disposition of the file                                        queue::finish
//!         ▼  bounded queue (back-pressure)
//!   delivery workers ── router (targets, health, capabilities) ──▶ SMTP   delivery
//!         │ cssmtp_wire over tokio TCP + rustls, per-stage timeouts
//!         ▼
//!   target servers; outcomes per recipient flow back to the spool task
//! ```
//!
//! `app::run` wires it together; `main.rs` only parses the command line.

pub mod accounting;
pub mod app;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod control;
pub mod delivery;
pub mod demo;
pub mod domain;
pub mod durable;
pub mod escape;
#[doc(hidden)]
pub mod fuzz;
pub mod headers;
pub mod journal;
pub mod listen;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod net;
pub mod notify;
pub mod queue;
pub mod retry;
pub mod sink;
pub mod spool;
pub mod stats;
pub mod storage;
