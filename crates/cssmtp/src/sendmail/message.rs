//! Turning a message from standard input into a batch-SMTP spool file: the header
//! fields sendmail adds, recipients from the header (`-t`), and the checks that keep
//! anything a caller gives from becoming a batch-SMTP command.

use chrono::{DateTime, Local};

/// An address refused, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadAddress {
    pub address: String,
    pub why: String,
}

/// Checks one address given by the caller (argument, `-f`, or from the header) and
/// returns the mailbox to put between angle brackets; a bare local part (`root`) gets
/// `@domain`. Refused: control characters (CR, LF…), `<`/`>` other than one enclosing
/// pair, a leading `-`, and anything the batch parser would not take as a path.
///
/// # Errors
/// Why the address is refused.
pub fn mailbox(raw: &str, domain: &str, verb: &'static str) -> Result<String, BadAddress> {
    let bad = |why: &str| BadAddress {
        address: raw.escape_debug().to_string(),
        why: why.into(),
    };
    if raw.chars().any(char::is_control) {
        return Err(bad("it holds a control character (a line break, say)"));
    }
    let trimmed = raw.trim();
    let inner = trimmed
        .strip_prefix('<')
        .and_then(|t| t.strip_suffix('>'))
        .unwrap_or(trimmed);
    if inner.contains(['<', '>']) {
        return Err(bad("it holds '<' or '>'"));
    }
    if inner.starts_with('-') {
        return Err(bad("it starts with '-'"));
    }
    if inner.is_empty() {
        return Err(bad("it is empty"));
    }
    let qualified = if inner.contains('@') {
        inner.to_owned()
    } else {
        format!("{inner}@{domain}")
    };
    cssmtp_batch::address::parse_path(&format!("<{qualified}>"), verb, false).map_err(|kind| {
        let text = cssmtp_batch::SyntaxError { line: 0, kind }.to_string();
        bad(text
            .split_once("JES Syntax error. ")
            .map_or(text.as_str(), |(_, t)| t))
    })
}

/// The header fields of a message (as written, without line ends), where the header
/// ends, and the body.
pub struct Parsed {
    /// Header fields, each with its continuation lines joined by "\r\n".
    pub fields: Vec<String>,
    /// The body lines.
    pub body: Vec<Vec<u8>>,
}

/// A message that cannot be spooled (EX_DATAERR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadMessage(pub String);

/// Splits `input` into lines (LF or CRLF), stops at a line holding a single "." unless
/// `ignore_dots`, drops a leading mbox `From ` line, and separates header and body. A
/// bare CR (not before LF) is refused: it must never become a line break at the target.
///
/// # Errors
/// A [`BadMessage`].
pub fn parse(input: &[u8], ignore_dots: bool) -> Result<Parsed, BadMessage> {
    let mut lines: Vec<&[u8]> = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (line, next) = match memchr::memchr(b'\n', rest) {
            Some(at) => (
                rest.get(..at).unwrap_or_default(),
                rest.get(at + 1..).unwrap_or_default(),
            ),
            None => (rest, &[][..]),
        };
        rest = next;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !ignore_dots && line == b"." {
            break;
        }
        if memchr::memchr(b'\r', line).is_some() {
            return Err(BadMessage(format!(
                "line {} holds a carriage return that is not part of a line end",
                lines.len() + 1
            )));
        }
        lines.push(line);
    }
    if lines.first().is_some_and(|l| l.starts_with(b"From ")) {
        lines.remove(0);
    }
    let mut fields: Vec<String> = Vec::new();
    let mut body_from = lines.len();
    for (i, line) in lines.iter().enumerate() {
        if line.is_empty() {
            body_from = i + 1;
            break;
        }
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if continuation && let Some(last) = fields.last_mut() {
            last.push_str("\r\n");
            last.push_str(&String::from_utf8_lossy(line));
            continue;
        }
        if is_field(line) {
            fields.push(String::from_utf8_lossy(line).into_owned());
        } else {
            // Not a header field: the body starts here (a blank line is put before it).
            body_from = i;
            break;
        }
    }
    let body = lines
        .get(body_from..)
        .unwrap_or_default()
        .iter()
        .map(|l| l.to_vec())
        .collect();
    Ok(Parsed { fields, body })
}

