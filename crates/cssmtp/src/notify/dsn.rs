//! Undeliverable notifications: RFC 3464 `multipart/report` delivery status notifications.
//!
//! Three parts: a human-readable explanation in the spirit of CSSMTP's, a machine-readable
//! `message/delivery-status` part with one block per failed recipient, and the original
//! mail's header (`text/rfc822-headers`, the default: enough to recognise it without
//! sending bulk mail back) or the whole original (`message/rfc822`). The notification is
//! marked `Auto-Submitted: auto-replied` and sent from the null reverse path, so it can
//! never cause another notification. Pure: the caller supplies the time and IDs.

use chrono::{DateTime, Local};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::mime::{BodyPart, MimePart};

use super::{FailedRecipient, MailOrigin, one_line};

/// What of the original mail goes back.
#[derive(Debug, Clone, Copy)]
pub enum Returned<'a> {
    /// The header, CRLF lines (unstuffed).
    Headers(&'a [u8]),
    /// The whole mail, CRLF lines (unstuffed).
    Full(&'a [u8]),
}

/// `dns; [192.0.2.1]` for the target 192.0.2.1:25 (`dns; [IPv6:2001:db8::1]` for IPv6).
fn remote_mta(target: &std::net::SocketAddr) -> String {
    match target.ip() {
        std::net::IpAddr::V6(ip) => format!("dns; [IPv6:{ip}]"),
        ip @ std::net::IpAddr::V4(_) => format!("dns; [{ip}]"),
    }
}

/// Builds the notification (CRLF lines, not dot-stuffed).
pub fn notification(
    origin: &MailOrigin<'_>,
    to: &str,
    failed: &[FailedRecipient],
    returned: Returned<'_>,
    now: DateTime<Local>,
    message_id: &str,
) -> Vec<u8> {
    let header = match returned {
        Returned::Headers(h) => h,
        Returned::Full(m) => m,
    };
    let subject = crate::headers::header_value(header, "Subject").map(|s| one_line(&s, 120));
    let mut human = format!(
        "This is the cssmtp mail forwarder at {host}.\r\n\r\n\
         Your mail could not be delivered to {which}:\r\n\r\n",
        host = origin.host,
        which = if failed.len() == 1 {
            "this recipient"
        } else {
            "these recipients"
        },
    );
    for f in failed {
        human.push_str(&format!(
            "  <{}>\r\n    {}\r\n\r\n",
            f.address,
            one_line(&f.reason, 900)
        ));
    }
    human.push_str(&format!(
        "The mail was mail {mail} of spool file {file}, written by job {job} {id}\r\n\
         (MAIL FROM at line {line}){subject}.\r\n\r\n{attached}\r\n",
        mail = origin.mail,
        file = origin.job.file_name,
        job = origin.job.job_name,
        id = origin.job.job_id,
        line = origin.line,
        subject = subject
            .as_ref()
            .map(|s| format!(", subject \"{s}\""))
            .unwrap_or_default(),
        attached = match returned {
            Returned::Headers(_) => "Its header is attached.",
            Returned::Full(_) => "It is attached.",
        },
    ));

    let mut status = format!(
        "Reporting-MTA: dns; {}\r\nX-Cssmtp-Spool-File: {}\r\nArrival-Date: {}\r\n",
        origin.host,
        origin.job.file_name,
        origin.arrival.to_rfc2822()
    );
    for f in failed {
        status.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {}\r\n",
            f.address, f.status
        ));
        if let Some(target) = &f.remote_mta {
            status.push_str(&format!("Remote-MTA: {}\r\n", remote_mta(target)));
        }
        match &f.diagnostic {
            Some(d) => status.push_str(&format!("Diagnostic-Code: smtp; {}\r\n", one_line(d, 900))),
            None => status.push_str(&format!(
                "X-Cssmtp-Reason: {}\r\n",
                one_line(&f.reason, 900)
            )),
        }
        status.push_str(&format!("Last-Attempt-Date: {}\r\n", now.to_rfc2822()));
    }

    let (kind, bytes) = match returned {
        Returned::Headers(h) => ("text/rfc822-headers", h),
        Returned::Full(m) => ("message/rfc822", m),
    };
    let encoding = if bytes.is_ascii() { "7bit" } else { "8bit" };
    // Written as is (short lines, so no quoted-printable): readable in any client.
    let (charset, human_encoding) = if human.is_ascii() {
        ("us-ascii", "7bit")
    } else {
        ("utf-8", "8bit")
    };
    let parts = vec![
        MimePart::new(
            ContentType::new("text/plain").attribute("charset", charset),
            BodyPart::Binary(human.into_bytes().into()),
        )
        .header("Content-Transfer-Encoding", Raw::new(human_encoding)),
        MimePart::new(
            "message/delivery-status",
            BodyPart::Binary(status.into_bytes().into()),
        )
        .header("Content-Transfer-Encoding", Raw::new("7bit")),
        MimePart::new(kind, BodyPart::Binary(bytes.to_vec().into()))
            .header("Content-Transfer-Encoding", Raw::new(encoding)),
    ];
    let subject = match subject {
        Some(s) => format!("Undeliverable mail: {s}"),
        None => format!(
            "Undeliverable mail from job {} {}",
            origin.job.job_name, origin.job.job_id
        ),
    };
    MessageBuilder::new()
        .from(Address::new_address(
            Some("Mail Delivery System"),
            format!("MAILER-DAEMON@{}", origin.host),
        ))
        .to(Address::new_address(None::<&str>, to.to_owned()))
        .subject(subject)
        .header("Date", Raw::new(now.to_rfc2822()))
        .message_id(MessageId::new(message_id.to_owned()))
        .header("Auto-Submitted", Raw::new("auto-replied"))
        .body(MimePart::new(
            ContentType::new("multipart/report").attribute("report-type", "delivery-status"),
            BodyPart::Multipart(parts),
        ))
        .write_to_vec()
        .unwrap_or_default()
}
