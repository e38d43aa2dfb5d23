//! Reverse and forward paths (`MAIL FROM:<…>`, `RCPT TO:<…>`) and HELO domains.
//!
//! Limits are CSSMTP's (RFC 5321 §4.5.3.1): path ≤ 255 characters, local part ≤ 64,
//! domain ≤ 255. Paths are ASCII; every control character is refused, so nothing from a
//! spool file can carry a line break into a command or a generated header.

use crate::error::ErrorKind;

/// Parses the argument of `MAIL FROM:` / `RCPT TO:` (the text after the colon).
///
/// Returns the mailbox without angle brackets (empty for the null path `<>`), with any
/// source route (`@a,@b:`) removed as RFC 5321 §4.1.1.3 allows.
///
/// # Errors
/// The [`ErrorKind`] that describes the problem, naming `verb`.
pub fn parse_path(arg: &str, verb: &'static str) -> Result<String, ErrorKind> {
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
    check_mailbox(mailbox, verb)?;
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

fn check_mailbox(mailbox: &str, verb: &'static str) -> Result<(), ErrorKind> {
    let invalid = || ErrorKind::InvalidAddress(verb, mailbox.chars().take(260).collect());
    if !mailbox.is_ascii() || mailbox.chars().any(|c| c.is_ascii_control()) {
        return Err(invalid());
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
    if !valid_local_part(local) || !valid_domain(domain) {
        return Err(invalid());
    }
    Ok(())
}

fn last_unquoted_at(s: &str) -> Option<usize> {
    unquoted(s, '@').last()
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
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
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        assert_eq!(
            parse_path("<alice@example.com>", "RCPT TO").as_deref(),
            Ok("alice@example.com")
        );
        assert_eq!(
            parse_path(" <a.b+c@x-y.example>  ", "RCPT TO").as_deref(),
            Ok("a.b+c@x-y.example")
        );
        assert_eq!(parse_path("<>", "MAIL FROM").as_deref(), Ok(""));
        assert_eq!(
            parse_path("<\"john doe\"@example.com>", "RCPT TO").as_deref(),
            Ok("\"john doe\"@example.com")
        );
        assert_eq!(
            parse_path("<@relay.example:bob@example.com>", "RCPT TO").as_deref(),
            Ok("bob@example.com")
        );
        assert_eq!(
            parse_path("<Postmaster>", "RCPT TO").as_deref(),
            Ok("Postmaster")
        );
        assert_eq!(
            parse_path("<u@[192.0.2.1]>", "RCPT TO").as_deref(),
            Ok("u@[192.0.2.1]")
        );
    }

    #[test]
    fn rejects_bad_paths() {
        assert_eq!(
            parse_path("alice@example.com", "MAIL FROM"),
            Err(ErrorKind::AngleBracketsRequired("MAIL FROM"))
        );
        assert_eq!(
            parse_path("<a@b> SIZE=10", "MAIL FROM"),
            Err(ErrorKind::ParametersNotSupported("MAIL FROM"))
        );
        assert!(matches!(
            parse_path("<a b@c>", "RCPT TO"),
            Err(ErrorKind::InvalidAddress(..))
        ));
        assert!(matches!(
            parse_path("<a@b..c>", "RCPT TO"),
            Err(ErrorKind::InvalidAddress(..))
        ));
        assert!(matches!(
            parse_path("<nobody>", "MAIL FROM"),
            Err(ErrorKind::InvalidAddress(..))
        ));
        assert!(matches!(
            parse_path("<a@b\x0bc>", "RCPT TO"),
            Err(ErrorKind::InvalidAddress(..))
        ));
        let long_local = format!("<{}@example.com>", "a".repeat(65));
        assert_eq!(
            parse_path(&long_local, "RCPT TO"),
            Err(ErrorKind::LocalPartTooLong("RCPT TO"))
        );
        let long_path = format!("<a@{}.example>", "b".repeat(260));
        assert_eq!(
            parse_path(&long_path, "RCPT TO"),
            Err(ErrorKind::PathTooLong("RCPT TO"))
        );
        assert_eq!(
            parse_path("<a@b", "RCPT TO"),
            Err(ErrorKind::AngleBracketsRequired("RCPT TO"))
        );
    }
}
