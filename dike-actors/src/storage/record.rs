//! Framing of every record the engine puts on disk: `crc32 | len | payload`.
//!
//! A log append is one *batch*: a single record whose payload is
//! [`BATCH_TAG`] followed by the framed records of the batch, so one
//! checksum covers everything one `fdatasync` makes durable. Segments are
//! preallocated, so a crash during an append can leave any subset of the
//! batch's pages on disk — a later part of a batch without an earlier one;
//! the batch's checksum makes that a torn tail rather than a valid record
//! behind a damaged one. (Segments written before batches were framed hold
//! bare records; their payloads are MessagePack arrays, never [`BATCH_TAG`],
//! so both read back.)
//!
//! Invariant: a payload is handed to the caller only if its length fits in
//! the buffer and its checksum (over the length field and the payload)
//! matches, so a torn or flipped record is never decoded, let alone applied.
//! A bad record followed by a valid one is reported as corruption in the
//! middle, never silently treated as a torn tail.

/// Bytes before the payload: checksum (u32 LE) then payload length (u32 LE).
pub(crate) const HEADER_LEN: usize = 8;

/// Largest payload a record may carry. Anything larger is refused when
/// writing, and a header claiming more is treated as damage when reading.
pub(crate) const MAX_PAYLOAD: usize = 1 << 30;

/// Why a payload cannot be framed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FrameError {
    /// The payload is larger than [`MAX_PAYLOAD`].
    #[error("record of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    TooLarge(usize),
}

fn checksum(len: [u8; 4], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len);
    h.update(payload);
    h.finalize()
}

/// First payload byte of a batch record (a bare record's payload is a
/// MessagePack array, which never starts with it).
pub(crate) const BATCH_TAG: u8 = 0;

/// Appends the framed `payload` to `out`.
pub(crate) fn frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if payload.is_empty() || payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(payload.len()));
    }
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&checksum(len, payload).to_le_bytes());
    out.extend_from_slice(&len);
    out.extend_from_slice(payload);
    Ok(())
}

/// Appends `payload` to `out` as one record of a batch: `len | payload`,
/// without a checksum of its own (the batch's covers it, and a record
/// inside a torn batch must not pass for one outside it).
pub(crate) fn frame_in_batch(payload: &[u8], out: &mut Vec<u8>) -> Result<(), FrameError> {
    if payload.is_empty() || payload.len() > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(payload.len()));
    }
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The batch record holding `records` (made by [`frame_in_batch`]).
pub(crate) fn frame_batch(records: &[u8]) -> Result<Vec<u8>, FrameError> {
    let payload_len = records.len() + 1;
    if records.is_empty() || payload_len > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(payload_len));
    }
    // The payload goes in after a header-sized gap that is filled once its
    // checksum is known, so the records are copied once.
    let mut out = vec![0; HEADER_LEN];
    out.reserve(payload_len);
    out.push(BATCH_TAG);
    out.extend_from_slice(records);
    let len = (payload_len as u32).to_le_bytes();
    let crc = checksum(len, &out[HEADER_LEN..]);
    out[..4].copy_from_slice(&crc.to_le_bytes());
    out[4..HEADER_LEN].copy_from_slice(&len);
    Ok(out)
}

/// The records inside a valid log record's payload: those of a batch, or
/// the payload itself for a bare record. `None` if a batch's checksum is
/// valid but its records do not parse — damage no crash can cause.
pub(crate) fn unbatch(payload: &[u8]) -> Option<Vec<&[u8]>> {
    let Some((&BATCH_TAG, mut rest)) = payload.split_first() else {
        return Some(vec![payload]);
    };
    let mut out = Vec::new();
    while !rest.is_empty() {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let record = rest.get(4..4usize.checked_add(len)?)?;
        if record.is_empty() {
            return None;
        }
        out.push(record);
        rest = &rest[4 + len..];
    }
    (!out.is_empty()).then_some(out)
}

/// The payload of the record starting at `pos`, if a valid one starts there.
fn record_at(buf: &[u8], pos: usize) -> Option<&[u8]> {
    let header = buf.get(pos..pos.checked_add(HEADER_LEN)?)?;
    let crc = u32::from_le_bytes(header[0..4].try_into().ok()?);
    let len_bytes: [u8; 4] = header[4..8].try_into().ok()?;
    let len = u32::from_le_bytes(len_bytes) as usize;
    if len == 0 || len > MAX_PAYLOAD {
        return None;
    }
    let start = pos + HEADER_LEN;
    let payload = buf.get(start..start.checked_add(len)?)?;
    (checksum(len_bytes, payload) == crc).then_some(payload)
}

/// How a scanned buffer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// Every byte belongs to a valid record.
    Clean,
    /// The bytes from `at` on hold no valid record: a write torn by a crash
    /// (or damage confined to the tail). Safe to cut off.
    TornTail {
        /// Offset of the first byte that is not part of a valid record.
        at: usize,
    },
    /// A bad record at `at` is followed by a valid one at `next_valid`:
    /// durable data was damaged and cutting it off would lose it.
    CorruptMiddle {
        /// Offset of the bad record.
        at: usize,
        /// Offset of the first valid record after it.
        next_valid: usize,
    },
}

/// The valid records of a buffer, in order, and how it ends.
#[derive(Debug)]
pub(crate) struct Scan<'a> {
    /// `(offset, payload)` of each valid record before the end.
    pub records: Vec<(usize, &'a [u8])>,
    /// Whether the buffer ends cleanly, torn, or damaged in the middle.
    pub end: End,
}

