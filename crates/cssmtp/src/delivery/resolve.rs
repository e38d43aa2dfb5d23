//! Turning TargetIp / TargetName / TargetMx into at most four target addresses.
//!
//! TargetName is resolved for A and AAAA records; TargetMx for MX records in preference
//! order (falling back to the domain's own A/AAAA when it has no MX, RFC 5321 §5.1; a
//! null MX, RFC 7505, gives no target). Only the first four distinct addresses are used,
//! as CSSMTP does. The resolver is only used for target names, never for recipients.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::config::{TargetHost, TargetSpec, Targets};

/// At most this many target addresses are used.
pub const MAX_TARGETS: usize = 4;

/// One target address and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub addr: SocketAddr,
    /// How the operator configured it, e.g. `TargetMx example.com → mx1.example.com (10)`.
    pub origin: String,
    /// The host name its certificate must carry (None: the IP address).
    pub tls_name: Option<String>,
    pub secure: bool,
    pub message_size: u64,
    pub max_mails: u32,
    pub max_rcpts: u32,
    /// Per-target `MaxConnections` (0: none).
    pub max_connections: u32,
    /// MX preference (0 for TargetIp/TargetName).
    pub preference: u16,
    /// SMTP AUTH with it (`AuthUser` …).
    pub auth: Option<std::sync::Arc<crate::config::AuthSpec>>,
    /// The local address to connect from (`SourceAddress` in its block).
    pub source: Option<IpAddr>,
    /// `Charset`: the code page of text translated from EBCDIC.
    pub charset: crate::config::Charset,
    /// Its TLS policy (`TlsMode`, `TlsMinVersion`…).
    pub tls: std::sync::Arc<crate::config::TlsPolicy>,
    /// `Chunking`: BDAT when the server offers CHUNKING.
    pub chunking: bool,
}

/// Builds a resolver: the given name servers, or the system's (/etc/resolv.conf).
///
/// # Errors
/// A message when the system configuration cannot be read.
pub fn build_resolver(name_servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    if name_servers.is_empty() {
        return TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system resolver configuration: {e}"))?
            .build()
            .map_err(|e| e.to_string());
    }
    let servers = name_servers
        .iter()
        .map(|addr| {
            let mut server = NameServerConfig::udp_and_tcp(addr.ip());
            for connection in &mut server.connections {
                connection.port = addr.port();
            }
            server
        })
        .collect();
    TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(servers),
        TokioRuntimeProvider::default(),
    )
    .build()
    .map_err(|e| e.to_string())
}

/// A resolver when `targets` need one (TargetName or TargetMx): `name_servers`, or the
/// system's.
///
/// # Errors
/// A message when the system configuration cannot be read.
pub fn resolver_for(
    targets: &Targets,
    name_servers: &[SocketAddr],
) -> Result<Option<TokioResolver>, String> {
    let needs_resolver = match targets {
        Targets::Mx(_) => true,
        Targets::Hosts(hosts) => hosts.iter().any(|h| matches!(h.host, TargetHost::Name(_))),
    };
    if needs_resolver {
        build_resolver(name_servers).map(Some)
    } else {
        Ok(None)
    }
}

