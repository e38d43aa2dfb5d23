//! What a server offers in its EHLO reply.
//!
//! Keyword parsing is `smtp-proto`'s `EhloResponse`; this module keeps the handful of
//! facts delivery decisions depend on.

use smtp_proto::{
    EXT_8BIT_MIME, EXT_AUTH, EXT_CHUNKING, EXT_DSN, EXT_ENHANCED_STATUS_CODES, EXT_PIPELINING,
    EXT_SIZE, EXT_SMTP_UTF8, EXT_START_TLS, EhloResponse,
};

/// Capabilities of one SMTP session, learned from EHLO (or none after HELO).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The server answered EHLO (ESMTP); false after a HELO fallback.
    pub esmtp: bool,
    pub pipelining: bool,
    pub starttls: bool,
    /// `SIZE` was advertised.
    pub size_advertised: bool,
    /// The SIZE limit in bytes; 0 means advertised without a limit (RFC 1870 §4).
    pub size_limit: u64,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub dsn: bool,
    pub chunking: bool,
    pub enhanced_status_codes: bool,
    /// The SASL mechanisms of its `AUTH` line (none when absent).
    pub auth: crate::sasl::Offered,
}

impl Capabilities {
    /// Capabilities of a server that only spoke HELO.
    pub fn plain_smtp() -> Self {
        Self::default()
    }

    /// Parses the raw bytes of a complete 250 EHLO reply.
    ///
    /// Unknown keywords are ignored; a reply that is not a well-formed 250 reply gives
    /// the capabilities of a bare ESMTP server (nothing optional offered).
    pub fn parse(raw: &[u8]) -> Self {
        let mut caps = Self {
            esmtp: true,
            ..Self::default()
        };
        let Ok(response) = EhloResponse::parse(&mut raw.iter()) else {
            return caps;
        };
        let has = |flag: u32| response.capabilities & flag != 0;
        caps.pipelining = has(EXT_PIPELINING);
        caps.starttls = has(EXT_START_TLS);
        caps.size_advertised = has(EXT_SIZE);
        caps.size_limit = if caps.size_advertised {
            u64::try_from(response.size).unwrap_or(u64::MAX)
        } else {
            0
        };
        caps.eight_bit_mime = has(EXT_8BIT_MIME);
        caps.smtputf8 = has(EXT_SMTP_UTF8);
        caps.dsn = has(EXT_DSN);
        caps.chunking = has(EXT_CHUNKING);
        caps.enhanced_status_codes = has(EXT_ENHANCED_STATUS_CODES);
        if has(EXT_AUTH) {
            caps.auth = crate::sasl::Offered(response.auth_mechanisms);
        }
        caps
    }

    /// True when a message of `size` bytes may be offered (RFC 1870: never more than
    /// the advertised SIZE; 0 is "no fixed limit").
    pub fn accepts_size(&self, size: u64) -> bool {
        !self.size_advertised || self.size_limit == 0 || size <= self.size_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typical_ehlo() {
        let caps = Capabilities::parse(
            b"250-mx.example Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n250-STARTTLS\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n",
        );
        assert!(caps.esmtp && caps.pipelining && caps.starttls && caps.eight_bit_mime);
        assert!(caps.enhanced_status_codes);
        assert_eq!(caps.size_limit, 10_240_000);
        assert!(caps.accepts_size(10_240_000));
        assert!(!caps.accepts_size(10_240_001));
    }

    #[test]
    fn smtp_sink_bare_last_line() {
        let caps = Capabilities::parse(
            b"250-host\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250-DSN\r\n250 \r\n",
        );
        assert!(caps.pipelining);
        assert!(!caps.starttls);
        assert!(caps.accepts_size(u64::MAX));
        assert_eq!(caps.auth.known(), ["PLAIN", "LOGIN"]);
    }

    #[test]
    fn size_without_limit() {
        let caps = Capabilities::parse(b"250-h\r\n250 SIZE\r\n");
        assert!(caps.size_advertised);
        assert!(caps.accepts_size(u64::MAX));
    }
}
