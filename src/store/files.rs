//! The store's folder as files: what may be in it, who holds it, leftovers
//! of a crash, real durability, free space, and the seal that tells a
//! store that lost committed data from one that never had it.
//!
//! sled 0.34 needs help on four counts (all measured, see NOTES.md):
//! - its `flush` ends in `sync_file_range` (no metadata, no drive cache)
//!   and its blob files are never synced: [`sync`] makes a commit durable
//!   with `syncfs` before lull says "done";
//! - a command that fails on a full disk can leave an empty
//!   `snap.*.generating` file that sled later reads as a corrupt snapshot:
//!   [`Folder::prepare`] removes such leftovers (under the store's lock);
//! - on a full disk a flush can wait forever: writes are refused before
//!   the disk is that full ([`free_bytes`]);
//! - a truncated or torn log can make sled open an *empty* store without
//!   a word: the seal ([`Seal`]), kept outside sled and written after each
//!   durable commit, says how far every tree had got, and a store that is
//!   behind its seal is refused as corrupt.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::StoreError;

/// The seal file, beside sled's own files.
pub(super) const SEAL: &str = "lull.seal";
const SEAL_TMP: &str = "lull.seal.tmp";

/// The names sled (and lull) put in a store folder. Anything else means
/// the folder is not a store, and lull will not write into it.
fn is_store_file(name: &str) -> bool {
    matches!(name, "conf" | "db" | "blobs" | SEAL | SEAL_TMP) || name.starts_with("snap.")
}

/// What an existing folder at the store path turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// No folder, or an empty one: a new store.
    Nothing,
    /// sled's files (and maybe the seal).
    Store,
}

/// Looks at the folder without opening it.
pub(super) fn inspect(path: &Path) -> Result<Found, StoreError> {
    let entries = match std::fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
                detail: "it is a file, not a folder".into(),
            });
        }
        Err(e) => return Err(StoreError::io(path, "reading the store folder", e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(|e| StoreError::io(path, "reading the store folder", e))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    if names.is_empty() {
        return Ok(Found::Nothing);
    }
    let mut foreign: Vec<&String> = names.iter().filter(|n| !is_store_file(n)).collect();
    if !foreign.is_empty() {
        foreign.sort();
        let shown: Vec<&str> = foreign.iter().take(5).map(|s| s.as_str()).collect();
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            detail: format!(
                "it holds files a store does not have ({}{})",
                shown.join(", "),
                if foreign.len() > 5 { ", …" } else { "" }
            ),
        });
    }
    let has = |n: &str| names.iter().any(|x| x == n);
    if has("db") && !has("conf") {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
            detail: "it has a file `db` but no sled `conf`: not a store lull wrote".into(),
        });
    }
    if has(SEAL) && !has("db") {
        return Err(StoreError::corrupt(
            path,
            "its data file `db` is missing although lull had committed data to it",
        ));
    }
    if !has("db") {
        // sled creates `conf` and `blobs` first: a store whose creation
        // was cut short holds nothing yet.
        return Ok(Found::Nothing);
    }
    Ok(Found::Store)
}

/// Holds sled's own lock (an exclusive `flock` on `db`) for a moment, to
/// tidy up the leftovers of a crash while no other lull can be using the
/// store. Released when dropped, before sled takes it.
pub(super) struct Probe {
    _file: File,
}

impl Probe {
    /// Fails with [`StoreError::Locked`] while another process has the store.
    pub(super) fn take(path: &Path) -> Result<Option<Probe>, StoreError> {
        let file = match File::open(path.join("db")) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StoreError::io(path, "opening the data file", e)),
        };
        #[cfg(unix)]
        {
            use std::os::fd::AsRawFd;
            // SAFETY: flock on a descriptor we own; no memory is involved.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    return Err(StoreError::Locked {
                        path: path.to_path_buf(),
                    });
                }
                return Err(StoreError::io(path, "locking the store", err));
            }
        }
        Ok(Some(Probe { _file: file }))
    }

    /// Removes what a crash or a full disk left behind: a snapshot sled
    /// never finished (it renames a complete one into place, so a
    /// `.generating` file is never one) and a half-written seal.
    pub(super) fn tidy(&self, path: &Path) -> Result<Vec<String>, StoreError> {
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(path)
            .map_err(|e| StoreError::io(path, "reading the store folder", e))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if (name.starts_with("snap.") && name.ends_with(".generating")) || name == SEAL_TMP {
                std::fs::remove_file(e.path())
                    .map_err(|err| StoreError::io(path, "removing an unfinished snapshot", err))?;
                removed.push(name);
            }
        }
        Ok(removed)
    }
}

/// Makes everything written to the store's file system durable: data,
/// metadata and the drive's cache (`syncfs`; sled's own flush stops short
/// of that).
pub(super) fn sync(dir: &File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: syncfs on a descriptor we own.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        dir.sync_all()
    }
}

/// Bytes free for an unprivileged writer on the store's file system.
pub(super) fn free_bytes(path: &Path) -> std::io::Result<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = std::ffi::CString::new(path.as_os_str().as_bytes())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: statvfs fills the struct we pass; the path is NUL-terminated.
        if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(s.f_bavail as u64 * s.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(u64::MAX)
    }
}

/// Which file a path is (device and inode): the store notices when its
/// folder is deleted or replaced under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    dev: u64,
    ino: u64,
}

impl Identity {
    pub(super) fn of(path: &Path) -> std::io::Result<Identity> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(path)?;
            Ok(Identity {
                dev: m.dev(),
                ino: m.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = std::fs::metadata(path)?;
            Ok(Identity { dev: 0, ino: 0 })
        }
    }
}

/// How far each tree had got at the last durable commit: each write bumps
/// its tree's generation (stored in the tree, in the same atomic write),
/// and after the commit is on disk the seal records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Seal {
    pub trees: BTreeMap<String, u64>,
}

impl Seal {
    pub(super) fn read(path: &Path) -> Result<Option<Seal>, StoreError> {
        match std::fs::read(path.join(SEAL)) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                StoreError::corrupt(path, format!("its seal file {SEAL} is unreadable ({e})"))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StoreError::io(path, "reading the seal", e)),
        }
    }

    /// Writes the seal atomically (a new file renamed over the old one);
    /// durable after the next [`sync`].
    pub(super) fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.join(SEAL_TMP);
        let mut f = File::create(&tmp)?;
        f.write_all(&serde_json::to_vec(self).unwrap_or_default())?;
        drop(f);
        std::fs::rename(&tmp, path.join(SEAL))
    }
}

/// Writes `file` atomically: into `FILE.tmp` beside it, synced, then
/// renamed over it (and the folder synced), so a reader sees the old file
/// or the whole new one, never a part.
pub fn write_atomically(
    file: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = file
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let result = (|| {
        let mut f = std::io::BufWriter::new(File::create(&tmp)?);
        write(&mut f)?;
        let f = f.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)?;
        File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
