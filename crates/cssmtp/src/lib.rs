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

//!
//! # The public face
//!
//! Modules are `pub(crate)` unless something outside the library uses them:
//! * `main.rs`: [`cli`], [`commands`], [`logging`];
//! * the integration tests (`tests/it`), which run the daemon's own entry point and
//!   talk to it as an operator or a server would: [`app`] (`run`, `RunOptions`,
//!   `RunReport`), [`config`] (load), [`control`] (requests, `server::MAX_CONNECTIONS`),
//!   [`metrics`] (`MAX_CONNECTIONS`), [`sink`] (the scriptable SMTP server, also `cssmtp
//!   sink`), [`spool`] (layout, `submit`, `report`), [`delivery`] (`session` and `tls`:
//!   a session driven against a sink with a test `DeliveryAck`), [`journal`] (`record`:
//!   the checkpoint tests read and forge records), [`retry`] (`extended`: a test writes a
//!   MailDirectory file as an older version did);
//! * the fuzz targets: [`fuzz`];
//! * [`storage`] (its conformance suite is for any backend), [`queue`] and [`notify`]:
//!   public while they are being reshaped (issue 11); their internals become
//!   `pub(crate)` once that settles.
//!
//! Inside the public modules, submodules nothing outside uses are `pub(crate)` too.

// The documentation is for developers of cssmtp too: it may name internal items.
#![allow(rustdoc::private_intra_doc_links)]

// Internal: wiring helpers, telemetry, utilities.
pub(crate) mod clock;
pub(crate) mod demo;
pub(crate) mod durable;
pub(crate) mod escape;
pub(crate) mod headers;
pub(crate) mod listen;
pub(crate) mod monitor;
pub(crate) mod net;
pub(crate) mod telemetry;
pub(crate) mod userexit;

// Public: see above.
pub mod app;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod delivery;
pub mod domain;
#[doc(hidden)]
pub mod fuzz;
pub mod journal;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod queue;
pub mod retry;
pub mod sendmail;
pub mod sink;
pub mod spool;
pub mod storage;
pub mod trace;
