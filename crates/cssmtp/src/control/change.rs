//! The commands that change something: FLUSHRETRY, LOGLEVEL, REFRESH, REFRESHIPLIST,
//! REFRESHTARGETS, SUSPEND, RESUME, STOP.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::oneshot;

use super::reply::{Answer, Refusal};
use super::{ConfigEvent, Control, Reply};
use crate::config::{self, Config, Diagnostic, LoadError, Severity, running};
use crate::delivery::resolve::{Resolved, resolve, resolver_for};
use crate::logging;
use crate::spool::status::Suspend;

/// FLUSHRETRY,TKID=.
#[derive(Debug, Serialize)]
pub struct FlushTaskAnswer {
    pub tkid: u32,
    /// The spool task's file.
    #[serde(skip)]
    pub file: String,
    pub mails: u64,
}

impl Answer for FlushTaskAnswer {
    fn lines(&self) -> Vec<String> {
        vec![format!(
            "CSM5010I FLUSHRETRY: {} mail(s) of spool task {} ({}) taken out of long retry",
            self.mails, self.tkid, self.file
        )]
    }
}

/// FLUSHRETRY,AGE=.
#[derive(Debug, Serialize)]
pub struct FlushAgeAnswer {
    pub age_days: u32,
    pub mails: u64,
}

impl Answer for FlushAgeAnswer {
    fn lines(&self) -> Vec<String> {
        vec![format!(
            "CSM5010I FLUSHRETRY: {} mail(s) in extended retry for {} day(s) or more returned as undeliverable",
            self.mails, self.age_days
        )]
    }
}

/// LOGLEVEL,LEVEL=.
#[derive(Debug, Serialize)]
pub struct LogLevelChanged {
    pub before: u32,
    pub level: u32,
}

impl Answer for LogLevelChanged {
    fn lines(&self) -> Vec<String> {
        vec![format!(
            "CSM5011I LOGLEVEL changed from {} to {}: {}",
            self.before,
            self.level,
            logging::describe(self.level)
        )]
    }
}

/// USEREXIT,LEVEL=.
#[derive(Debug, Serialize)]
pub struct UserExitChanged {
    pub before: &'static str,
    pub level: &'static str,
}

impl Answer for UserExitChanged {
    fn lines(&self) -> Vec<String> {
        vec![format!(
            "CSM5022I USEREXIT changed from LEVEL={} to LEVEL={}; mails waiting in long retry are tried now",
            self.before, self.level
        )]
    }
}

/// REFRESH: what was read and what changed.
#[derive(Debug, Serialize)]
pub struct RefreshAnswer {
    /// What the refresh did (CSM5012I), then its warnings (CSM5013W).
    #[serde(skip)]
    pub done: Vec<String>,
    #[serde(skip)]
    pub warnings: Vec<String>,
    pub changed: bool,
    /// The statements kept until a restart.
    pub kept: Vec<String>,
}

impl Answer for RefreshAnswer {
    fn lines(&self) -> Vec<String> {
        self.done
            .iter()
            .map(|l| format!("CSM5012I REFRESH: {l}"))
            .chain(
                self.warnings
                    .iter()
                    .map(|w| format!("CSM5013W REFRESH: {w}")),
            )
            .collect()
    }
}

/// REFRESH of a file with errors: nothing changed.
#[derive(Debug, Serialize)]
pub struct RefreshRefused {
    /// The file.
    #[serde(skip)]
    pub file: String,
    /// The errors.
    #[serde(skip)]
    pub errors: Vec<String>,
    pub changed: bool,
}

impl Answer for RefreshRefused {
    fn lines(&self) -> Vec<String> {
        let head = format!(
            "CSM5014E REFRESH: {} has errors; nothing changed",
            self.file
        );
        std::iter::once(head)
            .chain(self.errors.iter().map(|e| format!("  {e}")))
            .collect()
    }

    fn reply(&self) -> Reply {
        Reply {
            ok: false,
            lines: self.lines(),
            data: serde_json::to_value(self).unwrap_or_default(),
        }
    }
}

/// REFRESHTARGETS.
#[derive(Debug, Serialize)]
pub struct RefreshTargetsAnswer {
    pub targets: usize,
}

impl Answer for RefreshTargetsAnswer {
    fn lines(&self) -> Vec<String> {
        vec![format!(
            "CSM5016I REFRESHTARGETS: {} target server(s) will be tried afresh",
            self.targets
        )]
    }
}

/// SUSPEND and RESUME: the intake now, and before.
#[derive(Debug, Serialize)]
pub struct IntakeAnswer {
    pub intake: Suspend,
    #[serde(skip)]
    pub before: Suspend,
}

