//! SMTP AUTH with a target (cssmtp's `AuthUser`, `AuthSecretFile`,
//! `AuthSecretCommand`, `AuthMechanism`, `InsecureAuth`): choosing the mechanism,
//! fetching the secret, and the checks that keep it safe.
//!
//! * The secret is read at each AUTH (one per connection; connections are reused), so a
//!   rotated password or a refreshed OAuth 2.0 token is used without a restart: the
//!   first line of `AuthSecretFile` (a regular file owned by cssmtp's user or root,
//!   with no permission for group or others), or of the standard output of
//!   `AuthSecretCommand` (run without a shell, with no input, within `Timeout AnyCmd`).
//! * AUTH goes only over TLS, unless `InsecureAuth Yes`.
//! * Whatever fails (AUTH not offered, the configured mechanism not offered, no TLS, no
//!   secret, a `535`) is the target's failure: it is counted, logged and the target is
//!   out of service for `ConnectRetry`; the mail goes to another target or waits. A
//!   mail is never sent unauthenticated to a target with AUTH configured, and never
//!   charged for it.
//! * The secret is never logged, shown or put in a failure.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Stdio;

use cssmtp_wire::sasl::{Exchange, Mechanism, Offered};
use tokio::io::AsyncReadExt;
use tokio::time::{Duration, timeout};

use super::outcome::{Failure, Problem, Stage};
use super::session::{Session, SessionParams};
use crate::config::{AuthSpec, Config, SecretSource, Targets};

/// The most read of a secret file or a command's output.
const MAX_SECRET: u64 = 64 * 1024;

/// A password or token; never shown.
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why a secret file may not be used (None: it may).
pub(crate) fn unsafe_secret_file(meta: &std::fs::Metadata) -> Option<String> {
    let euid = nix::unistd::geteuid().as_raw();
    if !meta.file_type().is_file() {
        return Some("it is not a regular file".into());
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Some(format!(
            "it is owned by uid {}; it must be owned by cssmtp's user (uid {euid}) or root",
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Some(format!(
            "its mode is {:04o}; group and others must have no permission (chmod 600)",
            meta.mode() & 0o7777
        ));
    }
    None
}

/// Checks every `AuthSecretFile` of `config` (at start and by `cssmtp check`): one line
/// per problem (CSM3310E), naming the file and what is expected, never its content.
pub fn check_secret_files(config: &Config) -> Vec<String> {
    let specs: Vec<_> = match &config.targets {
        Targets::Hosts(hosts) => hosts.iter().collect(),
        Targets::Mx(mx) => vec![mx],
    };
    let mut problems = Vec::new();
    for auth in specs.iter().filter_map(|s| s.auth.as_ref()) {
        if let SecretSource::File(path) = &auth.secret {
            let why = match std::fs::metadata(path) {
                Ok(meta) => unsafe_secret_file(&meta),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = why {
                let problem = format!(
                    "CSM3310E AuthSecretFile {} (line {}) cannot be used: {why}",
                    crate::escape::data(&path.display().to_string()),
                    auth.line
                );
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
    }
    problems
}

/// The first line of `bytes`, as text.
fn first_line(bytes: &[u8], what: &str) -> Result<Secret, String> {
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| format!("{what} is not UTF-8 text"))?;
    if text.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(Secret(text.to_owned()))
}

fn read_secret_file(path: &Path) -> Result<Secret, String> {
    let shown = crate::escape::data(&path.display().to_string()).to_string();
    let meta = std::fs::metadata(path).map_err(|e| format!("AuthSecretFile {shown}: {e}"))?;
    if let Some(why) = unsafe_secret_file(&meta) {
        return Err(format!("AuthSecretFile {shown} cannot be used: {why}"));
    }
    let bytes = crate::config::files::read_regular(path, MAX_SECRET)
        .map_err(|e| format!("AuthSecretFile {shown}: {e}"))?;
    first_line(&bytes, &format!("the first line of AuthSecretFile {shown}"))
}

async fn run_secret_command(argv: &[String], wait: Duration) -> Result<Secret, String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("AuthSecretCommand is empty".into());
    };
    let shown = crate::escape::data(program).to_string();
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("AuthSecretCommand {shown} cannot be started: {e}"))?;
    let run = async {
        let mut out = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            stdout
                .take(MAX_SECRET)
                .read_to_end(&mut out)
                .await
                .map_err(|e| e.to_string())?;
        }
        let status = child.wait().await.map_err(|e| e.to_string())?;
        Ok::<_, String>((out, status))
    };
    let (out, status) = match timeout(wait, run).await {
        Err(_) => {
            return Err(format!(
                "AuthSecretCommand {shown} gave no secret within {} seconds",
                wait.as_secs()
            ));
        }
        Ok(Err(e)) => return Err(format!("AuthSecretCommand {shown}: {e}")),
        Ok(Ok(done)) => done,
    };
    if !status.success() {
        return Err(format!("AuthSecretCommand {shown} failed ({status})"));
    }
    first_line(&out, &format!("the output of AuthSecretCommand {shown}"))
}

/// The password or token of `auth`, read now.
///
/// # Errors
/// Why there is none (never the secret).
pub async fn fetch_secret(auth: &AuthSpec, wait: Duration) -> Result<Secret, String> {
    match &auth.secret {
        SecretSource::File(path) => read_secret_file(path),
        SecretSource::Command(argv) => run_secret_command(argv, wait).await,
        SecretSource::Missing => Err("no AuthSecretFile or AuthSecretCommand".into()),
    }
}

