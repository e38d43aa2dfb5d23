//! What the statement table writes into while a file is read: the configuration being
//! built, the targets gathered so far, and the file's diagnostics. A leaf of `config/`:
//! the table's entries ([`super::table`], [`super::blocks`], [`super::targets`],
//! [`super::statements`]) and the driver over them ([`super::validate`]) all use it, and
//! it uses none of them.

use std::path::PathBuf;

use super::syntax::Word;
use super::{Config, Diagnostic, Severity, TargetHost, TargetSpec, Targets};

/// The diagnostics of one file.
pub(crate) struct Diags {
    pub(super) file: PathBuf,
    pub(super) list: Vec<Diagnostic>,
}

impl Diags {
    fn push(&mut self, severity: Severity, line: u32, message: String) {
        self.list.push(Diagnostic {
            severity,
            file: self.file.clone(),
            line,
            message,
        });
    }

    pub(crate) fn error(&mut self, line: u32, message: impl Into<String>) {
        self.push(Severity::Error, line, message.into());
    }

    pub(crate) fn warning(&mut self, line: u32, message: impl Into<String>) {
        self.push(Severity::Warning, line, message.into());
    }
}

/// The configuration being read, with what the rules across statements need.
pub(crate) struct Draft {
    pub c: Config,
    /// The line of each of `c.mail_administrators`.
    pub admin_lines: Vec<u32>,
    pub targets: Gathered,
    /// The `DkimKey` block being read.
    pub dkim_key: Option<super::DkimKeySpec>,
}

/// A mailbox (`user@host.domain`), case kept (mailboxes are case sensitive).
pub(crate) fn mailbox(diags: &mut Diags, w: &Word, what: &str) -> Option<String> {
    let text = w.text.trim_start_matches('<').trim_end_matches('>');
    match cssmtp_batch::address::parse_path(&format!("<{text}>"), "RCPT TO", false) {
        Ok(mailbox) if mailbox.contains('@') => Some(mailbox),
        _ => {
            diags.error(
                w.line,
                format!("{what} {:?} is not a mailbox (user@host.domain)", w.text),
            );
            None
        }
    }
}

/// One `TargetServer` block being read: its hosts, and the attributes they share.
pub(crate) struct TargetDraft {
    pub(super) hosts: Vec<(TargetHost, u32)>,
    pub(super) spec: TargetSpec,
}

/// The targets of every `TargetServer` block read so far.
#[derive(Default)]
pub(crate) struct Gathered {
    statements: u32,
    hosts: Vec<TargetSpec>,
    mx: Vec<TargetSpec>,
}

impl TargetDraft {
    /// Before the block's parameters (and their defaults).
    pub(crate) fn blank() -> Self {
        Self {
            hosts: Vec::new(),
            spec: TargetSpec {
                host: TargetHost::Name(String::new()),
                port: 0,
                secure: false,
                message_size: 0,
                max_mails: 0,
                max_rcpts: 0,
                max_connections: 0,
                tls_name: None,
                auth: None,
                tls: Box::default(),
                source: None,
                charset: super::Charset::Latin1,
                chunking: true,
                line: 0,
            },
        }
    }
}

impl Gathered {
    /// Counts a `TargetServer` statement.
    pub(crate) fn statement(&mut self) {
        self.statements += 1;
    }

    /// The targets of one block: one per host, each address and port once.
    pub(crate) fn add(&mut self, diags: &mut Diags, block: TargetDraft) {
        for (host, line) in block.hosts {
            let spec = TargetSpec {
                host,
                line,
                ..block.spec.clone()
            };
            if matches!(spec.host, TargetHost::Mx(_)) {
                self.mx.push(spec);
            } else if let Some(previous) = self
                .hosts
                .iter()
                .find(|h| h.host == spec.host && h.port == spec.port)
            {
                // Unique by address and port: on Linux, servers on one IP address may
                // listen on different ports.
                diags.warning(
                    line,
                    format!(
                        "{} port {} duplicates line {}; ignored",
                        spec.host, spec.port, previous.line
                    ),
                );
            } else {
                self.hosts.push(spec);
            }
        }
    }

    /// The targets of the whole file, or None (with the error) when the rules are broken.
    pub(crate) fn finish(mut self, diags: &mut Diags) -> Option<Targets> {
        if self.hosts.is_empty() && self.mx.is_empty() {
            if self.statements == 0 {
                diags.error(
                    0,
                    "a TargetServer statement with a TargetIp, TargetName or TargetMx parameter is required",
                );
            }
            return None;
        }
        if let Some(second) = self.mx.get(1) {
            diags.error(second.line, "only one TargetMx parameter is allowed");
            return None;
        }
        if let Some(mx) = self.mx.pop() {
            if let Some(host) = self.hosts.first() {
                diags.error(
                    host.line,
                    "TargetMx cannot be combined with TargetIp or TargetName",
                );
                return None;
            }
            return Some(Targets::Mx(mx));
        }
        if let Some(fifth) = self.hosts.get(4) {
            let extra: Vec<String> = self
                .hosts
                .iter()
                .skip(4)
                .map(|h| h.host.to_string())
                .collect();
            diags.warning(
                fifth.line,
                format!(
                    "only the first four TargetIp/TargetName values are used; ignoring {}",
                    extra.join(", ")
                ),
            );
            self.hosts.truncate(4);
        }
        Some(Targets::Hosts(self.hosts))
    }
}
