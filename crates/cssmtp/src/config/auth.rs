//! SMTP AUTH of a `TargetServer` (cssmtp's; CSSMTP has none): its parameters, read into
//! [`AuthSpec`]. The secret itself is never in the configuration: a file readable only
//! by cssmtp's user (`AuthSecretFile`), or the output of a command (`AuthSecretCommand`,
//! an OAuth 2.0 token helper), read at each AUTH (see `delivery::auth`).

use std::path::PathBuf;

use cssmtp_wire::sasl::Mechanism;

use super::TargetSpec;
use super::draft::{Diags, TargetDraft};
use super::syntax::Word;

/// How cssmtp logs in to a target server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSpec {
    /// `AuthUser`.
    pub user: String,
    /// Where the password or token comes from.
    pub secret: SecretSource,
    /// `AuthMechanism`; None (`Auto`): the strongest password mechanism the server
    /// offers (PLAIN, then LOGIN).
    pub mechanism: Option<Mechanism>,
    /// `InsecureAuth Yes`: AUTH may go over a connection without TLS.
    pub insecure: bool,
    /// Line of the block, for messages.
    pub line: u32,
}

/// Where a secret comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Not given (an error once the block is read).
    Missing,
    /// `AuthSecretFile`: its first line.
    File(PathBuf),
    /// `AuthSecretCommand`: the first line of its standard output; the program (an
    /// absolute path, run without a shell) and its arguments.
    Command(Vec<String>),
}

impl AuthSpec {
    /// Whether AUTH needs the session to be over TLS first.
    pub fn needs_tls(&self) -> bool {
        !self.insecure
    }
}

fn auth(t: &mut TargetDraft) -> &mut AuthSpec {
    t.spec.auth.get_or_insert(AuthSpec {
        user: String::new(),
        secret: SecretSource::Missing,
        mechanism: None,
        insecure: false,
        line: 0,
    })
}

pub(super) fn user(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    if w.text.is_empty() || w.text.chars().any(char::is_control) {
        diags.error(w.line, "AuthUser must be a name without control characters");
        return;
    }
    let a = auth(t);
    a.user.clone_from(&w.text);
    a.line = w.line;
}

pub(super) fn secret_file(t: &mut TargetDraft, path: PathBuf) {
    auth(t).secret = SecretSource::File(path);
}

pub(super) fn secret_command(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    let argv: Vec<String> = w.text.split_whitespace().map(str::to_owned).collect();
    match argv.first() {
        Some(program) if program.starts_with('/') => auth(t).secret = SecretSource::Command(argv),
        _ => diags.error(
            w.line,
            format!(
                "AuthSecretCommand {:?} must start with the absolute path of a program (it is run without a shell)",
                w.text
            ),
        ),
    }
}

pub(super) fn mechanism(diags: &mut Diags, t: &mut TargetDraft, w: &Word) {
    if w.text.eq_ignore_ascii_case("Auto") {
        auth(t).mechanism = None;
        return;
    }
    match Mechanism::from_name(&w.text) {
        Some(m) => auth(t).mechanism = Some(m),
        None => diags.error(
            w.line,
            format!(
                "AuthMechanism {:?} is not one of Auto, PLAIN, LOGIN, XOAUTH2",
                w.text
            ),
        ),
    }
}

pub(super) fn insecure(t: &mut TargetDraft, yes: bool) {
    if yes {
        auth(t).insecure = true;
    } else if let Some(a) = t.spec.auth.as_mut() {
        a.insecure = false;
    }
}

/// The rules over a block's AUTH parameters (at the block's line).
pub(super) fn check(diags: &mut Diags, t: &mut TargetDraft, line: u32) {
    let Some(a) = t.spec.auth.as_mut() else {
        return;
    };
    if a.line == 0 {
        a.line = line;
    }
    if a.user.is_empty() && a.secret == SecretSource::Missing && a.mechanism.is_none() {
        diags.warning(line, "InsecureAuth without AuthUser is ignored");
        t.spec.auth = None;
        return;
    }
    if a.user.is_empty() {
        diags.error(line, "TargetServer with AUTH parameters needs AuthUser");
    }
    if a.secret == SecretSource::Missing {
        diags.error(
            line,
            "TargetServer with AuthUser needs AuthSecretFile or AuthSecretCommand (the secret is never written in the configuration)",
        );
    }
}

/// DISPLAY CONFIG forms.
pub(super) fn show_user(t: &TargetSpec) -> Option<String> {
    t.auth.as_ref().map(|a| a.user.clone())
}

pub(super) fn show_file(t: &TargetSpec) -> Option<String> {
    match t.auth.as_ref().map(|a| &a.secret) {
        Some(SecretSource::File(p)) => Some(p.display().to_string()),
        _ => None,
    }
}

pub(super) fn show_command(t: &TargetSpec) -> Option<String> {
    match t.auth.as_ref().map(|a| &a.secret) {
        Some(SecretSource::Command(argv)) => Some(format!("\"{}\"", argv.join(" "))),
        _ => None,
    }
}

pub(super) fn show_mechanism(t: &TargetSpec) -> Option<String> {
    t.auth.as_ref().map(|a| {
        a.mechanism
            .map_or_else(|| "Auto".to_owned(), |m| m.name().to_owned())
    })
}

pub(super) fn show_insecure(t: &TargetSpec) -> Option<String> {
    t.auth
        .as_ref()
        .filter(|a| a.insecure)
        .map(|_| "Yes".to_owned())
}
