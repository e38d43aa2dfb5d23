//! cssmtp's integration tests: one binary, real loopback TCP, real TLS, real DNS.
//!
//! Most tests run the daemon's own entry point (`cssmtp::app::run`) in drain mode
//! against `cssmtp::sink` servers on 127.0.0.0/8; `binary` runs the real `cssmtp`
//! executable. Tests that need time to pass use tokio's paused clock.

// The workspace bans panicking shortcuts on untrusted input; in this test binary (its
// helpers included) a panic is the failure report we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod ack;
mod binary;
mod bounds;
mod charset;
mod checkpoint;
mod dkim;
mod edges;
mod extensions;
mod forwarding;
mod health;
mod interop;
mod interop_auth;
mod interop_mta;
mod mainframe;
mod messages;
mod mime;
mod operator;
mod ops;
mod permit;
mod producers;
mod retry;
mod returns;
mod robustness;
mod routing;
mod sendmail;
mod session_limits;
mod shared_spool;
mod smuggling;
mod soak;
mod source_address;
mod support;
mod tls;
mod tls_binary;
mod undeliverable;
mod userexit;
mod waiting;
mod wire;
