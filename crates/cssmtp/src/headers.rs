//! The header fields cssmtp adds to each mail, as CSSMTP does.
//!
//! * `Received:` always, at the top: `from` the HELO/EHLO domain of the spool file, `by`
//!   this host, `with` SMTP or ESMTP, `id` the job name, job ID and mail number (with
//!   `Header UserInfo YES`), `for` the owner of the spool file (the Linux face of the JES
//!   origin user ID) or, with UserInfo NO, the writer name.
//! * `Date:` when the mail has none and `Header Date YES`.
//! * `Message-ID:` when the mail has none; it holds the job name and job ID unless
//!   UserInfo NO.
//!
//! Headers are built once per mail, when it is first read, so retries carry the same
//! Message-ID. Nothing else in the mail is changed. Every value placed here is either
//! generated or was checked by the batch parser (no control characters).

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Local};

use crate::config::Header;
use crate::spool::name::JobIdentity;

/// Where a mail comes from, for its headers.
pub struct Origin<'a> {
    /// This host's name.
    pub host: &'a str,
    /// The writer name (ExtWrtName).
    pub writer: &'a str,
    pub job: &'a JobIdentity,
    /// The user who owns the spool file.
    pub owner: &'a str,
}

/// Facts about one mail needed for its headers.
pub struct MailFacts<'a> {
    pub ordinal: u32,
    pub helo: &'a str,
    pub esmtp: bool,
    pub has_date: bool,
    pub has_message_id: bool,
}

static SEQUENCE: AtomicU64 = AtomicU64::new(0);
static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// A token unique to this process and moment: time in nanoseconds, process ID and a
/// counter, in base 36.
pub fn unique_token(now: DateTime<Local>) -> String {
    let nanos = u64::try_from(now.timestamp_nanos_opt().unwrap_or_default()).unwrap_or_default();
    let seq = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    let mut out = String::with_capacity(32);
    base36(&mut out, nanos);
    out.push('.');
    base36(&mut out, u64::from(*PID.get_or_init(std::process::id)));
    out.push('.');
    base36(&mut out, seq);
    out
}

/// Appends `n` in base 36 (lower case) to `out`.
fn base36(out: &mut String, mut n: u64) {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    // u64::MAX has 13 digits in base 36.
    let mut digits = [b'0'; 13];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = DIGITS.get((n % 36) as usize).copied().unwrap_or(b'0');
        }
        n /= 36;
        if n == 0 || at == 0 {
            break;
        }
    }
    for &d in digits.get(at..).unwrap_or_default() {
        out.push(char::from(d));
    }
}

/// Builds the header block (wire form, CRLF line ends) to put before the mail's text.
/// (Written into one buffer: it is built for every mail.)
pub fn build(
    origin: &Origin<'_>,
    mail: &MailFacts<'_>,
    options: Header,
    now: DateTime<Local>,
) -> Vec<u8> {
    use std::fmt::Write as _;
    let date = now.to_rfc2822();
    let unique = unique_token(now);
    let helo = if mail.helo.is_empty() {
        "unknown"
    } else {
        mail.helo
    };
    let with = if mail.esmtp { "ESMTP" } else { "SMTP" };
    let host = origin.host;
    let job = origin.job;
    let mut out = String::with_capacity(256 + 2 * host.len() + helo.len());
    // Writing to a String cannot fail.
    let _ = write!(
        out,
        "Received: from {helo}\r\n\tby {host} (cssmtp {}) with {with} id ",
        env!("CARGO_PKG_VERSION"),
    );
    if options.user_info {
        let _ = write!(
            out,
            "{}.{}.{}\r\n\tfor <{}@{host}>; {date}\r\n",
            job.job_name, job.job_id, mail.ordinal, origin.owner
        );
    } else {
        let _ = write!(
            out,
            "{unique}\r\n\tfor <{}@{host}>; {date}\r\n",
            origin.writer
        );
    }
    if options.date && !mail.has_date {
        let _ = write!(out, "Date: {date}\r\n");
    }
    if !mail.has_message_id {
        if options.user_info {
            let _ = write!(
                out,
                "Message-ID: <{}.{}.{}.{unique}@{host}>\r\n",
                job.job_name, job.job_id, mail.ordinal
            );
        } else {
            let _ = write!(out, "Message-ID: <{unique}@{host}>\r\n");
        }
    }
    out.into_bytes()
}

/// The value of the first header field `name` in a header block, unfolded.
pub fn header_value(header: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split("\r\n").peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            break;
        }
        if let Some((field, value)) = line.split_once(':')
            && field.trim().eq_ignore_ascii_case(name)
        {
            let mut value = value.trim().to_owned();
            while let Some(next) = lines.peek().filter(|l| l.starts_with([' ', '\t'])) {
                value.push(' ');
                value.push_str(next.trim());
                lines.next();
            }
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn base36_digits() {
        for (n, expected) in [
            (0, "0"),
            (35, "z"),
            (36, "10"),
            (1_295, "zz"),
            (u64::MAX, "3w5e11264sgsf"),
        ] {
            let mut out = String::from("x");
            base36(&mut out, n);
            assert_eq!(out, format!("x{expected}"));
        }
        let token = unique_token(Local::now());
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        assert_eq!(
            u64::from_str_radix(parts[1], 36).ok(),
            Some(u64::from(std::process::id()))
        );
    }

    #[test]
    fn headers_with_and_without_user_info() {
        let job = JobIdentity::from_file_name("PAYROLL.J0012345.x");
        let origin = Origin {
            host: "zlinux.example",
            writer: "CSSMTP",
            job: &job,
            owner: "alice",
        };
        let facts = MailFacts {
            ordinal: 3,
            helo: "zos1.example",
            esmtp: true,
            has_date: false,
            has_message_id: false,
        };
        let now = Local.with_ymd_and_hms(2026, 11, 28, 22, 0, 47).unwrap();
        let text = String::from_utf8(build(&origin, &facts, Header::default(), now)).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(lines[0], "Received: from zos1.example");
        assert!(lines[1].starts_with("\tby zlinux.example (cssmtp "));
        assert!(lines[1].ends_with(") with ESMTP id PAYROLL.J0012345.3"));
        assert!(lines[2].starts_with("\tfor <alice@zlinux.example>; Sat, 28 Nov 2026 22:00:47 "));
        assert!(lines[3].starts_with("Date: Sat, 28 Nov 2026 22:00:47 "));
        assert!(lines[4].starts_with("Message-ID: <PAYROLL.J0012345.3."));
        assert!(text.ends_with("@zlinux.example>\r\n"));

        let facts = MailFacts {
            has_date: true,
            has_message_id: true,
            esmtp: false,
            ..facts
        };
        let text = String::from_utf8(build(
            &origin,
            &facts,
            Header {
                date: true,
                user_info: false,
            },
            now,
        ))
        .unwrap();
        assert!(!text.contains("PAYROLL") && !text.contains("alice"));
        assert!(text.contains("with SMTP id ") && text.contains("for <CSSMTP@zlinux.example>"));
        assert!(!text.contains("Date:") && !text.contains("Message-ID:"));
        assert_eq!(text.matches("\r\n").count(), 3);
    }
}
