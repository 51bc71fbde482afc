//! A node's data directory: which node and cluster it belongs to, and the
//! one process that uses it.
//!
//! Invariants:
//! - While a node runs on a data directory, its process holds an exclusive
//!   `flock` on the directory's `LOCK` file, taken before anything else in
//!   the directory is read: opening the node log cuts torn tails and deletes
//!   leftovers, which must never happen beside a live node. The kernel
//!   drops the lock when the process ends however it ends (kill -9
//!   included), so a crash never leaves a stale lock behind.
//! - The `identity` file names the node, its cluster and the directory's
//!   incarnation. It is written at the first start on the directory (a
//!   directory written before identities existed is adopted by its next
//!   start), and a start under another name or for another cluster is
//!   refused before the node log is opened. Afterwards only `joined` changes
//!   (false to true, once the node has joined), and the incarnation if the
//!   node log's files were removed and it started a new one.
//!
//! The cluster is named by the names of the masters the directory first
//! started with, sorted, and the identity also keeps the masters the node
//! learned since (`dike master add|remove` change them; see
//! [`crate::node::masters`]). A start whose `--masters` name a master the
//! directory does not know is refused as another cluster's: the masters'
//! names tell one cluster's data from another's without asking anyone, and
//! a node may be started with the masters it started with or those it
//! learned last.

use crate::error::StartError;
use crate::node::identity::{node_id_of, MasterSpec};
use crate::node::masters::Masters;
use crate::storage::files::Layout;
use crate::storage::provider::NodeLogProvider;
use dike_core::codec::{decode, encode};
use dike_core::{Incarnation, NodeId};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

/// Who a data directory belongs to, as its `identity` file says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeIdentity {
    /// The node's name.
    pub name: String,
    /// Its id (derived from the name; kept for whoever reads the file).
    pub node_id: NodeId,
    /// The incarnation of the directory's node log.
    pub incarnation: Incarnation,
    /// The cluster: its masters' names, sorted.
    pub cluster: Vec<String>,
    /// Whether the node has joined the cluster (it then re-joins by itself
    /// after every restart).
    #[serde(default)]
    pub joined: bool,
    /// Whether the operator removed the node from the cluster (`dike node
    /// remove`): the master refuses this incarnation, so a start on the
    /// directory is refused at once.
    #[serde(default)]
    pub removed: bool,
    /// The masters the node last learned from the cluster, if it did.
    #[serde(default)]
    pub masters: Option<Masters>,
}

/// The cluster of `masters`, as an identity names it.
pub fn cluster_of(masters: &[MasterSpec]) -> Vec<String> {
    let mut names: Vec<String> = masters.iter().map(|m| m.name.clone()).collect();
    names.sort();
    names.dedup();
    names
}

impl NodeIdentity {
    /// The names of the masters the directory knows, sorted: those it
    /// was first started with and those it learned last.
    pub fn known_masters(&self) -> Vec<String> {
        let learned = self.masters.iter().flat_map(|m| m.specs.iter());
        let mut known: Vec<String> = self.cluster.to_vec();
        known.extend(learned.map(|s| s.name.clone()));
        known.sort();
        known.dedup();
        known
    }

    /// Whether node `name` of cluster `cluster` may use a directory of this
    /// identity.
    fn admits(&self, dir: &Path, name: &str, cluster: &[String]) -> Result<(), StartError> {
        if self.name != name {
            return Err(StartError::OtherNode {
                dir: dir.to_path_buf(),
                stored: self.name.clone(),
                given: name.to_owned(),
            });
        }
        let known = self.known_masters();
        if !cluster.iter().all(|c| known.contains(c)) {
            return Err(StartError::OtherCluster {
                dir: dir.to_path_buf(),
                stored: known,
                given: cluster.to_vec(),
            });
        }
        Ok(())
    }
}

/// A data directory held by this process. See the module documentation.
pub struct DataDir {
    layout: Layout,
    /// Closing it releases the lock: it lives as long as the node's
    /// configuration (and so its node log).
    _lock: File,
    identity: Mutex<NodeIdentity>,
}

impl std::fmt::Debug for DataDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataDir")
            .field("dir", &self.layout.dir())
            .field("identity", &self.identity())
            .finish()
    }
}

