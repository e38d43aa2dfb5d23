//! THE statement table: every statement cssmtp knows, in DISPLAY CONFIG's order, each
//! with its type and range, default, whether REFRESH can change it, and how DISPLAY
//! CONFIG shows it. Adding a statement is adding an entry here (and its field in
//! [`super::types`], its line in the README's table: a test checks that table against
//! this one). The block statements' parameters are in [`super::blocks`] and
//! [`super::targets`].

use std::net::{IpAddr, SocketAddr};

use super::blocks::{
    EXTENDED_RETRY, HEADER, OPTIONS, RETRY_LIMIT, SMF119, TIMEOUT, UNDELIVERABLE, USER_EXIT,
};
use super::draft::{Diags, Draft, mailbox};
use super::syntax::Word;
use super::table::{Def, Form, Kind, Refresh, Show, restart, yes};
use super::{
    BadSpoolDisp, DEFAULT_EXT_WRT_NAME, DEFAULT_RUN_DIRECTORY, DEFAULT_SPOOL_DIRECTORY,
    PossiblyDelivered, Report,
};

pub(crate) static STATEMENTS: &[Def] = &[
    Def::value("ExtWrtName", Kind::Custom(ext_wrt_name), |c| {
        c.ext_wrt_name.clone()
    })
    .default(DEFAULT_EXT_WRT_NAME)
    .refresh(restart!(ext_wrt_name)),
    Def::value(
        "SpoolDirectory",
        Kind::Path(|d, p| d.c.spool_directory = p),
        |c| c.spool_directory.display().to_string(),
    )
    .default(DEFAULT_SPOOL_DIRECTORY)
    .refresh(restart!(spool_directory)),
    Def::value(
        "RunDirectory",
        Kind::Path(|d, p| d.c.run_directory = p),
        |c| c.run_directory.display().to_string(),
    )
    .default(DEFAULT_RUN_DIRECTORY)
    .refresh(restart!(run_directory)),
    Def::value("HostName", Kind::Custom(host_name), |c| {
        c.host_name
            .as_deref()
            .unwrap_or("(the system's name)")
            .into()
    })
    .refresh(restart!(host_name)),
    Def {
        name: "TargetServer",
        form: Form::Targets(&super::targets::TARGET_SERVER),
        repeatable: true,
        default: None,
        refresh: Refresh::Live,
        show: Show::Lines(super::targets::show),
    },
    Def::block("Timeout", &TIMEOUT).refresh(restart!(timeouts)),
    Def::block("Header", &HEADER),
    Def::value(
        "JESSyntaxErrLimit",
        Kind::number(0, 999, |d, n| d.c.jes_syntax_err_limit = n as u32),
        |c| c.jes_syntax_err_limit.to_string(),
    )
    .default("5"),
    Def::value(
        "JESMsgSize",
        Kind::number(0, 2_000_000_000, |d, n| d.c.jes_msg_size = n),
        |c| c.jes_msg_size.to_string(),
    )
    .default("0"),
    Def::value(
        "JESJobSize",
        Kind::number(0, 2_000_000_000, |d, n| d.c.jes_job_size = n),
        |c| c.jes_job_size.to_string(),
    )
    .default("0"),
    Def::block("RetryLimit", &RETRY_LIMIT),
    Def::block("Options", &OPTIONS),
    Def::value(
        "BadSpoolDisp",
        Kind::Choice(
            &[
                ("Hold", |d| d.c.bad_spool_disp = BadSpoolDisp::Hold),
                ("Delete", |d| d.c.bad_spool_disp = BadSpoolDisp::Delete),
            ],
            &[],
        ),
        |c| match c.bad_spool_disp {
            BadSpoolDisp::Hold => "Hold".into(),
            BadSpoolDisp::Delete => "Delete".into(),
        },
    )
    .default("Hold"),
    Def::block("Undeliverable", &UNDELIVERABLE),
    Def::block("ExtendedRetry", &EXTENDED_RETRY)
        .refresh(restart!(extended_retry))
        .show(Show::Lines(super::blocks::show_extended_retry)),
    Def::each("MailAdministrator", Kind::Custom(mail_administrator), |c| {
        c.mail_administrators.clone()
    }),
    Def::each("PermitUser", Kind::Custom(permit_user), |c| {
        permitted(&c.permit_users, c)
    }),
    Def::each("PermitGroup", Kind::Custom(permit_group), |c| {
        permitted(&c.permit_groups, c)
    }),
    Def::value(
        "Report",
        Kind::Choice(
            &[
                ("Admin", |d| d.c.report = Report::Admin),
                ("File", |d| d.c.report = Report::File),
                ("None", |d| d.c.report = Report::None),
            ],
            &[("Sysout", "File")],
        ),
        |c| match c.report {
            Report::Admin => "Admin".into(),
            Report::File => "File".into(),
            Report::None => "None".into(),
        },
    )
    .default("File"),
    Def::value(
        "ReportMailFrom",
        Kind::Mailbox(|d, m| d.c.report_mail_from = Some(m)),
        |c| format!("<{}>", c.report_mail_from.as_deref().unwrap_or("")),
    ),
    Def::value(
        "NotifyLimit",
        Kind::number(0, 1_000_000, |d, n| d.c.notify_limit = n as u32),
        |c| c.notify_limit.to_string(),
    )
    .default("600")
    .refresh(restart!(notify_limit)),
    Def::value(
        "SendmailStartTls",
        Kind::YesNo(|d, b| d.c.sendmail_starttls = b),
        |c| yes(c.sendmail_starttls),
    )
    .default("No"),
    Def::value(
        "SpoolTasks",
        Kind::number(1, 256, |d, n| d.c.spool_tasks = n as usize),
        |c| c.spool_tasks.to_string(),
    )
    .default("8")
    .refresh(restart!(spool_tasks)),
    Def::value(
        "MaxConnections",
        Kind::number(1, 1024, |d, n| d.c.max_connections = n as usize),
        |c| c.max_connections.to_string(),
    )
    .default("16")
    .refresh(restart!(max_connections)),
    Def::each(
        "TlsCaFile",
        Kind::Path(|d, p| d.c.tls_ca_files.push(p)),
        |c| {
            c.tls_ca_files
                .iter()
                .map(|p| p.display().to_string())
                .collect()
        },
    )
    .refresh(restart!(tls_ca_files)),
    Def::value("SourceAddress", Kind::Custom(source_address), |c| {
        c.source_address
            .map(|ip| ip.to_string())
            .unwrap_or_default()
    })
    .refresh(restart!(source_address)),
    // DKIM signing (cssmtp's: config/dkim.rs).
    Def {
        name: "DkimKey",
        form: Form::Block(&super::dkim::DKIM_KEY),
        repeatable: true,
        default: None,
        refresh: Refresh::Live,
        show: Show::Lines(super::dkim::show_keys),
    },
    Def::value(
        "DkimHeaders",
        Kind::Custom(super::dkim::headers),
        super::dkim::show_headers,
    )
    .default(super::dkim::DEFAULT_HEADERS),
    Def::value(
        "DkimCanonicalization",
        Kind::Custom(super::dkim::canonicalization),
        super::dkim::show_canonicalization,
    )
    .default("relaxed/relaxed"),
    Def::each("NameServer", Kind::Custom(name_server), |c| {
        c.name_servers.iter().map(ToString::to_string).collect()
    })
    .refresh(restart!(name_servers)),
    Def::value("ChkPoint", Kind::YesNo(|d, b| d.c.chk_point = b), |c| {
        yes(c.chk_point)
    })
    .default("Yes")
    .refresh(restart!(chk_point)),
    Def::value(
        "ChkPointDirectory",
        Kind::Path(|d, p| d.c.chk_point_directory = Some(p)),
        |c| {
            c.journal_path()
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        },
    )
    .refresh(restart!(chk_point_directory)),
    Def::value(
        "ChkPointSizeLimit",
        Kind::number(100, 10_000_000, |d, n| d.c.chk_point_size_limit = n as u32),
        |c| c.chk_point_size_limit.to_string(),
    )
    .default("64000")
    .refresh(restart!(chk_point_size_limit)),
    Def::value(
        "ChkPointSync",
        Kind::Choice(
            &[
                ("Interval", |d| d.c.chk_point_sync_each_mail = false),
                ("Mail", |d| d.c.chk_point_sync_each_mail = true),
            ],
            &[],
        ),
        |c| {
            if c.chk_point_sync_each_mail {
                "Mail"
            } else {
                "Interval"
            }
            .into()
        },
    )
    .default("Interval")
    .refresh(restart!(chk_point_sync_each_mail)),
    Def::value("SpoolDatabase", Kind::Custom(spool_database), |c| {
        c.spool_database
            .clone()
            .unwrap_or_else(|| "(none: the directory spool)".into())
    })
    .refresh(restart!(spool_database)),
    Def::value(
        "SpoolDatabasePasswordFile",
        Kind::Path(|d, p| d.c.spool_database_password_file = Some(p)),
        |c| {
            c.spool_database_password_file
                .as_ref()
                .map_or_else(|| "(none)".into(), |p| p.display().to_string())
        },
    )
    .refresh(restart!(spool_database_password_file)),
    Def::value(
        "SpoolDatabaseLease",
        Kind::Number {
            min: 5,
            max: 3600,
            unit: "seconds",
            set: |d, n| d.c.spool_database_lease = std::time::Duration::from_secs(n),
        },
        |c| c.spool_database_lease.as_secs().to_string(),
    )
    .default("60")
    .refresh(restart!(spool_database_lease)),
    Def::value(
        "SpoolDatabaseInstance",
        Kind::Custom(spool_database_instance),
        |c| {
            c.spool_database_instance
                .clone()
                .unwrap_or_else(|| "(the host name)".into())
        },
    )
    .refresh(restart!(spool_database_instance)),
    Def::value(
        "PossiblyDelivered",
        Kind::Choice(
            &[
                ("Resend", |d| {
                    d.c.possibly_delivered = PossiblyDelivered::Resend;
                }),
                ("Hold", |d| d.c.possibly_delivered = PossiblyDelivered::Hold),
            ],
            &[],
        ),
        |c| match c.possibly_delivered {
            PossiblyDelivered::Resend => "Resend".into(),
            PossiblyDelivered::Hold => "Hold".into(),
        },
    )
    .default("Resend"),
    Def::value(
        "LogLevel",
        Kind::number(0, 31, |d, n| d.c.log_level = n as u32),
        |c| c.log_level.to_string(),
    )
    .default(LOG_LEVEL_DEFAULT),
    Def::block("SMF119", &SMF119),
    Def::value(
        "AccountingFile",
        Kind::Path(|d, p| d.c.accounting_file = Some(p)),
        |c| c.accounting_path().display().to_string(),
    )
    .refresh(restart!(accounting_file)),
    Def::value(
        "StatsInterval",
        Kind::Number {
            min: 0,
            max: 1440,
            unit: "minutes",
            set: |d, n| d.c.stats_interval = std::time::Duration::from_secs(n * 60),
        },
        |c| (c.stats_interval.as_secs() / 60).to_string(),
    )
    .default("15")
    .refresh(restart!(stats_interval)),
    Def::value("MetricsListen", Kind::Custom(metrics_listen), |c| {
        c.metrics_listen
            .map_or_else(|| "(none)".to_owned(), |a| a.to_string())
    })
    .refresh(restart!(metrics_listen)),
    Def::value("Translate", Kind::Custom(translate), |c| {
        c.translate
            .map_or_else(|| "(none: UTF-8 and ASCII)".into(), |p| p.name().into())
    }),
    Def::value(
        "RecordLength",
        Kind::number(1, 32760, |d, n| d.c.record_length = n as usize),
        |c| c.record_length.to_string(),
    )
    .default("80"),
    Def::not_yet("MBCS"),
    Def::block("UserExit", &USER_EXIT).show(Show::Lines(super::blocks::show_user_exit)),
];

