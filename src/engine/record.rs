//! The on-media layout of the log: a header, then records. All integers little-endian.
//!
//! Log header (64 bytes at offset 0):
//! `magic "NVMMIOLG" (8) | version u32 | generation u32 | crc32c of bytes 0..16 (u32) | zero`
//!
//! Record (at 8-byte aligned positions from 64 on):
//! `magic u32 | kind u8 | 0 u8 | 0 u16 | len u32 | crc32c u32 | offset u64 | generation u32 |
//! epoch u32` (32 bytes), then `len` data bytes, padded to a multiple of 8.
//! The crc covers the header (with the crc field zero) and the data. Block records are written
//! with a zero crc and sealed (crc stored) when their epoch commits. A record belongs to the
//! log only if its magic, generation and crc are right; scanning stops at the first that is not.

pub const LOG_MAGIC: &[u8; 8] = b"NVMMIOLG";
pub const LOG_VERSION: u32 = 1;
pub const LOG_HEADER_LEN: u64 = 64;
pub const RECORD_MAGIC: u32 = 0x4c4d_564e;
pub const RECORD_HEADER_LEN: u64 = 32;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
pub enum Kind {
    /// `len` bytes written at file offset `offset`.
    Write = 1,
    /// The file's size set to `offset`.
    Truncate = 2,
    /// Everything before this record is committed; the file's size is `offset`.
    Commit = 3,
    /// The whole block of [`BLOCK`] bytes at file offset `offset` (its latest contents in the
    /// record's epoch).
    Block = 4,
}

/// The unit of logging: writes are logged as whole blocks of this size.
pub const BLOCK: u64 = 4096;

impl Kind {
    fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::Write),
            2 => Some(Kind::Truncate),
            3 => Some(Kind::Commit),
            4 => Some(Kind::Block),
            _ => None,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RecordHeader {
    pub kind: Kind,
    pub len: u32,
    pub offset: u64,
    pub generation: u32,
    pub epoch: u32,
}

impl RecordHeader {
    /// Bytes the record takes in the log, header and padding included.
    pub fn size(&self) -> u64 {
        RECORD_HEADER_LEN + (self.len as u64).next_multiple_of(8)
    }

    /// The header bytes for this record with `data`, crc included.
    pub fn encode(&self, data: &[u8]) -> [u8; RECORD_HEADER_LEN as usize] {
        debug_assert_eq!(data.len(), self.len as usize);
        let mut b = self.encode_without_crc();
        let crc = crc32c::crc32c_append(crc32c::crc32c(&b), data);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// The header with a zero checksum (a record whose data is not final yet).
    pub fn encode_unsealed(&self) -> [u8; RECORD_HEADER_LEN as usize] {
        self.encode_without_crc()
    }

    fn encode_without_crc(&self) -> [u8; RECORD_HEADER_LEN as usize] {
        let mut b = [0u8; RECORD_HEADER_LEN as usize];
        b[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
        b[4] = self.kind as u8;
        b[8..12].copy_from_slice(&self.len.to_le_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..28].copy_from_slice(&self.generation.to_le_bytes());
        b[28..32].copy_from_slice(&self.epoch.to_le_bytes());
        b
    }

    /// Parses a header; `None` if it is not one (bad magic or kind). The crc is checked
    /// separately, with the data, by [`RecordHeader::check`].
    pub fn decode(b: &[u8; RECORD_HEADER_LEN as usize]) -> Option<(RecordHeader, u32)> {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        if u32_at(0) != RECORD_MAGIC || b[5] != 0 || b[6..8] != [0, 0] {
            return None;
        }
        let header = RecordHeader {
            kind: Kind::from_u8(b[4])?,
            len: u32_at(8),
            offset: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            generation: u32_at(24),
            epoch: u32_at(28),
        };
        Some((header, u32_at(12)))
    }

    /// Whether `crc` matches this header and `data`.
    pub fn check(&self, crc: u32, data: &[u8]) -> bool {
        crc32c::crc32c_append(crc32c::crc32c(&self.encode_without_crc()), data) == crc
    }
}

/// The log header for `generation`.
pub fn encode_log_header(generation: u32) -> [u8; LOG_HEADER_LEN as usize] {
    let mut b = [0u8; LOG_HEADER_LEN as usize];
    b[0..8].copy_from_slice(LOG_MAGIC);
    b[8..12].copy_from_slice(&LOG_VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&b[0..16]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The generation in a log header, or why it is not one.
pub fn decode_log_header(b: &[u8; LOG_HEADER_LEN as usize]) -> Result<u32, &'static str> {
    if &b[0..8] != LOG_MAGIC {
        return Err("not an nvmmio log (bad magic)");
    }
    if crc32c::crc32c(&b[0..16]).to_le_bytes() != b[16..20] {
        return Err("log header checksum mismatch");
    }
    if u32::from_le_bytes(b[8..12].try_into().unwrap()) != LOG_VERSION {
        return Err("unsupported log version");
    }
    Ok(u32::from_le_bytes(b[12..16].try_into().unwrap()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_detect_damage() {
        let h = RecordHeader { kind: Kind::Write, len: 5, offset: 4096, generation: 7, epoch: 3 };
        let bytes = h.encode(b"hello");
        let (back, crc) = RecordHeader::decode(&bytes).unwrap();
        assert_eq!(back, h);
        assert!(back.check(crc, b"hello"));
        assert!(!back.check(crc, b"hellO"));
        assert_eq!(h.size(), 32 + 8);
        let mut bad = bytes;
        bad[4] = 9;
        assert!(RecordHeader::decode(&bad).is_none());
    }

    #[test]
    fn log_headers_round_trip_and_detect_damage() {
        let b = encode_log_header(42);
        assert_eq!(decode_log_header(&b), Ok(42));
        let mut bad = b;
        bad[13] ^= 1;
        assert!(decode_log_header(&bad).is_err());
    }
}
