//! The importer's memory of what it delivered, kept in a small mapped file so that it
//! survives the importer's own crash (`kill -9`): not a host crash, which loses the rings
//! too.
//!
//! Three words per source ring: `delivered` (position of the last record known to be in
//! the target ring), `pending` (the record being delivered) and `target_before` (the
//! target producer's position before that delivery). Per record the importer stores
//! `target_before`, then `pending`, publishes, then stores `delivered`. After a crash,
//! `pending != delivered` is resolved against the target ring itself: if its producer's
//! position moved past `target_before`, the pending record was published. Every store
//! executed before the process died is in the page cache, so the three words are never
//! lost; a crash between any two of them leaves a state this rule resolves correctly.

use std::fs::OpenOptions;
use std::path::Path;

use memmap2::MmapMut;

const MAGIC: u64 = 0x7368_6d62_7269_6467; // "shmbridg"
const WORDS: usize = 8;

/// Word offsets.
const W_MAGIC: usize = 0;
const W_SOURCE: usize = 1;
const W_DELIVERED: usize = 2;
const W_PENDING: usize = 3;
const W_TARGET_BEFORE: usize = 4;

/// The importer's delivery state for one source ring.
pub struct DeliveryState {
    map: MmapMut,
}

impl DeliveryState {
    /// Opens (or creates) the state file at `path`.
    pub fn open(path: &Path) -> std::io::Result<DeliveryState> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        file.set_len((WORDS * 8) as u64)?;
        // SAFETY: the file is this importer's own (one importer per state file, as the
        // docs say); nobody truncates it while mapped.
        let map = unsafe { MmapMut::map_mut(&file)? };
        let mut state = DeliveryState { map };
        if state.get(W_MAGIC) != MAGIC {
            for w in 0..WORDS {
                state.set(w, 0);
            }
            state.set(W_MAGIC, MAGIC);
        }
        Ok(state)
    }

    fn get(&self, word: usize) -> u64 {
        u64::from_le_bytes(
            self.map[word * 8..word * 8 + 8]
                .try_into()
                .expect("8 bytes"),
        )
    }

    fn set(&mut self, word: usize, value: u64) {
        self.map[word * 8..word * 8 + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// Settles a delivery cut short by a crash, given the target producer's position now.
    pub fn recover(&mut self, target_position: u64) {
        let (delivered, pending) = (self.get(W_DELIVERED), self.get(W_PENDING));
        if pending != delivered {
            let settled = if target_position != self.get(W_TARGET_BEFORE) {
                pending
            } else {
                delivered
            };
            self.set(W_DELIVERED, settled);
            self.set(W_PENDING, settled);
        }
    }

    /// The source ring (hash of its id; 0 before the first record) and the position of
    /// the last record delivered from it.
    pub fn delivered(&self) -> (u64, u64) {
        (self.get(W_SOURCE), self.get(W_DELIVERED))
    }

    /// A new source ring (a first one, or a re-created one): nothing of it delivered yet.
    pub fn switch_source(&mut self, source: u64) {
        self.set(W_DELIVERED, 0);
        self.set(W_PENDING, 0);
        self.set(W_SOURCE, source);
    }

    /// Before publishing the record at `position`: where the target producer stands.
    pub fn begin(&mut self, position: u64, target_before: u64) {
        self.set(W_TARGET_BEFORE, target_before);
        self.set(W_PENDING, position);
    }

    /// After publishing it.
    pub fn done(&mut self, position: u64) {
        self.set(W_DELIVERED, position);
    }
}

/// A stable hash of a source ring's id (FNV-1a; 0 is kept for "none").
pub fn source_hash(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_delivery_is_settled_by_the_target_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let mut s = DeliveryState::open(&path).unwrap();
        s.switch_source(7);
        s.begin(100, 5000);
        s.done(100);
        // Crash after `begin`, before the publish: the target did not move.
        s.begin(140, 5100);
        let mut s = DeliveryState::open(&path).unwrap();
        s.recover(5100);
        assert_eq!(s.delivered(), (7, 100));
        // Crash after the publish, before `done`: the target moved.
        s.begin(140, 5100);
        let mut s = DeliveryState::open(&path).unwrap();
        s.recover(5160);
        assert_eq!(s.delivered(), (7, 140));
    }
}
