//! The write-ahead journal that makes each group commit durable with one small append.
//!
//! A durable redb commit rewrites about seven pages at scattered places (the b-tree's path,
//! the allocator's state, the header) and syncs them: 0.35 ms median here, where appending one
//! frame to a file and syncing it takes 0.15 ms (BENCHMARKS.md item 24). So the writer commits
//! to redb without syncing (`Durability::None`: readers see it, a crash forgets it) and makes
//! the batch durable by first appending what it changed, the new value of every key it wrote
//! or removed, to this journal. A *checkpoint* is an ordinary durable redb commit that also
//! records a fresh epoch: every frame of the previous epoch is then dead, and the journal is
//! written again from its start. A checkpoint happens at every start, at a clean stop,
//! whenever the next frame would not fit, and after a failed batch (whose frame may be on
//! disk, and must never be replayed).
//!
//! At start the frames of the epoch redb holds are replayed, in order, onto redb's last
//! durable state. Replaying is idempotent: each change is a whole new value or a removal, so
//! the result is the state after the last frame whatever commits redb kept.
//!
//! The file is written full of zeros once, at its full size, so that an append changes data
//! only, never the file's size or its extents: `fdatasync` then writes the appended blocks and
//! nothing else. A frame is `[payload length: u32][crc32 of epoch and payload: u32]
//! [epoch: u64][payload: postcard list of changes]`, little-endian. Reading stops at the first
//! frame that is empty, too long, fails its checksum or carries another epoch: a torn append
//! (never acknowledged) or the leftovers of an earlier epoch.

use std::fs::File;
use std::hash::BuildHasher;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::write::JobsTable;
use super::{JOBS, OpenError, StoreError};

/// The journal's size. At about 270 bytes a frame for one job's transition, a checkpoint
/// comes every few thousand commits; redb keeps the pages those commits freed until then.
pub(super) const CAPACITY: u64 = 1 << 20;

const HEADER: usize = 16;

/// key → value: the epoch whose journal frames are live.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const EPOCH_KEY: &str = "journal_epoch";

/// What a write did to one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Change {
    Put(String, Vec<u8>),
    Remove(String),
}

impl Change {
    fn replay(self, table: &mut JobsTable<'_>) -> Result<(), StoreError> {
        match self {
            Change::Put(key, value) => table
                .insert(key.as_str(), value.as_slice())
                .map(drop)
                .map_err(|e| StoreError::storage("replaying the journal", e)),
            Change::Remove(key) => table
                .remove(key.as_str())
                .map(drop)
                .map_err(|e| StoreError::storage("replaying the journal", e)),
        }
    }
}

/// The open journal, owned by the writer thread.
pub(super) struct Journal {
    file: File,
    path: PathBuf,
    epoch: u64,
    /// Where the next frame goes.
    end: u64,
}

/// The journal beside the database `db_path` (`jobs.redb` → `jobs.redb-journal`).
pub(super) fn path_for(db_path: &Path) -> PathBuf {
    let mut name = db_path.as_os_str().to_owned();
    name.push("-journal");
    PathBuf::from(name)
}

impl Journal {
    /// Opens the journal at `path`, replays its live frames into the database, and checkpoints,
    /// so the store starts from one durable state and an empty journal. Returns it and how many
    /// frames were replayed.
    pub(super) fn recover(
        db: &redb::Database,
        file: File,
        path: &Path,
    ) -> Result<(Journal, usize), OpenError> {
        let bytes = read_all(&file, path)?;
        let txn = db
            .begin_write()
            .map_err(|e| StoreError::storage("write transaction", e))?;
        let replayed = {
            let mut table = txn
                .open_table(JOBS)
                .map_err(|e| StoreError::storage("opening the jobs table", e))?;
            let live = live_epoch(&txn)?;
            if live.is_some() && bytes.is_empty() {
                // Only a journal removed by hand is empty once the database has an epoch.
                tracing::warn!(journal = %path.display(), "the journal was missing: if the \
                    last stop was not clean, writes acknowledged since its last checkpoint are lost");
            }
            let frames = live.map(|epoch| frames(&bytes, epoch)).unwrap_or_default();
            let replayed = frames.len();
            for changes in frames {
                for change in decode(changes, path)? {
                    change.replay(&mut table)?;
                }
            }
            replayed
        };
        let mut journal = Journal {
            file,
            path: path.to_owned(),
            epoch: 0,
            end: 0,
        };
        journal.checkpoint(txn)?;
        if bytes.len() as u64 != CAPACITY {
            // Only now: until the checkpoint, the frames just replayed were the only copy.
            journal.fill().map_err(|source| OpenError::Journal {
                path: path.to_owned(),
                source,
            })?;
        }
        Ok((journal, replayed))
    }

