//! The exit statuses of every subcommand, in one table: `cssmtp --help`, the man page
//! and the README's table (a test compares them) are all made from [`CODES`].

use std::sync::LazyLock;

pub const EXIT_OK: u8 = 0;
pub const EXIT_FATAL: u8 = 1;
/// A command-line usage error (clap's own status for one too).
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_NOT_DELIVERED: u8 = 3;
/// `trace`: no mail matched.
pub const EXIT_NOT_FOUND: u8 = 4;
/// `submit`: a file has syntax errors and was not spooled (EX_DATAERR).
pub const EXIT_DATAERR: u8 = 65;
/// `modify`: the daemon cannot be reached (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;
/// `run --drain` stopped by a signal (EX_TEMPFAIL: run it again).
pub const EXIT_STOPPED: u8 = 75;
/// Configuration errors or unsafe directories (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// One exit status: its number and what it means, for every subcommand.
pub struct Code {
    pub code: u8,
    pub meaning: &'static str,
}

/// Every exit status cssmtp uses.
pub const CODES: &[Code] = &[
    Code {
        code: EXIT_OK,
        meaning: "success: `run --drain` delivered every recipient, `check` found no error, \
                  `submit` spooled every file, `modify` carried the command out",
    },
    Code {
        code: EXIT_FATAL,
        meaning: "fatal error: `run` cannot start (another instance serves the writer name, \
                  I/O), `submit` could not read or write a file, `modify` was refused by the \
                  daemon, `demo` went wrong",
    },
    Code {
        code: EXIT_USAGE,
        meaning: "usage error: an unknown option or subcommand, a missing argument, an \
                  operator command `modify` cannot parse",
    },
    Code {
        code: EXIT_NOT_DELIVERED,
        meaning: "`run --drain` finished but some mail was not delivered (undeliverable \
                  recipients, held spool files)",
    },
    Code {
        code: EXIT_NOT_FOUND,
        meaning: "`trace`: no mail matched (in the trace records nor among the running \
                  daemon's spool tasks)",
    },
    Code {
        code: EXIT_DATAERR,
        meaning: "`submit`: a file had syntax errors and was not spooled (EX_DATAERR)",
    },
    Code {
        code: EXIT_UNAVAILABLE,
        meaning: "`modify`: the daemon cannot be reached (not running, or another \
                  RunDirectory) (EX_UNAVAILABLE)",
    },
    Code {
        code: EXIT_STOPPED,
        meaning: "`run --drain` stopped by a signal before the spool was drained; `run` \
                  ended at once by a second signal (EX_TEMPFAIL)",
    },
    Code {
        code: EXIT_CONFIG,
        meaning: "configuration errors, or unsafe directories (`CSM1060E`) (EX_CONFIG)",
    },
];

/// The meaning without Markdown's backquotes.
pub fn plain(meaning: &str) -> String {
    meaning.replace('`', "")
}

static HELP: LazyLock<String> = LazyLock::new(|| {
    let mut text = String::from("Exit status:");
    for c in CODES {
        let mut line = format!("\n  {:<3}", c.code);
        for word in plain(c.meaning).split(' ') {
            if line.len() + 1 + word.len() > 80 {
                text.push_str(&line);
                line = format!("\n      {word}");
            } else {
                line.push(' ');
                line.push_str(word);
            }
        }
        text.push_str(&line);
    }
    text
});

/// The `Exit status:` part of `cssmtp --help`.
pub fn help() -> &'static str {
    HELP.as_str()
}
