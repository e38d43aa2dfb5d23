//! Start-up checks of the directories cssmtp uses (as sshd's StrictModes and
//! `postfix check` do): a directory a producer could rename, replace or write would let
//! it swap `active/` or the checkpoint directory under the daemon.
//!
//! Every directory the daemon uses must be owned by the daemon's effective user or by
//! root, and must not be writable by group or others; the writer directory alone may be
//! (producers drop files there) when it has the sticky bit. Every ancestor up to `/`
//! must be owned by root or the daemon's user and not writable by group or others
//! unless sticky (`/tmp` is fine). A symbolic link on the way is accepted when root or
//! the daemon's user owns it, and the directory it leads to is checked too (the real
//! path and its ancestors). Nothing is ever changed here: an unsafe directory is
//! reported (CSM1060E) and cssmtp exits 78.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::layout::PRIVATE_DIRS;
use crate::config::Config;
use crate::escape;

/// How a directory may be shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The writer directory: group- or other-writable only with the sticky bit.
    Writer,
    /// The daemon's own: writable by its owner only.
    Private,
    /// On the way to one of them: group- or other-writable only with the sticky bit.
    Ancestor,
}

/// The directories the daemon uses under `config`, each with its rule (and the mode
/// `run` creates it with when missing).
pub fn directories(config: &Config) -> Vec<(PathBuf, Rule, u32)> {
    let writer = config.writer_spool();
    let mut dirs = vec![(writer.clone(), Rule::Writer, super::layout::WRITER_DIR_MODE)];
    for (name, mode) in PRIVATE_DIRS {
        dirs.push((writer.join(name), Rule::Private, mode));
    }
    dirs.push((config.dead_letter_directory(), Rule::Private, 0o750));
    if config.extended_retry.is_some() {
        dirs.push((config.mail_directory(), Rule::Private, 0o750));
    }
    if config.chk_point
        && !config.options.test_mode
        && let Some(dir) = config.journal_path().parent()
    {
        dirs.push((dir.to_owned(), Rule::Private, 0o700));
    }
    if config.smf119.any()
        && let Some(dir) = config.accounting_path().parent()
    {
        dirs.push((dir.to_owned(), Rule::Private, 0o750));
    }
    dirs.push((config.run_directory.clone(), Rule::Private, 0o750));
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|(path, _, _)| seen.insert(path.clone()));
    dirs
}

/// Creates the missing directories of [`directories`] (private ones owned by the
/// daemon's user and group).
///
/// # Errors
/// An I/O error creating one, with its path.
pub fn create_missing(config: &Config) -> anyhow::Result<()> {
    for (path, rule, mode) in directories(config) {
        let created = if rule == Rule::Writer {
            crate::durable::create_shared_dir(&path, mode)
        } else {
            crate::durable::create_dir(&path, mode)
        };
        created.map_err(|e| {
            anyhow::anyhow!("cannot create the directory {}: {e}", escape::path(&path))
        })?;
    }
    Ok(())
}

/// Checks every directory of [`directories`] that exists (and `run` has created the
/// missing ones before); returns one line per problem, each with CSM1060E.
pub fn check(config: &Config) -> Vec<String> {
    let euid = nix::unistd::geteuid().as_raw();
    let mut problems = Vec::new();
    let mut checked = std::collections::HashSet::new();
    for (path, rule, _) in directories(config) {
        if fs::symlink_metadata(&path).is_err() {
            continue;
        }
        check_path(&path, rule, euid, &mut checked, &mut problems);
    }
    // The secret files of SMTP AUTH: cssmtp's alone.
    problems.extend(crate::delivery::auth::check_secret_files(config));
    problems.extend(crate::delivery::tls_policy::check_target_tls(config));
    // The DKIM keys: cssmtp's alone, and usable.
    problems.extend(crate::delivery::dkim::check_key_files(config));
    problems
}

fn check_path(
    path: &Path,
    rule: Rule,
    euid: u32,
    checked: &mut std::collections::HashSet<PathBuf>,
    problems: &mut Vec<String>,
) {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let mut chain: Vec<&Path> = absolute.ancestors().skip(1).collect();
    chain.reverse();
    for ancestor in chain {
        if checked.insert(ancestor.to_owned()) {
            problems.extend(check_entry(ancestor, Rule::Ancestor, euid));
        }
    }
    problems.extend(check_entry(&absolute, rule, euid));
    // Through a link: the directory it leads to, and its ancestors.
    if let Ok(real) = fs::canonicalize(&absolute)
        && real != absolute
    {
        let mut chain: Vec<&Path> = real.ancestors().skip(1).collect();
        chain.reverse();
        for ancestor in chain {
            if checked.insert(ancestor.to_owned()) {
                problems.extend(check_entry(ancestor, Rule::Ancestor, euid));
            }
        }
        problems.extend(check_entry(&real, rule, euid));
    }
}

fn owner_name(uid: u32) -> String {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or_else(
            || format!("uid {uid}"),
            |u| format!("{} (uid {uid})", u.name),
        )
}

fn check_entry(path: &Path, rule: Rule, euid: u32) -> Option<String> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) => {
            return Some(format!(
                "CSM1060E Unsafe directory {}: cannot be examined: {e}",
                escape::path(path)
            ));
        }
    };
    let mode = meta.mode() & 0o7777;
    let owner_ok = meta.uid() == 0 || meta.uid() == euid;
    let what = match rule {
        Rule::Writer => "the writer directory",
        Rule::Private => "a directory of the daemon",
        Rule::Ancestor => "on the way to a directory of the daemon",
    };
    let expected_owner = if euid == 0 {
        "root".to_owned()
    } else {
        format!("root or {}", owner_name(euid))
    };
    let describe = |problem: &str, expected: &str| {
        Some(format!(
            "CSM1060E Unsafe directory {} ({what}): {problem}; it is owned by {} with mode {mode:04o}; expected: {expected}",
            escape::path(path),
            owner_name(meta.uid()),
        ))
    };
    if meta.file_type().is_symlink() {
        if !owner_ok {
            return describe(
                "it is a symbolic link another user owns",
                &format!("a directory, or a link owned by {expected_owner}"),
            );
        }
        return None;
    }
    if !meta.is_dir() {
        return describe("it is not a directory", "a directory");
    }
    if !owner_ok {
        return describe(
            "another user owns it",
            &format!("owned by {expected_owner}"),
        );
    }
    let shared_write = mode & 0o022 != 0;
    let sticky = mode & 0o1000 != 0;
    match rule {
        Rule::Private if shared_write => describe(
            "group or others may write it",
            "no write permission for group and others (0750, or 0700 for the checkpoint directory)",
        ),
        Rule::Writer if shared_write && !sticky => describe(
            "group or others may write it without the sticky bit (a producer could rename active/ or another producer's file)",
            "mode 3730 (setgid, sticky, group may create files but not list them)",
        ),
        Rule::Ancestor if shared_write && !sticky => describe(
            "group or others may write it without the sticky bit (they could replace what it contains)",
            "no write permission for group and others, or the sticky bit",
        ),
        _ => None,
    }
}

/// Unsafe directories found at start: one CSM1060E line each. `cssmtp run` exits 78.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct UnsafeDirectories(pub Vec<String>);
