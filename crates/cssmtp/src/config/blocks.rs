//! The parameters of the block statements (`TargetServer`'s are in [`super::targets`]),
//! declared as [`super::statements`] declares statements.

use std::time::Duration;

use cssmtp_batch::BlankTrnc;

use super::draft::{Diags, Draft};
use super::table::{Block, Kind, Param, named, restart, yes};
use super::{Config, DeadLetterAction, ExtendedRetry, ReturnContent};

type P = Param<Draft, Config>;

fn secs(d: Duration) -> Option<String> {
    Some(d.as_secs().to_string())
}

/// Seconds, 30–1200 each.
pub(crate) static TIMEOUT: Block<Draft, Config> = Block::of(&[
    P::new(
        "InitialMsg",
        Kind::number(30, 1200, |d, n| {
            d.c.timeouts.initial_msg = Duration::from_secs(n);
        }),
        |c| secs(c.timeouts.initial_msg),
    )
    .default("300"),
    P::new(
        "AnyCmd",
        Kind::number(30, 1200, |d, n| {
            d.c.timeouts.any_cmd = Duration::from_secs(n)
        }),
        |c| secs(c.timeouts.any_cmd),
    )
    .default("300"),
    P::new(
        "MAILCmd",
        Kind::number(30, 1200, |d, n| {
            d.c.timeouts.mail_cmd = Duration::from_secs(n)
        }),
        |c| secs(c.timeouts.mail_cmd),
    )
    .default("300"),
    P::new(
        "RCPTCmd",
        Kind::number(30, 1200, |d, n| {
            d.c.timeouts.rcpt_cmd = Duration::from_secs(n)
        }),
        |c| secs(c.timeouts.rcpt_cmd),
    )
    .default("300"),
    P::new(
        "DATACmd",
        Kind::number(30, 1200, |d, n| {
            d.c.timeouts.data_cmd = Duration::from_secs(n)
        }),
        |c| secs(c.timeouts.data_cmd),
    )
    .default("120"),
    P::new(
        "DataBlock",
        Kind::number(30, 1200, |d, n| {
            d.c.timeouts.data_block = Duration::from_secs(n);
        }),
        |c| secs(c.timeouts.data_block),
    )
    .default("180"),
    P::new(
        "DataTerm",
        Kind::number(30, 1200, |d, n| {
            d.c.timeouts.data_term = Duration::from_secs(n)
        }),
        |c| secs(c.timeouts.data_term),
    )
    .default("600"),
    P::new(
        "ConnectRetry",
        Kind::number(30, 1200, |d, n| {
            d.c.timeouts.connect_retry = Duration::from_secs(n);
        }),
        |c| secs(c.timeouts.connect_retry),
    )
    .default("120"),
]);

pub(crate) static HEADER: Block<Draft, Config> = Block::of(&[
    P::new("Date", Kind::YesNo(|d, b| d.c.header.date = b), |c| {
        Some(yes(c.header.date))
    })
    .default("Yes"),
    P::new(
        "UserInfo",
        Kind::YesNo(|d, b| d.c.header.user_info = b),
        |c| Some(yes(c.header.user_info)),
    )
    .default("Yes"),
]);

/// Count × Interval is at most 7200 minutes (5 days).
fn retry_limit_total(diags: &mut Diags, d: &mut Draft, line: u32) {
    let r = d.c.retry_limit;
    let total = u64::from(r.count) * (r.interval.as_secs() / 60);
    if total > 7200 {
        diags.error(
            line,
            format!(
                "RetryLimit Count × Interval is {total} minutes; at most 7200 (5 days) is allowed"
            ),
        );
    }
}

pub(crate) static RETRY_LIMIT: Block<Draft, Config> = Block {
    replace: Some(|_| {}),
    check: Some(retry_limit_total),
    ..Block::of(&[
        P::new(
            "Count",
            Kind::number(0, 7200, |d, n| d.c.retry_limit.count = n as u32),
            |c| Some(c.retry_limit.count.to_string()),
        )
        .default("5"),
        P::new(
            "Interval",
            Kind::number(0, 7200, |d, n| {
                d.c.retry_limit.interval = Duration::from_secs(n * 60);
            }),
            |c| Some((c.retry_limit.interval.as_secs() / 60).to_string()),
        )
        .default("1"),
    ])
};

