//! What one NATS message carries: a batch of ring records, each with its stream position,
//! and headers naming the source ring, the node, and (core mode) the batch's place in the
//! exporter's session.
//!
//! Body: for each record, its position (`u64` LE: the source ring's stream position just
//! after it, from `Consumer::read_mark`), its length (`u32` LE), its bytes. Boundaries
//! are kept exactly; a body that does not parse is refused whole, in words.

/// Header: the source ring, `NAME@CREATED_NS` (a re-created ring is another source).
pub const RING: &str = "Shmring-Ring";
/// Header: the node that exported the batch (an importer skips its own node's batches).
pub const NODE: &str = "Shmring-Node";
/// Header: records in the batch.
pub const COUNT: &str = "Shmring-Count";
/// Header: the source position just before the batch's first record (the one after the
/// record before it). Within a batch each record follows the one before it, so an
/// importer can tell a batch that continues what it delivered from one that arrived ahead
/// of a batch still missing.
pub const PREV: &str = "Shmring-Prev";
/// Header: the source ring's producer overwrote this many records before the exporter
/// read them (broadcast `Overwrite`), just before this batch: the batch does not
/// continue the one before it, and that is expected.
pub const LAGGED: &str = "Shmring-Lagged";
/// Header (core mode): the exporter's session, a random number per run.
pub const SESSION: &str = "Shmring-Session";
/// Header (core mode): the session's sequence number of the batch's first record
/// (consecutive over records, from 1).
pub const SEQ: &str = "Shmring-Seq";

/// Bytes of framing per record.
pub const RECORD_OVERHEAD: usize = 12;

/// Appends one record to a batch body.
///
/// ```
/// let mut body = Vec::new();
/// shmring_bridge::wire::push(&mut body, 48, b"hello");
/// let records: Vec<_> = shmring_bridge::wire::records(&body).collect::<Result<_, _>>()?;
/// assert_eq!(records, vec![(48, &b"hello"[..])]);
/// # Ok::<(), String>(())
/// ```
pub fn push(body: &mut Vec<u8>, position: u64, payload: &[u8]) {
    body.extend_from_slice(&position.to_le_bytes());
    body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    body.extend_from_slice(payload);
}

/// The records of a batch body, in order: `(position, payload)`, or what is wrong.
pub fn records(body: &[u8]) -> impl Iterator<Item = Result<(u64, &[u8]), String>> {
    let mut rest = body;
    let mut failed = false;
    std::iter::from_fn(move || {
        if rest.is_empty() || failed {
            return None;
        }
        let parsed = (|| {
            let (pos, tail) = rest
                .split_first_chunk::<8>()
                .ok_or("a truncated position")?;
            let (len, tail) = tail.split_first_chunk::<4>().ok_or("a truncated length")?;
            let len = u32::from_le_bytes(*len) as usize;
            if tail.len() < len {
                return Err("a length beyond the body");
            }
            let (payload, tail) = tail.split_at(len);
            rest = tail;
            Ok((u64::from_le_bytes(*pos), payload))
        })();
        if parsed.is_err() {
            failed = true;
        }
        Some(parsed.map_err(|e| format!("batch body holds {e}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_survive_and_damage_is_named() {
        let mut body = Vec::new();
        push(&mut body, 16, b"");
        push(&mut body, 40, b"abc");
        let got: Vec<_> = records(&body).collect::<Result<_, _>>().unwrap();
        assert_eq!(got, vec![(16, &b""[..]), (40, &b"abc"[..])]);
        let cut = &body[..body.len() - 1];
        let err = records(cut).collect::<Result<Vec<_>, _>>().unwrap_err();
        assert_eq!(err, "batch body holds a length beyond the body");
    }
}
