//! One managed file: the data file (a [`Storage`]) plus its redo log and index. Writes go to
//! the log, reads merge the log over the data file, `sync` commits, `checkpoint` applies the
//! log to the data file and empties it. Opening a file recovers it first.
//!
//! Guarantee: after a crash at any instant, reopening gives exactly what the last successful
//! `sync` covered, plus possibly whole later writes (a checkpoint commits first), never part of
//! a write.

use super::extents::ExtentMap;
use super::log::{Found, Log, OpenError};
use super::record::{Kind, RECORD_HEADER_LEN};
use crate::persist::{Medium, Storage};
use crate::sys::Errno;

/// Runtime settings of the engine (documented in `config`).
#[derive(Clone, Copy, Debug)]
pub struct EngineSettings {
    /// A log may grow to this many bytes; then it is checkpointed to make room.
    pub log_max: u64,
    /// Checkpoint after a commit once the log holds this much.
    pub checkpoint_at: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            log_max: 256 << 20,
            checkpoint_at: 64 << 20,
        }
    }
}

/// A piece of file contents handed out by [`ManagedFile::read_pieces`].
pub enum Piece<'a> {
    Bytes(&'a [u8]),
    Zeros(usize),
}

impl Piece<'_> {
    pub fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::Zeros(n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What recovery did when the file was opened.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Recovered {
    /// Committed records applied to the data file.
    pub applied: usize,
    /// Records found after the last commit and dropped.
    pub discarded: usize,
}

pub struct ManagedFile<M: Medium, S: Storage> {
    data: S,
    log: Log<M>,
    index: ExtentMap,
    /// The file's size as the program sees it.
    size: u64,
    /// Bytes of the data file below this hold current data (a truncate lowers it until the
    /// next checkpoint: bytes above it read as zeros).
    data_valid: u64,
    epoch: u32,
    /// Commit records written since open (statistics; tests use it as the oracle's clock).
    commits: u64,
    settings: EngineSettings,
}

impl<M: Medium, S: Storage> ManagedFile<M, S> {
    /// Opens a file, first applying whatever its log committed (recovery).
    pub fn open(
        mut data: S,
        medium: M,
        settings: EngineSettings,
    ) -> Result<(Self, Recovered), OpenError> {
        let opened = Log::open(medium, settings.log_max)?;
        let recovered = Recovered {
            applied: opened.committed.len(),
            discarded: opened.discarded,
        };
        let mut log = opened.log;
        if !opened.committed.is_empty() || opened.discarded > 0 {
            apply(&mut data, &log, &opened.committed)?;
            data.sync()?;
            log.reset()?;
        }
        let size = data.size()?;
        let file = ManagedFile {
            data,
            log,
            index: ExtentMap::default(),
            size,
            data_valid: size,
            epoch: 0,
            commits: 0,
            settings,
        };
        Ok((file, recovered))
    }

    /// Opens a file whose old log (if any) is to be ignored: a truncating open supersedes it.
    pub fn create(data: S, medium: M, settings: EngineSettings) -> Result<Self, Errno> {
        let log = Log::create(medium, settings.log_max)?;
        let size = data.size()?;
        Ok(ManagedFile {
            data,
            log,
            index: ExtentMap::default(),
            size,
            data_valid: size,
            epoch: 0,
            commits: 0,
            settings,
        })
    }

    /// After the kernel changed the (checkpointed) data file on the program's behalf: take its
    /// size as ours. Checkpoints first if anything is logged.
    pub fn reload(&mut self) -> Result<(), Errno> {
        self.checkpoint()?;
        let size = self.data.refresh()?;
        self.size = size;
        self.data_valid = size;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes of log in use (for statistics).
    pub fn log_used(&self) -> u64 {
        self.log.used()
    }

    /// Reads at `offset`; returns the byte count (short at end of file).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut at = 0;
        self.read_pieces(offset, buf.len(), &mut |piece| {
            let n = piece.len();
            match piece {
                Piece::Bytes(b) => buf[at..at + n].copy_from_slice(b),
                Piece::Zeros(_) => buf[at..at + n].fill(0),
            }
            at += n;
            Ok(())
        })
    }

    /// Hands the file's bytes at `offset` (at most `len`, stopping at the end of file) to
    /// `sink` in order, as slices of the data file or the log, or runs of zeros; returns the
    /// total. No copy is made here: the sink copies each piece where it belongs.
    pub fn read_pieces(
        &self,
        offset: u64,
        len: usize,
        sink: &mut dyn FnMut(Piece) -> Result<(), Errno>,
    ) -> Result<usize, Errno> {
        if offset >= self.size {
            return Ok(0);
        }
        let n = (len as u64).min(self.size - offset);
        let end = offset + n;
        let mut pos = offset;
        for (range, log_pos) in self.index.overlay(offset..end) {
            self.base_pieces(pos..range.start, sink)?;
            sink(Piece::Bytes(
                self.log.bytes(log_pos, (range.end - range.start) as usize),
            ))?;
            pos = range.end;
        }
        self.base_pieces(pos..end, sink)?;
        Ok(n as usize)
    }

    /// The data file's bytes for `range`, zeros where it holds nothing current.
    fn base_pieces(
        &self,
        range: std::ops::Range<u64>,
        sink: &mut dyn FnMut(Piece) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if range.is_empty() {
            return Ok(());
        }
        let valid_end = range.end.min(self.data_valid).max(range.start);
        let got = if valid_end > range.start {
            self.data
                .with_bytes(range.start, (valid_end - range.start) as usize, &mut |b| {
                    sink(Piece::Bytes(b))
                })?
        } else {
            0
        } as u64;
        let zeros = range.end - range.start - got;
        if zeros > 0 {
            sink(Piece::Zeros(zeros as usize))?;
        }
        Ok(())
    }

    /// Writes `data` at `offset`, all or nothing (ENOSPC, EFBIG: nothing changed).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.write_with(offset, data.len(), &mut |dst| {
            dst.copy_from_slice(data);
            Ok(())
        })
    }

    /// Writes `len` bytes at `offset` that `fill` stores straight into the log (from a
    /// program's buffer, which may fail: then nothing changes and the error is returned).
    pub fn write_with(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if len == 0 {
            return Ok(());
        }
        let end = offset
            .checked_add(len as u64)
            .filter(|&e| e <= i64::MAX as u64)
            .ok_or(Errno(libc::EFBIG))?;
        self.make_room(len as u64)?;
        let pos = self
            .log
            .append_with(Kind::Write, offset, self.epoch, len, fill)?;
        self.index.insert(offset..end, pos);
        self.size = self.size.max(end);
        Ok(())
    }

    /// Sets the size: bytes beyond it are gone, a later extension reads zeros.
    pub fn truncate(&mut self, size: u64) -> Result<(), Errno> {
        self.make_room(0)?;
        self.log.append(Kind::Truncate, size, self.epoch, &[])?;
        self.index.truncate(size);
        self.data_valid = self.data_valid.min(size);
        self.size = size;
        Ok(())
    }

    /// Makes every write so far durable and committed (fsync).
    pub fn sync(&mut self) -> Result<(), Errno> {
        self.commit()?;
        self.epoch = self.epoch.wrapping_add(1);
        if self.log.used() >= self.settings.checkpoint_at {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Commits, applies the log to the data file, syncs it, and empties the log.
    pub fn checkpoint(&mut self) -> Result<(), Errno> {
        self.commit()?;
        if self.log.used() == 0 {
            return Ok(());
        }
        let records = self.committed_records();
        apply(&mut self.data, &self.log, &records)?;
        self.data.sync()?;
        self.log.reset()?;
        self.index.clear();
        self.data_valid = self.size;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Errno> {
        if self.log.has_uncommitted() {
            self.log.commit(self.epoch, self.size)?;
            self.commits += 1;
        }
        Ok(())
    }

    /// Commit records written since the file was opened.
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// Ensures a record of `len` data bytes and a commit record fit in the log, checkpointing
    /// (which commits whole writes only) when they would not.
    fn make_room(&mut self, len: u64) -> Result<(), Errno> {
        let needed = len + RECORD_HEADER_LEN;
        if self.log.fits(needed) {
            return Ok(());
        }
        self.checkpoint()?;
        if self.log.fits(needed) {
            Ok(())
        } else {
            Err(Errno(libc::ENOSPC))
        }
    }

    /// The records of the current generation, re-read from the log (all committed).
    fn committed_records(&self) -> Vec<Found> {
        let mut records = Vec::new();
        let mut pos = super::record::LOG_HEADER_LEN;
        while pos < super::record::LOG_HEADER_LEN + self.log.used() {
            let mut raw = [0u8; RECORD_HEADER_LEN as usize];
            self.log.read(pos, &mut raw);
            let Some((header, _)) = super::record::RecordHeader::decode(&raw) else {
                break;
            };
            records.push(Found {
                header,
                data_pos: pos + RECORD_HEADER_LEN,
            });
            pos += header.size();
        }
        records
    }

    pub fn data(&self) -> &S {
        &self.data
    }

    pub fn log_medium(&self) -> &M {
        self.log.medium()
    }
}

/// Replays committed records onto the data file, in log order; the last commit's size wins.
/// Replaying twice gives the same file (recovery may be interrupted and run again). The file is
/// extended once to the furthest write ahead instead of once per record.
fn apply<M: Medium, S: Storage>(
    data: &mut S,
    log: &Log<M>,
    records: &[Found],
) -> Result<(), Errno> {
    let furthest = |rs: &[Found]| {
        rs.iter()
            .filter(|r| r.header.kind == Kind::Write)
            .map(|r| r.header.offset + r.header.len as u64)
            .max()
            .unwrap_or(0)
    };
    // Blocks first, for every range about to be written (merged), so no store can fail later.
    let mut ranges: Vec<(u64, u64)> = records
        .iter()
        .filter(|r| r.header.kind == Kind::Write && r.header.len > 0)
        .map(|r| (r.header.offset, r.header.offset + r.header.len as u64))
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    for (start, end) in merged {
        data.reserve(start, end - start)?;
    }
    let mut len = data.size()?;
    let mut final_size = None;
    for (i, r) in records.iter().enumerate() {
        match r.header.kind {
            Kind::Write => {
                let end = r.header.offset + r.header.len as u64;
                if end > len {
                    len = furthest(&records[i..]);
                    data.set_len(len)?;
                }
                data.write_at(
                    r.header.offset,
                    log.bytes(r.data_pos, r.header.len as usize),
                )?;
            }
            Kind::Truncate => {
                len = r.header.offset;
                data.set_len(len)?;
            }
            Kind::Commit => final_size = Some(r.header.offset),
        }
    }
    if let Some(size) = final_size {
        if size != len {
            data.set_len(size)?;
        }
    }
    Ok(())
}
