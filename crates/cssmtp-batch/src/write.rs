//! Writing batch SMTP: the files cssmtp keeps for later (mail in extended retry, dead
//! letters, held mail) are spool files themselves, so that the parser reads them back
//! and an operator can send them again with `cssmtp submit`. Pure.

/// Appends one transaction to `out`: `EHLO host`, `STARTTLS` when the mail must travel
/// over TLS, the envelope, `DATA`, `text` (wire form: CRLF lines, dot-stuffed; a last
/// line end is added when missing), `.` and `QUIT`.
pub fn transaction(
    out: &mut Vec<u8>,
    host: &str,
    starttls: bool,
    from: &str,
    to: &[String],
    text: &[u8],
) {
    transaction_head(out, host, starttls, from, to);
    out.extend_from_slice(text);
    transaction_tail(out, text.is_empty() || text.ends_with(b"\r\n"));
}

/// The part of [`transaction`] before the text, up to and including `DATA`: for a
/// writer that copies the text itself, a chunk at a time.
pub fn transaction_head(out: &mut Vec<u8>, host: &str, starttls: bool, from: &str, to: &[String]) {
    out.extend_from_slice(format!("EHLO {host}\r\n").as_bytes());
    if starttls {
        out.extend_from_slice(b"STARTTLS\r\n");
    }
    out.extend_from_slice(format!("MAIL FROM:<{from}>\r\n").as_bytes());
    for rcpt in to {
        out.extend_from_slice(format!("RCPT TO:<{rcpt}>\r\n").as_bytes());
    }
    out.extend_from_slice(b"DATA\r\n");
}

/// The part of [`transaction`] after the text: a line end when the text did not end
/// with one (`text_ended` false), then `.` and `QUIT`.
pub fn transaction_tail(out: &mut Vec<u8>, text_ended: bool) {
    if !text_ended {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\nQUIT\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_as_the_same_mail() {
        let mut out = Vec::new();
        transaction(
            &mut out,
            "h.example",
            true,
            "a@b.c",
            &["x@y.z".into()],
            b"Subject: s\r\n\r\n..dot",
        );
        let (mails, summary) = crate::parse_bytes(&out, crate::Limits::default());
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        assert!(mails[0].starttls);
        assert_eq!(mails[0].reverse_path, "a@b.c");
        assert!(out.ends_with(b"..dot\r\n.\r\nQUIT\r\n"));
    }
}