/// `name:` with a name of printable ASCII other than ':' (RFC 5322 §2.2).
fn is_field(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    colon > 0
        && line
            .get(..colon)
            .is_some_and(|name| name.iter().all(|b| (33..=126).contains(b)))
}

/// The name of a field, lower case.
fn field_name(field: &str) -> String {
    field
        .split_once(':')
        .map(|(n, _)| n.trim().to_ascii_lowercase())
        .unwrap_or_default()
}

impl Parsed {
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|f| field_name(f) == name)
    }

    /// The addresses of every `To:`, `Cc:` and `Bcc:` field (for `-t`).
    pub fn recipients(&self) -> Vec<String> {
        self.fields
            .iter()
            .filter(|f| matches!(field_name(f).as_str(), "to" | "cc" | "bcc"))
            .flat_map(|f| {
                let value = f.split_once(':').map(|(_, v)| v).unwrap_or_default();
                address_list(&value.replace("\r\n", ""))
            })
            .collect()
    }

    /// Removes the `Bcc:` fields (their recipients must not see each other).
    pub fn drop_bcc(&mut self) {
        self.fields.retain(|f| field_name(f) != "bcc");
    }
}

/// The addresses of an address list (RFC 5322 §3.4): `a@b, Name <c@d>, group: e@f;`,
/// comments removed.
pub fn address_list(value: &str) -> Vec<String> {
    // Remove comments (outside quotes), then split at commas outside quotes and angle
    // brackets.
    let mut plain = String::with_capacity(value.len());
    let (mut depth, mut quoted, mut escaped) = (0u32, false, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                plain.push(c);
            }
            continue;
        }
        match c {
            '\\' if quoted || depth > 0 => {
                escaped = true;
                if depth == 0 {
                    plain.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                plain.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => plain.push(c),
        }
    }
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut angle) = (false, false);
    let push = |item: &str, out: &mut Vec<String>| {
        let item = item.trim().trim_end_matches(';').trim();
        // A group's name: drop "name:".
        let item = match item.find(':') {
            Some(at) if !item.contains('<') || item.find('<').is_some_and(|lt| at < lt) => {
                item.get(at + 1..).unwrap_or_default().trim()
            }
            _ => item,
        };
        let address = match (item.rfind('<'), item.rfind('>')) {
            (Some(lt), Some(gt)) if lt < gt => item.get(lt + 1..gt).unwrap_or_default(),
            _ => item,
        };
        if !address.trim().is_empty() {
            out.push(address.trim().to_owned());
        }
    };
    for c in plain.chars() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' | ';' if !quoted && !angle => {
                push(&current, &mut out);
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    push(&current, &mut out);
    out
}

/// Who sends, for the header fields added.
pub struct Sender<'a> {
    /// The envelope sender (empty for `<>`).
    pub address: &'a str,
    /// The full name (`-F`, else the account's), if any.
    pub full_name: Option<&'a str>,
    /// For `Message-ID:`: job name and job ID.
    pub job_name: &'a str,
    pub job_id: &'a str,
    pub host: &'a str,
    /// `Header UserInfo`: the job name and ID go into `Message-ID:`.
    pub user_info: bool,
}