impl IntakeAnswer {
    fn text(&self) -> &'static str {
        match (self.intake, self.before) {
            (Suspend::Immediate, _) => {
                "CSM5017I SUSPEND IMMEDIATE: no new spool file is taken and no new mail is sent; transactions in progress complete"
            }
            (Suspend::Delay, _) => {
                "CSM5017I SUSPEND DELAY: no new spool file is taken; spool files in progress are finished"
            }
            (Suspend::Running, Suspend::Running) => "CSM5018I RESUME: intake was not suspended",
            (Suspend::Running, _) => {
                "CSM5018I RESUME: spool files are taken and mail is sent again"
            }
        }
    }
}

impl Answer for IntakeAnswer {
    fn lines(&self) -> Vec<String> {
        vec![self.text().to_owned()]
    }
}

/// STOP.
#[derive(Debug, Serialize)]
pub struct StopAnswer {
    pub stopping: bool,
}

impl Answer for StopAnswer {
    fn lines(&self) -> Vec<String> {
        vec!["CSM5019I STOP: no new spool files; transactions in progress are completed, then cssmtp ends".into()]
    }
}

impl Control {
    pub(super) async fn flush_task(&self, tkid: u32) -> Reply {
        let Some(task) = self.tasks.get(tkid) else {
            return Refusal::NoTask(tkid).into();
        };
        let (answer, flushed) = oneshot::channel();
        if task.flush.send(answer).is_err() {
            return Refusal::TaskEnded(tkid).into();
        }
        match tokio::time::timeout(Duration::from_secs(30), flushed).await {
            Ok(Ok(mails)) => FlushTaskAnswer {
                tkid,
                file: task.file.clone(),
                mails,
            }
            .reply(),
            Ok(Err(_)) => Refusal::TaskEnded(tkid).into(),
            Err(_) => Refusal::TaskSilent(tkid).into(),
        }
    }

    pub(super) async fn flush_age(&self, days: u32) -> Reply {
        let Some(flush) = &self.extended_flush else {
            return Refusal::ExtendedInactive.into();
        };
        let (answer, flushed) = oneshot::channel();
        let age = Duration::from_secs(u64::from(days) * 86_400);
        if flush.send((age, answer)).is_err() {
            return Refusal::ExtendedEnded.into();
        }
        match flushed.await {
            Ok(mails) => FlushAgeAnswer {
                age_days: days,
                mails,
            }
            .reply(),
            Err(_) => Refusal::ExtendedEnded.into(),
        }
    }

    pub(super) fn log_level(&self, level: u32) -> Reply {
        let before = logging::mask();
        logging::set_mask(level);
        tracing::info!(
            "CSM5011I LOGLEVEL changed from {before} to {level} ({})",
            logging::describe(level)
        );
        self.record_config(ConfigEvent::LogLevel);
        LogLevelChanged { before, level }.reply()
    }

    /// USEREXIT,LEVEL=: the exit off or on for the mails sent from now on; the mails
    /// waiting in long retry (those the exit held among them) are tried at once.
    pub(super) fn user_exit(&self, on: bool) -> Reply {
        let running = self.config.current();
        let Some(exit) = running.user_exit.as_ref() else {
            return if on {
                Refusal::NoUserExit.into()
            } else {
                UserExitChanged {
                    before: config::ExitLevel::None.name(),
                    level: config::ExitLevel::None.name(),
                }
                .reply()
            };
        };
        let level = if on {
            config::ExitLevel::Version1
        } else {
            config::ExitLevel::None
        };
        let before = exit.level;
        let mut changed = running.as_ref().clone();
        if let Some(e) = changed.user_exit.as_mut() {
            e.level = level;
        }
        self.config.replace(Arc::new(changed));
        let answer = UserExitChanged {
            before: before.name(),
            level: level.name(),
        };
        for line in answer.lines() {
            tracing::info!("{line}");
        }
        self.record_config(ConfigEvent::UserExit);
        crate::userexit::retry_now().send_modify(|n| *n += 1);
        answer.reply()
    }

    pub(super) fn refresh_targets(&self) -> Reply {
        let answer = RefreshTargetsAnswer {
            targets: self.router.reset_health(),
        };
        for line in answer.lines() {
            tracing::info!("{line}");
        }
        answer.reply()
    }

    pub(super) fn suspend(&self, immediate: bool) -> Reply {
        let intake = if immediate {
            Suspend::Immediate
        } else {
            Suspend::Delay
        };
        let before = self.suspend.send_replace(intake);
        self.intake_changed(IntakeAnswer { intake, before })
    }

