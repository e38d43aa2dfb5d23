//! Logging: CSSMTP's `LogLevel` bit mask over tracing, changeable while running.
//!
//! Every line carries a stable message ID (see `docs/messages.md`). The mask says which
//! kinds of line are written; it is process-wide, set from `LogLevel` at start, by
//! `MODIFY LOGLEVEL,LEVEL=n` and by REFRESH, and read by the log filter for every event
//! site (whose cached decision is rebuilt on each change, so a change costs nothing
//! afterwards).
//!
//! Under systemd (`JOURNAL_STREAM` set) text lines start with their syslog priority
//! (`<3>` error … `<7>` debug) and carry no time stamp: journald adds both, and
//! `journalctl -p warning` then works. `--log-format json` gives one JSON object per
//! line.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use tracing::{Level, Metadata};
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// `LogLevel` bits.
pub const ERROR: u32 = 1;
/// Warnings.
pub const WARNING: u32 = 2;
/// Events: spool files, mails, targets (CSSMTP's default is error + warning + event).
pub const EVENT: u32 = 4;
/// Details: connections, commands, decisions.
pub const DETAIL: u32 = 8;
/// Trace: the SMTP dialogue and the libraries' own messages.
pub const TRACE: u32 = 16;
/// Every bit.
pub const ALL: u32 = ERROR | WARNING | EVENT | DETAIL | TRACE;
/// CSSMTP's default, 7.
pub const DEFAULT: u32 = ERROR | WARNING | EVENT;

static MASK: AtomicU32 = AtomicU32::new(DEFAULT);
/// The command line chose the level (`-q`, `-v`): `LogLevel` in the file does not apply
/// at start (MODIFY LOGLEVEL still does).
static FROM_COMMAND_LINE: AtomicBool = AtomicBool::new(false);
/// `CSSMTP_LOG` (a tracing filter) is in force: the mask is not used.
static ENV_FILTER: AtomicBool = AtomicBool::new(false);

/// The mask in force.
pub fn mask() -> u32 {
    MASK.load(Ordering::Relaxed)
}

/// Sets the mask (MODIFY LOGLEVEL).
pub fn set_mask(mask: u32) {
    MASK.store(mask & ALL, Ordering::Relaxed);
    tracing::callsite::rebuild_interest_cache();
}

/// Applies `LogLevel` from the configuration, unless the command line chose.
pub fn apply_config(mask: u32) {
    if !FROM_COMMAND_LINE.load(Ordering::Relaxed) {
        set_mask(mask);
    }
}

/// True when `CSSMTP_LOG` decides instead of the mask.
pub fn env_filter_in_force() -> bool {
    ENV_FILTER.load(Ordering::Relaxed)
}

/// What the bits of `mask` mean, for DISPLAY LOGLEVEL.
pub fn describe(mask: u32) -> String {
    let names: Vec<&str> = [
        (ERROR, "error"),
        (WARNING, "warning"),
        (EVENT, "event"),
        (DETAIL, "detail"),
        (TRACE, "trace"),
    ]
    .iter()
    .filter(|(bit, _)| mask & bit != 0)
    .map(|(_, name)| *name)
    .collect();
    if names.is_empty() {
        "nothing".into()
    } else {
        names.join(", ")
    }
}

fn bit(level: Level) -> u32 {
    match level {
        Level::ERROR => ERROR,
        Level::WARN => WARNING,
        Level::INFO => EVENT,
        Level::DEBUG => DETAIL,
        Level::TRACE => TRACE,
    }
}

/// Whether an event site is logged under `mask`: by its level's bit; the libraries'
/// own info and debug lines only with the trace bit.
pub fn enabled(mask: u32, meta: &Metadata<'_>) -> bool {
    let level = *meta.level();
    if mask & bit(level) == 0 {
        return false;
    }
    meta.target().starts_with("cssmtp") || level <= Level::WARN || mask & TRACE != 0
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// Installs the process's logger, writing to standard error. `command_line` is the mask
/// `-q`/`-v` chose, if any; `CSSMTP_LOG`, when set, is a tracing filter used instead of
/// any mask.
pub fn init(format: Format, command_line: Option<u32>) {
    if let Some(mask) = command_line {
        FROM_COMMAND_LINE.store(true, Ordering::Relaxed);
        MASK.store(mask & ALL, Ordering::Relaxed);
    }
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // Colour only on a terminal, and never when NO_COLOR is set (https://no-color.org).
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = std::io::stderr().is_terminal() && !journald && !no_color;
    let layer: Box<dyn Layer<tracing_subscriber::Registry> + Send + Sync> = match format {
        Format::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .boxed(),
        Format::Text if journald => tracing_subscriber::fmt::layer()
            .event_format(Journald(
                tracing_subscriber::fmt::format()
                    .compact()
                    .without_time()
                    .with_level(false)
                    .with_target(false),
            ))
            .with_ansi(false)
            .with_writer(std::io::stderr)
            .boxed(),
        Format::Text => tracing_subscriber::fmt::layer()
            .compact()
            .with_ansi(ansi)
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let layer = match tracing_subscriber::EnvFilter::try_from_env("CSSMTP_LOG") {
        Ok(filter) => {
            ENV_FILTER.store(true, Ordering::Relaxed);
            layer.with_filter(filter).boxed()
        }
        Err(_) => layer
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                enabled(mask(), meta)
            }))
            .boxed(),
    };
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Text lines for journald: `<priority>` first.
struct Journald<F>(F);

impl<S, N, F> FormatEvent<S, N> for Journald<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_and_descriptions() {
        assert_eq!(describe(DEFAULT), "error, warning, event");
        assert_eq!(describe(0), "nothing");
        assert_eq!(describe(ALL), "error, warning, event, detail, trace");
        assert_eq!(bit(Level::WARN), WARNING);
    }
}
