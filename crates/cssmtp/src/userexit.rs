//! User exits (CSSMTP's `UserExit`, issue 14 point 5): an external program called for
//! each mail before it is sent, which says send, send modified, reject or hold.
//!
//! The exit is run without a shell, with a minimal environment, as the user cssmtp runs
//! as, in a process group of its own, within `TimeLimit` (then the whole group is
//! killed). Its standard input is, in this order (format version 1):
//!
//! ```text
//! cssmtp-exit 1
//! Spool-File: PAYROLL.J0012345.1a2b…        (escaped as in the logs)
//! Job-Name: PAYROLL
//! Job-Id: J0012345
//! Mail: 3                                    (the mail's number in its spool file)
//! MAIL FROM:<batch@zos1.example>
//! RCPT TO:<alice@example.com>                (one line per recipient tried now)
//!
//! <the mail as the target would get it, with the headers cssmtp adds; LF line ends,
//!  no dot-stuffing>
//! ```
//!
//! streamed from the spool file (never held whole in memory). Its exit status decides:
//! 0 send as is; 10 send what it wrote to standard output instead (the whole mail,
//! headers included; LF or CRLF line ends); 20 reject (returned to the sender, the first
//! line of its output as the reason); 30 hold (tried again after the RetryLimit
//! interval, as a temporary failure, the first line of its output as the reason).
//! Anything else (another status, a signal, no answer within `TimeLimit`, more than
//! `MaxOutput` written, a program that cannot be started, a new text that cannot go on
//! the wire) is a failure of the exit: the mail is held as for status 30, never sent
//! unchecked, never dropped.

use std::process::Stdio;
use std::sync::Arc;
use std::sync::OnceLock;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::config::UserExit;
use crate::delivery::MailText;
use crate::delivery::body::Body;

/// Exit statuses of the protocol.
pub const SEND: i32 = 0;
pub const SEND_MODIFIED: i32 = 10;
pub const REJECT: i32 = 20;
pub const HOLD: i32 = 30;

/// Most of a reason kept (characters).
const REASON_MAX: usize = 200;
/// Most of the exit's standard error kept for the log.
const STDERR_MAX: u64 = 2048;

/// What the exit decided for a mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send the mail as it is.
    Send,
    /// Send this text instead (wire form: CRLF lines, dot-stuffed, without the final
    /// "."; the whole mail, cssmtp adds no header).
    Modified(Arc<[u8]>),
    /// Return the mail to its sender, with this reason.
    Reject(String),
    /// Keep the mail and try it again later, with this reason (the exit said so).
    Hold(String),
    /// The exit failed (the mail is kept as for [`Decision::Hold`]).
    Failed(String),
}

/// What the exit is told of a mail.
pub struct Input<'a> {
    /// The spool file's name.
    pub file: &'a str,
    pub job_name: &'a str,
    pub job_id: &'a str,
    pub mail: u32,
    /// The reverse path ("" for `<>`).
    pub reverse_path: &'a str,
    pub recipients: &'a [String],
    /// The headers cssmtp adds, wire form.
    pub headers: &'a [u8],
    pub text: &'a MailText,
}

/// Tells spool tasks to try at once the mails waiting in long retry (after `MODIFY
/// USEREXIT`: mails an exit held are decided again now).
pub fn retry_now() -> &'static watch::Sender<u64> {
    static SIGNAL: OnceLock<watch::Sender<u64>> = OnceLock::new();
    SIGNAL.get_or_init(|| watch::Sender::new(0))
}

/// The header block of the exit's input.
fn header_block(input: &Input<'_>) -> Vec<u8> {
    let mut head = format!(
        "cssmtp-exit 1\nSpool-File: {}\nJob-Name: {}\nJob-Id: {}\nMail: {}\nMAIL FROM:<{}>\n",
        crate::escape::data(input.file),
        crate::escape::data(input.job_name),
        crate::escape::data(input.job_id),
        input.mail,
        crate::escape::data(input.reverse_path),
    );
    for rcpt in input.recipients {
        head.push_str(&format!("RCPT TO:<{}>\n", crate::escape::data(rcpt)));
    }
    head.push('\n');
    head.into_bytes()
}

