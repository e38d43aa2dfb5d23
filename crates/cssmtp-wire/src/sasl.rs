//! The client side of SMTP AUTH (RFC 4954), without I/O: which mechanisms a server
//! offers, and the lines of one exchange (PLAIN, RFC 4616; LOGIN; XOAUTH2, Google's and
//! Microsoft's OAuth 2.0 bearer mechanism).
//!
//! Credentials travel base64-encoded, so no byte of a user name, password or token can
//! end a command line early; control characters in them are refused all the same (PLAIN
//! separates its fields with NUL, XOAUTH2 with `^A`). An error never carries the secret.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, AUTH_XOAUTH2};

/// The longest command line sent (RFC 5321 §4.5.3.1.4): an initial response that would
/// make `AUTH` longer goes on a line of its own after the server's `334` (RFC 4954 §4).
const MAX_COMMAND_LINE: usize = 512;

/// A SASL mechanism cssmtp speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    Plain,
    Login,
    XOAuth2,
}

impl Mechanism {
    /// Every mechanism, strongest first for a password (XOAUTH2 takes a token and is
    /// used only when named).
    pub const ALL: [Self; 3] = [Self::Plain, Self::Login, Self::XOAuth2];

    /// Its name in `AUTH` and EHLO.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::Login => "LOGIN",
            Self::XOAuth2 => "XOAUTH2",
        }
    }

    /// The mechanism of this name (not case sensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    fn flag(self) -> u64 {
        match self {
            Self::Plain => AUTH_PLAIN,
            Self::Login => AUTH_LOGIN,
            Self::XOAuth2 => AUTH_XOAUTH2,
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The mechanisms a server offers in its EHLO `AUTH` line (smtp-proto's mask).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Offered(pub u64);

impl Offered {
    /// True when the server offers AUTH at all.
    pub fn any(self) -> bool {
        self.0 != 0
    }

    pub fn offers(self, mechanism: Mechanism) -> bool {
        self.0 & mechanism.flag() != 0
    }

    /// The names of the mechanisms cssmtp speaks among those offered, for messages.
    pub fn known(self) -> Vec<&'static str> {
        Mechanism::ALL
            .into_iter()
            .filter(|m| self.offers(*m))
            .map(Mechanism::name)
            .collect()
    }
}

/// A user name or secret that cannot be sent (the secret itself is never shown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialError(pub &'static str);

impl fmt::Display for CredentialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for CredentialError {}

/// One AUTH exchange: the first line, then a line for each `334` challenge.
pub struct Exchange {
    mechanism: Mechanism,
    /// The responses still to send, base64, in order.
    responses: std::collections::VecDeque<String>,
    /// The first line carried the first response (initial response).
    first: Vec<u8>,
}

impl fmt::Debug for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the credentials.
        write!(f, "Exchange({})", self.mechanism)
    }
}

fn clean(value: &str, what: &'static str) -> Result<(), CredentialError> {
    if value.chars().any(char::is_control) {
        return Err(CredentialError(what));
    }
    Ok(())
}

