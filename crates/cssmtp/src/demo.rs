//! `cssmtp demo`: the newcomer's first command.
//!
//! Starts a target server on loopback (the sink, advertising SIZE 20000), writes a
//! configuration and three sample batch jobs into a scratch directory, runs cssmtp over
//! them until the spool is drained, and prints what the target server received and what
//! could not be delivered. Needs nothing but this binary.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::app::RunOptions;
use crate::config;
use crate::sink::{Received, Sink, SinkOptions};
use crate::spool::SpoolLayout;
use crate::spool::report::{Disposition, FileReport};
use crate::spool::submit::{JobInfo, submit};

const TARGET_SIZE: u64 = 20_000;

fn payroll_job() -> String {
    "EHLO zos1.corp.example
MAIL FROM:<payroll@zos1.corp.example>
RCPT TO:<alice@example.com>
RCPT TO:<bob@example.org>
RCPT TO:<reject-carol@example.net>
DATA
From: Payroll batch <payroll@zos1.corp.example>
To: alice@example.com, bob@example.org, carol@example.net
Subject: November payroll totals

Totals for November are attached below.
..this line starts with a dot (doubled in the spool file)
.
MAIL FROM:<payroll@zos1.corp.example>
RCPT TO:<dave@example.com>
DATA
Subject: Payroll run finished

The payroll run finished at 22:00.
.
QUIT
"
    .into()
}

fn big_job() -> String {
    let mut text = String::from(
        "HELO zos1.corp.example\nMAIL FROM:<reports@zos1.corp.example>\nRCPT TO:<erin@example.com>\nDATA\nSubject: Monthly ledger (too big for the target)\n\n",
    );
    for i in 0..600 {
        text.push_str(&format!(
            "ledger line {i:04}: 0000000000 0000000000 0000000000\n"
        ));
    }
    text.push_str(".\nQUIT\n");
    text
}

fn job_with_error() -> String {
    "HELO zos1.corp.example 11/28/26
HELO zos1.corp.example
MAIL FROM:<ops@zos1.corp.example>
RCPT TO:<frank@example.com>
DATA
Subject: Job with a HELO syntax error

This mail is still delivered; the bad HELO is reported.
.
"
    .into()
}

/// Runs the demo, writing its account to `out`. Returns whether the results are the
/// expected ones: three mails delivered, two recipients undeliverable (on purpose) and
/// notified to their originators.
///
/// # Errors
/// When the scratch directory, the sink or cssmtp cannot be set up.
pub async fn run(keep: Option<&Path>, out: &mut impl Write) -> anyhow::Result<bool> {
    let scratch;
    let dir = match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir.to_path_buf()
        }
        None => {
            scratch = tempfile::Builder::new().prefix("cssmtp-demo-").tempdir()?;
            scratch.path().to_path_buf()
        }
    };
    let sink = Sink::bind(
        ([127, 0, 0, 1], 0).into(),
        SinkOptions {
            size: Some(TARGET_SIZE),
            hostname: "target.demo.localhost".into(),
            ..SinkOptions::default()
        },
    )
    .await
    .context("cannot start the demo target server on 127.0.0.1")?;
    let config_path = dir.join("cssmtp.conf");
    let config_text = format!(
        "# cssmtp demo configuration (CSSMTP statements)
ExtWrtName     DEMO
SpoolDirectory spool
RunDirectory   run
HostName       cssmtp-demo.localhost
TargetServer
{{
  TargetIp    127.0.0.1
  ConnectPort {}
}}
Timeout
{{
  InitialMsg 30
}}
",
        sink.addr.port()
    );
    std::fs::write(&config_path, &config_text)?;
    let (config, _) = config::load(&config_path)?;
    let layout = SpoolLayout::new(config.writer_spool());
    layout.create()?;

    writeln!(out, "cssmtp demo")?;
    writeln!(out, "===========")?;
    writeln!(
        out,
        "Target server: cssmtp sink on {} (advertises SIZE {TARGET_SIZE})",
        sink.addr
    )?;
    writeln!(out, "Configuration: {}", config_path.display())?;
    writeln!(out, "Spool:         {}", layout.incoming.display())?;
    writeln!(out)?;
    submit_jobs(&layout, out)?;
    writeln!(out)?;
    writeln!(
        out,
        "Forwarding (cssmtp run --drain; log on standard error)..."
    )?;
    out.flush()?;

    let options = RunOptions::drain().keep_reports();
    let report = crate::app::run(config, options, CancellationToken::new()).await?;

    writeln!(out)?;
    let received = show_received(&sink, out)?;
    writeln!(out)?;
    let mut files = report.files.clone();
    files.sort_by(|a, b| a.job.file_name.cmp(&b.job.file_name));
    show_undelivered(&files, out)?;
    show_files(&files, out)?;
    let s = report.stats;
    writeln!(out)?;
    writeln!(
        out,
        "Summary: {} mail(s) sent, {} recipient(s) delivered, {} undeliverable ({} notification(s) sent), {} spool file(s), {} held.",
        s.mails_sent,
        s.rcpts_delivered,
        s.rcpts_undeliverable,
        s.notifications,
        s.files_done,
        s.files_held
    )?;
    if keep.is_some() {
        writeln!(out, "The demo's files are kept in {}.", dir.display())?;
    } else {
        writeln!(
            out,
            "(Run `cssmtp demo --keep DIR` to keep the configuration, spool, reports and held files.)"
        )?;
    }
    let expected = received.len() == 5
        && s.rcpts_delivered == 4
        && s.rcpts_undeliverable == 2
        && s.notifications == 2;
    Ok(expected)
}