/// Wire-form lines (CRLF, dot-stuffed) as the exit reads them: LF, not stuffed.
fn unwire(wire: &[u8], out: &mut Vec<u8>) {
    for line in wire.split_inclusive(|&b| b == b'\n') {
        let line = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        let line = match line.first() {
            Some(b'.') => line.get(1..).unwrap_or_default(),
            _ => line,
        };
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

/// The exit's new text in wire form: CRLF lines, dot-stuffed.
///
/// # Errors
/// Why it cannot go on the wire.
pub fn to_wire(text: &[u8]) -> Result<Vec<u8>, String> {
    if text.is_empty() {
        return Err("it wrote no text for status 10 (send modified)".into());
    }
    let mut out = Vec::with_capacity(text.len() + text.len() / 32 + 2);
    for (n, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
        let line = line
            .strip_suffix(b"\r\n")
            .or_else(|| line.strip_suffix(b"\n"))
            .unwrap_or(line);
        let n = n + 1;
        if line.contains(&b'\r') {
            return Err(format!("line {n} of its text holds a bare CR"));
        }
        if line.contains(&0) {
            return Err(format!("line {n} of its text holds a NUL"));
        }
        if line.len() > 998 {
            return Err(format!(
                "line {n} of its text is {} characters long (at most 998)",
                line.len()
            ));
        }
        if line.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(line);
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// The first line of `out`, escaped and cut, or `default`.
fn reason(out: &[u8], default: &str) -> String {
    let first = out.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.strip_suffix(b"\r").unwrap_or(first);
    let text = crate::escape::data(first).to_string();
    let text = text.trim();
    if text.is_empty() {
        return default.to_owned();
    }
    text.chars().take(REASON_MAX).collect()
}

/// Kills the exit's process group when dropped (time limit, too much output, cssmtp
/// stopping): nothing it started outlives it.
struct Group(Option<i32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Runs the exit for one mail.
pub async fn run(spec: &UserExit, input: &Input<'_>) -> Decision {
    let Some((program, args)) = spec.argv.split_first() else {
        return Decision::Failed("no Program".into());
    };
    let shown = crate::escape::data(program).to_string();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("LANG", "C.UTF-8")
        .env("CSSMTP_EXIT_VERSION", "1")
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return Decision::Failed(format!("{shown} cannot be started: {e}")),
    };
    let group = Group(child.id().and_then(|id| i32::try_from(id).ok()));
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Decision::Failed(format!("{shown}: no pipes to the exit"));
    };
    let head = header_block(input);
    let feed = async move {
        // The exit may stop reading (it decided on the envelope): a closed pipe ends
        // the feed, it is not a failure.
        if stdin.write_all(&head).await.is_err() {
            return Ok(());
        }
        let mut lines = Vec::new();
        unwire(input.headers, &mut lines);
        if stdin.write_all(&lines).await.is_err() {
            return Ok(());
        }
        let mut body = Body::new(input.text);
        let (mut raw, mut wire) = (Vec::new(), Vec::new());
        loop {
            wire.clear();
            match body.next_chunk(&mut raw, &mut wire).await {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Err(e.to_string()),
            }
            lines.clear();
            unwire(&wire, &mut lines);
            if stdin.write_all(&lines).await.is_err() {
                return Ok(());
            }
        }
        let _ = stdin.shutdown().await;
        Ok(())
    };
    let limit = spec.max_output;
    let collect = async move {
        let mut out = Vec::new();
        stdout
            .take(limit + 1)
            .read_to_end(&mut out)
            .await
            .map(|_| out)
    };
    let errors = async move {
        let mut err = Vec::new();
        let _ = stderr.take(STDERR_MAX).read_to_end(&mut err).await;
        err
    };
    let work = async {
        let (fed, out, err) = tokio::join!(feed, collect, errors);
        (fed, out, err)
    };
    let wait = spec.time_limit;
    let (fed, out, err) = match tokio::time::timeout(wait, work).await {
        Ok(done) => done,
        Err(_) => {
            drop(group);
            let _ = child.wait().await;
            return Decision::Failed(format!(
                "{shown} gave no answer within TimeLimit {} second(s); it was killed",
                wait.as_secs()
            ));
        }
    };
    let stderr_note = {
        let text = reason(&err, "");
        if text.is_empty() {
            String::new()
        } else {
            format!(" (its standard error: {text})")
        }
    };
    if let Err(e) = fed {
        drop(group);
        let _ = child.wait().await;
        return Decision::Failed(format!("the mail's text could not be read for it: {e}"));
    }
    let out = match out {
        Ok(out) if out.len() as u64 > limit => {
            drop(group);
            let _ = child.wait().await;
            return Decision::Failed(format!(
                "{shown} wrote more than MaxOutput {} KB; it was killed",
                limit / 1024
            ));
        }
        Ok(out) => out,
        Err(e) => {
            drop(group);
            let _ = child.wait().await;
            return Decision::Failed(format!("reading the output of {shown} failed: {e}"));
        }
    };
    // Its output is closed: the exit has ended, or ends now.
    let status = match tokio::time::timeout(wait, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Decision::Failed(format!("{shown}: {e}")),
        Err(_) => {
            drop(group);
            let _ = child.wait().await;
            return Decision::Failed(format!(
                "{shown} did not end within TimeLimit {} second(s); it was killed",
                wait.as_secs()
            ));
        }
    };
    // Whatever it left running in its group goes with it.
    drop(group);
    decide(&shown, status, &out, &stderr_note)
}

fn decide(shown: &str, status: std::process::ExitStatus, out: &[u8], note: &str) -> Decision {
    use std::os::unix::process::ExitStatusExt;
    match status.code() {
        Some(SEND) => Decision::Send,
        Some(SEND_MODIFIED) => match to_wire(out) {
            Ok(wire) => Decision::Modified(wire.into()),
            Err(why) => Decision::Failed(format!("{shown} asked to send a new text, but {why}")),
        },
        Some(REJECT) => Decision::Reject(reason(out, "rejected by the user exit")),
        Some(HOLD) => Decision::Hold(reason(out, "held by the user exit")),
        Some(code) => Decision::Failed(format!(
            "{shown} ended with status {code}, which is not 0, 10, 20 or 30{note}"
        )),
        None => Decision::Failed(format!(
            "{shown} was killed by signal {}{note}",
            status.signal().unwrap_or(0)
        )),
    }
}

/// Which mail, for the exit's input and the log.
pub struct Who<'a> {
    pub file: &'a str,
    pub job_name: &'a str,
    pub job_id: &'a str,
}

/// A recipient's result when the exit decided for it.
fn decided(code: u16, status: (u8, u16, u16), text: String) -> crate::delivery::Failure {
    use crate::delivery::{Failure, Problem, Stage};
    let enhanced = cssmtp_wire::EnhancedStatus {
        class: status.0,
        subject: status.1,
        detail: status.2,
    };
    Failure::new(
        Stage::UserExit,
        None,
        Problem::Reply(cssmtp_wire::Reply::from_string(code, Some(enhanced), text)),
    )
}

/// Passes `job` through the exit: `Ok` the job to send (its text replaced when the exit
/// wrote a new one), or `Err` one result per recipient of the job (rejected: returned;
/// held or the exit failed: tried again later).
///
/// # Errors
/// The results when the exit decided the mail is not sent now.
pub async fn gate(
    spec: &UserExit,
    dkim: &crate::config::Dkim,
    mut job: crate::delivery::MailJob,
    who: &Who<'_>,
) -> Result<crate::delivery::MailJob, (crate::delivery::MailJob, Vec<crate::delivery::RcptResult>)>
{
    use crate::delivery::RcptResult;
    let input = Input {
        file: who.file,
        job_name: who.job_name,
        job_id: who.job_id,
        mail: job.key.ordinal,
        reverse_path: &job.reverse_path,
        recipients: &job.recipients,
        // A new text the exit writes is signed again: it does not see the signatures.
        headers: crate::delivery::dkim::unsigned(&job.headers),
        text: &job.text,
    };
    let decision = run(spec, &input).await;
    let mail = job.key.ordinal;
    let file = crate::escape::data(who.file);
    let all = |job: &crate::delivery::MailJob, r: RcptResult| vec![r; job.recipients.len()];
    match decision {
        Decision::Send => Ok(job),
        Decision::Modified(text) => {
            tracing::info!(
                "CSM2701I Mail {mail} of {file}: the user exit changed its text ({} bytes); the new text is sent",
                text.len()
            );
            let text = crate::delivery::MailText::Memory(text);
            // Signed (DkimKey) as it now goes: the old signatures were over the old text.
            let what = format!("mail {mail} of {file}");
            let signatures = crate::delivery::dkim::sign(dkim, &[], &text, &what).await;
            job.eight_bit = text.eight_bit();
            job.size = signatures.len() as u64 + text.message_size();
            job.headers = Arc::from(signatures);
            job.text = text;
            Ok(job)
        }
        Decision::Reject(why) => {
            tracing::warn!(
                "CSM2702W Mail {mail} of {file} was rejected by the user exit: {why}; it is returned to its sender"
            );
            let r = RcptResult::Undeliverable(decided(
                554,
                (5, 7, 1),
                format!("Rejected by the user exit: {why}"),
            ));
            let results = all(&job, r);
            Err((job, results))
        }
        Decision::Hold(why) => {
            tracing::warn!(
                "CSM2703W Mail {mail} of {file} was held by the user exit: {why}; it is tried again after the retry interval"
            );
            let r = RcptResult::Retry(decided(
                451,
                (4, 7, 0),
                format!("Held by the user exit: {why}"),
            ));
            let results = all(&job, r);
            Err((job, results))
        }
        Decision::Failed(why) => {
            tracing::error!(
                "CSM2704E Mail {mail} of {file}: the user exit failed: {why}; the mail is kept and tried again after the retry interval"
            );
            let r = RcptResult::Retry(decided(
                451,
                (4, 3, 0),
                format!("The user exit failed: {why}"),
            ));
            let results = all(&job, r);
            Err((job, results))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_text_goes_on_the_wire_stuffed_with_crlf() {
        assert_eq!(
            to_wire(b"Subject: x\n\n.dot\r\nend").unwrap(),
            b"Subject: x\r\n\r\n..dot\r\nend\r\n"
        );
        assert!(to_wire(b"").is_err());
        assert!(to_wire(b"a\rb\n").unwrap_err().contains("bare CR"));
        assert!(to_wire(&[b'x'; 999]).unwrap_err().contains("999"));
    }

    #[test]
    fn the_exit_reads_lf_lines_unstuffed() {
        let mut out = Vec::new();
        unwire(b"A: b\r\n..x\r\n\r\n", &mut out);
        assert_eq!(out, b"A: b\n.x\n\n");
    }

    #[test]
    fn reasons_are_one_escaped_line() {
        assert_eq!(reason(b"no\x1bway\r\nmore", "d"), "no\\x1bway");
        assert_eq!(reason(b"", "d"), "d");
    }
}
