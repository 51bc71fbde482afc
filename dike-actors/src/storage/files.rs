//! The data directory: which file holds what, and how files are replaced.
//!
//! Invariant: a file other than the active log segment is only ever
//! replaced whole — written under a temporary name, fsynced, renamed over
//! the old one and the directory fsynced — so after a crash it holds either
//! its old or its new content, never a mix.
//!
//! Layout of a data dir:
//! - `LOCK`: locked (`flock`) by the process that uses the directory; holds
//!   that process's id and node name, for the message a second one gets.
//! - `identity`: which node and cluster the directory belongs to (one
//!   framed record; see `crate::node::data_dir`).
//! - `incarnation`: the node's incarnation id (one framed record).
//! - `<seq:020>.log`: log segments, replayed in ascending `seq` order.
//! - `snapshot-<group:020>.snap`: the latest snapshot of one group, if that
//!   was too large to go into the log (see `LogOptions::log_snapshot_max_bytes`).
//! - `*.tmp`: leftovers of an interrupted replacement, deleted on open.

use super::record;
use super::GroupId;
use dike_core::codec::{decode, encode};
use dike_core::{Incarnation, Snapshot, StorageError};
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

const INCARNATION: &str = "incarnation";
const IDENTITY: &str = "identity";
const LOCK: &str = "LOCK";
const SEGMENT_EXT: &str = "log";
const SNAPSHOT_PREFIX: &str = "snapshot-";
const SNAPSHOT_EXT: &str = "snap";
const TMP_EXT: &str = "tmp";

/// Turns an IO error into a [`StorageError::Io`] naming the operation.
pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StorageError {
    let path = path.display().to_string();
    move |e| StorageError::Io {
        op,
        reason: format!("{path}: {e}"),
    }
}

/// Paths inside one data directory.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    dir: PathBuf,
}

impl Layout {
    /// The layout of `dir`, created if missing.
    pub fn create(dir: &Path) -> Result<Self, StorageError> {
        fs::create_dir_all(dir).map_err(io("create data dir", dir))?;
        Ok(Layout {
            dir: dir.to_path_buf(),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the lock file.
    pub fn lock_file(&self) -> PathBuf {
        self.dir.join(LOCK)
    }

    /// Path of log segment `seq`.
    pub fn segment(&self, seq: u64) -> PathBuf {
        self.dir.join(format!("{seq:020}.{SEGMENT_EXT}"))
    }

    fn snapshot(&self, group: GroupId) -> PathBuf {
        self.dir
            .join(format!("{SNAPSHOT_PREFIX}{group:020}.{SNAPSHOT_EXT}"))
    }

    /// Makes renames, creations and deletions in the directory durable.
    pub fn sync_dir(&self) -> Result<(), StorageError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync data dir", &self.dir))
    }

    fn entries(&self) -> Result<Vec<(String, PathBuf)>, StorageError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io("list data dir", &self.dir))? {
            let entry = entry.map_err(io("list data dir", &self.dir))?;
            if let Some(name) = entry.file_name().to_str() {
                out.push((name.to_owned(), entry.path()));
            }
        }
        Ok(out)
    }

