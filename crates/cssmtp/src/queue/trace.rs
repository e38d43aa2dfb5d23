//! What a spool task keeps of each mail's life until the mail is final (its
//! Message-ID, each try at a target), for its MAIL accounting record and `cssmtp
//! trace`.

use std::time::SystemTime;

use super::state::Note;
use super::task::Task;
use crate::domain::outcome::{MailLife, MailTry};

/// The `Message-ID:` cssmtp added to a mail (its own header fields, wire form).
fn added_message_id(headers: &[u8]) -> Option<String> {
    headers.split(|&b| b == b'\n').find_map(|line| {
        let name = line.get(..11)?;
        name.eq_ignore_ascii_case(b"message-id:").then(|| {
            String::from_utf8_lossy(line.get(11..).unwrap_or_default().trim_ascii()).into_owned()
        })
    })
}

impl Task {
    /// A mail was accepted: remember the Message-ID it goes out with.
    pub(super) fn trace_accepted(&mut self, ordinal: u32, own: Option<&str>, headers: &[u8]) {
        if !self.shared.telemetry.records_mails() {
            return;
        }
        let message_id = own.map(str::to_owned).or_else(|| added_message_id(headers));
        self.lives.insert(
            ordinal,
            MailLife {
                message_id,
                ..MailLife::default()
            },
        );
    }

    /// A note about a try of a mail (accepted, to be retried, undeliverable, to
    /// extended retry).
    pub(super) fn trace_note(&mut self, note: &Note) {
        if !self.shared.telemetry.records_mails() {
            return;
        }
        let now = SystemTime::now();
        let (mail, t) = match note {
            Note::Delivered {
                mail,
                count,
                target,
                reply,
            } => (
                *mail,
                MailTry {
                    time: now,
                    target: target.clone(),
                    result: "accepted",
                    address: None,
                    count: *count,
                    reply: reply.to_string(),
                },
            ),
            Note::Retrying {
                mail,
                address,
                failure,
                ..
            }
            | Note::ToExtended {
                mail,
                address,
                failure,
            } => (
                *mail,
                MailTry {
                    time: now,
                    target: failure.target.map(|t| t.to_string()).unwrap_or_default(),
                    result: if matches!(note, Note::Retrying { .. }) {
                        "retry"
                    } else {
                        "extended_retry"
                    },
                    address: Some(address.clone()),
                    count: 1,
                    reply: failure.to_string(),
                },
            ),
            Note::Undeliverable { mail, failed } => (
                *mail,
                MailTry {
                    time: now,
                    target: String::new(),
                    result: "undeliverable",
                    address: Some(failed.address.clone()),
                    count: 1,
                    reply: failed.reason.clone(),
                },
            ),
            _ => return,
        };
        self.lives.entry(mail).or_default().push(t);
    }

    /// A mail is final: what was kept of its life (forgotten here).
    pub(super) fn trace_final(&mut self, ordinal: u32) -> MailLife {
        self.lives.remove(&ordinal).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::added_message_id;

    #[test]
    fn the_added_message_id_is_found() {
        let h =
            b"Received: from x\r\n by y\r\nMessage-ID: <PAYROLL.J1.3.abc@host>\r\nDate: now\r\n";
        assert_eq!(
            added_message_id(h).as_deref(),
            Some("<PAYROLL.J1.3.abc@host>")
        );
        assert_eq!(added_message_id(b"Received: from x\r\n"), None);
    }
}
