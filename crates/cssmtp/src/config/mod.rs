//! The configuration file: CSSMTP statements plus the Linux-side ones cssmtp adds.
//!
//! Reading is in three pure steps: [`syntax`] (text → statements), [`validate`]
//! (statements → [`Config`] and every diagnostic, with file and line), and nothing else:
//! no file is opened and no name resolved here, so `cssmtp check` and a later REFRESH
//! run the very same code. Paths that are not absolute are taken relative to the
//! configuration file's directory.
//!
//! What cssmtp knows about each statement (its type and range, its default, whether
//! REFRESH can change it, how DISPLAY CONFIG shows it) is declared once, in the
//! statement table (`statements.rs`, with the block parameters in `blocks.rs` and
//! `targets.rs`; `table.rs` describes an entry). [`validate`], [`running`] (DISPLAY
//! CONFIG and the REFRESH merge) and a test of the README's table all walk it.

pub(crate) mod auth;
mod blocks;
pub(crate) mod dkim;
mod draft;
pub(crate) mod files;
pub mod manual;
pub(crate) mod running;
mod statements;
pub(crate) mod syntax;
mod table;
mod targets;
pub(crate) mod tls_policy;
mod types;
pub(crate) mod validate;

pub use auth::{AuthSpec, SecretSource};
pub use dkim::{Canon, Dkim, DkimAlgorithm, DkimKeySpec};
pub use tls_policy::TlsPolicy;
pub use types::*;

use std::fmt;
use std::path::{Path, PathBuf};

pub use validate::validate;

/// The default spool directory; the writer's spool is `<SpoolDirectory>/<ExtWrtName>`.
pub const DEFAULT_SPOOL_DIRECTORY: &str = "/var/spool/cssmtp";
/// The default directory for run-time files (the control socket, later the journal).
pub const DEFAULT_RUN_DIRECTORY: &str = "/run/cssmtp";
/// CSSMTP's default writer name is the job name; ours is the program's.
pub const DEFAULT_EXT_WRT_NAME: &str = "CSSMTP";

/// The configuration in force, replaced as a whole by REFRESH. Readers take the
/// current one ([`LiveConfig::current`]) where they use it: a spool task, for
/// instance, takes it when it starts on a file and keeps it for that file.
#[derive(Debug)]
pub struct LiveConfig(std::sync::RwLock<std::sync::Arc<Config>>);

impl LiveConfig {
    pub fn new(config: std::sync::Arc<Config>) -> Self {
        Self(std::sync::RwLock::new(config))
    }

    /// The configuration in force now.
    pub fn current(&self) -> std::sync::Arc<Config> {
        std::sync::Arc::clone(
            &self
                .0
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts `config` in force.
    pub fn replace(&self, config: std::sync::Arc<Config>) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = config;
    }
}

/// Severity of a diagnostic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One finding about a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub line: u32,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line == 0 {
            write!(f, "{}: {what}: {}", self.file.display(), self.message)
        } else {
            write!(
                f,
                "{}:{}: {what}: {}",
                self.file.display(),
                self.line,
                self.message
            )
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {} has {} error(s)", path.display(), errors(.diagnostics))]
    Invalid {
        path: PathBuf,
        diagnostics: Vec<Diagnostic>,
    },
}

fn errors(diagnostics: &[Diagnostic]) -> usize {
    diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count()
}

/// The control socket named by the configuration file at `path`, read leniently (only
/// `ExtWrtName` and `RunDirectory`, whatever else is wrong in the file): an operator can
/// still reach the daemon, and REFRESH it, while the file has errors.
///
/// # Errors
/// The file cannot be read.
pub fn control_socket_of(path: &Path) -> std::io::Result<PathBuf> {
    let text = files::read_config(path)?;
    let (statements, _) = syntax::parse(&text);
    let value = |name: &str| {
        statements
            .iter()
            .rev()
            .find(|s| s.keyword.text.eq_ignore_ascii_case(name))
            .and_then(|s| s.values.first())
            .map(|w| w.text.clone())
    };
    let writer = value("ExtWrtName")
        .unwrap_or_else(|| DEFAULT_EXT_WRT_NAME.into())
        .to_ascii_uppercase();
    let run = PathBuf::from(value("RunDirectory").unwrap_or_else(|| DEFAULT_RUN_DIRECTORY.into()));
    let base = path.parent().unwrap_or(Path::new("."));
    let run = if run.is_absolute() {
        run
    } else {
        base.join(run)
    };
    Ok(run.join(format!("{writer}.sock")))
}

/// Reads and validates a configuration file.
///
/// # Errors
/// [`LoadError::Read`] when the file cannot be read; [`LoadError::Invalid`] with every
/// diagnostic when it has errors.
pub fn load(path: &Path) -> Result<(Config, Vec<Diagnostic>), LoadError> {
    let text = files::read_config(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })?;
    let (config, mut diagnostics) = validate(path, &text);
    let file_problems = files::check_named_files(path, &text);
    let bad_files = !file_problems.is_empty();
    diagnostics.extend(file_problems);
    match config {
        Some(config) if !bad_files => Ok((config, diagnostics)),
        _ => Err(LoadError::Invalid {
            path: path.to_owned(),
            diagnostics,
        }),
    }
}
