//! The writer's spool directory on disk, and the one-instance-per-writer lock.
//!
//! ```text
//! <SpoolDirectory>/<ExtWrtName>/             3730  producers create files here
//! <SpoolDirectory>/<ExtWrtName>/active/      0750  files claimed by the running instance
//! <SpoolDirectory>/<ExtWrtName>/hold/        0750  bad spool files kept for the operator
//! <SpoolDirectory>/<ExtWrtName>/reports/ deadletter/ mail/ accounting/   0750
//! <SpoolDirectory>/<ExtWrtName>/checkpoint/  0700
//! ```
//!
//! The writer directory is setgid (files get the spool's group), sticky (a producer can
//! rename or remove only its own entries, never `active/` or another producer's file)
//! and not readable by the group (producers cannot list it). The other directories are
//! the daemon's, owned by its user and group.
//!
//! A file is claimed by renaming it into `active/` without replacing anything
//! (`renameat2(RENAME_NOREPLACE)`): the rename is atomic, so of two claimers exactly one
//! wins, whatever else is running. Names starting with `.` and ending in `.tmp` are
//! files still being written and are never read. A claimed entry is opened only when it
//! is a regular file with one link, without following a link and without blocking
//! ([`SpoolLayout::open_claimed`]); anything else is moved to `hold/` unopened.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};

use crate::durable::{create_dir, create_shared_dir, move_no_replace};
use crate::escape;

pub use super::lock::{InstanceLock, LockError};
pub use super::reaper::Reaper;

/// The daemon's own directories inside the writer directory, with the modes they are
/// created with. Intake never takes entries by these names.
pub const PRIVATE_DIRS: [(&str, u32); 7] = [
    ("active", 0o750),
    ("hold", 0o750),
    ("reports", 0o750),
    ("deadletter", 0o750),
    ("mail", 0o750),
    ("checkpoint", 0o700),
    ("accounting", 0o750),
];

/// Directories not cssmtp's reported from one listing, at most.
const MAX_STRAYS: usize = 100;

/// The mode of the writer directory: setgid, sticky, owner rwx, group wx.
pub const WRITER_DIR_MODE: u32 = 0o3730;

/// The directories of one writer's spool.
#[derive(Debug, Clone)]
pub struct SpoolLayout {
    pub incoming: PathBuf,
    pub active: PathBuf,
    pub hold: PathBuf,
}

/// An entry waiting in the spool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Candidate {
    pub modified: SystemTime,
    /// The name as shown (escaped, see [`crate::escape`]).
    pub name: String,
    /// The name on disk.
    pub file: OsString,
    /// Device and inode when listed.
    pub id: (u64, u64),
    /// Not a regular file: claimed only to be held, never opened.
    pub special: Option<&'static str>,
}

/// Which entries a listing keeps when there are more than its limit.
#[derive(Clone, Copy)]
enum Keep {
    /// The oldest of all.
    Oldest,
    /// The first ones met (the listing goes on from there next time).
    First,
}

/// A claimed spool file, open for reading.
#[derive(Debug)]
pub struct Opened {
    pub path: PathBuf,
    /// The name as shown (escaped).
    pub name: String,
    pub file: File,
    /// A second handle for the parser.
    pub reader: File,
    pub meta: fs::Metadata,
    /// The file's identity in storage: its name and inode, so that a new file under an
    /// old name is never mistaken for it.
    pub id: crate::storage::FileId,
}

/// Why a claimed entry was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Not something cssmtp may read as a spool file (link, FIFO, device…).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The spool cannot be read now (a shared spool's database is away): the claim is
    /// kept and opened again a little later.
    #[error("{0}")]
    NotNow(io::Error),
}

/// True for a name a producer has finished writing.
pub fn is_ready_name(name: &str) -> bool {
    is_ready(OsStr::new(name))
}

