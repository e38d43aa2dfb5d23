//! Reverse and forward paths (`MAIL FROM:<…>`, `RCPT TO:<…>`) and HELO domains.
//!
//! Limits are CSSMTP's (RFC 5321 §4.5.3.1): path ≤ 255 characters, local part ≤ 64,
//! domain ≤ 255 (in bytes). Paths are ASCII, or UTF-8 when the caller allows it
//! (`Options SmtpUtf8`, RFC 6531: non-ASCII characters in atoms and domain labels);
//! every control character (C0, DEL, C1) and every non-ASCII space or line separator is
//! refused, so nothing from a spool file can carry a line break into a command or a
//! generated header.

use crate::error::ErrorKind;

/// Parses the argument of `MAIL FROM:` / `RCPT TO:` (the text after the colon).
///
/// Returns the mailbox without angle brackets (empty for the null path `<>`), with any
/// source route (`@a,@b:`) removed as RFC 5321 §4.1.1.3 allows.
///
/// `utf8`: non-ASCII addresses are allowed (RFC 6531); otherwise one is refused with
/// [`ErrorKind::Utf8AddressNotAllowed`].
///
/// # Errors
/// The [`ErrorKind`] that describes the problem, naming `verb`.
pub fn parse_path(arg: &str, verb: &'static str, utf8: bool) -> Result<String, ErrorKind> {
    let arg = arg.trim_start_matches(' ');
    let Some(inner_and_rest) = arg.strip_prefix('<') else {
        return Err(ErrorKind::AngleBracketsRequired(verb));
    };
    let close = closing_bracket(inner_and_rest).ok_or(ErrorKind::AngleBracketsRequired(verb))?;
    let inner = inner_and_rest.get(..close).unwrap_or_default();
    let rest = inner_and_rest.get(close + 1..).unwrap_or_default();
    if !rest.trim().is_empty() {
        return Err(ErrorKind::ParametersNotSupported(verb));
    }
    if inner.len() > 255 {
        return Err(ErrorKind::PathTooLong(verb));
    }
    if inner.is_empty() {
        return Ok(String::new());
    }
    let mailbox = strip_source_route(inner);
    check_mailbox(mailbox, verb, utf8)?;
    Ok(mailbox.to_owned())
}

/// Positions of `wanted` outside quoted strings (and their backslash escapes).
fn unquoted(s: &str, wanted: char) -> impl Iterator<Item = usize> + '_ {
    let mut in_quotes = false;
    let mut escaped = false;
    s.char_indices().filter_map(move |(i, c)| {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            c if c == wanted && !in_quotes => return Some(i),
            _ => {}
        }
        None
    })
}

/// Index of the `>` closing the path.
fn closing_bracket(s: &str) -> Option<usize> {
    unquoted(s, '>').next()
}

fn strip_source_route(inner: &str) -> &str {
    if inner.starts_with('@')
        && let Some(colon) = inner.find(':')
    {
        return inner.get(colon + 1..).unwrap_or(inner);
    }
    inner
}

fn check_mailbox(mailbox: &str, verb: &'static str, utf8: bool) -> Result<(), ErrorKind> {
    let invalid = || ErrorKind::InvalidAddress(verb, mailbox.chars().take(260).collect());
    if mailbox
        .chars()
        .any(|c| c.is_control() || (!c.is_ascii() && !is_utf8_text(c)))
    {
        return Err(invalid());
    }
    if !mailbox.is_ascii() && !utf8 {
        return Err(ErrorKind::Utf8AddressNotAllowed(
            verb,
            mailbox.chars().take(260).collect(),
        ));
    }
    let Some(at) = last_unquoted_at(mailbox) else {
        // RFC 5321 §4.1.1.3: "postmaster" without a domain is a valid recipient.
        return if verb == "RCPT TO" && mailbox.eq_ignore_ascii_case("postmaster") {
            Ok(())
        } else {
            Err(invalid())
        };
    };
    let local = mailbox.get(..at).unwrap_or_default();
    let domain = mailbox.get(at + 1..).unwrap_or_default();
    if local.len() > 64 {
        return Err(ErrorKind::LocalPartTooLong(verb));
    }
    if domain.len() > 255 {
        return Err(ErrorKind::DomainTooLong(verb));
    }
    if !valid_local_part(local) || !valid_domain_in(domain, utf8) {
        return Err(invalid());
    }
    Ok(())
}

fn last_unquoted_at(s: &str) -> Option<usize> {
    unquoted(s, '@').last()
}

/// A non-ASCII character allowed in an address (RFC 6531 `UTF8-non-ascii`): none that
/// is a control, a space or line/paragraph separator, a format character that can hide
/// text (bidi overrides, zero-width), or a noncharacter.
fn is_utf8_text(c: char) -> bool {
    !c.is_ascii()
        && !c.is_control()
        && !c.is_whitespace()
        && !matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff0}'..='\u{ffff}')
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || is_utf8_text(c)
}

