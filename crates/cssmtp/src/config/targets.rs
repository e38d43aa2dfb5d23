//! `TargetServer`: its parameters (declared as [`super::statements`] declares
//! statements) and the rules over all the blocks: at least one target; one
//! `TargetMx`, alone; up to four `TargetIp`/`TargetName` addresses, each address and
//! port once.

use std::net::IpAddr;

use super::draft::{Diags, TargetDraft};
use super::syntax::Word;
use super::table::{Block, Kind, Param, yes};
use super::{Config, TargetHost, TargetSpec, Targets};

type P = Param<TargetDraft, TargetSpec>;

pub(crate) static TARGET_SERVER: Block<TargetDraft, TargetSpec> = Block {
    qualified: false,
    check: Some(|diags, t, line| {
        if t.hosts.is_empty() {
            diags.error(
                line,
                "TargetServer needs a TargetIp, TargetName or TargetMx parameter",
            );
        }
        super::auth::check(diags, t, line);
        super::tls_policy::check(diags, t, line);
    }),
    ..Block::of(&[
        P::new("TargetIp", Kind::Custom(target_ip), |t| match &t.host {
            TargetHost::Ip(ip) => Some(ip.to_string()),
            _ => None,
        }),
        P::new("TargetName", Kind::Custom(target_name), |t| match &t.host {
            TargetHost::Name(name) => Some(name.clone()),
            _ => None,
        }),
        P::new("TargetMx", Kind::Custom(target_mx), |t| match &t.host {
            TargetHost::Mx(domain) => Some(domain.clone()),
            _ => None,
        }),
        P::new(
            "ConnectPort",
            Kind::number(1, 65535, |t, n| t.spec.port = n as u16),
            |t| Some(t.port.to_string()),
        )
        .default("25"),
        P::new("Secure", Kind::YesNo(|t, b| t.spec.secure = b), |t| {
            Some(yes(t.secure))
        })
        .default("No"),
        P::new(
            "MessageSize",
            Kind::number(0, u32::MAX as u64, |t, n| t.spec.message_size = n),
            |t| Some(t.message_size.to_string()),
        )
        .default("0"),
        P::new(
            "MaxMailsPerSession",
            Kind::number(0, 100_000, |t, n| t.spec.max_mails = n as u32),
            |t| Some(t.max_mails.to_string()),
        )
        .default("0"),
        P::new(
            "MaxRcptsPerMail",
            Kind::number(0, 100_000, |t, n| t.spec.max_rcpts = n as u32),
            |t| Some(t.max_rcpts.to_string()),
        )
        .default("0"),
        // Absent: no limit of its own (0), only the global MaxConnections.
        P::new(
            "MaxConnections",
            Kind::number(1, 1024, |t, n| t.spec.max_connections = n as u32),
            |t| (t.max_connections > 0).then(|| t.max_connections.to_string()),
        ),
        P::new("TlsName", Kind::Custom(tls_name), |t| t.tls_name.clone()),
        // cssmtp: BDAT when the server offers CHUNKING (RFC 3030).
        P::new("Chunking", Kind::YesNo(|t, b| t.spec.chunking = b), |t| {
            Some(yes(t.chunking))
        })
        .default("Yes"),
        P::new("SourceAddress", Kind::Custom(source), |t| {
            t.source.map(|ip| ip.to_string())
        }),
        // TLS policy (cssmtp's, see config/tls_policy.rs).
        P::new(
            "TlsMode",
            Kind::Custom(super::tls_policy::mode),
            super::tls_policy::show_mode,
        ),
        P::new(
            "TlsMinVersion",
            Kind::Custom(super::tls_policy::min_version),
            super::tls_policy::show_min_version,
        ),
        P::new(
            "TlsCaFile",
            Kind::Path(super::tls_policy::ca_file),
            super::tls_policy::show_ca_file,
        ),
        P::new(
            "TlsFingerprint",
            Kind::Custom(super::tls_policy::fingerprint),
            super::tls_policy::show_fingerprint,
        ),
        P::new(
            "TlsClientCert",
            Kind::Path(super::tls_policy::client_cert),
            super::tls_policy::show_client_cert,
        ),
        P::new(
            "TlsClientKey",
            Kind::Path(super::tls_policy::client_key),
            super::tls_policy::show_client_key,
        ),
        // SMTP AUTH (cssmtp's, see config/auth.rs).
        P::new(
            "AuthUser",
            Kind::Custom(super::auth::user),
            super::auth::show_user,
        ),
        P::new(
            "AuthSecretFile",
            Kind::Path(super::auth::secret_file),
            super::auth::show_file,
        ),
        P::new(
            "AuthSecretCommand",
            Kind::Custom(super::auth::secret_command),
            super::auth::show_command,
        ),
        P::new(
            "AuthMechanism",
            Kind::Custom(super::auth::mechanism),
            super::auth::show_mechanism,
        ),
        P::new(
            "InsecureAuth",
            Kind::YesNo(super::auth::insecure),
            super::auth::show_insecure,
        ),
        P::new("Charset", Kind::Custom(charset), |t| {
            Some(t.charset.name().to_owned())
        })
        .default("ISO8859-1"),
        P::new(
            "MBCharset",
            Kind::Custom(|diags, _, w| compatible(diags, w, "MBCharset")),
            |_| None,
        ),
    ])
};