/// True for a name a producer has finished writing (not `.`-names nor `.tmp`).
pub(crate) fn is_ready(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.is_empty() && !b.starts_with(b".") && !b.ends_with(b".tmp")
}

/// What an entry is, when it is not a regular file.
fn special_kind(t: fs::FileType) -> Option<&'static str> {
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_char_device() || t.is_block_device() {
        Some("a device")
    } else if t.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    }
}

fn kind_of_mode(mode: u32) -> Option<&'static str> {
    let t = SFlag::from_bits_truncate(mode & SFlag::S_IFMT.bits());
    match t {
        SFlag::S_IFREG => None,
        SFlag::S_IFLNK => Some("a symbolic link"),
        SFlag::S_IFDIR => Some("a directory"),
        SFlag::S_IFIFO => Some("a FIFO"),
        SFlag::S_IFCHR | SFlag::S_IFBLK => Some("a device"),
        SFlag::S_IFSOCK => Some("a socket"),
        _ => Some("not a regular file"),
    }
}

/// True for the errors of running out of file descriptors (or kernel memory for them):
/// transient, so intake backs off and tries again.
pub fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(nix::libc::EMFILE | nix::libc::ENFILE | nix::libc::ENOMEM | nix::libc::ENOBUFS)
    )
}

impl SpoolLayout {
    pub fn new(writer_dir: PathBuf) -> Self {
        Self {
            active: writer_dir.join("active"),
            hold: writer_dir.join("hold"),
            incoming: writer_dir,
        }
    }

    /// Creates the writer directory (only it), when missing, with mode 3730: what
    /// `cssmtp submit` needs. It keeps the group of its parent (the spool's group).
    ///
    /// # Errors
    /// An I/O error creating it.
    pub fn create_incoming(&self) -> io::Result<()> {
        create_shared_dir(&self.incoming, WRITER_DIR_MODE)
    }

    /// Creates the missing directories: the writer directory (mode 3730, see the module
    /// notes) and every private one ([`PRIVATE_DIRS`]), owned by the daemon's user and
    /// group. Existing ones are left as they are: [`super::checks`] says whether they are
    /// safe.
    ///
    /// # Errors
    /// An I/O error creating a directory.
    pub fn create(&self) -> io::Result<()> {
        self.create_incoming()?;
        for (name, mode) in PRIVATE_DIRS {
            create_dir(&self.incoming.join(name), mode)?;
        }
        Ok(())
    }