/// `LogLevel`'s default: CSSMTP's 7 (errors, warnings, events).
const LOG_LEVEL_DEFAULT: &str = "7";

fn ext_wrt_name(diags: &mut Diags, d: &mut Draft, w: &Word) {
    let text = w.text.as_str();
    let ok = !text.is_empty()
        && text.len() <= 32
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "$#@_-".contains(c));
    if ok {
        d.c.ext_wrt_name = text.to_ascii_uppercase();
    } else {
        diags.error(
            w.line,
            format!("ExtWrtName {text:?} must be 1 to 32 letters, digits or $ # @ _ -"),
        );
    }
}

fn host_name(diags: &mut Diags, d: &mut Draft, w: &Word) {
    if cssmtp_batch::address::valid_domain(&w.text) {
        d.c.host_name = Some(w.text.clone());
    } else {
        diags.error(
            w.line,
            format!("HostName {:?} is not a valid domain name", w.text),
        );
    }
}

fn translate(diags: &mut Diags, d: &mut Draft, w: &Word) {
    match crate::spool::translate::CodePage::parse(&w.text) {
        Some(page) => d.c.translate = Some(page),
        None if matches!(
            w.text.to_ascii_uppercase().as_str(),
            "NONE" | "UTF-8" | "UTF8" | "ASCII" | "ISO8859-1"
        ) =>
        {
            d.c.translate = None;
        }
        None => diags.error(
            w.line,
            format!(
                "Translate {:?}: expected IBM-1047, IBM-037, IBM-500, IBM-1140 or UTF-8",
                w.text
            ),
        ),
    }
}

