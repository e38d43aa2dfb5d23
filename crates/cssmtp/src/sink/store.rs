//! What becomes of a mail whose text was received: refused by the options or its script,
//! or accepted (kept in memory, written to a file, printed).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::options::SinkOptions;
use super::script::{CLOSING, EXTRA_REPLY, Scripted};
use super::shared::{Received, Shared};
use super::text::has_bare_line_end;

/// The envelope of the mail under way.
#[derive(Default)]
pub(super) struct Envelope {
    pub(super) mail_from: Option<String>,
    pub(super) rcpt_to: Vec<String>,
    pub(super) size: u64,
    pub(super) body_8bitmime: bool,
    pub(super) smtputf8: bool,
    /// The sizes of the BDAT chunks of the text so far (none: DATA).
    pub(super) bdat_chunks: Vec<u64>,
}

/// The session a mail came in on.
pub(super) struct Arrival<'a> {
    pub(super) helo: &'a str,
    pub(super) peer: SocketAddr,
    pub(super) tls: bool,
}

/// The answer to a mail's final ".".
pub(super) enum Verdict {
    /// Accepted as mail `id`; with `extra_reply`, an unsolicited reply follows its 250.
    Queued { id: u64, extra_reply: bool },
    /// Refused with this reply.
    Refused(String),
    /// Answered 421 (the mail discarded), then the connection is closed.
    Closing,
    /// Not answered: the connection is closed.
    Drop,
}

impl Verdict {
    /// The reply to send (nothing for [`Verdict::Drop`]).
    pub(super) fn reply(&self) -> String {
        match self {
            Self::Queued { id, extra_reply } => {
                let mut reply = format!("250 2.0.0 Ok: queued as {id}\r\n");
                if *extra_reply {
                    reply.push_str(EXTRA_REPLY);
                }
                reply
            }
            Self::Refused(reply) => reply.clone(),
            Self::Closing => CLOSING.to_owned(),
            Self::Drop => String::new(),
        }
    }
}

/// Decides a mail's fate and, when it is accepted, keeps it as the options say.
pub(super) fn finish_mail(
    data: Vec<u8>,
    envelope: Envelope,
    arrival: &Arrival<'_>,
    script: Scripted,
    options: &SinkOptions,
    shared: &Shared,
) -> Verdict {
    if let Some(refusal) = refusal(&data, &envelope, options) {
        return Verdict::Refused(refusal.to_owned());
    }
    if let Some(verdict) = scripted(script) {
        return verdict;
    }
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let mail = Received {
        id,
        peer: arrival.peer,
        helo: arrival.helo.to_owned(),
        tls: arrival.tls,
        mail_from: envelope.mail_from.unwrap_or_default(),
        size: (envelope.size > 0).then_some(envelope.size),
        body_8bitmime: envelope.body_8bitmime,
        smtputf8: envelope.smtputf8,
        bdat_chunks: envelope.bdat_chunks,
        rcpt_to: envelope.rcpt_to,
        data,
    };
    if let Some(dir) = &options.store
        && let Err(e) = store(dir, &mail)
    {
        return Verdict::Refused(format!("451 4.3.0 Cannot store the mail: {e}\r\n"));
    }
    if options.print {
        print(&mail);
    }
    if options.keep
        && let Ok(mut received) = shared.received.lock()
    {
        received.push(mail);
    }
    shared.accepted.fetch_add(1, Ordering::Relaxed);
    shared.notify.notify_waiters();
    Verdict::Queued {
        id,
        extra_reply: matches!(script, Scripted::ExtraReply),
    }
}

/// The reply refusing a text the options do not allow.
fn refusal(data: &[u8], envelope: &Envelope, options: &SinkOptions) -> Option<&'static str> {
    if options.strict_line_ends && has_bare_line_end(data) {
        return Some("554 5.6.11 Bare CR or LF in mail text not allowed\r\n");
    }
    if options.strict_8bit && !envelope.body_8bitmime && !data.is_ascii() {
        return Some("554 5.6.1 8-bit text sent without BODY=8BITMIME\r\n");
    }
    if options
        .size
        .is_some_and(|max| max > 0 && data.len() as u64 > max)
    {
        return Some("552 5.3.4 Message size exceeds fixed limit\r\n");
    }
    None
}

/// The verdict of a script that does not accept the mail.
fn scripted(script: Scripted) -> Option<Verdict> {
    let refused = |reply: &str| Some(Verdict::Refused(reply.to_owned()));
    match script {
        Scripted::DropInData => Some(Verdict::Drop),
        Scripted::DataTempFail => {
            refused("451 4.3.0 Temporary failure storing the mail (scripted)\r\n")
        }
        Scripted::DataReject | Scripted::EarlyReply => {
            refused("554 5.6.0 Mail content refused (scripted)\r\n")
        }
        Scripted::CloseAfterDot => Some(Verdict::Closing),
        Scripted::CloseAtData | Scripted::Accept | Scripted::ExtraReply => None,
    }
}

/// Writes the mail to `<dir>/<id>.eml`, its envelope first as `X-Sink-Envelope-*` fields.
fn store(dir: &Path, mail: &Received) -> std::io::Result<()> {
    let mut file = format!("X-Sink-Envelope-From: <{}>\r\n", mail.mail_from).into_bytes();
    for rcpt in &mail.rcpt_to {
        file.extend_from_slice(format!("X-Sink-Envelope-To: <{rcpt}>\r\n").as_bytes());
    }
    file.extend_from_slice(&mail.data);
    std::fs::write(dir.join(format!("{:06}.eml", mail.id)), file)
}

/// The line `--print` shows for a mail.
fn print(mail: &Received) {
    println!(
        "sink: mail {} from <{}> to {} ({} bytes{})",
        mail.id,
        mail.mail_from,
        mail.rcpt_to
            .iter()
            .map(|r| format!("<{r}>"))
            .collect::<Vec<_>>()
            .join(", "),
        mail.data.len(),
        if mail.tls { ", TLS" } else { "" }
    );
}
