//! The embedded backend's write-ahead log.
//!
//! A redb commit that is durable writes every B-tree page the batch touched and syncs them;
//! with writers spread over the keyspace that is tens of pages per batch. Instead, each
//! batch's changes to the tables are appended here as one record and synced (a sequential
//! write of only the changed rows), the batch is committed to redb without a sync, and redb
//! is made durable by a checkpoint now and then, after which the log starts over. After a
//! crash, redb is back at its last checkpoint and the records after it are applied again.
//!
//! Records: `[payload length u32][crc32 of seq+payload u32][seq u64][payload]`, at
//! increasing offsets with consecutive sequence numbers. The log's file is reused from
//! offset 0 after each checkpoint, so the blocks it was allocated stay allocated and a sync
//! need not update file metadata; recovery stops at the first record that is torn, zeroed
//! or out of sequence (an older record the new ones have not yet overwritten).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::{Error, Result};

const HEADER: usize = 16;

/// A logged batch: its sequence number and its changes.
pub(super) type Record = (u64, Vec<u8>);

pub(super) struct Wal {
    file: File,
    /// Where the next record goes.
    offset: u64,
    /// The size the file is kept at (it grows past it only for an oversized record).
    capacity: u64,
    /// The record being written, kept between appends so that its memory is reused.
    record: Vec<u8>,
}

impl Wal {
    /// Opens the log at `path` and returns it with the records it holds, in order, as
    /// `(seq, payload)`: the caller applies those newer than its last checkpoint and then
    /// calls [`Wal::reset`].
    pub(super) fn open(path: &Path, capacity: u64) -> Result<(Self, Vec<Record>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(Error::backend)?;
        let len = file.metadata().map_err(Error::backend)?.len();
        let mut records = Vec::new();
        let mut offset = 0u64;
        while offset + HEADER as u64 <= len {
            let mut header = [0u8; HEADER];
            file.read_exact_at(&mut header, offset)
                .map_err(Error::backend)?;
            let size = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as u64;
            let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
            let seq = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
            let in_sequence = records.last().is_none_or(|(prev, _)| seq == prev + 1);
            if size == 0 || !in_sequence || offset + HEADER as u64 + size > len {
                break;
            }
            let mut payload = vec![0u8; size as usize];
            file.read_exact_at(&mut payload, offset + HEADER as u64)
                .map_err(Error::backend)?;
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&header[8..16]);
            hasher.update(&payload);
            if hasher.finalize() != crc {
                break;
            }
            records.push((seq, payload));
            offset += HEADER as u64 + size;
        }
        let mut wal = Self {
            file,
            offset: 0,
            capacity,
            record: Vec::new(),
        };
        wal.preallocate(len)?;
        Ok((wal, records))
    }

    /// Fills the file with zeros up to its capacity, so its blocks are allocated once.
    fn preallocate(&mut self, len: u64) -> Result<()> {
        if len >= self.capacity {
            return Ok(());
        }
        let zeros = vec![0u8; 1 << 20];
        let mut at = len;
        while at < self.capacity {
            let n = zeros.len().min((self.capacity - at) as usize);
            self.file
                .write_all_at(&zeros[..n], at)
                .map_err(Error::backend)?;
            at += n as u64;
        }
        self.file.sync_all().map_err(Error::backend)
    }

    /// Whether the log has records since the last reset.
    pub(super) fn is_empty(&self) -> bool {
        self.offset == 0
    }

    /// Whether the log has grown past its capacity and wants a checkpoint.
    pub(super) fn is_full(&self) -> bool {
        self.offset >= self.capacity
    }

    /// Appends one record and syncs it: when this returns, the record survives a crash.
    pub(super) fn append(&mut self, seq: u64, payload: &[u8]) -> Result<()> {
        let size = u32::try_from(payload.len())
            .map_err(|_| Error::InvalidArgument("a write batch over 4 GiB".into()))?;
        let seq = seq.to_le_bytes();
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&seq);
        hasher.update(payload);
        let record = &mut self.record;
        record.clear();
        record.extend_from_slice(&size.to_le_bytes());
        record.extend_from_slice(&hasher.finalize().to_le_bytes());
        record.extend_from_slice(&seq);
        record.extend_from_slice(payload);
        self.file
            .write_all_at(record, self.offset)
            .map_err(Error::backend)?;
        self.file.sync_data().map_err(Error::backend)?;
        self.offset += record.len() as u64;
        Ok(())
    }

    /// Starts the log over after a checkpoint made everything in it durable elsewhere.
    pub(super) fn reset(&mut self) {
        self.offset = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(path: &Path) -> (Wal, Vec<Record>) {
        Wal::open(path, 4096).expect("open the log")
    }

    #[test]
    fn recovery_stops_at_a_torn_record() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("wal");
        let (mut wal, records) = open(&path);
        assert!(records.is_empty());
        for seq in 1..=3 {
            wal.append(seq, format!("batch {seq}").as_bytes())
                .expect("append");
        }
        let end = wal.offset;
        drop(wal);
        // Tear the last record: its last byte never reached the disk.
        let file = OpenOptions::new().write(true).open(&path).expect("open");
        file.write_all_at(&[0xEE], end - 1).expect("write");
        let (_, records) = open(&path);
        let seqs: Vec<u64> = records.iter().map(|r| r.0).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert_eq!(records[1].1, b"batch 2");
    }

    #[test]
    fn records_left_from_before_a_reset_are_not_replayed_as_new() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("wal");
        let (mut wal, _) = open(&path);
        for seq in 1..=4 {
            wal.append(seq, b"an old batch, longer than the new one")
                .expect("append");
        }
        wal.reset();
        wal.append(5, b"new").expect("append");
        drop(wal);
        // The new record is followed by the tail of old ones, out of sequence.
        let (_, records) = open(&path);
        assert_eq!(records, vec![(5, b"new".to_vec())]);
    }
}