    pub(super) fn resume(&self) -> Reply {
        let intake = Suspend::Running;
        let before = self.suspend.send_replace(intake);
        self.intake_changed(IntakeAnswer { intake, before })
    }

    fn intake_changed(&self, answer: IntakeAnswer) -> Reply {
        tracing::info!("{}", answer.text());
        answer.reply()
    }

    pub(super) fn stop(&self) -> Reply {
        tracing::info!("CSM5019I STOP: stopping as on SIGTERM");
        self.stop.cancel();
        StopAnswer { stopping: true }.reply()
    }

    pub(super) async fn refresh(&self) -> Reply {
        let running = self.config.current();
        let (new, diagnostics) = match load(&running.file).await {
            Ok(loaded) => loaded,
            Err(refused) => return refused,
        };
        let (merged, kept) = running::merge(&running, new);
        let mut done = vec![format!("{} read", running.file.display())];
        if merged.targets != running.targets {
            match self.resolve_targets(&merged).await {
                Ok(resolved) => {
                    done.push(target_list(&resolved));
                    self.router.set_targets(resolved);
                }
                Err(message) => return Refusal::Refresh(message).into(),
            }
        }
        if merged.log_level != running.log_level {
            logging::set_mask(merged.log_level);
            done.push(format!("LOGLEVEL {}", merged.log_level));
        }
        self.telemetry.refresh_accounting(merged.smf119);
        let changed = merged != running.as_ref().clone();
        self.config.replace(Arc::new(merged));
        // The file's warnings and the statements kept until a restart come last,
        // logged as warnings.
        let warnings = of_severity(&diagnostics, Severity::Warning)
            .into_iter()
            .chain(kept.iter().cloned())
            .collect();
        let answer = RefreshAnswer {
            done,
            warnings,
            changed,
            kept,
        };
        let lines = answer.lines();
        let (info, warn) = lines.split_at(answer.done.len());
        for line in info {
            tracing::info!("{line}");
        }
        for line in warn {
            tracing::warn!("{line}");
        }
        self.record_config(ConfigEvent::Refresh);
        answer.reply()
    }

    pub(super) async fn refresh_iplist(&self) -> Reply {
        let config = self.config.current();
        match self.resolve_targets(&config).await {
            Ok(resolved) => {
                let n = resolved.len();
                self.router.set_targets(resolved);
                tracing::info!("CSM5015I REFRESHIPLIST: {n} target address(es)");
                self.iplist(Some(n)).reply()
            }
            Err(message) => Refusal::RefreshIplist(message).into(),
        }
    }

    /// Resolves the targets of `config`; an error when none resolves.
    async fn resolve_targets(&self, config: &Config) -> Result<Vec<Resolved>, String> {
        let resolver = resolver_for(&config.targets, &config.name_servers)?;
        let (resolved, warnings) = resolve(&config.targets, resolver.as_ref()).await;
        for w in &warnings {
            tracing::warn!("CSM1021W {w}");
        }
        if resolved.is_empty() {
            return Err(format!(
                "no target address could be resolved ({})",
                warnings.join("; ")
            ));
        }
        Ok(resolved)
    }
}

/// REFRESH reads the configuration `path` again (on a blocking thread): the new
/// configuration and its diagnostics, or the reply refusing it.
async fn load(path: &Path) -> Result<(Config, Vec<Diagnostic>), Reply> {
    let loaded = {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || config::load(&path)).await
    };
    let Ok(loaded) = loaded else {
        let why = format!("{} could not be read", path.display());
        return Err(Refusal::Refresh(why).into());
    };
    match loaded {
        Ok(x) => Ok(x),
        Err(LoadError::Invalid { diagnostics, .. }) => {
            let refused = RefreshRefused {
                file: path.display().to_string(),
                errors: of_severity(&diagnostics, Severity::Error),
                changed: false,
            };
            tracing::error!("{}", refused.lines().join("\n"));
            Err(refused.reply())
        }
        Err(e) => Err(Refusal::Refresh(e.to_string()).into()),
    }
}

/// The diagnostics of `severity`, as text.
fn of_severity(diagnostics: &[Diagnostic], severity: Severity) -> Vec<String> {
    diagnostics
        .iter()
        .filter(|d| d.severity == severity)
        .map(ToString::to_string)
        .collect()
}

/// "N target address(es): a, b".
fn target_list(resolved: &[Resolved]) -> String {
    format!(
        "{} target address(es): {}",
        resolved.len(),
        resolved
            .iter()
            .map(|r| r.addr.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}