fn target_ip(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    match w.text.parse::<IpAddr>() {
        Ok(ip) => t.hosts.push((TargetHost::Ip(ip), w.line)),
        Err(_) => diags.error(
            w.line,
            format!("TargetIp {:?} is not an IPv4 or IPv6 address", w.text),
        ),
    }
}

/// A host name (not an address), lower-cased.
fn host(diags: &mut Diags, w: &Word, what: &str) -> Option<String> {
    let text = w.text.as_str();
    if text.parse::<IpAddr>().is_ok() || !cssmtp_batch::address::valid_domain(text) {
        diags.error(w.line, format!("{what} {text:?} is not a host name"));
        return None;
    }
    Some(text.to_ascii_lowercase())
}

fn target_name(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    if let Some(name) = host(diags, w, "TargetName") {
        t.hosts.push((TargetHost::Name(name), w.line));
    }
}

fn target_mx(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    if let Some(domain) = host(diags, w, "TargetMx") {
        t.hosts.push((TargetHost::Mx(domain), w.line));
    }
}

fn source(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    match w.text.parse() {
        Ok(ip) => t.spec.source = Some(ip),
        Err(_) => diags.error(
            w.line,
            format!("SourceAddress {:?} is not an IP address", w.text),
        ),
    }
}

fn tls_name(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    if cssmtp_batch::address::valid_domain(&w.text) {
        t.spec.tls_name = Some(w.text.to_ascii_lowercase());
    } else {
        diags.error(w.line, format!("TlsName {:?} is not a host name", w.text));
    }
}

/// `Charset`: ISO8859-1 or UTF-8.
fn charset(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    match super::Charset::parse(&w.text) {
        Some(c) => t.spec.charset = c,
        None => diags.error(
            w.line,
            format!(
                "Charset {:?}: expected ISO8859-1 (the default) or UTF-8",
                w.text
            ),
        ),
    }
}

fn compatible(diags: &mut Diags, w: &Word, name: &str) {
    diags.warning(
        w.line,
        format!("{name} is accepted for compatibility; cssmtp sends mail text unchanged"),
    );
}

/// DISPLAY CONFIG: one `TargetServer { … }` line per target.
pub(crate) fn show(c: &Config) -> Vec<String> {
    let targets = match &c.targets {
        Targets::Hosts(hosts) => hosts.iter().collect(),
        Targets::Mx(mx) => vec![mx],
    };
    targets
        .into_iter()
        .map(|t| super::table::block_line("TargetServer", TARGET_SERVER.params, t))
        .collect()
}