pub(crate) static OPTIONS: Block<Draft, Config> = Block::of(&[
    P::new(
        "NullTrnc",
        Kind::Flag(|d, b| d.c.options.null_trnc = b),
        |c| Some(yes(c.options.null_trnc)),
    )
    .default("No"),
    P::new(
        "TestMode",
        Kind::Flag(|d, b| d.c.options.test_mode = b),
        |c| Some(yes(c.options.test_mode)),
    )
    .default("No")
    .refresh(restart!(options.test_mode)),
    P::new(
        "DataLineTrunc",
        Kind::Flag(|d, b| d.c.options.data_line_trunc = b),
        |c| Some(yes(c.options.data_line_trunc)),
    )
    .default("No"),
    // cssmtp: when mail text lines lose their trailing blanks (Auto: only in a file of
    // fixed-length records, every line the same length; Yes: always, CSSMTP's rule).
    P::new(
        "BlankTrnc",
        Kind::Choice(
            &[
                ("Auto", |d| d.c.options.blank_trnc = BlankTrnc::Auto),
                ("Yes", |d| d.c.options.blank_trnc = BlankTrnc::Yes),
                ("No", |d| d.c.options.blank_trnc = BlankTrnc::No),
            ],
            &[],
        ),
        |c| {
            Some(
                match c.options.blank_trnc {
                    BlankTrnc::Auto => "Auto",
                    BlankTrnc::Yes => "Yes",
                    BlankTrnc::No => "No",
                }
                .into(),
            )
        },
    )
    .default("Auto"),
    P::new("AtSign", Kind::Custom(at_sign), |c| {
        Some(c.options.at_sign.unwrap_or('@').to_string())
    })
    .default("@"),
    P::new(
        "ReplaceSubjectAtSign",
        Kind::Flag(|d, b| d.c.options.replace_subject_at_sign = b),
        |c| Some(yes(c.options.replace_subject_at_sign)),
    )
    .default("No"),
    // cssmtp: UTF-8 addresses (RFC 6531 SMTPUTF8).
    P::new(
        "SmtpUtf8",
        Kind::Flag(|d, b| d.c.options.smtputf8 = b),
        |c| Some(yes(c.options.smtputf8)),
    )
    .default("No"),
    // cssmtp always sends EHLO again after STARTTLS (RFC 3207 §4.2).
    P::new("TLSEhlo", Kind::Flag(|_, _| {}), |_| None),
]);

/// One printable character that cannot be mistaken for the syntax around an address.
fn at_sign(diags: &mut Diags, d: &mut Draft, w: &super::syntax::Word) {
    let mut chars = w.text.chars();
    match (chars.next(), chars.next()) {
        (Some('@'), None) => d.c.options.at_sign = None,
        (Some(c), None)
            if !c.is_control()
                && !c.is_whitespace()
                && !c.is_ascii_alphanumeric()
                && !"<>:.,;\"\\()[]".contains(c) =>
        {
            d.c.options.at_sign = Some(c);
        }
        _ => diags.error(
            w.line,
            format!(
                "Options AtSign {:?}: expected one character (not a letter, digit, blank or one of <>:.,;\"\\()[])",
                w.text
            ),
        ),
    }
}

pub(crate) static UNDELIVERABLE: Block<Draft, Config> = Block {
    qualified: false,
    ..Block::of(&[
        P::new(
            "ReturnToMailFrom",
            Kind::YesNo(|d, b| d.c.undeliverable.return_to_mail_from = b),
            |c| Some(yes(c.undeliverable.return_to_mail_from)),
        )
        .default("Yes"),
        P::new(
            "DeadLetterAction",
            Kind::Choice(
                &[
                    ("Store", |d| {
                        d.c.undeliverable.dead_letter_action = DeadLetterAction::Store;
                    }),
                    ("Delete", |d| {
                        d.c.undeliverable.dead_letter_action = DeadLetterAction::Delete;
                    }),
                ],
                &[],
            ),
            |c| {
                Some(match c.undeliverable.dead_letter_action {
                    DeadLetterAction::Store => "Store".into(),
                    DeadLetterAction::Delete => "Delete".into(),
                })
            },
        )
        .default("Store"),
        P::new(
            "DeadLetterDirectory",
            Kind::Path(|d, p| d.c.undeliverable.dead_letter_directory = Some(p)),
            |c| Some(c.dead_letter_directory().display().to_string()),
        ),
        P::new(
            "ReturnContent",
            Kind::Choice(
                &[
                    ("Headers", |d| {
                        d.c.undeliverable.return_content = ReturnContent::Headers;
                    }),
                    ("Full", |d| {
                        d.c.undeliverable.return_content = ReturnContent::Full;
                    }),
                ],
                &[],
            ),
            |c| {
                Some(match c.undeliverable.return_content {
                    ReturnContent::Headers => "Headers".into(),
                    ReturnContent::Full => "Full".into(),
                })
            },
        )
        .default("Headers"),
    ])
};

/// The `ExtendedRetry` being read (the statement switches it on).
fn extended(d: &mut Draft) -> &mut ExtendedRetry {
    d.c.extended_retry.get_or_insert(ExtendedRetry {
        age: Duration::ZERO,
        interval: Duration::ZERO,
        mail_directory: None,
    })
}

