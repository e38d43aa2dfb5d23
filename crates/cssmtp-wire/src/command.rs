//! Client commands and their wire form.
//!
//! Every argument is checked here, at the last moment before it reaches the socket: a
//! CR, LF or other control character in a domain or a path is refused, so nothing read
//! from a spool file can inject a command (CWE-93, SMTP command injection).

use std::fmt;

/// A command cssmtp sends to a target server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    Ehlo(&'a str),
    Helo(&'a str),
    StartTls,
    /// `MAIL FROM:<path>`, with `SIZE=n` when the server offered SIZE,
    /// `BODY=8BITMIME` for 8-bit text to a server offering 8BITMIME (RFC 6152), and
    /// `SMTPUTF8` for a mail with UTF-8 addresses to a server offering it (RFC 6531).
    MailFrom {
        path: &'a str,
        size: Option<u64>,
        eight_bit: bool,
        smtputf8: bool,
    },
    RcptTo(&'a str),
    Data,
    Rset,
    Noop,
    Quit,
}

/// A command argument that cannot be sent safely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub argument: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "refusing to send a command argument with control characters or angle brackets: {:?}",
            self.argument
        )
    }
}

impl std::error::Error for CommandError {}

fn checked(arg: &str, allow_brackets: bool) -> Result<&str, CommandError> {
    let bad = arg
        .chars()
        .any(|c| c.is_control() || (!allow_brackets && (c == '<' || c == '>')));
    if bad || arg.len() > 510 {
        Err(CommandError {
            argument: arg.chars().take(80).collect(),
        })
    } else {
        Ok(arg)
    }
}

impl Command<'_> {
    /// Appends the command, terminated by CRLF, to `out`.
    ///
    /// # Errors
    /// [`CommandError`] when an argument holds a control character (CR, LF, NUL…),
    /// an angle bracket inside a path, or is longer than a command line may be.
    pub fn write_to(&self, out: &mut Vec<u8>) -> Result<(), CommandError> {
        match self {
            Self::Ehlo(host) => {
                out.extend_from_slice(b"EHLO ");
                out.extend_from_slice(checked(host, true)?.as_bytes());
            }
            Self::Helo(host) => {
                out.extend_from_slice(b"HELO ");
                out.extend_from_slice(checked(host, true)?.as_bytes());
            }
            Self::StartTls => out.extend_from_slice(b"STARTTLS"),
            Self::MailFrom {
                path,
                size,
                eight_bit,
                smtputf8,
            } => {
                out.extend_from_slice(b"MAIL FROM:<");
                out.extend_from_slice(checked(path, false)?.as_bytes());
                out.push(b'>');
                if let Some(size) = size {
                    out.extend_from_slice(format!(" SIZE={size}").as_bytes());
                }
                if *eight_bit {
                    out.extend_from_slice(b" BODY=8BITMIME");
                }
                if *smtputf8 {
                    out.extend_from_slice(b" SMTPUTF8");
                }
            }
            Self::RcptTo(path) => {
                out.extend_from_slice(b"RCPT TO:<");
                out.extend_from_slice(checked(path, false)?.as_bytes());
                out.push(b'>');
            }
            Self::Data => out.extend_from_slice(b"DATA"),
            Self::Rset => out.extend_from_slice(b"RSET"),
            Self::Noop => out.extend_from_slice(b"NOOP"),
            Self::Quit => out.extend_from_slice(b"QUIT"),
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }

    /// The command verb, for logs and failure records.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Ehlo(_) => "EHLO",
            Self::Helo(_) => "HELO",
            Self::StartTls => "STARTTLS",
            Self::MailFrom { .. } => "MAIL FROM",
            Self::RcptTo(_) => "RCPT TO",
            Self::Data => "DATA",
            Self::Rset => "RSET",
            Self::Noop => "NOOP",
            Self::Quit => "QUIT",
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn render(cmd: Command<'_>) -> Result<String, CommandError> {
        let mut out = Vec::new();
        cmd.write_to(&mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn renders_commands() {
        assert_eq!(
            render(Command::MailFrom {
                path: "a@b.example",
                size: Some(42),
                eight_bit: false,
                smtputf8: false,
            })
            .unwrap(),
            "MAIL FROM:<a@b.example> SIZE=42\r\n"
        );
        assert_eq!(
            render(Command::MailFrom {
                path: "a@b.example",
                size: Some(42),
                eight_bit: true,
                smtputf8: false,
            })
            .unwrap(),
            "MAIL FROM:<a@b.example> SIZE=42 BODY=8BITMIME\r\n"
        );
        assert_eq!(
            render(Command::MailFrom {
                path: "",
                size: None,
                eight_bit: false,
                smtputf8: false,
            })
            .unwrap(),
            "MAIL FROM:<>\r\n"
        );
        assert_eq!(render(Command::RcptTo("x@y")).unwrap(), "RCPT TO:<x@y>\r\n");
        assert_eq!(
            render(Command::MailFrom {
                path: "jörg@bücher.example",
                size: None,
                eight_bit: true,
                smtputf8: true,
            })
            .unwrap(),
            "MAIL FROM:<jörg@bücher.example> BODY=8BITMIME SMTPUTF8\r\n"
        );
        assert_eq!(
            render(Command::RcptTo("用户@例子.广告")).unwrap(),
            "RCPT TO:<用户@例子.广告>\r\n"
        );
        // C1 controls and line separators are refused like C0 ones.
        assert!(render(Command::RcptTo("a\u{85}b@c")).is_err());
        assert_eq!(
            render(Command::Ehlo("h.example")).unwrap(),
            "EHLO h.example\r\n"
        );
    }

    #[test]
    fn refuses_injection() {
        assert!(render(Command::RcptTo("x@y>\r\nRCPT TO:<evil@z")).is_err());
        assert!(
            render(Command::MailFrom {
                path: "a@b\nDATA",
                size: None,
                eight_bit: false,
                smtputf8: false,
            })
            .is_err()
        );
        assert!(render(Command::Ehlo("h\r\nQUIT")).is_err());
        assert!(render(Command::RcptTo("a>b@c")).is_err());
    }
}
