//! Who may send (CSSMTP's SERVAUTH profile `EZB.CSSMTP.sysname.writer.node`, on Linux):
//! with `PermitUser`/`PermitGroup`, only spool files owned by those users, or by members
//! of those groups (primary group or listed member), are sent; the others are held and
//! reported, never sent. Without either statement every producer may send.
//!
//! Names are looked up when each file is taken (the user and group databases may
//! change), so the check runs on a blocking thread.

use crate::config::Config;

/// Why the owner `uid` (named `owner`) may not send through this writer, or `None`
/// when it may.
pub fn refusal(config: &Config, uid: u32, owner: &str) -> Option<String> {
    if config.permit_users.is_empty() && config.permit_groups.is_empty() {
        return None;
    }
    let user = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten();
    let by_user = config.permit_users.iter().any(|p| match p.parse::<u32>() {
        Ok(id) => id == uid,
        Err(_) => user.as_ref().is_some_and(|u| u.name == *p),
    });
    if by_user {
        return None;
    }
    let by_group = user.as_ref().is_some_and(|user| {
        config.permit_groups.iter().any(|p| {
            let group = match p.parse::<u32>() {
                Ok(gid) => nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)),
                Err(_) => nix::unistd::Group::from_name(p),
            };
            group
                .ok()
                .flatten()
                .is_some_and(|g| g.gid == user.gid || g.mem.contains(&user.name))
        })
    });
    if by_group {
        return None;
    }
    Some(format!(
        "553 5.7.1 The owner of the spool file, {} (uid {uid}), is not permitted to send through writer {} (PermitUser, PermitGroup): no mail sent; the file is held",
        crate::escape::os(std::ffi::OsStr::new(owner)),
        config.ext_wrt_name
    ))
}