    /// Opens `active/` to open spool files relative to it (never through a link).
    ///
    /// # Errors
    /// An I/O error.
    pub fn open_active(&self) -> io::Result<OwnedFd> {
        nix::fcntl::open(
            &self.active,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
    }

    /// Takes the writer's lock (`active/.lock`, mode 0600, never through a link), or says
    /// who holds it.
    ///
    /// # Errors
    /// [`LockError::Held`] when another instance runs for this writer.
    pub fn lock(&self, writer: &str) -> Result<InstanceLock, LockError> {
        super::lock::lock(&self.active, writer)
    }

    /// The oldest entries waiting in the spool (at most `limit`), oldest first: regular
    /// files, and links, FIFOs, devices and sockets (to be claimed and held, never
    /// opened). Directories are left out (see [`SpoolLayout::stray_directories`]).
    ///
    /// # Errors
    /// An I/O error listing the directory.
    pub fn waiting(&self, limit: usize) -> io::Result<Vec<Candidate>> {
        self.waiting_and_strays(limit).map(|(c, _)| c)
    }

    /// [`SpoolLayout::waiting`], and the directories found that are not cssmtp's (with
    /// device and inode; they are left where they are).
    ///
    /// # Errors
    /// An I/O error listing the directory.
    pub fn waiting_and_strays(&self, limit: usize) -> io::Result<(Vec<Candidate>, Vec<Candidate>)> {
        let mut entries = fs::read_dir(&self.incoming)?;
        self.gather(&mut entries, limit, Keep::Oldest)
            .map(|(waiting, strays, _)| (waiting, strays))
    }

    /// The next entries of a pass over the writer directory (`pass`, from
    /// [`fs::read_dir`] of [`SpoolLayout::incoming`]), at most `limit`, oldest first, as
    /// [`SpoolLayout::waiting_and_strays`] gives them; true when the pass has ended. Each
    /// entry is looked at once per pass, whatever the size of the spool.
    ///
    /// # Errors
    /// An I/O error reading the directory.
    pub fn next_waiting(
        &self,
        pass: &mut fs::ReadDir,
        limit: usize,
    ) -> io::Result<(Vec<Candidate>, Vec<Candidate>, bool)> {
        self.gather(pass, limit, Keep::First)
    }

    fn gather(
        &self,
        entries: &mut fs::ReadDir,
        limit: usize,
        keep: Keep,
    ) -> io::Result<(Vec<Candidate>, Vec<Candidate>, bool)> {
        let mut heap = std::collections::BinaryHeap::new();
        let mut strays = Vec::new();
        for entry in entries.by_ref() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) if is_out_of_descriptors(&e) => return Err(e),
                Err(_) => continue,
            };
            let file = entry.file_name();
            if !is_ready(&file) || PRIVATE_DIRS.iter().any(|(n, _)| OsStr::new(n) == file) {
                continue;
            }
            // lstat: a link is never followed.
            let Ok(meta) = entry.metadata() else { continue };
            let candidate = Candidate {
                modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                name: escape::name(&file),
                file,
                id: (meta.dev(), meta.ino()),
                special: special_kind(meta.file_type()),
            };
            if meta.is_dir() {
                // Bounded, whatever a producer creates.
                if strays.len() < MAX_STRAYS {
                    strays.push(candidate);
                }
                continue;
            }
            heap.push(candidate);
            match keep {
                Keep::Oldest if heap.len() > limit => {
                    heap.pop();
                }
                Keep::First if heap.len() >= limit => {
                    return Ok((heap.into_sorted_vec(), strays, false));
                }
                _ => {}
            }
        }
        Ok((heap.into_sorted_vec(), strays, true))
    }

    /// Entries left in `active/` by an earlier run, oldest first (anything but the lock
    /// and temporary names: entries that are not regular files are held when opened).
    ///
    /// # Errors
    /// An I/O error listing the directory.
    pub fn left_active(&self) -> io::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.active)? {
            let Ok(entry) = entry else { continue };
            let name = entry.file_name();
            let Ok(meta) = entry.metadata() else { continue };
            if is_ready(&name) {
                found.push((meta.mtime(), name, entry.path()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, _, path)| path).collect())
    }

    /// Claims a waiting file by moving it into `active/`. Returns its new path, or
    /// `None` when it is gone (claimed by someone else, or withdrawn).
    ///
    /// # Errors
    /// An I/O error other than the file being gone.
    pub fn claim(&self, name: impl AsRef<OsStr>) -> io::Result<Option<PathBuf>> {
        let name = name.as_ref();
        move_no_replace(&self.incoming.join(name), &self.active, name)
    }

    /// Opens the claimed entry `path` (in `active/`, whose handle is `dir`) as a spool
    /// file: without following a link, without blocking, and only when it is a regular
    /// file with a single link (a hard link to someone else's file is refused: its
    /// producer could not have read it), the very inode found before opening.
    ///
    /// # Errors
    /// [`OpenError::Refused`] for anything that must not be read as a spool file (it is
    /// not opened at all, or closed at once); [`OpenError::Io`] for an I/O error.
    pub fn open_claimed(&self, dir: &OwnedFd, path: &Path) -> Result<Opened, OpenError> {
        let file_name = path.file_name().unwrap_or(path.as_os_str());
        let name = escape::name(file_name);
        let before = nix::sys::stat::fstatat(dir, file_name, AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(io::Error::from)?;
        if let Some(kind) = kind_of_mode(before.st_mode) {
            return Err(OpenError::Refused(format!("it is {kind}")));
        }
        if before.st_nlink != 1 {
            return Err(OpenError::Refused(format!(
                "it has {} hard links (a spool file has one)",
                before.st_nlink
            )));
        }
        let fd = nix::fcntl::openat(
            dir,
            file_name,
            OFlag::O_RDONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_NONBLOCK
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY,
            Mode::empty(),
        )
        .map_err(|e| match e {
            nix::errno::Errno::ELOOP => OpenError::Refused("it is a symbolic link".into()),
            e => OpenError::Io(e.into()),
        })?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        if let Some(kind) = special_kind(meta.file_type()) {
            return Err(OpenError::Refused(format!("it is {kind}")));
        }
        if meta.nlink() != 1 {
            return Err(OpenError::Refused(format!(
                "it has {} hard links (a spool file has one)",
                meta.nlink()
            )));
        }
        if (meta.dev(), meta.ino()) != (before.st_dev, before.st_ino) {
            return Err(OpenError::Refused(
                "it was replaced while being opened".into(),
            ));
        }
        let reader = file.try_clone()?;
        let id = crate::storage::FileId::new(&crate::journal::file_key(&name, meta.ino()));
        Ok(Opened {
            path: path.to_owned(),
            name,
            file,
            reader,
            meta,
            id,
        })
    }

    /// Moves a claimed file to `hold/`; returns where it went.
    ///
    /// # Errors
    /// An I/O error.
    pub fn hold(&self, path: &Path) -> io::Result<PathBuf> {
        let name = path.file_name().unwrap_or(OsStr::new("spool"));
        move_no_replace(path, &self.hold, name)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "spool file vanished"))
    }
}

