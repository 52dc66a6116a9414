//! How `write` cuts standard input into messages and `cat` writes messages out, so a ring
//! between two shell pipes keeps message boundaries.

use std::io::{self, BufRead, Write};

/// A way of marking message boundaries in a byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// One message per line; the newline is not part of the message.
    Lines,
    /// Messages end with a NUL byte (not part of the message), like `find -print0`.
    Nul,
    /// Each message is a 4-byte little-endian length, then that many bytes.
    Len32,
    /// No boundaries: `write` sends what each read returns (up to the ring's largest
    /// message), `cat` writes the bytes as they come.
    Raw,
}

impl Framing {
    /// Reads the next message of `input` into `msg` (cleared first): `false` at the end of
    /// the input. `max` bounds a raw read.
    pub fn read(self, input: &mut impl BufRead, msg: &mut Vec<u8>, max: usize) -> io::Result<bool> {
        msg.clear();
        match self {
            Framing::Lines | Framing::Nul => {
                let end = if self == Framing::Lines { b'\n' } else { 0 };
                if input.read_until(end, msg)? == 0 {
                    return Ok(false);
                }
                if msg.last() == Some(&end) {
                    msg.pop();
                }
                Ok(true)
            }
            Framing::Len32 => {
                let mut len = [0u8; 4];
                match input.read_exact(&mut len[..1]) {
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
                    other => other?,
                }
                input.read_exact(&mut len[1..]).map_err(truncated)?;
                let len = u32::from_le_bytes(len) as usize;
                msg.resize(len, 0);
                input.read_exact(msg).map_err(truncated)?;
                Ok(true)
            }
            Framing::Raw => {
                let buf = input.fill_buf()?;
                if buf.is_empty() {
                    return Ok(false);
                }
                let take = buf.len().min(max.max(1));
                msg.extend_from_slice(&buf[..take]);
                input.consume(take);
                Ok(true)
            }
        }
    }

    /// Writes `msg` to `out` with this framing's boundary.
    pub fn write(self, out: &mut impl Write, msg: &[u8]) -> io::Result<()> {
        match self {
            Framing::Lines => {
                out.write_all(msg)?;
                out.write_all(b"\n")
            }
            Framing::Nul => {
                out.write_all(msg)?;
                out.write_all(&[0])
            }
            Framing::Len32 => {
                let len = u32::try_from(msg.len()).map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "message over 4 GiB")
                })?;
                out.write_all(&len.to_le_bytes())?;
                out.write_all(msg)
            }
            Framing::Raw => out.write_all(msg),
        }
    }
}

fn truncated(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the input ends inside a len32 message",
        )
    } else {
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(framing: Framing, msgs: &[&[u8]]) {
        let mut stream = Vec::new();
        for msg in msgs {
            framing.write(&mut stream, msg).unwrap();
        }
        let mut input = io::Cursor::new(stream);
        let mut got = Vec::new();
        let mut msg = Vec::new();
        while framing.read(&mut input, &mut msg, 1 << 20).unwrap() {
            got.push(msg.clone());
        }
        assert_eq!(got, msgs, "{framing:?}");
    }

    #[test]
    fn every_framing_keeps_boundaries() {
        round_trip(Framing::Lines, &[b"a", b"", b"bc"]);
        round_trip(Framing::Nul, &[b"a\nb", b"", b"c"]);
        round_trip(Framing::Len32, &[b"a\0\n", b"", b"xyz"]);
    }

    #[test]
    fn a_last_line_without_newline_is_a_message() {
        let mut input = io::Cursor::new(b"one\ntwo".to_vec());
        let mut msg = Vec::new();
        assert!(Framing::Lines.read(&mut input, &mut msg, 64).unwrap());
        assert!(Framing::Lines.read(&mut input, &mut msg, 64).unwrap());
        assert_eq!(msg, b"two");
        assert!(!Framing::Lines.read(&mut input, &mut msg, 64).unwrap());
    }

    #[test]
    fn a_truncated_len32_stream_is_an_error() {
        let mut input = io::Cursor::new(vec![5, 0, 0, 0, b'a']);
        let err = Framing::Len32
            .read(&mut input, &mut Vec::new(), 64)
            .unwrap_err();
        assert!(err.to_string().contains("inside a len32 message"), "{err}");
    }

    #[test]
    fn raw_reads_are_cut_at_the_largest_message() {
        let mut input = io::BufReader::new(io::Cursor::new(vec![7u8; 10]));
        let mut msg = Vec::new();
        assert!(Framing::Raw.read(&mut input, &mut msg, 4).unwrap());
        assert_eq!(msg.len(), 4);
    }
}
