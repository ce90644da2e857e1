//! The on-media layout of the log: a header, then records. All integers little-endian.
//!
//! Log header (64 bytes at offset 0):
//! `magic "NVMMIOLG" (8) | version u32 (2) | generation u32 | crc32c of bytes 0..16 and 20..28 |
//! base size u64 (u64::MAX: none) | zero` (version 1 had no base size, its crc covers 0..16)
//!
//! Record (at 8-byte aligned positions from 64 on):
//! `magic u32 | kind u8 | flags u8 | 0 u16 | len u32 | crc32c u32 | offset u64 | generation u32 |
//! epoch u32` (32 bytes), then `len` data bytes, padded to a multiple of 8.
//! The crc covers the header (with the crc field zero) and the data, except with flag
//! [`HEADER_ONLY_CRC`] (logs in memory only, i.e. tmpfs: a process kill cannot tear a record
//! that a commit covers, nor an undo record sealed after its data was stored, and there is no
//! power loss to survive), where it covers the header. Block records are written with a zero
//! crc and sealed (crc stored) when their epoch commits; undo records are sealed when stored.
//! A record belongs to the log only if its magic, generation and crc are right; scanning stops
//! at the first that is not.

pub const LOG_MAGIC: &[u8; 8] = b"NVMMIOLG";
pub const LOG_VERSION: u32 = 2;
pub const LOG_HEADER_LEN: u64 = 64;
pub const RECORD_MAGIC: u32 = 0x4c4d_564e;
pub const RECORD_HEADER_LEN: u64 = 32;
/// Record flag: the crc covers the header only.
pub const HEADER_ONLY_CRC: u8 = 1;

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
    /// A block record withdrawn before its commit (its block was truncated away): skipped.
    Void = 5,
    /// Undo logging: the contents the bytes at file offset `offset` had when the epoch began,
    /// saved before they were overwritten in place (at most [`BLOCK`] bytes, one block's part
    /// below the committed size). Sealed and made durable when stored; void once a commit
    /// follows it. Recovery writes back the undo records found after the last commit.
    Undo = 6,
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
            5 => Some(Kind::Void),
            6 => Some(Kind::Undo),
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
    /// The crc covers the header only (see [`HEADER_ONLY_CRC`]).
    pub header_only_crc: bool,
}

/// Bytes a record of `len` data bytes takes in the log, header and padding included.
pub fn record_size(len: u64) -> u64 {
    RECORD_HEADER_LEN + len.next_multiple_of(8)
}

impl RecordHeader {
    /// Bytes the record takes in the log, header and padding included.
    pub fn size(&self) -> u64 {
        record_size(self.len as u64)
    }

    /// The header bytes for this record with `data`, crc included.
    pub fn encode(&self, data: &[u8]) -> [u8; RECORD_HEADER_LEN as usize] {
        debug_assert_eq!(data.len(), self.len as usize);
        let mut b = self.encode_without_crc();
        let crc = self.crc(&b, data);
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
        b[5] = if self.header_only_crc { HEADER_ONLY_CRC } else { 0 };
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
        if u32_at(0) != RECORD_MAGIC || b[5] & !HEADER_ONLY_CRC != 0 || b[6..8] != [0, 0] {
            return None;
        }
        let header = RecordHeader {
            kind: Kind::from_u8(b[4])?,
            len: u32_at(8),
            offset: u64::from_le_bytes(b[16..24].try_into().unwrap()),
            generation: u32_at(24),
            epoch: u32_at(28),
            header_only_crc: b[5] & HEADER_ONLY_CRC != 0,
        };
        Some((header, u32_at(12)))
    }

    /// Whether `crc` matches this header and `data`.
    pub fn check(&self, crc: u32, data: &[u8]) -> bool {
        self.crc(&self.encode_without_crc(), data) == crc
    }

    fn crc(&self, header: &[u8], data: &[u8]) -> u32 {
        let crc = crc32c::crc32c(header);
        if self.header_only_crc {
            crc
        } else {
            crc32c::crc32c_append(crc, data)
        }
    }
}