pub use crate::durable::sync_dir;

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> (tempfile::TempDir, SpoolLayout, OwnedFd) {
        let dir = tempfile::tempdir().unwrap();
        let layout = SpoolLayout::new(dir.path().join("W"));
        layout.create().unwrap();
        let active = layout.open_active().unwrap();
        (dir, layout, active)
    }

    fn refused(layout: &SpoolLayout, active: &OwnedFd, name: &str) -> String {
        match layout.open_claimed(active, &layout.active.join(name)) {
            Err(OpenError::Refused(why)) => why,
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn only_regular_files_with_one_link_are_opened() {
        let (dir, layout, active) = spool();
        std::fs::write(layout.active.join("GOOD.J1.x"), b"HELO a.b\n").unwrap();
        let opened = layout
            .open_claimed(&active, &layout.active.join("GOOD.J1.x"))
            .unwrap();
        assert_eq!(opened.name, "GOOD.J1.x");
        assert_eq!(opened.meta.len(), 9);
        // A FIFO, and a link to a FIFO: opening either for reading would block.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
        nix::unistd::mkfifo(
            &layout.active.join("FIFO.J2.x"),
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::os::unix::fs::symlink(&fifo, layout.active.join("LINK.J3.x")).unwrap();
        assert_eq!(refused(&layout, &active, "FIFO.J2.x"), "it is a FIFO");
        assert_eq!(
            refused(&layout, &active, "LINK.J3.x"),
            "it is a symbolic link"
        );
        // A hard link (to a file someone else may own).
        let other = dir.path().join("other");
        std::fs::write(&other, b"secret").unwrap();
        std::fs::hard_link(&other, layout.active.join("HARD.J4.x")).unwrap();
        assert_eq!(
            refused(&layout, &active, "HARD.J4.x"),
            "it has 2 hard links (a spool file has one)"
        );
        std::fs::create_dir(layout.active.join("DIR.J5.x")).unwrap();
        assert_eq!(refused(&layout, &active, "DIR.J5.x"), "it is a directory");
    }

    #[test]
    fn a_file_swapped_for_a_link_after_listing_is_not_followed() {
        let (dir, layout, active) = spool();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, b"HELO secret\n").unwrap();
        std::fs::write(layout.incoming.join("JOB.J1.x"), b"HELO a.b\n").unwrap();
        let listed = layout.waiting(10).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].special, None);
        // The producer swaps its file for a link between listing and claim.
        std::fs::remove_file(layout.incoming.join("JOB.J1.x")).unwrap();
        std::os::unix::fs::symlink(&secret, layout.incoming.join("JOB.J1.x")).unwrap();
        let path = layout.claim(&listed[0].file).unwrap().unwrap();
        assert!(matches!(
            layout.open_claimed(&active, &path),
            Err(OpenError::Refused(why)) if why == "it is a symbolic link"
        ));
        let held = layout.hold(&path).unwrap();
        assert!(
            std::fs::symlink_metadata(&held)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read(&secret).unwrap(), b"HELO secret\n");
    }

    #[test]
    fn every_entry_is_listed_whatever_its_name_or_kind() {
        let (_dir, layout, _active) = spool();
        std::fs::write(
            layout.incoming.join(OsStr::from_bytes(b"BAD\xff\n.J1")),
            b"x",
        )
        .unwrap();
        nix::unistd::mkfifo(
            &layout.incoming.join("FIFO"),
            Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::create_dir(layout.incoming.join("stray")).unwrap();
        std::fs::write(layout.incoming.join(".partial.tmp"), b"x").unwrap();
        let (mut listed, strays) = layout.waiting_and_strays(10).unwrap();
        listed.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<_> = listed
            .iter()
            .map(|c| (c.name.as_str(), c.special))
            .collect();
        assert_eq!(names, [("BAD\\xff\\n.J1", None), ("FIFO", Some("a FIFO"))]);
        // cssmtp's own directories are not strays.
        let strays: Vec<_> = strays.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(strays, ["stray"]);
    }
}