/// A user or group name (as `useradd` allows) or a numeric ID.
fn account_name(diags: &mut Diags, w: &Word, statement: &str) -> Option<String> {
    let text = w.text.as_str();
    let ok = !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('-')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-$".contains(c));
    if ok {
        Some(text.to_owned())
    } else {
        diags.error(
            w.line,
            format!("{statement} {text:?}: expected a user or group name, or a numeric ID"),
        );
        None
    }
}

/// DISPLAY CONFIG of PermitUser/PermitGroup: the names, or that every owner may send.
fn permitted(names: &[String], c: &super::Config) -> Vec<String> {
    if !names.is_empty() {
        names.to_vec()
    } else if c.permit_users.is_empty() && c.permit_groups.is_empty() {
        vec!["(not set: every owner may send)".into()]
    } else {
        vec!["(not set)".into()]
    }
}

fn permit_user(diags: &mut Diags, d: &mut Draft, w: &Word) {
    if let Some(name) = account_name(diags, w, "PermitUser")
        && !d.c.permit_users.contains(&name)
    {
        d.c.permit_users.push(name);
    }
}

fn permit_group(diags: &mut Diags, d: &mut Draft, w: &Word) {
    if let Some(name) = account_name(diags, w, "PermitGroup")
        && !d.c.permit_groups.contains(&name)
    {
        d.c.permit_groups.push(name);
    }
}

