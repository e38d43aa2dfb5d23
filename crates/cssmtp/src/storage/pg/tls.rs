//! TLS to the database, with libpq's conventions: `sslmode` (`disable`, `prefer`,
//! `require`, `verify-ca`, `verify-full`) and `sslrootcert` in the `SpoolDatabase` URL,
//! else `PGSSLMODE` and `PGSSLROOTCERT`; by default `prefer` (as libpq).
//!
//! * `disable`: no TLS;
//! * `prefer`: TLS when the server offers it, its certificate not verified;
//! * `require`: TLS or no connection; the certificate is not verified, unless
//!   `sslrootcert` is given: then as `verify-ca` (as libpq);
//! * `verify-ca`: the certificate must chain to a trusted CA;
//! * `verify-full`: and be for the host name of the URL (or its IP address).
//!
//! The trusted CAs are those of the `sslrootcert` file; without it (or with
//! `sslrootcert=system`), the system's. TLS is never used over a Unix socket (as
//! libpq). rustls with the aws-lc-rs provider, as the rest of cssmtp.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::ServerName;
use rustls::{CertificateError, ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::config::{Host, SslMode as PgSslMode};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

use crate::delivery::tls::{CertCheck, provider, read_certificates, roots};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// # Errors
    /// Not one of libpq's names.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "disable" => Ok(Self::Disable),
            "prefer" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-ca" => Ok(Self::VerifyCa),
            "verify-full" => Ok(Self::VerifyFull),
            _ => Err(format!(
                "sslmode must be disable, prefer, require, verify-ca or verify-full, not {text:?}"
            )),
        }
    }
}

/// The URL's client settings and its TLS options (`sslmode`, `sslrootcert`), which
/// the client library does not read itself.
#[derive(Debug)]
pub struct Parsed {
    pub config: tokio_postgres::Config,
    pub sslmode: Option<SslMode>,
    pub sslrootcert: Option<String>,
}

/// Reads a `postgresql://` URL, its `sslmode` and `sslrootcert` apart.
///
/// # Errors
/// It is not a URL the client reads, or `sslmode` is not libpq's.
pub fn parse_url(url: &str) -> Result<Parsed, String> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let (mut sslmode, mut sslrootcert, mut rest) = (None, None, Vec::new());
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = || {
            percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map(|v| v.into_owned())
                .map_err(|_| format!("{key} is not UTF-8"))
        };
        match key {
            "sslmode" => sslmode = Some(SslMode::parse(&decoded()?)?),
            "sslrootcert" => sslrootcert = Some(decoded()?),
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    let config = url
        .parse::<tokio_postgres::Config>()
        .map_err(|e| e.to_string())?;
    Ok(Parsed {
        config,
        sslmode,
        sslrootcert,
    })
}

/// Applies the TLS settings to `config`; returns the connector.
///
/// # Errors
/// The `sslrootcert` file cannot be read, or TLS cannot be set up.
pub fn apply(
    config: &mut tokio_postgres::Config,
    mode: SslMode,
    rootcert: Option<&str>,
) -> io::Result<MakeTls> {
    let unix_only = !config.get_hosts().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|h| matches!(h, Host::Unix(_)));
    let mode = if unix_only { SslMode::Disable } else { mode };
    config.ssl_mode(match mode {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        _ => PgSslMode::Require,
    });
    if mode == SslMode::Disable {
        return Ok(MakeTls { config: None });
    }
    let trust = || -> io::Result<RootCertStore> {
        match rootcert {
            None | Some("system") => Ok(roots(&[]).map_err(io::Error::other)?.0),
            Some(path) => {
                let mut store = RootCertStore::empty();
                for cert in read_certificates(std::path::Path::new(path)).map_err(|e| {
                    io::Error::other(e.to_string().replace("TlsCaFile", "sslrootcert"))
                })? {
                    store.add(cert).map_err(io::Error::other)?;
                }
                Ok(store)
            }
        }
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, rootcert) {
        (SslMode::Prefer, _) | (SslMode::Require, None) => any_certificate(),
        (SslMode::Require | SslMode::VerifyCa, _) => chain_only(webpki(trust()?)?),
        _ => webpki(trust()?)?,
    };
    let mut tls = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(MakeTls {
        config: Some(Arc::new(tls)),
    })
}

fn webpki(roots: RootCertStore) -> io::Result<Arc<WebPkiServerVerifier>> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(io::Error::other)
}

/// `prefer`, `require` without `sslrootcert`: any certificate (the handshake's
/// signatures still checked).
fn any_certificate() -> Arc<CertCheck> {
    CertCheck::new(|_, _, _, _, _| Ok(ServerCertVerified::assertion()))
}

/// `verify-ca`: the chain verified, the name not.
fn chain_only(webpki: Arc<WebPkiServerVerifier>) -> Arc<CertCheck> {
    CertCheck::new(move |end_entity, intermediates, server_name, ocsp, now| {
        match webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    })
}

/// The client library's TLS connector over rustls.
#[derive(Clone)]
pub struct MakeTls {
    /// `None`: `sslmode=disable` (the client never asks for TLS then).
    config: Option<Arc<ClientConfig>>,
}

impl MakeTls {
    /// No TLS (for tests' own connections).
    pub fn none() -> Self {
        Self { config: None }
    }
}

impl MakeTlsConnect<Socket> for MakeTls {
    type Stream = PgTlsStream;
    type TlsConnect = Connector;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> io::Result<Connector> {
        Ok(Connector {
            config: self.config.clone(),
            domain: domain.to_owned(),
        })
    }
}

/// One connection's TLS handshake.
pub struct Connector {
    config: Option<Arc<ClientConfig>>,
    domain: String,
}

impl TlsConnect<Socket> for Connector {
    type Stream = PgTlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PgTlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let config = self
                .config
                .ok_or_else(|| io::Error::other("TLS is off (sslmode=disable)"))?;
            let name = ServerName::try_from(self.domain.clone()).map_err(|_| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{:?} is not a host name TLS can check", self.domain),
                )
            })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await?;
            Ok(PgTlsStream(Box::new(tls)))
        })
    }
}

/// A TLS connection to the database.
pub struct PgTlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl TlsStream for PgTlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

impl AsyncRead for PgTlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for PgTlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}
