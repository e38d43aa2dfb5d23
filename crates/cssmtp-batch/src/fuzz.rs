//! The body of the `batch` fuzz target (`fuzz/`, run under AFL++); the tests replay the
//! seed corpus and random inputs through the same function. It panics when an
//! invariant the rest of cssmtp relies on does not hold for `data` as a spool file.

use crate::{BlankTrnc, DataRules, Limits, parse_bytes, render_lines};

/// Parses `data` as a spool file under the default limits and under tight ones, and
/// checks every mail: its text span lies within the file, its recipients within the
/// limit, and its text renders to CRLF lines with no bare CR or LF, each within 1,000
/// bytes, as long as the parser said (`wire_size`).
pub fn batch(data: &[u8]) {
    let tight = Limits {
        syntax_error_limit: 3,
        max_mail_kb: 1,
        max_recipients: 3,
        null_trnc: true,
        data_line_trunc: true,
        blank_trnc: BlankTrnc::Yes,
        utf8_addresses: true,
    };
    let keep = Limits {
        blank_trnc: BlankTrnc::No,
        ..Limits::default()
    };
    for limits in [Limits::default(), tight, keep] {
        let (mails, _summary) = parse_bytes(data, limits);
        for mail in &mails {
            assert!(mail.recipients.len() <= limits.max_recipients);
            // No control character ever reaches an address (SMTPUTF8 or not).
            for address in mail
                .recipients
                .iter()
                .map(|r| &r.address)
                .chain([&mail.reverse_path])
            {
                assert!(!address.chars().any(char::is_control), "{address:?}");
                assert!(limits.utf8_addresses || address.is_ascii(), "{address:?}");
            }
            let start = usize::try_from(mail.data.start).unwrap_or(usize::MAX);
            let end = usize::try_from(mail.data.end).unwrap_or(usize::MAX);
            let Some(text) = data.get(start..end) else {
                panic!("text span {start}..{end} outside a file of {}", data.len());
            };
            let mut out = Vec::new();
            let rules = DataRules {
                padded: mail.data.padded,
                truncate: limits.data_line_trunc,
            };
            let used = render_lines(text, rules, true, &mut out);
            assert_eq!(used, text.len());
            assert_eq!(
                u64::try_from(out.len()).unwrap_or(u64::MAX),
                mail.data.wire_size,
                "wire size"
            );
            for line in out.split_inclusive(|&b| b == b'\n') {
                let Some(body) = line.strip_suffix(b"\r\n") else {
                    panic!("a rendered line does not end in CRLF: {line:?}");
                };
                assert!(
                    !body.contains(&b'\r') && !body.contains(&b'\n'),
                    "bare CR/LF"
                );
                assert!(body.len() <= 998, "a line of {} bytes", body.len());
            }
        }
    }
}