/// Puts the demo's three batch jobs into the spool, saying what each is.
fn submit_jobs(layout: &SpoolLayout, out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "Submitting three batch jobs:")?;
    let jobs = [
        (
            "PAYROLL",
            "J0000101",
            payroll_job(),
            "2 mails, 4 recipients (the target rejects carol)",
        ),
        (
            "LEDGER",
            "J0000102",
            big_job(),
            "1 mail larger than the target's SIZE",
        ),
        (
            "OPSJOB",
            "J0000103",
            job_with_error(),
            "1 mail after a HELO syntax error",
        ),
    ];
    for (i, (name, id, text, what)) in jobs.iter().enumerate() {
        let job = JobInfo {
            job_name: (*name).into(),
            job_id: (*id).into(),
        };
        let path = submit(&layout.incoming, &job, i + 1, text.as_bytes())?;
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        writeln!(out, "  {file}: {what}")?;
    }
    Ok(())
}

/// Lists what the target server received; returns it.
fn show_received(sink: &Sink, out: &mut impl Write) -> anyhow::Result<Vec<Received>> {
    writeln!(out, "Received by the target server:")?;
    let mut received = sink.received();
    received.sort_by_key(|m| (m.mail_from.is_empty(), m.id));
    for mail in &received {
        let rcpts: Vec<String> = mail.rcpt_to.iter().map(|r| format!("<{r}>")).collect();
        let kind = if mail.mail_from.is_empty() {
            "  (undeliverable notification)"
        } else {
            ""
        };
        writeln!(
            out,
            "  #{} from <{}> to {}{kind}\n      Subject: {}",
            mail.id,
            mail.mail_from,
            rcpts.join(", "),
            mail.header("Subject").unwrap_or_default(),
        )?;
    }
    Ok(received)
}

/// Lists the recipients not delivered and what was done about each mail.
fn show_undelivered(files: &[FileReport], out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out, "Not delivered, and what cssmtp did about it:")?;
    let mut none = true;
    for file in files {
        for u in &file.undeliverable {
            none = false;
            writeln!(
                out,
                "  {} mail {} <{}>:\n      {}",
                file.job.job_name, u.mail, u.address, u.reason
            )?;
        }
        for (mail, what) in &file.returns {
            writeln!(out, "  {} mail {mail}: {what}", file.job.job_name)?;
        }
    }
    if none {
        writeln!(out, "  (nothing)")?;
    }
    Ok(())
}

/// Lists each spool file's result.
fn show_files(files: &[FileReport], out: &mut impl Write) -> anyhow::Result<()> {
    writeln!(out)?;
    writeln!(out, "Spool file results:")?;
    for file in files {
        let what = match &file.disposition {
            Disposition::Deleted if file.undeliverable_count > 0 => {
                "done (delivered or returned); deleted".to_owned()
            }
            Disposition::Deleted => "all delivered; deleted".to_owned(),
            Disposition::Held(path) => format!(
                "errors in the file: held for the operator as {}",
                path.display()
            ),
            Disposition::Removed => "removed (BadSpoolDisp Delete)".to_owned(),
            Disposition::LeftActive => "left in active/".to_owned(),
        };
        writeln!(out, "  {}: {what}", file.job.file_name)?;
        for e in file.errors.iter().filter(|e| !e.is_recipient_error()) {
            writeln!(out, "      line {}: {e}", e.line)?;
        }
        if let Some(done) = &file.report {
            writeln!(out, "      {done}")?;
        }
    }
    Ok(())
}
