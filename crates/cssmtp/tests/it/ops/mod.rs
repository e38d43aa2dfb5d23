//! Living with cssmtp in production (issue 16): command-line habits, the manual pages
//! and completions, the service units. Through the real binary and the real tools
//! (man, bash, script, systemd-analyze).

mod dashboards;
mod habits;
mod manual;
mod migration;
mod service;
mod trace;

use std::path::Path;

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|paths| {
        std::env::split_paths(&paths).any(|dir| Path::new(&dir).join(program).is_file())
    })
}
