//! When mail cannot be delivered: notifications, dead letters, error reports, TestMode,
//! extended retry across restarts. What the receiving servers saw and what is on disk.
//!
//! `notifications` holds the returns to senders, `dead_letters` what cannot be
//! returned and the error reports, `extended` extended retry; this file their shared
//! helpers.

mod dead_letters;
mod extended;
mod notifications;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cssmtp::sink::{Received, SinkOptions};
use cssmtp::spool::report::Disposition;
use mail_parser::{MessageParser, MimeHeaders};

use crate::support::{Env, mail, notifications, originals, sink, target, text_with_ids};

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    found.retain(|p| {
        p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
    });
    found.sort();
    found
}

/// The parts of an RFC 3464 report: (content types, the delivery-status text).
fn report_parts(notification: &Received) -> (Vec<String>, String) {
    let message = MessageParser::default()
        .parse(&notification.data)
        .expect("a MIME message");
    let top = message.content_type().expect("a content type");
    assert_eq!((top.ctype(), top.subtype()), ("multipart", Some("report")));
    assert_eq!(top.attribute("report-type"), Some("delivery-status"));
    let types: Vec<String> = message
        .parts
        .iter()
        .skip(1)
        .filter_map(|p| {
            p.content_type()
                .map(|c| format!("{}/{}", c.ctype(), c.subtype().unwrap_or("")))
        })
        .collect();
    let status = message
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.subtype() == Some("delivery-status"))
        })
        .map(|p| String::from_utf8_lossy(p.contents()).into_owned())
        .unwrap_or_default();
    (types, status)
}

fn files_in_reports(env: &Env) -> Vec<PathBuf> {
    files(&env.config().report_directory())
}