    /// Sequence numbers of the log segments, ascending.
    pub fn segments(&self) -> Result<Vec<u64>, StorageError> {
        let mut seqs: Vec<u64> = self
            .entries()?
            .iter()
            .filter_map(|(name, _)| name.strip_suffix(&format!(".{SEGMENT_EXT}"))?.parse().ok())
            .collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Groups that have a snapshot file.
    pub fn snapshot_groups(&self) -> Result<Vec<GroupId>, StorageError> {
        Ok(self
            .entries()?
            .iter()
            .filter_map(|(name, _)| {
                name.strip_prefix(SNAPSHOT_PREFIX)?
                    .strip_suffix(&format!(".{SNAPSHOT_EXT}"))?
                    .parse()
                    .ok()
            })
            .collect())
    }

    /// Deletes leftovers of replacements interrupted by a crash.
    pub fn remove_temporaries(&self) -> Result<(), StorageError> {
        for (name, path) in self.entries()? {
            if name.ends_with(&format!(".{TMP_EXT}")) {
                fs::remove_file(&path).map_err(io("remove temporary file", &path))?;
            }
        }
        Ok(())
    }

    /// Replaces `path` with one framed record holding `payload`, atomically.
    fn replace(&self, path: &Path, payload: &[u8]) -> Result<(), StorageError> {
        let mut bytes = Vec::with_capacity(payload.len() + record::HEADER_LEN);
        record::frame(payload, &mut bytes).map_err(|e| StorageError::Io {
            op: "frame file",
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension(TMP_EXT);
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io("create temporary file", &tmp))?;
        f.write_all(&bytes)
            .map_err(io("write temporary file", &tmp))?;
        f.sync_all().map_err(io("fsync temporary file", &tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io("rename temporary file", path))?;
        self.sync_dir()
    }

    /// The payload of a file written by [`Layout::replace`].
    fn read_single(&self, path: &Path) -> Result<Vec<u8>, StorageError> {
        let bytes = fs::read(path).map_err(io("read file", path))?;
        record::single(&bytes).map(<[u8]>::to_vec).ok_or_else(|| {
            StorageError::Corrupt(format!(
                "{} is damaged (checksum or length mismatch)",
                path.display()
            ))
        })
    }

    /// Writes `group`'s snapshot, encoded, atomically, replacing any
    /// earlier one.
    pub fn write_snapshot_payload(
        &self,
        group: GroupId,
        payload: &[u8],
    ) -> Result<(), StorageError> {
        self.replace(&self.snapshot(group), payload)
    }

    /// Deletes `group`'s snapshot file, if any (the replica was erased).
    pub fn remove_snapshot(&self, group: GroupId) -> Result<(), StorageError> {
        let path = self.snapshot(group);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete snapshot", &path)(e)),
        }
    }

    /// Reads `group`'s snapshot file.
    pub fn read_snapshot(&self, group: GroupId) -> Result<Snapshot, StorageError> {
        let path = self.snapshot(group);
        let payload = self.read_single(&path)?;
        decode("snapshot", &payload)
            .map_err(|e| StorageError::Corrupt(format!("{}: {e}", path.display())))
    }

    /// The payload of the identity file, if the directory has one.
    pub fn read_identity(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.dir.join(IDENTITY);
        if !path.exists() {
            return Ok(None);
        }
        self.read_single(&path).map(Some)
    }

    /// Replaces the identity file with `payload`, atomically.
    pub fn write_identity(&self, payload: &[u8]) -> Result<(), StorageError> {
        self.replace(&self.dir.join(IDENTITY), payload)
    }

    /// The incarnation stored in the directory; a fresh one is created and
    /// stored if the directory holds no data yet.
    pub fn incarnation(&self) -> Result<Incarnation, StorageError> {
        let path = self.dir.join(INCARNATION);
        if path.exists() {
            let payload = self.read_single(&path)?;
            return decode("incarnation", &payload)
                .map(Incarnation)
                .map_err(|e| StorageError::Corrupt(format!("{}: {e}", path.display())));
        }
        if !self.segments()?.is_empty() || !self.snapshot_groups()?.is_empty() {
            return Err(StorageError::Corrupt(format!(
                "{} holds log or snapshot files but no incarnation file",
                self.dir.display()
            )));
        }
        let fresh = fresh_incarnation();
        let payload = encode("incarnation", &fresh).map_err(|e| StorageError::Io {
            op: "encode incarnation",
            reason: e.to_string(),
        })?;
        self.replace(&path, &payload)?;
        Ok(Incarnation(fresh))
    }
}

/// A new random, non-zero incarnation id: from `/dev/urandom` where there is
/// one, otherwise the time and process id hashed with a randomly keyed hasher.
fn fresh_incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let from_os = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_ok();
    let id = if from_os {
        u64::from_le_bytes(bytes)
    } else {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.write_u128(now);
        h.write_u32(std::process::id());
        h.finish()
    };
    id.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnation_is_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::create(dir.path()).expect("layout");
        let first = layout.incarnation().expect("create");
        assert_ne!(first.0, 0);
        assert_eq!(layout.incarnation().expect("reread"), first);
    }

    #[test]
    fn a_damaged_incarnation_file_is_corruption() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::create(dir.path()).expect("layout");
        layout.incarnation().expect("create");
        let path = dir.path().join(INCARNATION);
        let mut bytes = fs::read(&path).expect("read");
        bytes[9] ^= 0xff;
        fs::write(&path, bytes).expect("write");
        assert!(matches!(
            layout.incarnation(),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn segments_are_listed_in_order_and_other_files_ignored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::create(dir.path()).expect("layout");
        for seq in [10, 2, 7] {
            fs::write(layout.segment(seq), b"").expect("write");
        }
        fs::write(dir.path().join("notes.txt"), b"").expect("write");
        assert_eq!(layout.segments().expect("list"), vec![2, 7, 10]);
    }
}
