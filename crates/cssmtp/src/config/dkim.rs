//! DKIM signing statements (cssmtp's, issue 15 point 3): `DkimKey` blocks, one per
//! key, `DkimHeaders` and `DkimCanonicalization`. What they mean is in
//! [`crate::delivery::dkim`]; here they are only read.
//!
//! ```text
//! DkimKey { Domain example.com  Selector s2026  KeyFile /etc/cssmtp/dkim/s2026.pem }
//! DkimKey { Domain example.com  Selector ed2026 KeyFile /etc/cssmtp/dkim/ed2026.pem  Algorithm Ed25519 }
//! DkimHeaders From:To:Cc:Subject:Date:Message-ID
//! DkimCanonicalization relaxed/relaxed
//! ```

use std::path::PathBuf;

use super::Config;
use super::draft::{Diags, Draft};
use super::syntax::Word;
use super::table::{Block, Kind, Param};

/// The header fields signed by default (RFC 6376 §5.4.1's list, the ones a mail from a
/// batch job is likely to carry), as `DkimHeaders` writes them.
pub const DEFAULT_HEADERS: &str = "From:Reply-To:Subject:Date:To:Cc:Message-ID:In-Reply-To:References:MIME-Version:Content-Type:Content-Transfer-Encoding";

/// The DKIM statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dkim {
    /// `DkimKey` blocks, in the file's order.
    pub keys: Vec<DkimKeySpec>,
    /// `DkimHeaders`: the header fields signed (From always among them).
    pub headers: Vec<String>,
    /// `DkimCanonicalization`: header and body.
    pub header_canon: Canon,
    pub body_canon: Canon,
}

impl Default for Dkim {
    /// Before the statement table's defaults apply.
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            headers: Vec::new(),
            header_canon: Canon::Relaxed,
            body_canon: Canon::Relaxed,
        }
    }
}

/// A canonicalization algorithm (RFC 6376 §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Canon {
    Simple,
    Relaxed,
}

impl Canon {
    fn name(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Relaxed => "relaxed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "simple" => Some(Self::Simple),
            "relaxed" => Some(Self::Relaxed),
            _ => None,
        }
    }
}

/// The signature algorithm of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    /// `rsa-sha256`.
    Rsa,
    /// `ed25519-sha256` (RFC 8463).
    Ed25519,
}

/// One `DkimKey` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKeySpec {
    /// The From: domain whose mail it signs (lower case), also the signature's `d=`.
    pub domain: String,
    /// `s=`: the DNS record is `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// The private key (PEM: PKCS #8, or PKCS #1 for RSA).
    pub key_file: PathBuf,
    /// Checked against the key when given; else the key's own.
    pub algorithm: Option<DkimAlgorithm>,
    /// Line of the `DkimKey` statement, for messages.
    pub line: u32,
}

impl DkimKeySpec {
    const fn blank() -> Self {
        Self {
            domain: String::new(),
            selector: String::new(),
            key_file: PathBuf::new(),
            algorithm: None,
            line: 0,
        }
    }
}

fn pending(d: &mut Draft) -> &mut DkimKeySpec {
    d.dkim_key.get_or_insert_with(DkimKeySpec::blank)
}

pub(crate) static DKIM_KEY: Block<Draft, Config> = Block {
    params: &[
        Param::new("Domain", Kind::Custom(domain), |_| None),
        Param::new("Selector", Kind::Custom(selector), |_| None),
        Param::new(
            "KeyFile",
            Kind::Path(|d, p| pending(d).key_file = p),
            |_| None,
        ),
        Param::new(
            "Algorithm",
            Kind::Choice(
                &[
                    ("Rsa", |d| pending(d).algorithm = Some(DkimAlgorithm::Rsa)),
                    ("Ed25519", |d| {
                        pending(d).algorithm = Some(DkimAlgorithm::Ed25519);
                    }),
                ],
                &[("rsa-sha256", "Rsa"), ("ed25519-sha256", "Ed25519")],
            ),
            |_| None,
        ),
    ],
    qualified: true,
    // Each statement is a key of its own.
    replace: Some(|d| d.dkim_key = None),
    optional: true,
    check: Some(finish_key),
};

