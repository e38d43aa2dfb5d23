#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::expect_used)]
//! The parser's tests, by concern: the envelope and session commands (`envelope`), the
//! sequence of commands and the limits of a file (`session`), the text of a mail
//! (`text`). This file holds their shared helpers.

mod envelope;
mod session;
mod text;

use super::*;
use crate::data::{DataRules, render_lines};

fn parse(text: &str) -> (Vec<Mail>, Summary) {
    parse_bytes(text.as_bytes(), Limits::default())
}

fn parse_with(text: &str, limits: Limits) -> (Vec<Mail>, Summary) {
    parse_bytes(text.as_bytes(), limits)
}

/// The errors as `(line, text)`, the form an error report shows.
fn errors(summary: &Summary) -> Vec<(u32, String)> {
    summary
        .errors
        .iter()
        .map(|e| (e.line, e.to_string()))
        .collect()
}

fn wire_text(file: &str, mail: &Mail) -> String {
    let span = &file.as_bytes()[mail.data.start as usize..mail.data.end as usize];
    let mut out = Vec::new();
    render_lines(span, rules(mail, false), true, &mut out);
    String::from_utf8(out).unwrap()
}

fn rules(mail: &Mail, truncate: bool) -> DataRules {
    DataRules {
        padded: mail.data.padded,
        truncate,
    }
}

const TWO_MAILS: &str = "HELO zos1.corp.example
MAIL FROM:<batch@zos1.corp.example>
RCPT TO:<alice@example.com>
RCPT TO:<bob@example.org>
DATA
From: batch@zos1.corp.example
Subject: totals

..leading dot doubled
body
.
MAIL FROM:<>
RCPT TO:<carol@example.net>
DATA
Subject: second
Date: Sat, 28 Nov 2026 10:00:00 +0000
Message-ID: <x@y>

second body
.
QUIT
";
