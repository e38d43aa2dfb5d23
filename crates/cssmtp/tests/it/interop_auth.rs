//! SMTP AUTH through the real binary against aiosmtpd (Debian's python3-aiosmtpd, its
//! authenticator; XOAUTH2 as Google and Microsoft speak it), over STARTTLS with a CA
//! made by the test: PLAIN, LOGIN and XOAUTH2 (the token from a command), one AUTH per
//! connection, and every refusal a target failure that sends the mail to another target,
//! never unauthenticated, never returned, the secret never logged.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::interop::Aiosmtpd;
use crate::support::{Env, TestPki, cssmtp, mail, text_with_ids};

const PASSWORD: &str = "pw-S3cret!";
const TOKEN: &str = "tok-Abc123xyz";

/// An aiosmtpd in `dir` (its own), offering STARTTLS with a certificate for 127.0.0.1
/// signed by `pki` unless `tls` is false.
async fn server(dir: &Path, pki: &TestPki, tls: bool, args: &[&str]) -> Aiosmtpd {
    std::fs::create_dir_all(dir).unwrap();
    let mut all: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    if tls {
        let (cert, key) = pki.server_pem(&["127.0.0.1"]);
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        for (option, file) in [("--tls-cert", "cert.pem"), ("--tls-key", "key.pem")] {
            all.push(option.into());
            all.push(dir.join(file).display().to_string());
        }
    }
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    Aiosmtpd::start(dir, &all).await
}

/// A target block for `port` with `auth` parameters.
fn target(port: u16, auth: &str) -> String {
    format!("TargetServer\n{{\n  TargetIp 127.0.0.1\n  ConnectPort {port}\n{auth}\n}}\n")
}

/// Writes the password file (mode `mode`) and the token helper into the scratch
/// directory.
fn secrets(env: &Env, mode: u32) -> (PathBuf, PathBuf) {
    let file = env.dir.path().join("relay.secret");
    std::fs::write(&file, format!("{PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    let helper = env.dir.path().join("token-helper");
    std::fs::write(&helper, format!("#!/bin/sh\necho {TOKEN}\n")).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o700)).unwrap();
    (file, helper)
}

fn submit_mails(env: &Env, job: &str, n: usize) {
    let mut text = String::from("HELO zos.example\n");
    for m in 0..n {
        text.push_str(&mail(
            "batch@zos.example",
            &[&format!("{job}{m}@example.com")],
            &text_with_ids(&format!("{job} {m}"), "authenticated"),
        ));
    }
    env.submit(job, &text);
}

/// `cssmtp run --drain -vv`: its exit status and log (None: it did not end in time and
/// was killed).
async fn drain(env: &Env) -> (Option<i32>, String) {
    let log_path = env.dir.path().join("run.log");
    let mut child = cssmtp()
        .args(["run", "--drain", "-vv", "-c"])
        .arg(&env.config_path)
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let code = match tokio::time::timeout(Duration::from_secs(60), child.wait()).await {
        Ok(status) => status.unwrap().code(),
        Err(_) => {
            let _ = child.kill().await;
            None
        }
    };
    (code, std::fs::read_to_string(&log_path).unwrap_or_default())
}

/// Neither the secret nor any base64 form of it is in `log`.
fn no_secret_in(log: &str) {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for secret in [PASSWORD, TOKEN] {
        assert!(!log.contains(secret), "secret in the log:\n{log}");
        assert!(!log.contains(&b64(secret)), "secret in the log:\n{log}");
    }
    assert!(!log.contains(&b64(&format!("\0relay\0{PASSWORD}"))));
    assert!(!log.contains(&b64(&format!("user=relay\x01auth=Bearer {TOKEN}\x01\x01"))));
}

/// nodemailer's smtp-server (`.ci/install-peers smtp-server`), on loopback, requiring
/// AUTH over STARTTLS; stopped when dropped.
struct NodeSmtpServer {
    _child: tokio::process::Child,
    port: u16,
    record: PathBuf,
}

