//! The shape of each ring kind's data region, checked before any byte of it is used:
//! from a creator's `Config`, or from what an opener reads in a header.

use crate::error::{Error, Result};

use super::{RECORD_HEADER, RingKind, broadcast, registry, slot};

/// Geometry shared by both ends, validated at attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpscGeometry {
    pub capacity: u64,
    pub max_message: u64,
}

impl SpscGeometry {
    /// Checks what a header claims: a power-of-two capacity and a maximum message that an
    /// empty ring can always accept (its record at most half the ring, so padding plus
    /// record plus terminator fit whatever the offset).
    pub(crate) fn new(capacity: u64, max_message: u64) -> Result<Self> {
        use super::{MAX_CAPACITY, MAX_MESSAGE_LIMIT, MIN_CAPACITY};
        if !capacity.is_power_of_two() || !(MIN_CAPACITY..=MAX_CAPACITY).contains(&capacity) {
            return Err(Error::invalid_argument(format!(
                "capacity {capacity} must be a power of two in {MIN_CAPACITY}..={MAX_CAPACITY}"
            )));
        }
        let limit = max_message_limit(capacity);
        if max_message == 0 || max_message > limit || max_message > MAX_MESSAGE_LIMIT {
            return Err(Error::invalid_argument(format!(
                "max_message {max_message} must be in 1..={limit} for capacity {capacity}"
            )));
        }
        Ok(SpscGeometry {
            capacity,
            max_message,
        })
    }

    pub(crate) fn mask(&self) -> u64 {
        self.capacity - 1
    }
}

/// The largest `max_message` a ring of `capacity` bytes supports: half the ring, less the
/// record header.
pub(crate) fn max_message_limit(capacity: u64) -> u64 {
    (capacity / 2)
        .saturating_sub(RECORD_HEADER)
        .min(super::MAX_MESSAGE_LIMIT)
}

/// Slot count, slot size, registry size and priority lanes, validated at attach.
///
/// The data region: the registry, then (with more than one lane) the cursor words of lanes
/// 1 and up (`slot::LANE_CURSORS` each; lane 0 keeps its cursors in the control block),
/// then each lane's `slot_count` slots, lane 0 first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpmcGeometry {
    /// Slots of each lane.
    pub slot_count: u64,
    pub max_message: u64,
    pub max_peers: u32,
    pub stride: u64,
    /// Priority lanes, 1 ..= `slot::MAX_LANES`.
    pub lanes: u32,
}

impl MpmcGeometry {
    /// Checks creation parameters (or what a header claims).
    pub(crate) fn new(
        slot_count: u64,
        max_message: u64,
        max_peers: u32,
        lanes: u32,
    ) -> Result<Self> {
        if !(1..=slot::MAX_LANES).contains(&u64::from(lanes)) {
            return Err(Error::invalid_argument(format!(
                "lanes {lanes} must be in 1..={} (priorities 0..lanes)",
                slot::MAX_LANES
            )));
        }
        if !slot_count.is_power_of_two() || !(2..=slot::MAX_SLOTS).contains(&slot_count) {
            return Err(Error::invalid_argument(format!(
                "slots {slot_count} must be a power of two in 2..={}",
                slot::MAX_SLOTS
            )));
        }
        if !(1..=slot::MAX_PAYLOAD).contains(&max_message) {
            return Err(Error::invalid_argument(format!(
                "max_message {max_message} must be in 1..={} for an MPMC ring",
                slot::MAX_PAYLOAD
            )));
        }
        if !(2..=registry::MAX_PEERS).contains(&max_peers) {
            return Err(Error::invalid_argument(format!(
                "max_peers {max_peers} must be in 2..={}",
                registry::MAX_PEERS
            )));
        }
        Ok(MpmcGeometry {
            slot_count,
            max_message,
            max_peers,
            stride: slot::stride(max_message),
            lanes,
        })
    }

    /// Bytes of the registry.
    #[inline]
    fn registry_len(&self) -> u64 {
        u64::from(self.max_peers) * registry::RECORD_SIZE
    }

    /// Bytes of one lane's slots.
    #[inline]
    fn lane_len(&self) -> u64 {
        self.slot_count * self.stride
    }

    /// Offset of the first slot of lane 0.
    #[inline]
    fn slots_offset(&self) -> u64 {
        self.registry_len() + u64::from(self.lanes - 1) * slot::LANE_CURSORS
    }

    /// Bytes of the data region: registry, lane cursors, then slots.
    pub(crate) fn data_len(&self) -> u64 {
        self.slots_offset() + u64::from(self.lanes) * self.lane_len()
    }

    /// Offset of lane `lane`'s cursor words (`lane` in 1..lanes): its `tail`, and its
    /// `head` `slot::LANE_HEAD` further.
    #[inline]
    pub(crate) fn lane_cursors(&self, lane: u32) -> u64 {
        debug_assert!(lane >= 1 && lane < self.lanes);
        self.registry_len() + u64::from(lane - 1) * slot::LANE_CURSORS
    }