impl DataDir {
    /// Locks `dir` (created if missing), checks that it belongs to node
    /// `name` of the cluster of `masters` (adopting a directory that has no
    /// identity yet) and opens its node log (with segments of
    /// `segment_bytes`, or the default size).
    pub(crate) fn open(
        dir: &Path,
        name: &str,
        masters: &[MasterSpec],
        segment_bytes: Option<u64>,
    ) -> Result<(DataDir, NodeLogProvider), StartError> {
        let failed = |reason: String| StartError::DataDir {
            dir: dir.to_path_buf(),
            reason,
        };
        let layout = Layout::create(dir).map_err(|e| failed(e.to_string()))?;
        let lock = lock(&layout, name)?;
        let cluster = cluster_of(masters);
        let stored = match layout.read_identity().map_err(|e| failed(e.to_string()))? {
            Some(bytes) => Some(
                decode::<NodeIdentity>("identity", &bytes)
                    .map_err(|e| failed(format!("its identity file is unreadable: {e}")))?,
            ),
            None => None,
        };
        if let Some(stored) = &stored {
            stored.admits(dir, name, &cluster)?;
        }
        let provider =
            NodeLogProvider::open_sized(dir, segment_bytes).map_err(|e| failed(e.to_string()))?;
        let incarnation = provider.data_incarnation();
        if let Some(stored) = stored.as_ref().filter(|s| s.removed) {
            if stored.incarnation == incarnation {
                return Err(StartError::Removed {
                    dir: dir.to_path_buf(),
                    name: name.to_owned(),
                });
            }
        }
        let identity = match stored {
            Some(stored) if stored.incarnation == incarnation => stored,
            earlier => {
                match &earlier {
                    None => tracing::info!(dir = %dir.display(), name, "data dir identity written"),
                    Some(e) => tracing::warn!(
                        dir = %dir.display(),
                        was = e.incarnation.0,
                        now = incarnation.0,
                        "the node log started a new incarnation (were its files removed?)"
                    ),
                }
                let identity = NodeIdentity {
                    name: name.to_owned(),
                    node_id: node_id_of(name),
                    incarnation,
                    cluster,
                    joined: earlier.as_ref().is_some_and(|e| e.joined),
                    removed: false,
                    masters: earlier.and_then(|e| e.masters),
                };
                write(&layout, &identity).map_err(failed)?;
                identity
            }
        };
        let held = DataDir {
            layout,
            _lock: lock,
            identity: Mutex::new(identity),
        };
        Ok((held, provider))
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.layout.dir()
    }

    /// Its identity now.
    pub fn identity(&self) -> NodeIdentity {
        self.identity
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records that the node has joined the cluster (once; later calls
    /// change nothing). Returns whether it wrote.
    pub(crate) fn record_joined(&self) -> Result<bool, String> {
        let mut identity = self.identity.lock().unwrap_or_else(PoisonError::into_inner);
        if identity.joined {
            return Ok(false);
        }
        let next = NodeIdentity {
            joined: true,
            ..identity.clone()
        };
        write(&self.layout, &next)?;
        *identity = next;
        Ok(true)
    }
}

impl DataDir {
    /// Records the masters the node learned, for its next start. Returns
    /// whether it wrote.
    pub(crate) fn record_masters(&self, masters: &Masters) -> Result<bool, String> {
        let mut identity = self.identity.lock().unwrap_or_else(PoisonError::into_inner);
        if identity.masters.as_ref() == Some(masters) {
            return Ok(false);
        }
        let next = NodeIdentity {
            masters: Some(masters.clone()),
            ..identity.clone()
        };
        write(&self.layout, &next)?;
        *identity = next;
        Ok(true)
    }

    /// Records that the operator removed the node from the cluster, so the
    /// next start on the directory is refused. Returns whether it wrote.
    pub(crate) fn record_removed(&self) -> Result<bool, String> {
        let mut identity = self.identity.lock().unwrap_or_else(PoisonError::into_inner);
        if identity.removed {
            return Ok(false);
        }
        let next = NodeIdentity {
            removed: true,
            ..identity.clone()
        };
        write(&self.layout, &next)?;
        *identity = next;
        Ok(true)
    }
}

fn write(layout: &Layout, identity: &NodeIdentity) -> Result<(), String> {
    let bytes = encode("identity", identity).map_err(|e| e.to_string())?;
    layout.write_identity(&bytes).map_err(|e| e.to_string())
}

/// Takes the directory's lock and writes who holds it into the lock file,
/// or says who does.
/// How long a start waits for a node of its own process to release the
/// data dir.
const SAME_PROCESS_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

fn lock(layout: &Layout, name: &str) -> Result<File, StartError> {
    let path = layout.lock_file();
    let failed = |e: std::io::Error| StartError::DataDir {
        dir: layout.dir().to_path_buf(),
        reason: format!("cannot lock {}: {e}", path.display()),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(failed)?;
    // A node of this very process that was just stopped may still be
    // releasing the directory (its last tasks drop the node's context a
    // moment after `stop` returned): wait for it, briefly. Another
    // process's lock is refused at once.
    let ours = format!("pid {},", std::process::id());
    let deadline = std::time::Instant::now() + SAME_PROCESS_WAIT;
    loop {
        // Called by path: std's `File::try_lock` (Rust 1.89) would shadow
        // the trait's method on newer compilers.
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => break,
            Err(fs4::TryLockError::WouldBlock) => {
                let held_by = holder(&path);
                if held_by.starts_with(&ours) && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    continue;
                }
                return Err(StartError::DataDirInUse {
                    dir: layout.dir().to_path_buf(),
                    holder: held_by,
                });
            }
            Err(fs4::TryLockError::Error(e)) => return Err(failed(e)),
        }
    }
    let who = format!("pid {}, node {name}\n", std::process::id());
    file.set_len(0)
        .and_then(|()| file.write_all(who.as_bytes()))
        .and_then(|()| file.flush())
        .map_err(failed)?;
    Ok(file)
}

/// Who holds the lock, as the holder wrote it.
fn holder(path: &Path) -> String {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "holder unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masters(names: &[&str]) -> Vec<MasterSpec> {
        names
            .iter()
            .enumerate()
            .map(|(i, n)| MasterSpec {
                name: (*n).to_owned(),
                address: format!("127.0.0.1:{}", 4000 + i),
            })
            .collect()
    }