impl NodeSmtpServer {
    async fn start(dir: &Path, pki: &TestPki, args: &[&str]) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let installed = std::process::Command::new(root.join("../../.ci/install-peers"))
            .arg("smtp-server")
            .output()
            .unwrap();
        assert!(
            installed.status.success(),
            ".ci/install-peers smtp-server failed"
        );
        let modules = String::from_utf8(installed.stdout).unwrap();
        let modules = modules.lines().last().unwrap().to_owned();
        std::fs::create_dir_all(dir).unwrap();
        let (cert, key) = pki.server_pem(&["127.0.0.1"]);
        std::fs::write(dir.join("cert.pem"), cert).unwrap();
        std::fs::write(dir.join("key.pem"), key).unwrap();
        let record = dir.join("smtp-server.jsonl");
        let mut command = tokio::process::Command::new("/usr/bin/node");
        command
            .arg(root.join("tests/peers/smtp_server.js"))
            .args(["--modules", &modules, "--record"])
            .arg(&record)
            .arg("--tls-cert")
            .arg(dir.join("cert.pem"))
            .arg("--tls-key")
            .arg(dir.join("key.pem"))
            .args(args);
        let (child, port) = crate::interop::start_peer(command, "smtp-server").await;
        Self {
            _child: child,
            port,
            record,
        }
    }

    fn received(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// PLAIN and LOGIN with the password from a private file, XOAUTH2 with the token from a
/// command, against the server on `port` (what it received: `received`): each over TLS,
/// three mails on one connection logged in once, the mechanism in the CONNECT
/// accounting record, the secret nowhere in the log.
async fn three_mechanisms(pki: &TestPki, port: u16, received: impl Fn() -> Vec<serde_json::Value>) {
    let mut seen = 0;
    for (mechanism, source) in [
        ("PLAIN", "AuthSecretFile relay.secret"),
        ("LOGIN", "AuthSecretFile relay.secret"),
        ("XOAUTH2", "AuthSecretCommand token-helper"),
    ] {
        let env = Env::with_ca(pki, "MaxConnections 1\nSMF119 { Connect }\n");
        let (_, helper) = secrets(&env, 0o600);
        let source = source.replace("token-helper", &helper.display().to_string());
        let body = target(
            port,
            &format!("  AuthUser relay\n  {source}\n  AuthMechanism {mechanism}"),
        );
        std::fs::write(
            &env.config_path,
            format!(
                "{}{body}",
                std::fs::read_to_string(&env.config_path).unwrap()
            ),
        )
        .unwrap();
        submit_mails(&env, &format!("AUTH{mechanism}"), 3);
        let (code, log) = drain(&env).await;
        assert_eq!(code, Some(0), "{mechanism}:\n{log}");
        let all = received();
        let new = all.get(seen..).unwrap();
        seen = all.len();
        assert_eq!(new.len(), 3, "{mechanism}: every mail delivered\n{log}");
        for m in new {
            assert_eq!(m["login"], "relay", "{mechanism}: {m}");
            assert_eq!(m["tls"], true, "{mechanism}: {m}");
            // One AUTH on the connection that carried all three mails.
            assert_eq!(m["auths"], 1, "{mechanism}: {m}");
        }
        assert!(
            log.contains(&format!("(AUTH {mechanism})")),
            "{mechanism}: CSM3301I\n{log}"
        );
        no_secret_in(&log);
        let accounting = std::fs::read_to_string(env.config().accounting_path()).unwrap();
        let connect: Vec<serde_json::Value> = accounting
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|r: &serde_json::Value| r["type"] == "connect")
            .collect();
        assert_eq!(connect.len(), 1, "one connection: {accounting}");
        assert_eq!(connect[0]["auth"], mechanism, "{accounting}");
    }
}

/// The three mechanisms against aiosmtpd (its authenticator; XOAUTH2 answered as Google
/// and Microsoft do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_login_and_xoauth2_against_aiosmtpd() {
    let scratch = tempfile::tempdir().unwrap();
    let pki = TestPki::new("auth test CA");
    let srv = server(
        &scratch.path().join("srv"),
        &pki,
        true,
        &["--auth", &format!("relay:{PASSWORD}"), "--token", TOKEN],
    )
    .await;
    three_mechanisms(&pki, srv.port, || srv.received()).await;
}