/// What a log header says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LogHeader {
    pub generation: u32,
    /// The data file's size when the log was last emptied: what recovery restores when no
    /// commit followed (writes past the committed size go to the file in place, and must not
    /// survive uncommitted). `None`: not known (version 1 logs, or a log not describing a file).
    pub base_size: Option<u64>,
}

const NO_BASE: u64 = u64::MAX;

fn header_crc(b: &[u8; LOG_HEADER_LEN as usize], version: u32) -> u32 {
    let crc = crc32c::crc32c(&b[0..16]);
    if version == 1 {
        crc
    } else {
        crc32c::crc32c_append(crc, &b[20..28])
    }
}

/// The log header for `header`.
pub fn encode_log_header(header: LogHeader) -> [u8; LOG_HEADER_LEN as usize] {
    let mut b = [0u8; LOG_HEADER_LEN as usize];
    b[0..8].copy_from_slice(LOG_MAGIC);
    b[8..12].copy_from_slice(&LOG_VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&header.generation.to_le_bytes());
    b[20..28].copy_from_slice(&header.base_size.unwrap_or(NO_BASE).to_le_bytes());
    let crc = header_crc(&b, LOG_VERSION);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    b
}

/// A log header's contents, or why it is not one. Version 1 headers (no base size) are read too.
pub fn decode_log_header(b: &[u8; LOG_HEADER_LEN as usize]) -> Result<LogHeader, &'static str> {
    if &b[0..8] != LOG_MAGIC {
        return Err("not an nvmmio log (bad magic)");
    }
    let version = u32::from_le_bytes(b[8..12].try_into().unwrap());
    if version != 1 && version != LOG_VERSION {
        return Err("unsupported log version");
    }
    if header_crc(b, version).to_le_bytes() != b[16..20] {
        return Err("log header checksum mismatch");
    }
    let base = u64::from_le_bytes(b[20..28].try_into().unwrap());
    Ok(LogHeader {
        generation: u32::from_le_bytes(b[12..16].try_into().unwrap()),
        base_size: (version > 1 && base != NO_BASE).then_some(base),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_detect_damage() {
        let h =
            RecordHeader { kind: Kind::Write, len: 5, offset: 4096, generation: 7, epoch: 3, header_only_crc: false };
        let bytes = h.encode(b"hello");
        let (back, crc) = RecordHeader::decode(&bytes).unwrap();
        assert_eq!(back, h);
        assert!(back.check(crc, b"hello"));
        assert!(!back.check(crc, b"hellO"));
        // In-memory logs: the header alone is checked.
        let light = RecordHeader { header_only_crc: true, ..h };
        let (back, crc) = RecordHeader::decode(&light.encode(b"hello")).unwrap();
        assert_eq!(back, light);
        assert!(back.check(crc, b"hellO"));
        assert!(!RecordHeader { epoch: 4, ..back }.check(crc, b"hello"));
        assert_eq!(h.size(), 32 + 8);
        let mut bad = bytes;
        bad[4] = 9;
        assert!(RecordHeader::decode(&bad).is_none());
    }

    #[test]
    fn log_headers_round_trip_and_detect_damage() {
        for base_size in [None, Some(0), Some(12345)] {
            let h = LogHeader { generation: 42, base_size };
            let b = encode_log_header(h);
            assert_eq!(decode_log_header(&b), Ok(h));
            for byte in [13, 21] {
                let mut bad = b;
                bad[byte] ^= 1;
                assert!(decode_log_header(&bad).is_err());
            }
        }
        // Version 1: no base size.
        let mut v1 = [0u8; LOG_HEADER_LEN as usize];
        v1[0..8].copy_from_slice(LOG_MAGIC);
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        v1[12..16].copy_from_slice(&7u32.to_le_bytes());
        let crc = crc32c::crc32c(&v1[0..16]);
        v1[16..20].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_log_header(&v1), Ok(LogHeader { generation: 7, base_size: None }));
    }
}