fn domain(diags: &mut Diags, d: &mut Draft, w: &Word) {
    if cssmtp_batch::address::valid_domain(&w.text) {
        pending(d).domain = w.text.to_ascii_lowercase();
    } else {
        diags.error(
            w.line,
            format!("DkimKey Domain {:?} is not a domain name", w.text),
        );
        pending(d);
    }
}

fn selector(diags: &mut Diags, d: &mut Draft, w: &Word) {
    // A selector is one or more DNS labels (RFC 6376 §3.1).
    let ok = !w.text.is_empty()
        && w.text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        pending(d).selector = w.text.clone();
    } else {
        diags.error(
            w.line,
            format!("DkimKey Selector {:?} is not a DNS label", w.text),
        );
        pending(d);
    }
}

/// After a `DkimKey` block: it needs a domain, a selector and a key file.
fn finish_key(diags: &mut Diags, d: &mut Draft, line: u32) {
    let Some(mut key) = d.dkim_key.take() else {
        diags.error(line, "DkimKey needs Domain, Selector and KeyFile");
        return;
    };
    let mut missing = Vec::new();
    if key.domain.is_empty() {
        missing.push("Domain");
    }
    if key.selector.is_empty() {
        missing.push("Selector");
    }
    if key.key_file.as_os_str().is_empty() {
        missing.push("KeyFile");
    }
    if !missing.is_empty() {
        diags.error(line, format!("DkimKey needs {}", missing.join(", ")));
        return;
    }
    if d.c
        .dkim
        .keys
        .iter()
        .any(|k| k.domain == key.domain && k.selector == key.selector)
    {
        diags.error(
            line,
            format!(
                "DkimKey for {} with selector {} given twice",
                key.domain, key.selector
            ),
        );
        return;
    }
    key.line = line;
    d.c.dkim.keys.push(key);
}

/// DISPLAY CONFIG: one line per key.
pub(crate) fn show_keys(c: &Config) -> Vec<String> {
    c.dkim
        .keys
        .iter()
        .map(|k| {
            let algorithm = match k.algorithm {
                Some(DkimAlgorithm::Rsa) => " Algorithm Rsa",
                Some(DkimAlgorithm::Ed25519) => " Algorithm Ed25519",
                None => "",
            };
            format!(
                "DkimKey {{ Domain {} Selector {} KeyFile {}{algorithm} }}",
                k.domain,
                k.selector,
                k.key_file.display()
            )
        })
        .collect()
}

