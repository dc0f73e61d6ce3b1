//! Upgrading a store written by an older lull, crash-safely.
//!
//! An older store is read with the layout it was written in, as backup
//! records ([`super::backup::dump`]), into a backup file in `[backup] dir`;
//! the old store is closed, and the records of that file (read back,
//! checked by its end record) go into a new store beside it
//! (`PATH.migrating`), which replaces the old one by two renames:
//!
//! 1. `PATH` → `PATH.old` (only once `PATH.migrating` is complete and synced);
//! 2. `PATH.migrating` → `PATH`;
//! 3. `PATH.old` is removed.
//!
//! A crash at any moment leaves one of these, and the next open finishes
//! or undoes it ([`finish_interrupted`]): the old store, or the new one,
//! never a mix.

use std::path::Path;

use super::backup::{self, LineWriter, Trees, remove_dir, sibling, sync_parent};
use super::{StoreError, TREE_ACTIVITY, TREE_ALERTS, TREE_MAIL, TREE_OUTBOX};
use crate::config::StoreConfig;

/// Finishes or undoes a migration a crash interrupted.
pub(super) fn finish_interrupted(path: &Path) -> Result<(), StoreError> {
    let new = sibling(path, "migrating");
    let old = sibling(path, "old");
    let rename = |from: &Path, to: &Path| {
        std::fs::rename(from, to).map_err(|e| {
            StoreError::Backup(format!(
                "finishing an interrupted upgrade of the store: moving {} to {}: {e}",
                from.display(),
                to.display()
            ))
        })
    };
    match (path.exists(), old.exists(), new.exists()) {
        // Stopped between the two renames: the new store is complete.
        (false, true, true) => {
            rename(&new, path)?;
            sync_parent(path);
            tracing::info!(store = %path.display(), "finished an interrupted upgrade");
            remove_dir(&old)?;
        }
        (false, true, false) => rename(&old, path)?,
        // Stopped after the second rename.
        (true, true, _) => {
            remove_dir(&old)?;
            remove_dir(&new)?;
        }
        // Stopped while the new store was being written: start again.
        (true, false, true) => remove_dir(&new)?,
        _ => {}
    }
    Ok(())
}

/// Upgrades the store at `cfg.path` (not open), written with the layout of
/// schema version `from`, to the current layout, after writing a backup of
/// it to `cfg.backup_dir`.
pub(super) fn upgrade(cfg: &StoreConfig, from: u32) -> Result<(), StoreError> {
    let path = &cfg.path;
    tracing::warn!(store = %path.display(), "upgrading a store from schema version {from} to {}", super::SCHEMA_VERSION);
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(cfg.cache_bytes)
        .open()
        .map_err(|e| super::open_error(path, e))?;
    let file = cfg.backup_dir.join(backup::file_name(
        chrono::Utc::now(),
        &format!("-schema{from}"),
    ));
    let written = write_backup(&db, path, from, cfg, &file);
    // One store open at a time: what sled kept of the old one while it was
    // read (at 100,000 accounts, hundreds of MB) is freed before the new
    // one is written.
    super::close(db, path);
    written?;
    tracing::info!(backup = %file.display(), "backup of the version-{from} store written");

    // Then the new store beside it, restored from that file as `lull
    // restore` would: what the new store holds is what the backup holds,
    // and the file's end record proves it whole before anything is
    // swapped.
    let new = sibling(path, "migrating");
    remove_dir(&new)?;
    let ncfg = StoreConfig {
        path: new.clone(),
        ..cfg.clone()
    };
    let totals = backup::restore(&ncfg, &file)?;

    // The swap.
    let old = sibling(path, "old");
    std::fs::rename(path, &old)
        .map_err(|e| StoreError::Backup(format!("moving the old store aside: {e}")))?;
    sync_parent(path);
    std::fs::rename(&new, path)
        .map_err(|e| StoreError::Backup(format!("moving the upgraded store into place: {e}")))?;
    sync_parent(path);
    remove_dir(&old)?;
    tracing::info!(store = %path.display(), records = totals.records, events = totals.events, "store upgraded");
    Ok(())
}

/// Writes every record of the open version-`from` store to the backup
/// `file`, atomically (complete, or not there).
fn write_backup(
    db: &sled::Db,
    path: &Path,
    from: u32,
    cfg: &StoreConfig,
    file: &Path,
) -> Result<(), StoreError> {
    let tree = |n: &str| db.open_tree(n).map_err(|e| super::open_error(path, e));
    let (activity, alerts, outbox, mail) = (
        tree(TREE_ACTIVITY)?,
        tree(TREE_ALERTS)?,
        tree(TREE_OUTBOX)?,
        tree(TREE_MAIL)?,
    );
    let trees = Trees {
        activity: &activity,
        alerts: &alerts,
        outbox: &outbox,
        mail: &mail,
    };
    std::fs::create_dir_all(&cfg.backup_dir).map_err(|e| {
        StoreError::Backup(format!(
            "cannot create the backup folder {}: {e}",
            cfg.backup_dir.display()
        ))
    })?;
    let mut failure = None;
    super::files::write_atomically(file, |w| {
        let run = || -> Result<(), StoreError> {
            let io = |e: std::io::Error| StoreError::Backup(format!("writing the backup: {e}"));
            let gz = flate2::GzBuilder::new()
                .mtime(0)
                .write(w, flate2::Compression::fast());
            let mut lines = LineWriter::new(gz, from).map_err(io)?;
            backup::dump(&trees, from, |r| lines.record(&r).map_err(io))?;
            lines.end().map_err(io)?.finish().map_err(io)?;
            Ok(())
        };
        run().map_err(|e| {
            let m = e.to_string();
            failure = Some(e);
            std::io::Error::other(m)
        })
    })
    .map_err(|e| {
        failure
            .take()
            .unwrap_or_else(|| StoreError::Backup(format!("writing {}: {e}", file.display())))
    })
}
