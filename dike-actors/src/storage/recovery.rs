//! Rebuilding a node log's state from its data directory on open.
//!
//! Invariant: recovery applies exactly the records that passed their
//! checksum, in log order, on top of each group's snapshot file (a newer
//! snapshot in the log supersedes the file's). A torn tail
//! of the newest segment — the only place an interrupted append can leave
//! one — is cut off before any new write, and so are the zeros preallocated
//! past its last record; anything else that fails its checksum is
//! [`StorageError::Corrupt`], because acknowledged data may be behind it.

use super::files::{io, Layout};
use super::index::{Index, SegmentId};
use super::record::{self, End};
use super::GroupId;
use dike_core::codec::decode;
use dike_core::{StorageError, Write};
use std::fs::{self, OpenOptions};

/// What recovery hands to the writer.
pub(crate) struct Recovery {
    /// Every group's state and every segment's liveness.
    pub index: Index,
    /// The segment new records go to (the newest one).
    pub active_seq: SegmentId,
    /// Its length after any torn tail was cut off.
    pub active_len: u64,
}

/// Reads snapshots and segments of `layout` back into an [`Index`].
pub(crate) fn recover(layout: &Layout) -> Result<Recovery, StorageError> {
    layout.remove_temporaries()?;
    let mut index = Index::default();
    for group in layout.snapshot_groups()? {
        index.install_snapshot(group, layout.read_snapshot(group)?);
    }
    let segments = layout.segments()?;
    let mut active_len = 0;
    for (i, &seq) in segments.iter().enumerate() {
        let path = layout.segment(seq);
        let bytes = fs::read(&path).map_err(io("read log segment", &path))?;
        let scan = record::scan(&bytes);
        index.add_segment(seq);
        for (offset, payload) in &scan.records {
            let corrupt = |what: String| {
                StorageError::Corrupt(format!(
                    "{} at byte {offset}: checksum is valid but {what}",
                    path.display()
                ))
            };
            let records = record::unbatch(payload)
                .ok_or_else(|| corrupt("the batch's records do not parse".into()))?;
            for record in records {
                let (group, writes): (GroupId, Vec<Write>) = decode("log record", record)
                    .map_err(|e| corrupt(format!("a record does not decode: {e}")))?;
                index.apply(group, &writes, Some(seq));
            }
        }
        let newest = i + 1 == segments.len();
        let valid_len = match scan.end {
            End::Clean => bytes.len(),
            End::TornTail { at } if newest => {
                if bytes[at..].iter().all(|&b| b == 0) {
                    tracing::debug!(
                        segment = %path.display(),
                        offset = at,
                        dropped = bytes.len() - at,
                        "cutting off preallocated zeros"
                    );
                } else {
                    tracing::warn!(
                        segment = %path.display(),
                        offset = at,
                        dropped = bytes.len() - at,
                        "cutting off torn tail of the log"
                    );
                }
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io("open log segment", &path))?;
                f.set_len(at as u64)
                    .and_then(|()| f.sync_all())
                    .map_err(io("truncate torn log tail", &path))?;
                at
            }
            End::TornTail { at } => {
                return Err(StorageError::Corrupt(format!(
                    "{} is damaged from byte {at} to its end, but newer segments follow it",
                    path.display()
                )))
            }
            End::CorruptMiddle { at, next_valid } => {
                return Err(StorageError::Corrupt(format!(
                    "{} has a damaged record at byte {at} followed by valid records from byte {next_valid}",
                    path.display()
                )))
            }
        };
        active_len = valid_len as u64;
    }
    // Files superseded by a tombstone or by a newer snapshot in the log,
    // left by a crash before the writer deleted them.
    for group in layout.snapshot_groups()? {
        if index.is_erased(group) || !index.snapshot_in_file(group) {
            layout.remove_snapshot(group)?;
        }
    }
    let active_seq = match segments.last() {
        Some(&seq) => seq,
        None => {
            index.add_segment(1);
            1
        }
    };
    Ok(Recovery {
        index,
        active_seq,
        active_len,
    })
}
