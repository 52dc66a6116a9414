//! The shape of each ring kind's data region, checked before any byte of it is used:
//! from a creator's `Config`, or from what an opener reads in a header.

use crate::error::{Error, Result};

use super::{RECORD_HEADER, registry, slot};

/// Geometry shared by both ends, validated at attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SpscGeometry {
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

/// Slot count, slot size and registry size, validated at attach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MpmcGeometry {
    pub slot_count: u64,
    pub max_message: u64,
    pub max_peers: u32,
    pub stride: u64,
}

impl MpmcGeometry {
    /// Checks creation parameters (or what a header claims).
    pub(crate) fn new(slot_count: u64, max_message: u64, max_peers: u32) -> Result<Self> {
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
        })
    }

    /// Bytes of the data region: registry, then slots.
    pub(crate) fn data_len(&self) -> u64 {
        u64::from(self.max_peers) * registry::RECORD_SIZE + self.slot_count * self.stride
    }

    /// Offset of the slot holding position `pos`.
    #[inline]
    pub(crate) fn slot_offset(&self, pos: u64) -> u64 {
        u64::from(self.max_peers) * registry::RECORD_SIZE
            + (pos & (self.slot_count - 1)) * self.stride
    }
}
