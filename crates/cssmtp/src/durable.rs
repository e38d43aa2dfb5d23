//! Durable files and directories: the one way cssmtp writes anything that must survive a
//! crash (spool files from `submit`, dead letters, reports, mail in extended retry).
//!
//! A file is written in full under a temporary name that intake ignores (`.<name>.tmp`),
//! flushed to disk, renamed into place without replacing anything, and its directory
//! flushed: after a crash it is either complete or absent.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};

/// Flushes a directory's entries to disk.
///
/// # Errors
/// An I/O error.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` (and its parents) when missing: `dir` with exactly `mode` whatever the
/// umask, owned by the daemon's effective user and group (not the group a setgid parent
/// would hand down, and without the setgid bit it would inherit); missing parents with
/// 0755. Anything already at `dir` is left as the administrator made it (the start-up
/// checks decide whether it is safe).
///
/// # Errors
/// An I/O error.
pub fn create_dir(dir: &Path, mode: u32) -> io::Result<()> {
    make_dir(dir, mode, true)
}

/// Like [`create_dir`], but `dir` keeps the group it gets from its parent (the spool's
/// group, for the writer directory producers drop files into).
///
/// # Errors
/// An I/O error.
pub fn create_shared_dir(dir: &Path, mode: u32) -> io::Result<()> {
    make_dir(dir, mode, false)
}

fn make_dir(dir: &Path, mode: u32, own_group: bool) -> io::Result<()> {
    if fs::symlink_metadata(dir).is_ok() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty())
        && fs::symlink_metadata(parent).is_err()
    {
        make_dir(parent, 0o755, false)?;
    }
    match DirBuilder::new().mode(mode & 0o777).create(dir) {
        Ok(()) => {}
        // Created meanwhile by someone else: left as it is, for the checks to judge.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if own_group {
        nix::unistd::chown(dir, None, Some(nix::unistd::getegid())).map_err(io::Error::from)?;
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
}

/// Renames `from` into `dir` as `name`, or `name.1`, `name.2`… never replacing a file.
/// Returns the new path, or `None` when `from` is gone.
///
/// # Errors
/// An I/O error other than `from` being gone.
pub fn move_no_replace(
    from: &Path,
    dir: &Path,
    name: impl AsRef<std::ffi::OsStr>,
) -> io::Result<Option<PathBuf>> {
    let name = name.as_ref();
    for n in 0u32..1000 {
        let to = if n == 0 {
            dir.join(name)
        } else {
            let mut numbered = name.to_owned();
            numbered.push(format!(".{n}"));
            dir.join(numbered)
        };
        match renameat2(AT_FDCWD, from, AT_FDCWD, &to, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => return Ok(Some(to)),
            Err(Errno::EEXIST) => continue,
            Err(Errno::ENOENT) if fs::symlink_metadata(from).is_err() => return Ok(None),
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("too many files named {}", crate::escape::os(name)),
    ))
}

/// [`write_new`] on a blocking thread, after creating `dir` (mode 0750) when missing:
/// for what async code keeps on disk (reports, dead letters, held mail).
///
/// # Errors
/// An I/O error.
pub async fn keep(dir: PathBuf, name: String, bytes: Vec<u8>, mode: u32) -> io::Result<PathBuf> {
    tokio::task::spawn_blocking(move || {
        create_dir(&dir, 0o750)?;
        write_new(&dir, &name, &bytes, mode)
    })
    .await
    .map_err(io::Error::other)?
}

/// Writes a new file `dir/name` (or `name.1`… when taken) durably, with `mode`; returns
/// its path.
///
/// # Errors
/// An I/O error; at worst a `.tmp` file is left behind, which intake ignores.
pub fn write_new(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let tmp = write_tmp(dir, name, bytes, mode)?;
    match move_no_replace(&tmp, dir, name) {
        Ok(Some(path)) => {
            match sync_dir(dir) {
                Ok(()) => {}
                // A producer may create files in the writer directory but not list it
                // (mode 3730), so it cannot open it to sync it: the file itself is
                // synced, and the daemon syncs the directory when it claims the file.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(e) => return Err(e),
            }
            Ok(path)
        }
        Ok(None) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            "temporary file vanished",
        )),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Replaces `path` durably with `bytes` (a reader sees the old or the new content).
///
/// # Errors
/// An I/O error; the old content is then still in place.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = write_tmp(dir, name, bytes, mode)?;
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

fn write_tmp(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<PathBuf> {
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_new(dir.path(), "x", b"one", 0o640).unwrap();
        let b = write_new(dir.path(), "x", b"two", 0o640).unwrap();
        assert_eq!(a.file_name().unwrap(), "x");
        assert_eq!(b.file_name().unwrap(), "x.1");
        assert_eq!(fs::read(&a).unwrap(), b"one");
        replace(&a, b"three", 0o640).unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"three");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no temporary file left: {names:?}");
        assert_eq!(
            fs::metadata(&a).unwrap().permissions().mode() & 0o777,
            0o640
        );
    }
}