pub(crate) static EXTENDED_RETRY: Block<Draft, Config> = Block {
    replace: Some(|d| d.c.extended_retry = None),
    optional: true,
    // Interval 0 bypasses extended retry.
    check: Some(|_, d, _| {
        if d.c
            .extended_retry
            .as_ref()
            .is_some_and(|e| e.interval.is_zero())
        {
            d.c.extended_retry = None;
        }
    }),
    ..Block::of(&[
        P::new(
            "Age",
            Kind::number(0, 3650, |d, n| {
                extended(d).age = Duration::from_secs(n * 86_400);
            }),
            |c| Some((c.extended_retry.as_ref()?.age.as_secs() / 86_400).to_string()),
        )
        .default("5"),
        P::new(
            "Interval",
            Kind::number(0, 10_080, |d, n| {
                extended(d).interval = Duration::from_secs(n * 60);
            }),
            |c| Some((c.extended_retry.as_ref()?.interval.as_secs() / 60).to_string()),
        )
        .default("30"),
        P::new(
            "MailDirectory",
            Kind::Path(|d, p| extended(d).mail_directory = Some(p)),
            |c| Some(c.mail_directory().display().to_string()),
        ),
    ])
};

/// `ExtendedRetry { … }`, or `ExtendedRetry (inactive)`.
pub(crate) fn show_extended_retry(c: &Config) -> Vec<String> {
    vec![match c.extended_retry {
        Some(_) => super::table::block_line("ExtendedRetry", EXTENDED_RETRY.params, c),
        None => "ExtendedRetry (inactive)".into(),
    }]
}

pub(crate) static SMF119: Block<Draft, Config> = Block::of(&[
    P::new("Config", Kind::Flag(|d, b| d.c.smf119.config = b), |c| {
        named(c.smf119.config)
    }),
    P::new("Connect", Kind::Flag(|d, b| d.c.smf119.connect = b), |c| {
        named(c.smf119.connect)
    }),
    P::new("Mail", Kind::Flag(|d, b| d.c.smf119.mail = b), |c| {
        named(c.smf119.mail)
    }),
    P::new("Spool", Kind::Flag(|d, b| d.c.smf119.spool = b), |c| {
        named(c.smf119.spool)
    }),
    P::new("Stats", Kind::Flag(|d, b| d.c.smf119.stats = b), |c| {
        named(c.smf119.stats)
    }),
]);

fn user_exit(d: &mut Draft) -> &mut super::UserExit {
    d.c.user_exit.get_or_insert(super::UserExit {
        argv: Vec::new(),
        time_limit: Duration::ZERO,
        max_output: 0,
        level: super::ExitLevel::Version1,
    })
}

fn exit_program(diags: &mut Diags, d: &mut Draft, w: &super::syntax::Word) {
    let argv: Vec<String> = w.text.split_whitespace().map(str::to_owned).collect();
    match argv.first() {
        Some(program) if program.starts_with('/') => user_exit(d).argv = argv,
        _ => diags.error(
            w.line,
            format!(
                "UserExit Program {:?} must start with the absolute path of a program (it is run without a shell)",
                w.text
            ),
        ),
    }
}

/// `UserExit { Program … TimeLimit … MaxOutput … Level … }` (issue 14 point 5).
pub(crate) static USER_EXIT: Block<Draft, Config> = Block {
    replace: Some(|d| d.c.user_exit = None),
    optional: true,
    check: Some(|diags, d, line| {
        if d.c.user_exit.as_ref().is_some_and(|e| e.argv.is_empty()) {
            diags.error(line, "UserExit needs Program (the exit to call)".to_owned());
            d.c.user_exit = None;
        }
    }),
    ..Block::of(&[
        P::new("Program", Kind::Custom(exit_program), |c| {
            Some(format!("\"{}\"", c.user_exit.as_ref()?.argv.join(" ")))
        }),
        P::new(
            "TimeLimit",
            Kind::Number {
                min: 1,
                max: 3600,
                unit: "seconds",
                set: |d, n| user_exit(d).time_limit = Duration::from_secs(n),
            },
            |c| secs(c.user_exit.as_ref()?.time_limit),
        )
        .default("30"),
        P::new(
            "MaxOutput",
            Kind::Number {
                min: 1,
                max: 1_000_000,
                unit: "KB",
                set: |d, n| user_exit(d).max_output = n * 1024,
            },
            |c| Some((c.user_exit.as_ref()?.max_output / 1024).to_string()),
        )
        .default("10240"),
        P::new(
            "Level",
            Kind::Choice(
                &[
                    ("Version1", |d| {
                        user_exit(d).level = super::ExitLevel::Version1
                    }),
                    ("None", |d| user_exit(d).level = super::ExitLevel::None),
                ],
                &[],
            ),
            |c| Some(c.user_exit.as_ref()?.level.name().to_owned()),
        )
        .default("Version1"),
    ])
};

/// `UserExit { … }`, or `UserExit (none)`.
pub(crate) fn show_user_exit(c: &Config) -> Vec<String> {
    vec![match c.user_exit {
        Some(_) => super::table::block_line("UserExit", USER_EXIT.params, c),
        None => "UserExit (none)".into(),
    }]
}