impl Exchange {
    /// Prepares an exchange for `user` with `secret` (a password, or for XOAUTH2 an
    /// access token).
    ///
    /// # Errors
    /// [`CredentialError`] when the user or the secret is empty or holds a control
    /// character.
    pub fn new(mechanism: Mechanism, user: &str, secret: &str) -> Result<Self, CredentialError> {
        clean(user, "the user name holds a control character")?;
        clean(
            secret,
            "the secret holds a control character (only its first line is used)",
        )?;
        if secret.is_empty() {
            return Err(CredentialError("the secret is empty"));
        }
        if user.is_empty() {
            return Err(CredentialError("the user name is empty"));
        }
        let b64 = |bytes: &[u8]| STANDARD.encode(bytes);
        let mut responses: std::collections::VecDeque<String> = match mechanism {
            Mechanism::Plain => [b64(format!("\0{user}\0{secret}").as_bytes())].into(),
            Mechanism::Login => [b64(user.as_bytes()), b64(secret.as_bytes())].into(),
            Mechanism::XOAuth2 => [b64(
                format!("user={user}\x01auth=Bearer {secret}\x01\x01").as_bytes()
            )]
            .into(),
        };
        let mut first = format!("AUTH {}", mechanism.name()).into_bytes();
        // PLAIN and XOAUTH2 send their one response with AUTH when the line allows.
        if mechanism != Mechanism::Login
            && let Some(ir) = responses.front()
            && first.len() + 1 + ir.len() + 2 <= MAX_COMMAND_LINE
        {
            first.push(b' ');
            first.extend_from_slice(ir.as_bytes());
            responses.pop_front();
        }
        first.extend_from_slice(b"\r\n");
        Ok(Self {
            mechanism,
            responses,
            first,
        })
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The `AUTH` line.
    pub fn first_line(&self) -> &[u8] {
        &self.first
    }

    /// The line answering a `334` challenge: the next response; once none is left, an
    /// empty line for XOAUTH2 (its server sends an error as a challenge and waits for
    /// one before its final reply) and `*` (cancel, RFC 4954 §4) for the others.
    pub fn answer(&mut self) -> Vec<u8> {
        let mut line = match self.responses.pop_front() {
            Some(response) => response.into_bytes(),
            None if self.mechanism == Mechanism::XOAuth2 => Vec::new(),
            None => b"*".to_vec(),
        };
        line.extend_from_slice(b"\r\n");
        line
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn plain_sends_an_initial_response() {
        let mut x = Exchange::new(Mechanism::Plain, "relay", "s3cret").unwrap();
        // base64("\0relay\0s3cret")
        assert_eq!(text(x.first_line()), "AUTH PLAIN AHJlbGF5AHMzY3JldA==\r\n");
        assert_eq!(text(&x.answer()), "*\r\n");
    }

    #[test]
    fn login_answers_two_challenges() {
        let mut x = Exchange::new(Mechanism::Login, "relay", "s3cret").unwrap();
        assert_eq!(text(x.first_line()), "AUTH LOGIN\r\n");
        assert_eq!(text(&x.answer()), "cmVsYXk=\r\n");
        assert_eq!(text(&x.answer()), "czNjcmV0\r\n");
        assert_eq!(text(&x.answer()), "*\r\n");
    }

    #[test]
    fn xoauth2_and_a_long_token() {
        let mut x = Exchange::new(Mechanism::XOAuth2, "a@b.example", "tok").unwrap();
        let line = text(x.first_line());
        let ir = line
            .strip_prefix("AUTH XOAUTH2 ")
            .unwrap()
            .trim_end()
            .to_owned();
        assert_eq!(
            STANDARD.decode(ir).unwrap(),
            b"user=a@b.example\x01auth=Bearer tok\x01\x01"
        );
        // The error challenge is answered with an empty line.
        assert_eq!(text(&x.answer()), "\r\n");
        // A token too long for the AUTH line goes after the 334.
        let token = "t".repeat(2000);
        let mut x = Exchange::new(Mechanism::XOAuth2, "a@b.example", &token).unwrap();
        assert_eq!(text(x.first_line()), "AUTH XOAUTH2\r\n");
        let answer = x.answer();
        assert!(answer.len() > 2000 && answer.ends_with(b"\r\n"));
        assert!(!answer[..answer.len() - 2].contains(&b'\n'));
    }

    #[test]
    fn control_characters_and_empty_values_are_refused() {
        for (user, secret) in [
            ("relay", "pass\r\nMAIL FROM:<x@y>"),
            ("re\0lay", "pass"),
            ("relay", "a\x01b"),
            ("relay", ""),
            ("", "pass"),
        ] {
            let e = Exchange::new(Mechanism::Plain, user, secret).unwrap_err();
            assert!(!e.to_string().contains("pass"), "{e}");
        }
    }

    #[test]
    fn offered_mechanisms() {
        let o = Offered(AUTH_LOGIN | AUTH_XOAUTH2);
        assert!(o.any() && o.offers(Mechanism::Login) && !o.offers(Mechanism::Plain));
        assert_eq!(o.known(), ["LOGIN", "XOAUTH2"]);
        assert_eq!(Mechanism::from_name("xoauth2"), Some(Mechanism::XOAuth2));
        assert_eq!(Mechanism::from_name("CRAM-MD5"), None);
    }
}
