//! TLS to a throwaway PostgreSQL with `ssl = on` and `hostssl` only, its certificate
//! made by a CA of the test's: `verify-full` connects and creates the schema; a
//! certificate for another name, or from another CA, is refused clearly (an error the
//! daemon's start retries, not a fatal one); `sslmode=disable` is refused by the
//! server.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test")]

use std::io;
use std::time::Duration;

use super::testdb::TestServer;
use super::{Db, DbSettings, schema};

struct Ca {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca {
        pem: cert.pem(),
        issuer: rcgen::Issuer::new(params, key),
    }
}

/// A server certificate (PEM) and its key (PEM) for `names`.
fn leaf(ca: &Ca, names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())
            .unwrap();
    let cert = params.signed_by(&key, &ca.issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn settings(url: String) -> DbSettings {
    DbSettings {
        url,
        password_file: None,
        lease: Duration::from_secs(60),
        instance: "tls".to_owned(),
        pool: 1,
    }
}

/// Connects and makes the schema current.
async fn migrate(url: String) -> io::Result<()> {
    let db = Db::new(&settings(url))?;
    let client = db.client().await?;
    schema::migrate(&client).await.map(|_| ())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_is_verified_by_default_modes() {
    let trusted = ca("cssmtp test CA");
    let other = ca("another CA");
    let (cert, key) = leaf(&trusted, &["db.test"]);
    let server = match TestServer::start_tls(&cert, &key) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("SKIPPED: no PostgreSQL for the test: {e}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("root.crt");
    std::fs::write(&ca_file, &trusted.pem).unwrap();
    let other_file = dir.path().join("other.crt");
    std::fs::write(&other_file, &other.pem).unwrap();
    let port = server.port();
    let url = |host: &str, query: &str| {
        format!("postgresql://postgres@{host}:{port}/postgres?hostaddr=127.0.0.1&{query}")
    };
    let root = ca_file.display().to_string();

    // verify-full: the CA of sslrootcert, the name of the URL.
    migrate(url(
        "db.test",
        &format!("sslmode=verify-full&sslrootcert={root}"),
    ))
    .await
    .expect("verify-full with the right CA and name connects and creates the schema");

    // Another name: refused, saying why; not the error the daemon's start stops on.
    let e = migrate(url(
        "other.test",
        &format!("sslmode=verify-full&sslrootcert={root}"),
    ))
    .await
    .expect_err("a certificate for another name is refused");
    let text = e.to_string();
    assert!(
        text.contains("TLS handshake") && text.contains("not valid for name"),
        "{text}"
    );
    assert_ne!(e.kind(), io::ErrorKind::Unsupported, "retried at start");

    // verify-ca checks the chain only; another CA is refused.
    migrate(url(
        "other.test",
        &format!("sslmode=verify-ca&sslrootcert={root}"),
    ))
    .await
    .expect("verify-ca does not check the name");
    let e = migrate(url(
        "db.test",
        &format!("sslmode=verify-full&sslrootcert={}", other_file.display()),
    ))
    .await
    .expect_err("a certificate of an untrusted CA is refused");
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");
    let e = migrate(url(
        "db.test",
        &format!("sslmode=require&sslrootcert={}", other_file.display()),
    ))
    .await
    .expect_err("require with sslrootcert verifies the chain (as libpq)");
    assert!(e.to_string().contains("invalid peer certificate"), "{e}");

    // require without sslrootcert, and the default (prefer): TLS, not verified.
    migrate(url("other.test", "sslmode=require"))
        .await
        .expect("require without sslrootcert does not verify");
    migrate(url("other.test", "application_name=x"))
        .await
        .expect("prefer by default: TLS when offered");

    // No TLS against hostssl only: the server refuses.
    let e = migrate(url("db.test", "sslmode=disable"))
        .await
        .expect_err("sslmode=disable is refused by a hostssl-only server");
    let text = e.to_string();
    assert!(
        text.contains("no pg_hba.conf entry") && text.contains("no encryption"),
        "{text}"
    );

    // A missing sslrootcert file is named.
    let e = Db::new(&settings(url(
        "db.test",
        "sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
    )))
    .err()
    .expect("a missing CA file is an error");
    assert!(e.to_string().contains("/nonexistent/root.crt"), "{e}");
    drop(server);
}

#[test]
fn sslmode_and_sslrootcert_are_read_from_the_url() {
    let p = super::tls::parse_url(
        "postgresql://u@db.example:5433/spool?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&connect_timeout=3",
    )
    .unwrap();
    assert_eq!(p.sslmode, Some(super::tls::SslMode::VerifyFull));
    assert_eq!(p.sslrootcert.as_deref(), Some("/etc/ca.pem"));
    assert_eq!(
        p.config.get_connect_timeout(),
        Some(&Duration::from_secs(3))
    );
    let e = super::tls::parse_url("postgresql://u@db/spool?sslmode=verify").unwrap_err();
    assert!(e.contains("verify-full"), "{e}");
}