    #[test]
    fn a_held_directory_is_refused_naming_its_holder_and_freed_when_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = masters(&["a"]);
        let (held, _log) = DataDir::open(dir.path(), "a", &m, None).expect("first");
        match DataDir::open(dir.path(), "a", &m, None) {
            Err(StartError::DataDirInUse { holder, .. }) => {
                assert!(holder.contains("node a"), "{holder}");
                assert!(holder.contains(&std::process::id().to_string()), "{holder}");
            }
            other => panic!("expected DataDirInUse, got {other:?}"),
        }
        drop((held, _log));
        DataDir::open(dir.path(), "a", &m, None).expect("free again");
    }

    /// A node of this process stopped a moment ago may still be dropping
    /// its context: a start on its dir waits for it instead of refusing.
    #[test]
    fn a_start_waits_briefly_for_a_node_of_its_own_process_to_let_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = masters(&["a"]);
        let (held, log) = DataDir::open(dir.path(), "a", &m, None).expect("first");
        // The stopped node's last task lets go a little later.
        let late = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop((held, log));
        });
        let again = DataDir::open(dir.path(), "a", &m, None);
        late.join().expect("joined");
        assert!(again.is_ok(), "{:?}", again.err());
    }

    #[test]
    fn another_name_or_another_cluster_is_refused_and_the_identity_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = masters(&["m1", "m2", "m3"]);
        let (held, log) = DataDir::open(dir.path(), "n4", &m, None).expect("first");
        let first = held.identity();
        assert_eq!(first.cluster, ["m1", "m2", "m3"]);
        assert_eq!(first.incarnation, log.data_incarnation());
        drop((held, log));

        let renamed = DataDir::open(dir.path(), "n5", &m, None);
        assert!(
            matches!(&renamed, Err(StartError::OtherNode { stored, given, .. })
                if stored == "n4" && given == "n5"),
            "{renamed:?}"
        );
        let other = DataDir::open(dir.path(), "n4", &masters(&["x1"]), None);
        assert!(
            matches!(&other, Err(StartError::OtherCluster { .. })),
            "{other:?}"
        );
        // The masters in another order, at other addresses: the same cluster.
        let mut moved = masters(&["m3", "m1", "m2"]);
        moved[0].address = "10.0.0.9:7000".into();
        let (again, _log) = DataDir::open(dir.path(), "n4", &moved, None).expect("same node");
        assert_eq!(again.identity(), first);
    }

    #[test]
    fn the_masters_learned_are_kept_and_a_start_may_name_them_but_no_stranger() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (held, log) =
            DataDir::open(dir.path(), "n4", &masters(&["m1", "m2", "m3"]), None).expect("first");
        let learned = Masters::seeds(&masters(&["m1", "m2", "n4"]));
        assert_eq!(held.record_masters(&learned), Ok(true));
        assert_eq!(held.record_masters(&learned), Ok(false), "written once");
        drop((held, log));
        let (held, log) = DataDir::open(dir.path(), "n4", &masters(&["m1", "m2", "n4"]), None)
            .expect("the masters it learned");
        assert_eq!(held.identity().masters, Some(learned));
        assert_eq!(held.identity().known_masters(), ["m1", "m2", "m3", "n4"]);
        drop((held, log));
        let (held, log) = DataDir::open(dir.path(), "n4", &masters(&["m1", "m2", "m3"]), None)
            .expect("the masters it started with");
        drop((held, log));
        let stranger = DataDir::open(dir.path(), "n4", &masters(&["m1", "m2", "x9"]), None);
        assert!(
            matches!(&stranger, Err(StartError::OtherCluster { .. })),
            "{stranger:?}"
        );
    }

    #[test]
    fn joined_is_recorded_once_and_survives_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let m = masters(&["m"]);
        let (held, log) = DataDir::open(dir.path(), "n", &m, None).expect("open");
        assert!(!held.identity().joined);
        assert_eq!(held.record_joined(), Ok(true));
        assert_eq!(held.record_joined(), Ok(false));
        drop((held, log));
        let (held, _log) = DataDir::open(dir.path(), "n", &m, None).expect("reopen");
        assert!(held.identity().joined);
    }

    #[test]
    fn a_directory_from_before_identities_is_adopted_with_its_incarnation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let incarnation = crate::storage::NodeLog::open(dir.path())
            .expect("old-style log")
            .incarnation();
        let (held, _log) =
            DataDir::open(dir.path(), "old", &masters(&["old"]), None).expect("adopt");
        assert_eq!(held.identity().incarnation, incarnation);
        assert_eq!(held.identity().name, "old");
    }
}