/// The three mechanisms against nodemailer's smtp-server (its own PLAIN, LOGIN and
/// XOAUTH2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_login_and_xoauth2_against_nodemailer_smtp_server() {
    let scratch = tempfile::tempdir().unwrap();
    let pki = TestPki::new("auth test CA");
    let srv = NodeSmtpServer::start(
        &scratch.path().join("node"),
        &pki,
        &["--auth", &format!("relay:{PASSWORD}"), "--token", TOKEN],
    )
    .await;
    three_mechanisms(&pki, srv.port, || srv.received()).await;
    // A wrong password: 535 from smtp-server, the target's failure, the mail kept (it
    // waits for the target; the daemon is stopped) and never returned.
    let env = Env::with_ca(
        &pki,
        &format!(
            "MaxConnections 1\n{}",
            target(
                srv.port,
                "  AuthUser relay\n  AuthSecretFile relay.secret\n  AuthMechanism LOGIN"
            )
        ),
    );
    let (file, _) = secrets(&env, 0o600);
    std::fs::write(&file, "wrong-password\n").unwrap();
    submit_mails(&env, "WRONG", 1);
    let before = srv.received().len();
    let log_path = env.dir.path().join("run.log");
    let mut child = cssmtp()
        .args(["run", "-c"])
        .arg(&env.config_path)
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    // Waiting on a real child process: bounded polling of its log.
    let mut log = String::new();
    for _ in 0..300 {
        log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if log.contains("CSM3300W") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    let log = format!(
        "{log}{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let warning = log
        .lines()
        .find(|l| l.contains("CSM3300W"))
        .unwrap_or_else(|| panic!("no CSM3300W\n{log}"));
    assert!(warning.contains("AUTH LOGIN refused: 535"), "{warning}");
    assert_eq!(srv.received().len(), before, "nothing sent unauthenticated");
    assert!(
        !log.contains("CSM2102W") && !log.contains("CSM2103I"),
        "the recipient is not charged: {log}"
    );
    assert_eq!(env.files_in("active").len(), 1, "the mail is kept: {log}");
    no_secret_in(&log);
}

/// Each way AUTH cannot be done with the first target: the mail goes to the second
/// (which logs it in), the first never gets it unauthenticated, nothing is returned,
/// the failure is logged (CSM3300W) with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_refusals_are_target_failures_never_unauthenticated_sends() {
    let scratch = tempfile::tempdir().unwrap();
    let pki = TestPki::new("auth test CA");
    let good = server(
        &scratch.path().join("good"),
        &pki,
        true,
        &["--auth", &format!("relay:{PASSWORD}")],
    )
    .await;
    let good_auth = "  AuthUser relay\n  AuthSecretFile relay.secret";
    // (name, first server's options, its TLS, its AUTH parameters, the reason logged)
    let cases: [(&str, &[&str], bool, &str, &str); 5] = [
        (
            "535",
            &["--auth", "relay:another-password"],
            true,
            good_auth,
            "AUTH PLAIN refused: 535 5.7.8",
        ),
        (
            "not offered",
            // Takes mail from anyone: an unauthenticated send would land here.
            &["--hide-auth"],
            true,
            good_auth,
            "the server does not offer AUTH",
        ),
        (
            "mechanism not offered",
            &["--auth", &format!("relay:{PASSWORD}")],
            true,
            "  AuthUser relay\n  AuthSecretCommand \"/bin/echo token\"\n  AuthMechanism XOAUTH2",
            "does not offer AUTH XOAUTH2 (it offers: PLAIN LOGIN)",
        ),
        (
            "no TLS",
            &["--auth", &format!("relay:{PASSWORD}"), "--auth-in-clear"],
            false,
            good_auth,
            "the connection is not encrypted",
        ),
        (
            "token command fails",
            &["--auth", &format!("relay:{PASSWORD}"), "--token", TOKEN],
            true,
            "  AuthUser relay\n  AuthSecretCommand /bin/false\n  AuthMechanism XOAUTH2",
            "AuthSecretCommand /bin/false failed",
        ),
    ];
    let mut seen = 0;
    for (i, (name, options, tls, auth, reason)) in cases.into_iter().enumerate() {
        let bad = server(&scratch.path().join(format!("bad{i}")), &pki, tls, options).await;
        let env = Env::with_ca(
            &pki,
            &format!(
                "MaxConnections 1\n{}{}",
                target(bad.port, auth),
                target(good.port, good_auth)
            ),
        );
        secrets(&env, 0o600);
        submit_mails(&env, &format!("REFUSED{i}"), 2);
        let (code, log) = drain(&env).await;
        assert_eq!(code, Some(0), "{name}:\n{log}");
        assert!(
            bad.received().is_empty(),
            "{name}: sent to the first target"
        );
        let received = good.received();
        let new = received.get(seen..).unwrap();
        seen = received.len();
        assert_eq!(
            new.len(),
            2,
            "{name}: delivered by the second target\n{log}"
        );
        assert!(
            new.iter()
                .all(|m| m["mail_from"] != "" && m["login"] == "relay"),
            "{name}: no notification, logged in: {new:?}"
        );
        let warning = log
            .lines()
            .find(|l| l.contains("CSM3300W"))
            .unwrap_or_else(|| panic!("{name}: no CSM3300W\n{log}"));
        assert!(warning.contains(reason), "{name}: {warning}");
        assert!(
            !log.contains("CSM2102W") && !log.contains("CSM2103I"),
            "{name}: nothing returned or charged a retry\n{log}"
        );
        no_secret_in(&log);
    }
}