/// The mechanism to use with a server offering `offered`.
///
/// # Errors
/// Why none can be used.
pub fn choose(auth: &AuthSpec, offered: Offered) -> Result<Mechanism, String> {
    if !offered.any() {
        return Err("the server does not offer AUTH".into());
    }
    let offers = || match offered.known() {
        known if known.is_empty() => "none cssmtp speaks".to_owned(),
        known => known.join(" "),
    };
    match auth.mechanism {
        Some(m) if offered.offers(m) => Ok(m),
        Some(m) => Err(format!(
            "the server does not offer AUTH {m} (it offers: {})",
            offers()
        )),
        // The strongest password mechanism offered (XOAUTH2 takes a token: only when
        // named).
        None => [Mechanism::Plain, Mechanism::Login]
            .into_iter()
            .find(|m| offered.offers(*m))
            .ok_or_else(|| {
                format!(
                    "the server offers no password mechanism cssmtp speaks (it offers: {}); name one with AuthMechanism",
                    offers()
                )
            }),
    }
}

/// Logs `session` in as `auth` says. Returns the mechanism used.
///
/// # Errors
/// The target's failure at [`Stage::Auth`]; its problem is never a server's reply as
/// such ([`Problem::Auth`] with the reply's words), so that no rule can charge a
/// recipient with it.
pub async fn log_in(
    session: &mut Session,
    auth: &AuthSpec,
    params: &SessionParams<'_>,
    peer: std::net::SocketAddr,
) -> Result<Mechanism, Failure> {
    let fail = |why: String| Failure::new(Stage::Auth, Some(peer), Problem::Auth(why));
    if auth.needs_tls() && !session.is_tls() {
        return Err(fail(
            "AUTH is configured and the connection is not encrypted (the server offers no STARTTLS); credentials never go in clear unless InsecureAuth Yes".into(),
        ));
    }
    let mechanism = choose(auth, session.caps.auth).map_err(fail)?;
    let secret = fetch_secret(auth, params.timeouts.any_cmd)
        .await
        .map_err(fail)?;
    let exchange = Exchange::new(mechanism, &auth.user, &secret.0)
        .map_err(|e| fail(format!("AuthUser or secret cannot be sent: {e}")))?;
    drop(secret);
    match session.authenticate(exchange, params).await {
        Ok(_) => Ok(mechanism),
        Err(f) => Err(match f.problem {
            Problem::Reply(reply) => fail(format!("AUTH {mechanism} refused: {reply}")),
            _ => f,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn spec(mechanism: Option<Mechanism>) -> AuthSpec {
        AuthSpec {
            user: "relay".into(),
            secret: SecretSource::Missing,
            mechanism,
            insecure: false,
            line: 1,
        }
    }

    #[test]
    fn the_strongest_password_mechanism_or_the_one_named() {
        use smtp_proto::{AUTH_CRAM_MD5, AUTH_LOGIN, AUTH_PLAIN, AUTH_XOAUTH2};
        let all = Offered(AUTH_LOGIN | AUTH_PLAIN | AUTH_XOAUTH2);
        assert_eq!(choose(&spec(None), all), Ok(Mechanism::Plain));
        assert_eq!(
            choose(&spec(None), Offered(AUTH_LOGIN | AUTH_XOAUTH2)),
            Ok(Mechanism::Login)
        );
        assert_eq!(
            choose(&spec(Some(Mechanism::XOAuth2)), all),
            Ok(Mechanism::XOAuth2)
        );
        let e = choose(&spec(Some(Mechanism::XOAuth2)), Offered(AUTH_PLAIN)).unwrap_err();
        assert!(
            e.contains("does not offer AUTH XOAUTH2 (it offers: PLAIN)"),
            "{e}"
        );
        assert!(choose(&spec(None), Offered(AUTH_XOAUTH2)).is_err());
        assert!(choose(&spec(None), Offered(AUTH_CRAM_MD5)).is_err());
        assert!(choose(&spec(None), Offered(0)).is_err());
    }

    #[test]
    fn secret_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cret\nsecond line\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret_file(&path).unwrap_err();
        assert!(e.contains("mode is 0644") && !e.contains("s3cret"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_secret_file(&path).unwrap().0, "s3cret");
        assert!(read_secret_file(dir.path()).is_err());
    }

    #[tokio::test]
    async fn a_command_gives_the_first_line_of_its_output() {
        let wait = Duration::from_secs(30);
        let argv = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let s = run_secret_command(&argv(&["/bin/echo", "tok-1"]), wait)
            .await
            .unwrap();
        assert_eq!(s.0, "tok-1");
        let e = run_secret_command(&argv(&["/bin/false"]), wait)
            .await
            .unwrap_err();
        assert!(e.contains("failed"), "{e}");
        let e = run_secret_command(&argv(&["/nonexistent/helper"]), wait)
            .await
            .unwrap_err();
        assert!(e.contains("cannot be started"), "{e}");
        let e = run_secret_command(&argv(&["/bin/true"]), wait)
            .await
            .unwrap_err();
        assert!(e.contains("empty"), "{e}");
    }
}
