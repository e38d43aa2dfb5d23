//! The user name of a spool file's owner, for reports and accounting.
//!
//! A look-up may ask a directory service (NSS: LDAP, SSSD), so it runs on a blocking
//! thread; its answer is kept for [`KEEP`], since a spool's files come from few users
//! and a thread hand-off per file is a cost a one-mail-per-file spool pays thousands
//! of times a second. A name changed meanwhile shows at most [`KEEP`] late.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a looked-up name is used.
const KEEP: Duration = Duration::from_secs(60);
/// Names kept at most (owners seen recently); beyond it the cache starts again.
const MAX_KEPT: usize = 4096;

static NAMES: Mutex<Option<HashMap<u32, (String, Instant)>>> = Mutex::new(None);

fn cached(uid: u32) -> Option<String> {
    let names = NAMES.lock().ok()?;
    let (name, at) = names.as_ref()?.get(&uid)?;
    (at.elapsed() < KEEP).then(|| name.clone())
}

fn keep(uid: u32, name: &str) {
    if let Ok(mut names) = NAMES.lock() {
        let names = names.get_or_insert_with(HashMap::new);
        if names.len() >= MAX_KEPT {
            names.clear();
        }
        names.insert(uid, (name.to_owned(), Instant::now()));
    }
}

/// The name of user `uid`, or the number when it has none.
pub async fn name(uid: u32) -> String {
    if let Some(name) = cached(uid) {
        return name;
    }
    let name = tokio::task::spawn_blocking(move || {
        nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
            .ok()
            .flatten()
            .map(|u| u.name)
    })
    .await
    .ok()
    .flatten()
    .unwrap_or_else(|| uid.to_string());
    keep(uid, &name);
    name
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn root_is_named_and_the_name_is_kept() {
        assert_eq!(super::name(0).await, "root");
        assert_eq!(super::cached(0).as_deref(), Some("root"));
        // A user with no name is shown by number.
        assert_eq!(super::name(4_000_000_123).await, "4000000123");
    }
}