/// `InsecureAuth Yes` lets AUTH go over a connection without TLS (a server on a
/// trusted link): delivered, logged in, in clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_auth_allows_auth_without_tls() {
    let scratch = tempfile::tempdir().unwrap();
    let pki = TestPki::new("auth test CA");
    let srv = server(
        &scratch.path().join("srv"),
        &pki,
        false,
        &["--auth", &format!("relay:{PASSWORD}"), "--auth-in-clear"],
    )
    .await;
    let env = Env::new(&target(
        srv.port,
        "  AuthUser relay\n  AuthSecretFile relay.secret\n  AuthMechanism LOGIN\n  InsecureAuth Yes",
    ));
    secrets(&env, 0o600);
    submit_mails(&env, "CLEAR", 1);
    let (code, log) = drain(&env).await;
    assert_eq!(code, Some(0), "{log}");
    let received = srv.received();
    assert_eq!(received.len(), 1, "{log}");
    assert_eq!(received[0]["login"], "relay");
    assert_eq!(received[0]["tls"], false);
    no_secret_in(&log);
}

/// A secret file that group or others may read is refused before anything is sent:
/// `cssmtp check` and `cssmtp run` exit 78 naming it (CSM3310E); never its content.
#[tokio::test]
async fn a_secret_file_others_can_read_is_refused() {
    let env = Env::new(&target(
        25,
        "  AuthUser relay\n  AuthSecretFile relay.secret",
    ));
    let (file, _) = secrets(&env, 0o640);
    for args in [&["check", "-c"][..], &["run", "--drain", "-c"][..]] {
        let out = cssmtp()
            .args(args)
            .arg(&env.config_path)
            .output()
            .await
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(78), "{args:?}: {text}");
        assert!(
            text.contains("CSM3310E") && text.contains(&file.display().to_string()),
            "{args:?}: {text}"
        );
        assert!(text.contains("mode is 0640"), "{text}");
        assert!(!text.contains(PASSWORD), "{text}");
    }
    // AuthUser without a secret is a configuration error: a secret is never written in
    // the configuration.
    std::fs::write(
        &env.config_path,
        "ExtWrtName TESTWTR\nSpoolDirectory spool\nRunDirectory run\nTargetServer { TargetIp 127.0.0.1  AuthUser relay }\n",
    )
    .unwrap();
    let out = cssmtp()
        .args(["check", "-c"])
        .arg(&env.config_path)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs AuthSecretFile or AuthSecretCommand")
    );
}

/// A client certificate (`TlsClientCert`, `TlsClientKey`: what AT-TLS gave CSSMTP)
/// accepted by a third-party server that requires one: aiosmtpd with Python's ssl
/// module set to CERT_REQUIRED and the client CA made by the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_accepted_by_aiosmtpd_requiring_one() {
    let pki = TestPki::new("cssmtp interop CA");
    let clients = TestPki::new("cssmtp client CA");
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("aiosmtpd");
    std::fs::create_dir_all(&dir).unwrap();
    let client_ca = clients.write_ca(&dir, "client-ca.pem");
    let peer = server(
        &dir,
        &pki,
        true,
        &["--client-ca", client_ca.to_str().unwrap()],
    )
    .await;
    let env = Env::with_ca(
        &pki,
        &target(
            peer.port,
            "  Secure Yes\n  TlsClientCert client.pem\n  TlsClientKey client.key",
        ),
    );
    let (cert, key) = clients.server_pem(&["cssmtp.test"]);
    std::fs::write(env.dir.path().join("client.pem"), cert).unwrap();
    let key_path = env.dir.path().join("client.key");
    std::fs::write(&key_path, key).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    submit_mails(&env, "CLIENTCERT", 1);
    let (code, log) = drain(&env).await;
    assert_eq!(code, Some(0), "{log}");
    let received = peer.received();
    assert_eq!(received.len(), 1, "{log}");
    assert_eq!(received[0]["tls"], true, "{}", received[0]);
    assert!(
        received[0]["client_cert"].is_string(),
        "the server saw the client certificate: {}",
        received[0]
    );
}