/// Resolves the configured targets. Returns the addresses (at most four, no duplicates)
/// and warnings for the operator.
pub async fn resolve(
    targets: &Targets,
    resolver: Option<&TokioResolver>,
) -> (Vec<Resolved>, Vec<String>) {
    let mut out: Vec<Resolved> = Vec::new();
    let mut warnings = Vec::new();
    let mut push = |candidate: Resolved, warnings: &mut Vec<String>| {
        if let Some(existing) = out.iter().find(|r| r.addr == candidate.addr) {
            warnings.push(format!(
                "{} resolves to {}, already a target through {}; duplicate ignored",
                candidate.origin, candidate.addr, existing.origin
            ));
        } else if out.len() >= MAX_TARGETS {
            warnings.push(format!(
                "only the first {MAX_TARGETS} target addresses are used; ignoring {} from {}",
                candidate.addr, candidate.origin
            ));
        } else {
            out.push(candidate);
        }
    };
    let specs: Vec<&TargetSpec> = match targets {
        Targets::Hosts(hosts) => hosts.iter().collect(),
        Targets::Mx(mx) => vec![mx],
    };
    for spec in specs {
        let auth = spec.auth.clone().map(std::sync::Arc::new);
        let tls = std::sync::Arc::new((*spec.tls).clone());
        let make = |ip: IpAddr, origin: String, name: Option<String>, preference: u16| Resolved {
            addr: SocketAddr::new(ip, spec.port),
            origin,
            tls_name: spec.tls_name.clone().or(name),
            secure: spec.secure,
            message_size: spec.message_size,
            max_mails: spec.max_mails,
            max_rcpts: spec.max_rcpts,
            max_connections: spec.max_connections,
            preference,
            auth: auth.clone(),
            tls: std::sync::Arc::clone(&tls),
            source: spec.source,
            charset: spec.charset,
            chunking: spec.chunking,
        };
        match &spec.host {
            TargetHost::Ip(ip) => push(make(*ip, format!("TargetIp {ip}"), None, 0), &mut warnings),
            TargetHost::Name(name) => match lookup_ips(resolver, name).await {
                Ok(ips) => {
                    for ip in ips {
                        push(
                            make(ip, format!("TargetName {name}"), Some(name.clone()), 0),
                            &mut warnings,
                        );
                    }
                }
                Err(e) => warnings.push(format!("TargetName {name}: {e}")),
            },
            TargetHost::Mx(domain) => match lookup_mx(resolver, domain).await {
                Ok(hosts) if hosts.is_empty() => {
                    warnings.push(format!(
                        "TargetMx {domain}: the domain has a null MX (accepts no mail)"
                    ));
                }
                Ok(hosts) => {
                    for (preference, host) in hosts {
                        match lookup_ips(resolver, &host).await {
                            Ok(ips) => {
                                for ip in ips {
                                    let origin =
                                        format!("TargetMx {domain} → {host} ({preference})");
                                    push(
                                        make(ip, origin, Some(host.clone()), preference),
                                        &mut warnings,
                                    );
                                }
                            }
                            Err(e) => warnings.push(format!("TargetMx {domain} → {host}: {e}")),
                        }
                    }
                }
                Err(e) => warnings.push(format!("TargetMx {domain}: {e}")),
            },
        }
    }
    (out, warnings)
}

async fn lookup_ips(resolver: Option<&TokioResolver>, name: &str) -> Result<Vec<IpAddr>, String> {
    let resolver = resolver.ok_or("no resolver")?;
    let fqdn = fqdn(name);
    let lookup = resolver
        .lookup_ip(fqdn.as_str())
        .await
        .map_err(|e| format!("cannot resolve A/AAAA: {e}"))?;
    let ips: Vec<IpAddr> = lookup.iter().collect();
    if ips.is_empty() {
        return Err("no A or AAAA record".into());
    }
    Ok(ips)
}

/// MX hosts in preference order; the domain itself when it has no MX record; nothing
/// for a null MX.
async fn lookup_mx(
    resolver: Option<&TokioResolver>,
    domain: &str,
) -> Result<Vec<(u16, String)>, String> {
    let resolver = resolver.ok_or("no resolver")?;
    let fqdn = fqdn(domain);
    let lookup = match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(lookup) => lookup,
        Err(e) if e.is_no_records_found() => return Ok(vec![(0, domain.to_owned())]),
        Err(e) => return Err(format!("cannot resolve MX: {e}")),
    };
    let mut hosts: Vec<(u16, String)> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            RData::MX(mx) => Some((
                mx.preference,
                mx.exchange
                    .to_ascii()
                    .trim_end_matches('.')
                    .to_ascii_lowercase(),
            )),
            _ => None,
        })
        .collect();
    if hosts.is_empty() {
        return Ok(vec![(0, domain.to_owned())]);
    }
    if hosts.iter().any(|(_, host)| host.is_empty()) {
        return Ok(Vec::new());
    }
    hosts.sort_by_key(|(preference, _)| *preference);
    Ok(hosts)
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') {
        name.to_owned()
    } else {
        format!("{name}.")
    }
}