/// The mail's text in wire form (CRLF lines, dot-stuffed), with `From:`, `Date:` and
/// `Message-ID:` added at the end of the header when missing.
pub fn text(parsed: &Parsed, sender: &Sender<'_>, now: DateTime<Local>) -> Vec<u8> {
    let mut out = Vec::new();
    let line = |out: &mut Vec<u8>, text: &[u8]| {
        if text.first() == Some(&b'.') {
            out.push(b'.');
        }
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    };
    for field in &parsed.fields {
        for part in field.split("\r\n") {
            line(&mut out, part.as_bytes());
        }
    }
    if !parsed.has("from") {
        out.extend_from_slice(&from_field(sender));
    }
    if !parsed.has("date") {
        line(&mut out, format!("Date: {}", now.to_rfc2822()).as_bytes());
    }
    if !parsed.has("message-id") {
        let unique = crate::headers::unique_token(now);
        let id = if sender.user_info {
            format!(
                "Message-ID: <{}.{}.{unique}@{}>",
                sender.job_name, sender.job_id, sender.host
            )
        } else {
            format!("Message-ID: <{unique}@{}>", sender.host)
        };
        line(&mut out, id.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    for body in &parsed.body {
        line(&mut out, body);
    }
    out
}

/// `From:` with the full name (quoted, or RFC 2047-encoded when not ASCII) and the
/// sender's address (the mail's own one when the envelope sender is `<>`).
fn from_field(sender: &Sender<'_>) -> Vec<u8> {
    use mail_builder::headers::Header;
    use mail_builder::headers::address::Address;
    let name: Option<String> = sender
        .full_name
        .map(|n| n.chars().filter(|c| !c.is_control()).collect::<String>())
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty());
    let address = if sender.address.is_empty() {
        format!("MAILER-DAEMON@{}", sender.host)
    } else {
        sender.address.to_owned()
    };
    let mut out = b"From: ".to_vec();
    Address::new_address(name, address).write_header(&mut out, 6);
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_and_qualified() {
        assert_eq!(
            mailbox("root", "h.example", "RCPT TO").unwrap(),
            "root@h.example"
        );
        assert_eq!(
            mailbox("<a@b.example>", "h", "RCPT TO").unwrap(),
            "a@b.example"
        );
        for bad in [
            "a@b.example>\r\nRCPT TO:<evil@x.example",
            "a@b.example\nDATA",
            "a@b>x@y",
            "-oQ/tmp@x.example",
            "",
            "a b@c.example",
        ] {
            assert!(mailbox(bad, "h.example", "RCPT TO").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn address_lists() {
        assert_eq!(
            address_list(
                r#" "Doe, John" <jd@x.example>, b@y.example (Bob), team: c@z.example, d@z.example;"#
            ),
            ["jd@x.example", "b@y.example", "c@z.example", "d@z.example"]
        );
        assert!(address_list("undisclosed-recipients:;").is_empty());
    }

    #[test]
    fn header_body_and_dots() {
        let p = parse(
            b"From someone Mon\nSubject: x\n  folded\nTo: a@b\n\n.hidden\nbody\n.\nafter\n",
            false,
        )
        .unwrap();
        assert_eq!(p.fields, ["Subject: x\r\n  folded", "To: a@b"]);
        assert_eq!(p.body, [b".hidden".to_vec(), b"body".to_vec()]);
        let p = parse(b"no header here\nline\n", true).unwrap();
        assert!(p.fields.is_empty());
        assert_eq!(p.body.len(), 2);
        assert!(parse(b"Subject: a\rb\n\n", true).is_err());
        let sender = Sender {
            address: "u@h.example",
            full_name: Some("Jöhn \"Q\""),
            job_name: "U",
            job_id: "J1",
            host: "h.example",
            user_info: true,
        };
        let p = parse(b"Subject: s\n\n.x\n", true).unwrap();
        let t = String::from_utf8(text(&p, &sender, Local::now())).unwrap();
        assert!(t.starts_with("Subject: s\r\nFrom: =?utf-8?"), "{t}");
        assert!(t.contains("\r\nMessage-ID: <U.J1."), "{t}");
        assert!(t.ends_with("\r\n\r\n..x\r\n"), "{t}");
    }

    proptest::proptest! {
        /// Any message and any address text: no panic, and whatever is accepted as an
        /// address holds no character that could end or open a command.
        #[test]
        fn any_input_is_handled(
            input in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            address in ".{0,80}",
        ) {
            if let Ok(parsed) = parse(&input, false) {
                let sender = Sender {
                    address: "u@h.example",
                    full_name: Some(&address),
                    job_name: "U",
                    job_id: "J1",
                    host: "h.example",
                    user_info: true,
                };
                let _ = text(&parsed, &sender, Local::now());
                let _ = parsed.recipients();
            }
            for item in address_list(&address).iter().chain([&address]) {
                if let Ok(mailbox) = mailbox(item, "h.example", "RCPT TO") {
                    proptest::prop_assert!(!mailbox.contains(['\r', '\n', '<', '>']));
                    proptest::prop_assert!(!mailbox.starts_with('-'));
                }
            }
        }
    }
}