#[cfg(test)]
mod pass_tests {
    use std::collections::BTreeSet;

    use super::*;

    fn names(listing: &[Candidate]) -> Vec<String> {
        listing.iter().map(|c| c.name.clone()).collect()
    }

    #[test]
    fn a_pass_gives_each_waiting_file_once_in_listings_of_at_most_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let layout = SpoolLayout::new(dir.path().join("W"));
        layout.create().unwrap();
        for i in 0..10 {
            std::fs::write(layout.incoming.join(format!("JOB.J{i:07}.x")), b"x").unwrap();
        }
        // Not ready (being written) and not cssmtp's: never listed.
        std::fs::write(layout.incoming.join(".JOB.tmp"), b"x").unwrap();
        let mut pass = std::fs::read_dir(&layout.incoming).unwrap();
        let mut seen = BTreeSet::new();
        let mut listings = 0;
        loop {
            let (listing, strays, ended) = layout.next_waiting(&mut pass, 4).unwrap();
            listings += 1;
            assert!(listing.len() <= 4 && strays.is_empty());
            assert!(listing.is_sorted(), "each listing oldest first");
            for name in names(&listing) {
                assert!(seen.insert(name.clone()), "{name} given twice in one pass");
                // Claimed at once, as intake does: gone from the directory.
                layout.claim(&name).unwrap();
            }
            if listings == 1 {
                // A file arriving during the pass.
                std::fs::write(layout.incoming.join("LATE.J0000099.x"), b"x").unwrap();
            }
            if ended {
                break;
            }
        }
        assert!(listings >= 3, "10 files in listings of 4: {listings}");
        assert!((0..10).all(|i| seen.contains(&format!("JOB.J{i:07}.x"))));
        // The late file came in this pass or comes in the next one.
        if !seen.contains("LATE.J0000099.x") {
            let mut next = std::fs::read_dir(&layout.incoming).unwrap();
            let (listing, _, ended) = layout.next_waiting(&mut next, 4).unwrap();
            assert_eq!(names(&listing), ["LATE.J0000099.x"]);
            assert!(ended);
        }
    }
}