    /// Offset of the slot holding position `pos` of lane `lane` (`< lanes`).
    #[inline]
    pub(crate) fn slot_offset(&self, lane: u32, pos: u64) -> u64 {
        debug_assert!(lane < self.lanes);
        self.slots_offset()
            + u64::from(lane) * self.lane_len()
            + (pos & (self.slot_count - 1)) * self.stride
    }
}

/// The size parameters a header records (`SegmentHeader::capacity`, `max_message`,
/// `slot_count`, `max_peers`), as read: nothing in them is trusted yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderParams {
    /// Bytes of the data region.
    pub capacity: u64,
    /// Largest payload.
    pub max_message: u64,
    /// MPMC: slots (0 otherwise).
    pub slot_count: u64,
    /// MPMC: registry records; broadcast: readers + 1 (0 otherwise).
    pub max_peers: u32,
    /// Broadcast: overflow policy (0 otherwise).
    pub policy: u32,
    /// Broadcast: lag limit in bytes, 0 for none (0 otherwise).
    pub lag_limit: u64,
    /// MPMC: priority lanes (0 otherwise).
    pub lanes: u32,
}

/// A ring kind's geometry: what its header records, how big its data region is, how many
/// peer slots it has. Segment creation and validation are written once against this.
pub trait Shape:
    Copy + PartialEq + core::fmt::Debug + core::fmt::Display + Send + Sync + 'static
{
    /// The kind recorded in the header.
    const KIND: RingKind;
    /// Checks what a header claims (`Corrupted` is the caller's to say).
    fn from_header(params: &HeaderParams) -> Result<Self>;
    /// What the header records.
    fn header(&self) -> HeaderParams;
    /// Bytes of the data region.
    fn data_len(&self) -> u64;
    /// Peer slots (SPSC: 2 roles; MPMC: registry records).
    fn peer_slots(&self) -> u32;
    /// Largest payload.
    fn max_message(&self) -> u64;
}

impl Shape for SpscGeometry {
    const KIND: RingKind = RingKind::Spsc;
    fn from_header(p: &HeaderParams) -> Result<Self> {
        SpscGeometry::new(p.capacity, p.max_message)
    }
    fn header(&self) -> HeaderParams {
        HeaderParams {
            capacity: self.capacity,
            max_message: self.max_message,
            slot_count: 0,
            max_peers: 0,
            policy: 0,
            lag_limit: 0,
            lanes: 0,
        }
    }
    fn data_len(&self) -> u64 {
        self.capacity
    }
    fn peer_slots(&self) -> u32 {
        2
    }
    fn max_message(&self) -> u64 {
        self.max_message
    }
}

impl Shape for MpmcGeometry {
    const KIND: RingKind = RingKind::Mpmc;
    fn from_header(p: &HeaderParams) -> Result<Self> {
        MpmcGeometry::new(p.slot_count, p.max_message, p.max_peers, p.lanes)
    }
    fn header(&self) -> HeaderParams {
        HeaderParams {
            capacity: self.data_len(),
            max_message: self.max_message,
            slot_count: self.slot_count,
            max_peers: self.max_peers,
            policy: 0,
            lag_limit: 0,
            lanes: self.lanes,
        }
    }
    fn data_len(&self) -> u64 {
        MpmcGeometry::data_len(self)
    }
    fn peer_slots(&self) -> u32 {
        self.max_peers
    }
    fn max_message(&self) -> u64 {
        self.max_message
    }
}

impl core::fmt::Display for SpscGeometry {
    /// The parameters in words, e.g. "capacity 4096 bytes and max_message 2040".
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "capacity {} bytes and max_message {}",
            self.capacity, self.max_message
        )
    }
}

impl core::fmt::Display for MpmcGeometry {
    /// The parameters in words, e.g. "16 slots, max_message 240 and max_peers 16".
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} slots", self.slot_count)?;
        if self.lanes > 1 {
            write!(f, " in each of {} lanes", self.lanes)?;
        }
        write!(
            f,
            ", max_message {} and max_peers {}",
            self.max_message, self.max_peers
        )
    }
}

/// What a broadcast producer does when the slowest reader has not released the space it
/// needs. Chosen at creation, recorded in the segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Policy {
    /// The producer waits (or `WouldBlock` / `Timeout`) for the slowest live reader; a
    /// dead reader stops counting as soon as it is found dead. With a lag limit, a reader
    /// further behind than the limit stops counting too and learns it (`Lagged`).
    #[default]
    Lossless,
    /// The producer never waits: it overwrites the oldest messages, and a reader that was
    /// lapped gets `Lagged { missed }` once, then continues with the oldest message left.
    Overwrite,
}

impl Policy {
    fn code(self) -> u32 {
        match self {
            Policy::Lossless => broadcast::policy::LOSSLESS,
            Policy::Overwrite => broadcast::policy::OVERWRITE,
        }
    }
}

impl core::fmt::Display for Policy {
    /// `lossless` or `overwrite`.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Policy::Lossless => "lossless",
            Policy::Overwrite => "overwrite",
        })
    }
}