    /// The frame that records `changes` under the current epoch.
    pub(super) fn frame(&self, changes: &[Change]) -> Result<Vec<u8>, StoreError> {
        let payload = postcard::to_allocvec(changes).map_err(|e| StoreError::Storage {
            step: "encoding a journal frame",
            reason: e.to_string(),
        })?;
        let mut frame = Vec::with_capacity(HEADER + payload.len());
        frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(&checksum(self.epoch, &payload).to_le_bytes());
        frame.extend_from_slice(&self.epoch.to_le_bytes());
        frame.extend_from_slice(&payload);
        Ok(frame)
    }

    /// True when `frame` fits before the journal's end.
    pub(super) fn fits(&self, frame: &[u8]) -> bool {
        self.end + frame.len() as u64 <= CAPACITY
    }

    /// Writes `frame` at the end and waits until it is on disk.
    pub(super) fn append(&mut self, frame: &[u8]) -> Result<(), StoreError> {
        let io = |e: std::io::Error| StoreError::Storage {
            step: "journal append",
            reason: format!("{}: {e}", self.path.display()),
        };
        self.file.write_all_at(frame, self.end).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        self.end += frame.len() as u64;
        Ok(())
    }

    /// Commits `txn` durably together with a fresh epoch, which kills every frame written so
    /// far; the journal starts again from its beginning.
    pub(super) fn checkpoint(&mut self, mut txn: WriteTransaction) -> Result<(), StoreError> {
        let epoch = fresh_epoch(self.epoch);
        txn.set_durability(redb::Durability::Immediate)
            .map_err(|e| StoreError::storage("checkpoint", e))?;
        meta_table(&txn)?
            .insert(EPOCH_KEY, epoch)
            .map_err(|e| StoreError::storage("recording the journal epoch", e))?;
        txn.commit()
            .map_err(|e| StoreError::storage("checkpoint commit", e))?;
        self.epoch = epoch;
        self.end = 0;
        Ok(())
    }

    /// A checkpoint with no other change in it.
    pub(super) fn checkpoint_alone(&mut self, db: &redb::Database) -> Result<(), StoreError> {
        let txn = db
            .begin_write()
            .map_err(|e| StoreError::storage("write transaction", e))?;
        self.checkpoint(txn)
    }

    /// Makes the file `CAPACITY` bytes of zeros, durably.
    fn fill(&mut self) -> std::io::Result<()> {
        self.file.set_len(0)?;
        let zeros = vec![0u8; CAPACITY as usize];
        self.file.write_all_at(&zeros, 0)?;
        self.file.sync_all()?;
        let dir = self.path.parent().unwrap_or(Path::new("/"));
        File::open(dir)?.sync_all()
    }
}

fn meta_table<'txn>(
    txn: &'txn WriteTransaction,
) -> Result<Table<'txn, &'static str, u64>, StoreError> {
    txn.open_table(META)
        .map_err(|e| StoreError::storage("opening the meta table", e))
}