fn valid_local_part(local: &str) -> bool {
    if local.is_empty() {
        return false;
    }
    if let Some(quoted) = local.strip_prefix('"').and_then(|l| l.strip_suffix('"')) {
        // quoted-string: printable ASCII, with backslash escapes.
        return quoted.chars().all(|c| (' '..='~').contains(&c));
    }
    // dot-string: atoms separated by single dots.
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// True for a domain name of letter/digit/hyphen labels (underscores tolerated, as many
/// internal names have them) or an address literal such as `[192.0.2.1]`.
pub fn valid_domain(domain: &str) -> bool {
    valid_domain_in(domain, false)
}

/// [`valid_domain`], with non-ASCII labels (U-labels, RFC 6531) when `utf8`.
fn valid_domain_in(domain: &str, utf8: bool) -> bool {
    if domain.is_empty() || domain.len() > 255 {
        return false;
    }
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        return !literal.is_empty()
            && literal
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-".contains(c));
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '-' || c == '_' || (utf8 && is_utf8_text(c))
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        assert_eq!(
            parse_path("<alice@example.com>", "RCPT TO", false).as_deref(),
            Ok("alice@example.com")
        );
        assert_eq!(
            parse_path(" <a.b+c@x-y.example>  ", "RCPT TO", false).as_deref(),
            Ok("a.b+c@x-y.example")
        );
        assert_eq!(parse_path("<>", "MAIL FROM", false).as_deref(), Ok(""));
        assert_eq!(
            parse_path("<\"john doe\"@example.com>", "RCPT TO", false).as_deref(),
            Ok("\"john doe\"@example.com")
        );
        assert_eq!(
            parse_path("<@relay.example:bob@example.com>", "RCPT TO", false).as_deref(),
            Ok("bob@example.com")
        );
        assert_eq!(
            parse_path("<Postmaster>", "RCPT TO", false).as_deref(),
            Ok("Postmaster")
        );
        assert_eq!(
            parse_path("<u@[192.0.2.1]>", "RCPT TO", false).as_deref(),
            Ok("u@[192.0.2.1]")
        );
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(
            parse_path("alice@example.com", "MAIL FROM", false),
            Err(ErrorKind::AngleBracketsRequired("MAIL FROM"))
        );
        assert_eq!(
            parse_path("<a@b> SIZE=10", "MAIL FROM", false),
            Err(ErrorKind::ParametersNotSupported("MAIL FROM"))
        );
        assert!(matches!(
            parse_path("<a b@c>", "RCPT TO", false),
            Err(ErrorKind::InvalidAddress(..))
        ));
        assert!(matches!(
            parse_path("<a@b..c>", "RCPT TO", false),
            Err(ErrorKind::InvalidAddress(..))
        ));
        assert!(matches!(
            parse_path("<nobody>", "MAIL FROM", false),
            Err(ErrorKind::InvalidAddress(..))
        ));
        assert!(matches!(
            parse_path("<a@b\x0bc>", "RCPT TO", false),
            Err(ErrorKind::InvalidAddress(..))
        ));
        let long_local = format!("<{}@example.com>", "a".repeat(65));
        assert_eq!(
            parse_path(&long_local, "RCPT TO", false),
            Err(ErrorKind::LocalPartTooLong("RCPT TO"))
        );
        let long_path = format!("<a@{}.example>", "b".repeat(260));
        assert_eq!(
            parse_path(&long_path, "RCPT TO", false),
            Err(ErrorKind::PathTooLong("RCPT TO"))
        );
        assert_eq!(
            parse_path("<a@b", "RCPT TO", false),
            Err(ErrorKind::AngleBracketsRequired("RCPT TO"))
        );
    }

    #[test]
    fn utf8_addresses_only_when_allowed() {
        // RFC 6531: UTF-8 in the local part and in domain labels.
        for path in [
            "<用户@例子.广告>",
            "<jörg@bücher.example>",
            "<ascii@例え.jp>",
        ] {
            let inner = path.trim_start_matches('<').trim_end_matches('>');
            assert_eq!(parse_path(path, "RCPT TO", true).as_deref(), Ok(inner));
            assert_eq!(
                parse_path(path, "RCPT TO", false),
                Err(ErrorKind::Utf8AddressNotAllowed("RCPT TO", inner.into())),
                "{path}"
            );
        }
        // Never a control character, a non-ASCII space or separator, or text hiding
        // characters, allowed or not.
        for path in [
            "<jörg\u{85}x@b.example>",
            "<jörg\u{2028}x@b.example>",
            "<jörg@b\u{a0}c.example>",
            "<a\u{202e}b@c.example>",
            "<a@b\u{200b}.example>",
            "<jörg\r\nRCPT TO:<x@y>@b.example>",
        ] {
            assert!(
                matches!(
                    parse_path(path, "RCPT TO", true),
                    Err(ErrorKind::InvalidAddress(..) | ErrorKind::ParametersNotSupported(_))
                ),
                "{path:?}"
            );
        }
        // Other names (HELO, configuration) stay ASCII.
        assert!(!valid_domain("bücher.example"));
    }
}
