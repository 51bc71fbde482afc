//! The `node_log` target.
//!
//! Node-log recovery from arbitrary bytes on disk: the input becomes the
//! files of a data directory, which is then opened and every group loaded.
//! Opening must give a log or a typed `StorageError`, never a panic.
//!
//! Input: a sequence of files, each `kind | name | flags | len (u32 LE) |
//! content`. `kind % 4`: 0 the incarnation file, 1 the identity file, 2
//! log segment `name`, 3 group `name`'s snapshot. With `flags & 1` the
//! content is a list of `len (u16 LE) | body` chunks that the harness frames
//! with valid checksums (a segment's chunk as a batch body, after the batch
//! tag; any other file's as its single record), so the fuzzer reaches the
//! decoding behind the checksums; otherwise the content is written as is.

use dike_actors::storage::{LogOptions, NodeLog};

/// `crc32 (LE) | len (LE) | payload`, checksum over length and payload.
fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&len);
    out.extend_from_slice(payload);
}

fn chunks(mut content: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    while content.len() >= 2 {
        let len = usize::from(u16::from_le_bytes([content[0], content[1]]));
        let end = (2 + len).min(content.len());
        out.push(&content[2..end]);
        content = &content[end..];
    }
    out
}

/// The `node_log` target's body.
pub fn run(data: &[u8]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rest = data;
    while rest.len() >= 7 {
        let (kind, name, flags) = (rest[0] % 4, u64::from(rest[1]), rest[2]);
        let len = u32::from_le_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize;
        let end = 7usize.saturating_add(len).min(rest.len());
        let content = &rest[7..end];
        rest = &rest[end..];
        let bytes = if flags & 1 == 0 {
            content.to_vec()
        } else {
            let mut out = Vec::new();
            for body in chunks(content) {
                if kind == 2 {
                    let mut batch = vec![0u8];
                    batch.extend_from_slice(body);
                    frame(&batch, &mut out);
                } else {
                    frame(body, &mut out);
                }
            }
            out
        };
        let file = match kind {
            0 => "incarnation".to_owned(),
            1 => "identity".to_owned(),
            2 => format!("{name:020}.log"),
            _ => format!("snapshot-{name:020}.snap"),
        };
        std::fs::write(dir.path().join(file), bytes).expect("write a file");
    }
    let options = LogOptions {
        preallocate_bytes: 0,
        notifier_thread: false,
        ..LogOptions::default()
    };
    let Ok(log) = NodeLog::open_with(dir.path(), options) else {
        return;
    };
    if let Ok(groups) = log.groups() {
        for group in groups {
            let _ = log.load(group);
            let _ = log.is_erased(group);
        }
    }
}