/// Reads the records of `buf` from the start until the first bad one.
pub(crate) fn scan(buf: &[u8]) -> Scan<'_> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        match record_at(buf, pos) {
            Some(payload) => {
                records.push((pos, payload));
                pos += HEADER_LEN + payload.len();
            }
            None => {
                // Only a search for a later valid record can tell a torn
                // tail from damage in the middle; it runs on this error
                // path alone.
                let end = match (pos + 1..buf.len()).find(|&p| record_at(buf, p).is_some()) {
                    Some(next_valid) => End::CorruptMiddle {
                        at: pos,
                        next_valid,
                    },
                    None => End::TornTail { at: pos },
                };
                return Scan { records, end };
            }
        }
    }
    Scan {
        records,
        end: End::Clean,
    }
}

/// The payload of a buffer that must hold exactly one valid record (a
/// snapshot or the incarnation file).
pub(crate) fn single(buf: &[u8]) -> Option<&[u8]> {
    let payload = record_at(buf, 0)?;
    (HEADER_LEN + payload.len() == buf.len()).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            frame(p, &mut out).expect("frame");
        }
        out
    }

    #[test]
    fn framed_records_scan_back_in_order() {
        let buf = framed(&[b"one", b"two", b"three"]);
        let s = scan(&buf);
        assert_eq!(s.end, End::Clean);
        let payloads: Vec<&[u8]> = s.records.iter().map(|r| r.1).collect();
        assert_eq!(payloads, vec![&b"one"[..], b"two", b"three"]);
    }

    #[test]
    fn a_cut_last_record_is_a_torn_tail() {
        let buf = framed(&[b"one", b"two", b"three"]);
        for cut in 1..HEADER_LEN + 5 {
            let s = scan(&buf[..buf.len() - cut]);
            assert_eq!(s.records.len(), 2, "cut {cut}");
            assert_eq!(s.end, End::TornTail { at: 22 });
        }
    }

    #[test]
    fn a_flipped_byte_in_the_last_record_is_a_torn_tail() {
        let mut buf = framed(&[b"one", b"two", b"three"]);
        let last = buf.len() - 1;
        buf[last] ^= 0x40;
        let s = scan(&buf);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.end, End::TornTail { at: 22 });
    }

    #[test]
    fn a_flipped_byte_before_a_valid_record_is_corruption_in_the_middle() {
        for victim in 0..11 {
            let mut buf = framed(&[b"one", b"two", b"three"]);
            buf[victim] ^= 0x01;
            let s = scan(&buf);
            assert_eq!(
                s.end,
                End::CorruptMiddle {
                    at: 0,
                    next_valid: 11
                },
                "flipped byte {victim}"
            );
        }
    }

    #[test]
    fn zeroes_after_the_last_record_are_a_torn_tail() {
        let mut buf = framed(&[b"one"]);
        buf.extend_from_slice(&[0; 64]);
        assert_eq!(scan(&buf).end, End::TornTail { at: 11 });
    }

    fn batch(payloads: &[&[u8]]) -> Vec<u8> {
        let mut records = Vec::new();
        for p in payloads {
            frame_in_batch(p, &mut records).expect("frame");
        }
        frame_batch(&records).expect("frame batch")
    }

    #[test]
    fn a_batch_reads_back_as_its_records_and_a_bare_record_as_itself() {
        let buf = batch(&[b"\x92one", b"\x92two"]);
        let s = scan(&buf);
        assert_eq!(s.end, End::Clean);
        assert_eq!(s.records.len(), 1, "one checksum for the whole batch");
        assert_eq!(
            unbatch(s.records[0].1),
            Some(vec![&b"\x92one"[..], b"\x92two"])
        );
        assert_eq!(unbatch(b"\x92bare"), Some(vec![&b"\x92bare"[..]]));
        assert_eq!(unbatch(&[BATCH_TAG, 9, 0, 0, 0, 1]), None, "cut record");
        assert_eq!(unbatch(&[BATCH_TAG, 0, 0, 0, 0]), None, "empty record");
        assert_eq!(unbatch(&[BATCH_TAG]), None, "empty batch");
        assert!(frame_batch(&[]).is_err());
        assert!(frame_in_batch(&[], &mut Vec::new()).is_err());
    }

    #[test]
    fn a_batch_missing_its_first_page_is_a_torn_tail_not_corruption() {
        // Preallocated space is zeros, and a crash can leave a later page
        // of an append on disk without an earlier one: the records on the
        // surviving page must not pass for valid ones.
        let mut buf = batch(&[b"\x92one"]);
        let first_end = buf.len();
        let mut torn = batch(&[&[0x92; 3000][..], &[0x93; 3000][..], b"\x92x"]);
        torn[..4096 - first_end].fill(0);
        buf.extend_from_slice(&torn);
        buf.extend_from_slice(&[0; 4096]);
        let s = scan(&buf);
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.end, End::TornTail { at: first_end });
    }

    #[test]
    fn single_requires_exactly_one_record() {
        let one = framed(&[b"x"]);
        assert_eq!(single(&one), Some(&b"x"[..]));
        assert_eq!(single(&framed(&[b"x", b"y"])), None);
        assert_eq!(single(&one[..one.len() - 1]), None);
        assert!(frame(b"", &mut Vec::new()).is_err());
    }
}