fn live_epoch(txn: &WriteTransaction) -> Result<Option<u64>, StoreError> {
    let table = meta_table(txn)?;
    let epoch = table
        .get(EPOCH_KEY)
        .map_err(|e| StoreError::storage("reading the journal epoch", e))?;
    Ok(epoch.map(|v| v.value()))
}

/// A random epoch, different from `previous` and from 0 (the zeros of an unused journal).
fn fresh_epoch(previous: u64) -> u64 {
    loop {
        // std seeds each RandomState from the OS once and varies it per instance.
        let epoch = std::hash::RandomState::new().hash_one(std::time::SystemTime::now());
        if epoch != previous && epoch != 0 {
            return epoch;
        }
    }
}

fn checksum(epoch: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&epoch.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The payloads of the frames of `epoch`, from the start up to the first frame that is not one.
fn frames(bytes: &[u8], epoch: u64) -> Vec<&[u8]> {
    let mut found = Vec::new();
    let mut at = 0usize;
    while let Some(header) = bytes.get(at..at + HEADER) {
        let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
        let (len, crc) = (word(0) as usize, word(4));
        let frame_epoch = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
        let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else {
            break;
        };
        if len == 0 || frame_epoch != epoch || checksum(epoch, payload) != crc {
            break;
        }
        found.push(payload);
        at += HEADER + len;
    }
    found
}

/// A frame whose checksum holds but whose changes cannot be decoded was written by another
/// version: refuse to start rather than drop acknowledged writes.
fn decode(payload: &[u8], path: &Path) -> Result<Vec<Change>, OpenError> {
    postcard::from_bytes(payload).map_err(|e| OpenError::JournalFrame {
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

fn read_all(mut file: &File, path: &Path) -> Result<Vec<u8>, OpenError> {
    // A journal is CAPACITY bytes; a far larger file is not one of ours.
    let limit = 16 * CAPACITY;
    let mut bytes = Vec::new();
    file.by_ref()
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| OpenError::Journal {
            path: path.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > limit {
        return Err(OpenError::JournalFrame {
            path: path.to_owned(),
            reason: format!("the file is larger than {limit} bytes"),
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_of(epoch: u64, changes: &[Change]) -> Vec<u8> {
        let payload = postcard::to_allocvec(changes).unwrap();
        let mut f = (payload.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(&checksum(epoch, &payload).to_le_bytes());
        f.extend_from_slice(&epoch.to_le_bytes());
        f.extend_from_slice(&payload);
        f
    }

    #[test]
    fn reading_stops_at_a_torn_frame_another_epoch_or_zeros() {
        let a = vec![Change::Put("a".into(), b"1".to_vec())];
        let b = vec![Change::Remove("a".into())];
        let mut bytes = [frame_of(7, &a), frame_of(7, &b)].concat();
        let two = bytes.len();
        bytes.extend_from_slice(&frame_of(6, &a));
        bytes.extend_from_slice(&frame_of(7, &a));
        bytes.resize(bytes.len() + 64, 0);
        let found = frames(&bytes, 7);
        assert_eq!(found.len(), 2, "a frame of epoch 6 ends epoch 7's frames");
        assert_eq!(decode(found[1], Path::new("j")).unwrap(), b);
        assert!(
            frames(&bytes, 6).is_empty(),
            "epoch 6's frame is not at the start"
        );

        let mut torn = bytes[..two].to_vec();
        let last = torn.len() - 1;
        torn[last] ^= 0xff;
        assert_eq!(
            frames(&torn, 7).len(),
            1,
            "a damaged frame fails its checksum"
        );
        assert_eq!(
            frames(&bytes[..two - 1], 7).len(),
            1,
            "a cut frame is not read"
        );
        assert!(frames(&[0u8; 64], 7).is_empty());
        assert!(
            frames(&[0u8; 64], 0).is_empty(),
            "zeros are no frame, even of epoch 0"
        );
    }

    #[test]
    fn epochs_are_fresh() {
        let first = fresh_epoch(0);
        assert_ne!(first, 0);
        assert_ne!(fresh_epoch(first), first);
    }
}