/// `DkimHeaders From:To:Subject…` (the form of the signature's `h=` tag).
pub(crate) fn headers(diags: &mut Diags, d: &mut Draft, w: &Word) {
    let names: Vec<String> = w
        .text
        .split(':')
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
        .collect();
    if let Some(bad) = names
        .iter()
        .find(|n| !n.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
    {
        diags.error(
            w.line,
            format!("DkimHeaders: {bad:?} is not a header field name"),
        );
        return;
    }
    if !names.iter().any(|n| n.eq_ignore_ascii_case("From")) {
        diags.error(
            w.line,
            "DkimHeaders must include From (RFC 6376 §5.4: the From field is always signed)",
        );
        return;
    }
    if let Some(dkim) = names
        .iter()
        .find(|n| n.eq_ignore_ascii_case("DKIM-Signature"))
    {
        diags.error(w.line, format!("DkimHeaders cannot include {dkim}"));
        return;
    }
    d.c.dkim.headers = names;
}

pub(crate) fn show_headers(c: &Config) -> String {
    c.dkim.headers.join(":")
}

/// `DkimCanonicalization header/body` (or one word for both), as the `c=` tag.
pub(crate) fn canonicalization(diags: &mut Diags, d: &mut Draft, w: &Word) {
    let (h, b) = match w.text.split_once('/') {
        Some((h, b)) => (Canon::parse(h), Canon::parse(b)),
        None => (Canon::parse(&w.text), Canon::parse(&w.text)),
    };
    match (h, b) {
        (Some(h), Some(b)) => {
            d.c.dkim.header_canon = h;
            d.c.dkim.body_canon = b;
        }
        _ => diags.error(
            w.line,
            format!(
                "DkimCanonicalization must be relaxed/relaxed, relaxed/simple, simple/relaxed or simple/simple, not {:?}",
                w.text
            ),
        ),
    }
}

pub(crate) fn show_canonicalization(c: &Config) -> String {
    format!(
        "{}/{}",
        c.dkim.header_canon.name(),
        c.dkim.body_canon.name()
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn read(text: &str) -> (Option<Config>, Vec<(u32, String)>) {
        let (config, diags) = crate::config::validate(
            Path::new("/etc/cssmtp/cssmtp.conf"),
            &format!("TargetServer {{ TargetIp 192.0.2.1 }}\n{text}"),
        );
        (
            config,
            diags.into_iter().map(|d| (d.line, d.message)).collect(),
        )
    }

    #[test]
    fn keys_headers_and_canonicalization_are_read() {
        let (config, diags) = read(
            "DkimKey { Domain Example.COM Selector s1 KeyFile k1.pem }\n\
             DkimKey\n{\n  Domain example.com\n  Selector ed.2026\n  KeyFile /k2.pem\n  Algorithm ed25519-sha256\n}\n\
             DkimHeaders From:Subject\nDkimCanonicalization simple\n",
        );
        let c = config.unwrap_or_else(|| panic!("{diags:?}"));
        let keys = &c.dkim.keys;
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].domain, "example.com");
        assert_eq!(keys[0].key_file, Path::new("/etc/cssmtp/k1.pem"));
        assert_eq!((keys[0].algorithm, keys[0].line), (None, 2));
        assert_eq!(keys[1].selector, "ed.2026");
        assert_eq!(
            (keys[1].algorithm, keys[1].line),
            (Some(DkimAlgorithm::Ed25519), 3)
        );
        assert_eq!(c.dkim.headers, ["From", "Subject"]);
        assert_eq!(
            (c.dkim.header_canon, c.dkim.body_canon),
            (Canon::Simple, Canon::Simple)
        );
        // The defaults.
        let (config, _) = read("");
        let d = config.unwrap().dkim;
        assert!(d.keys.is_empty());
        assert_eq!(d.headers.join(":"), DEFAULT_HEADERS);
        assert_eq!(
            (d.header_canon, d.body_canon),
            (Canon::Relaxed, Canon::Relaxed)
        );
    }

    #[test]
    fn each_problem_is_reported_at_its_line() {
        let (config, diags) = read(
            "DkimKey { Domain example.com KeyFile k.pem }\n\
             DkimHeaders Subject:To\n\
             DkimCanonicalization loose\n\
             DkimKey { Domain example.com Selector s KeyFile a.pem }\n\
             DkimKey { Domain example.com Selector s KeyFile b.pem }\n\
             DkimKey { Domain example.com Selector bad/sel KeyFile c.pem Algorithm dsa }\n",
        );
        assert!(config.is_none());
        let has = |line: u32, text: &str| {
            assert!(
                diags.iter().any(|(l, m)| *l == line && m.contains(text)),
                "line {line}: {text:?} in {diags:#?}"
            );
        };
        has(2, "DkimKey needs Selector");
        has(3, "DkimHeaders must include From");
        has(4, "DkimCanonicalization must be relaxed/relaxed");
        has(6, "given twice");
        has(7, "is not a DNS label");
        has(7, "Algorithm must be Rsa or Ed25519");
    }
}