/// A broadcast ring's checked parameters: its registry (producer + readers), then a byte
/// ring of `ring` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BroadcastGeometry {
    /// Bytes of the byte ring (a power of two).
    pub ring: u64,
    /// Largest payload.
    pub max_message: u64,
    /// Most readers attached at once.
    pub max_readers: u32,
    /// Overflow policy.
    pub policy: Policy,
    /// `Lossless`: bytes a reader may fall behind and still hold the producer back
    /// (`ring` when there is no limit).
    pub lag_limit: u64,
}

impl BroadcastGeometry {
    /// Checks creation parameters (or what a header claims). `lag_limit` 0: none.
    pub(crate) fn new(
        ring: u64,
        max_message: u64,
        max_readers: u32,
        policy: Policy,
        lag_limit: u64,
    ) -> Result<Self> {
        use super::MIN_CAPACITY;
        if !ring.is_power_of_two() || !(MIN_CAPACITY..=broadcast::MAX_RING).contains(&ring) {
            return Err(Error::invalid_argument(format!(
                "capacity {ring} must be a power of two in {MIN_CAPACITY}..={} for a broadcast ring",
                broadcast::MAX_RING
            )));
        }
        // A record is at most a quarter of the ring, so one is always retained when the
        // producer reclaims room (a lapped reader always finds a record to resume at).
        let limit = broadcast_max_message_limit(ring);
        if max_message == 0 || max_message > limit {
            return Err(Error::invalid_argument(format!(
                "max_message {max_message} must be in 1..={limit} for a broadcast ring of {ring} bytes"
            )));
        }
        if !(1..=broadcast::MAX_READERS).contains(&max_readers) {
            return Err(Error::invalid_argument(format!(
                "max_readers {max_readers} must be in 1..={}",
                broadcast::MAX_READERS
            )));
        }
        let lag_limit = match lag_limit {
            0 => ring,
            limit if policy == Policy::Overwrite => {
                return Err(Error::invalid_argument(format!(
                    "lag_limit {limit} applies to Lossless rings only (an Overwrite producer never waits)"
                )));
            }
            limit if limit < broadcast::size(max_message) || limit >= ring => {
                return Err(Error::invalid_argument(format!(
                    "lag_limit {limit} must be in {}..{ring} (at least one largest record, less than the ring)",
                    broadcast::size(max_message)
                )));
            }
            limit => limit,
        };
        Ok(BroadcastGeometry {
            ring,
            max_message,
            max_readers,
            policy,
            lag_limit,
        })
    }

    pub(crate) fn mask(&self) -> u64 {
        self.ring - 1
    }

    /// Registry records: the producer's and one per reader.
    pub(crate) fn records(&self) -> u32 {
        self.max_readers + 1
    }

    /// Offset of the byte ring in the data region.
    pub(crate) fn ring_base(&self) -> u64 {
        u64::from(self.records()) * registry::RECORD_SIZE
    }
}

/// The largest `max_message` a broadcast ring of `ring` bytes supports.
pub(crate) fn broadcast_max_message_limit(ring: u64) -> u64 {
    (ring / 4)
        .saturating_sub(broadcast::PAYLOAD)
        .min(super::MAX_MESSAGE_LIMIT)
}

impl Shape for BroadcastGeometry {
    const KIND: RingKind = RingKind::Broadcast;
    fn from_header(p: &HeaderParams) -> Result<Self> {
        let policy = match p.policy {
            broadcast::policy::LOSSLESS => Policy::Lossless,
            broadcast::policy::OVERWRITE => Policy::Overwrite,
            other => {
                return Err(Error::invalid_argument(format!(
                    "overflow policy {other} is not one this build knows"
                )));
            }
        };
        let records = u64::from(p.max_peers);
        let ring = p
            .capacity
            .checked_sub(records * registry::RECORD_SIZE)
            .ok_or_else(|| Error::invalid_argument("a data region smaller than its registry"))?;
        BroadcastGeometry::new(
            ring,
            p.max_message,
            p.max_peers.saturating_sub(1),
            policy,
            if p.lag_limit == ring { 0 } else { p.lag_limit },
        )
    }
    fn header(&self) -> HeaderParams {
        HeaderParams {
            capacity: self.data_len(),
            max_message: self.max_message,
            slot_count: 0,
            max_peers: self.records(),
            policy: self.policy.code(),
            lag_limit: self.lag_limit,
            lanes: 0,
        }
    }
    fn data_len(&self) -> u64 {
        self.ring_base() + self.ring
    }
    fn peer_slots(&self) -> u32 {
        self.records()
    }
    fn max_message(&self) -> u64 {
        self.max_message
    }
}

impl core::fmt::Display for BroadcastGeometry {
    /// The parameters in words, e.g. "capacity 65536 bytes, max_message 16368, 8 readers, lossless".
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "capacity {} bytes, max_message {}, {} readers, {}",
            self.ring, self.max_message, self.max_readers, self.policy
        )?;
        if self.lag_limit < self.ring {
            write!(f, ", lag limit {} bytes", self.lag_limit)?;
        }
        Ok(())
    }
}