/// The first four, each once.
fn mail_administrator(diags: &mut Diags, d: &mut Draft, w: &Word) {
    let Some(mailbox) = mailbox(diags, w, "MailAdministrator") else {
        return;
    };
    let admins = &d.c.mail_administrators;
    if let Some(first) = admins
        .iter()
        .position(|m| *m == mailbox)
        .and_then(|i| d.admin_lines.get(i))
    {
        diags.warning(
            w.line,
            format!("MailAdministrator {mailbox} duplicates line {first}; ignored"),
        );
    } else if admins.len() == 4 {
        diags.warning(
            w.line,
            format!(
                "only the first four MailAdministrator statements are used; ignoring {mailbox}"
            ),
        );
    } else {
        d.c.mail_administrators.push(mailbox);
        d.admin_lines.push(w.line);
    }
}

/// `ip`, `ip:port` or `[v6]:port` (port 53 when none is given).
fn source_address(diags: &mut Diags, d: &mut Draft, w: &Word) {
    match w.text.parse::<IpAddr>() {
        Ok(ip) => d.c.source_address = Some(ip),
        Err(_) => diags.error(
            w.line,
            format!("SourceAddress {:?} is not an IP address", w.text),
        ),
    }
}

fn name_server(diags: &mut Diags, d: &mut Draft, w: &Word) {
    let text = w.text.as_str();
    let parsed = text.parse::<SocketAddr>().ok().or_else(|| {
        text.parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    });
    match parsed {
        Some(addr) => d.c.name_servers.push(addr),
        None => diags.error(
            w.line,
            format!("NameServer {text:?} is not an IP address (or ip:port, [ipv6]:port)"),
        ),
    }
}

/// `port`, `address:port` or `[v6]:port`; a port alone listens on loopback.
fn metrics_listen(diags: &mut Diags, d: &mut Draft, w: &Word) {
    let text = w.text.as_str();
    let addr = text
        .parse::<u16>()
        .map(|port| SocketAddr::from(([127, 0, 0, 1], port)))
        .or_else(|_| text.parse::<SocketAddr>());
    match addr {
        Ok(addr) => d.c.metrics_listen = Some(addr),
        Err(_) => diags.error(
            w.line,
            format!("MetricsListen must be a port or address:port, not {text:?}"),
        ),
    }
}

/// `postgresql://[user@]host[:port]/database[?options]`: a URL the client reads, with
/// no password (credentials are never in the configuration's text).
fn spool_database(diags: &mut Diags, d: &mut Draft, w: &Word) {
    let text = w.text.as_str();
    if !(text.starts_with("postgresql://") || text.starts_with("postgres://")) {
        diags.error(
            w.line,
            format!("SpoolDatabase must be a postgresql:// URL, not {text:?}"),
        );
        return;
    }
    match crate::storage::pg::tls::parse_url(text) {
        Ok(p) if p.config.get_password().is_some() => diags.error(
            w.line,
            "SpoolDatabase must not hold a password: use SpoolDatabasePasswordFile or PGPASSWORD"
                .to_owned(),
        ),
        Ok(_) => d.c.spool_database = Some(text.to_owned()),
        Err(e) => diags.error(w.line, format!("SpoolDatabase {text:?} is not a URL: {e}")),
    }
}

/// 1 to 64 letters, digits, `.`, `-`, `_`.
fn spool_database_instance(diags: &mut Diags, d: &mut Draft, w: &Word) {
    let text = w.text.as_str();
    let ok = !text.is_empty()
        && text.len() <= 64
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_".contains(c));
    if ok {
        d.c.spool_database_instance = Some(text.to_owned());
    } else {
        diags.error(
            w.line,
            format!("SpoolDatabaseInstance {text:?} must be 1 to 64 letters, digits or . - _"),
        );
    }
}

#[cfg(test)]
mod tests;
