//! Dead letters: mail that can be neither delivered nor returned.
//!
//! With `DeadLetterAction Store` each is a file in the dead-letter directory, named as
//! CSSMTP names them, `<job>.<jobid>.<MonDDYYYY>.<HHMMSS>.<microseconds>.<mail><type>`
//! (type `U` for an undeliverable mail or notification, `R` for an error report), e.g.
//! `PAYROLL.J0012345.Nov282026.220047.541437.3U`. The file is itself a valid batch-SMTP
//! file: `NOOP` lines (which batch SMTP ignores) say what happened, then the envelope and
//! the text. After fixing the cause, an operator re-sends it with `cssmtp submit FILE`.

use chrono::{DateTime, Local};

use super::one_line;

/// What a dead letter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A mail, or its undeliverable notification.
    Undeliverable,
    /// An error report.
    Report,
}

impl Kind {
    fn letter(self) -> char {
        match self {
            Self::Undeliverable => 'U',
            Self::Report => 'R',
        }
    }
}

/// The file name of a dead letter.
pub fn file_name(
    job_name: &str,
    job_id: &str,
    mail: u32,
    kind: Kind,
    now: DateTime<Local>,
) -> String {
    format!(
        "{job_name}.{job_id}.{}.{:06}.{mail}{}",
        now.format("%b%d%Y.%H%M%S"),
        now.timestamp_subsec_micros(),
        kind.letter()
    )
}

/// The mail a kept file holds.
#[derive(Debug, Clone, Copy)]
pub struct Letter<'a> {
    pub from: &'a str,
    pub to: &'a [String],
    /// Wire form: CRLF lines, dot-stuffed.
    pub text: &'a [u8],
    /// It must travel over TLS (its spool file said STARTTLS): so must it when sent again.
    pub starttls: bool,
}

/// The content of a dead letter: `notes`, then a batch-SMTP transaction sending the
/// letter.
pub fn content(host: &str, notes: &[String], letter: &Letter<'_>) -> Vec<u8> {
    batch_file(
        host,
        "cssmtp dead letter: re-send with 'cssmtp submit' once the cause is fixed",
        notes,
        letter,
    )
}

/// A batch-SMTP file kept for an operator: `title` and `notes` as NOOP lines, then a
/// transaction sending the letter.
pub fn batch_file(host: &str, title: &str, notes: &[String], letter: &Letter<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(letter.text.len() + 512);
    out.extend_from_slice(format!("NOOP {}\r\n", one_line(title, 480)).as_bytes());
    for note in notes {
        out.extend_from_slice(format!("NOOP {}\r\n", one_line(note, 480)).as_bytes());
    }
    cssmtp_batch::write::transaction(
        &mut out,
        host,
        letter.starttls,
        letter.from,
        letter.to,
        letter.text,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ibm_style_names_and_valid_batch_smtp() {
        let now = Local.with_ymd_and_hms(2008, 9, 30, 16, 4, 54).unwrap()
            + chrono::Duration::microseconds(541_437);
        assert_eq!(
            file_name("TESTMAIL", "J0000006", 1, Kind::Undeliverable, now),
            "TESTMAIL.J0000006.Sep302008.160454.541437.1U"
        );
        let letter = content(
            "h.example",
            &["reason: 550 no\r\nMAIL FROM:<evil>".into()],
            &Letter {
                from: "",
                to: &["a@b.c".into()],
                text: b"Subject: x\r\n\r\n..dot\r\n",
                starttls: false,
            },
        );
        let (mails, summary) = cssmtp_batch::parse_bytes(&letter, cssmtp_batch::Limits::default());
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].reverse_path, "");
        assert_eq!(mails[0].recipients[0].address, "a@b.c");
        assert_eq!(
            letter
                .split(|&b| b == b'\n')
                .filter(|l| l.starts_with(b"MAIL FROM"))
                .count(),
            1,
            "notes cannot inject commands"
        );
    }
}
