//! A file's redo log on a [`Medium`]: records appended at the tail, made durable and committed
//! by one commit record, and discarded all at once by moving to a new generation.
//!
//! Ordering (the failure-atomicity argument):
//! 1. `append` stores a record; nothing is durable yet.
//! 2. `commit` stores the commit record after the records it covers, then flushes them all at
//!    once and fences: one flush per commit (on a disk, one msync instead of two). A power loss
//!    may keep any subset of that range, but recovery scans records in order and stops at the
//!    first whose checksum fails, and every record's checksum covers its data wherever a crash
//!    can tear it ([`Medium::checks_data`]): a commit record counts only if every record before
//!    it arrived whole. Stale records of an earlier use at the same positions cannot stand in
//!    for lost ones: every open starts a new generation (see `ManagedFile::open_pair`).
//! 3. `reset` (after the data file has been synced with everything committed) stores a header
//!    with the next generation, flushes and fences it: every older record is void at once.
//!
//! Undo logging (see `ManagedFile`'s undo mode) uses the same log the other way round:
//! `save_undo` stores sealed [`Kind::Undo`] records (old contents) and makes them durable
//! with one flush and fence *before* the data file is overwritten in place; the epoch then
//! commits by `reset` (after syncing the data file), which voids them all. Recovery writes
//! back the undo records found after the last commit record of the header's generation.
//!
//! Threads writing an undo epoch with the file shared ([`Log::place_undo_shared`], tmpfs only)
//! take room and store their records' headers, unsealed, under one small lock, in the order
//! of their room; each then fills and seals its own records before its stores in place. A
//! crash can thus leave a placed record unsealed (its writer stored nothing in place yet)
//! before sealed ones of other writers: the scan walks past such a record to the undo records
//! after it, and accepts nothing else after it (a commit record never follows one).

use super::record::*;
use crate::persist::Medium;
use crate::sys::Errno;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;

/// Fills an undo image: `read(file offset, destination)` (see [`Log::save_undo`]).
pub type ImageReader<'a> = dyn FnMut(u64, &mut [u8]) -> Result<(), Errno> + 'a;

/// A record found in the log.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Found {
    pub header: RecordHeader,
    /// Position of the record's data in the log.
    pub data_pos: u64,
}

pub struct Log<M: Medium> {
    medium: M,
    generation: u32,
    /// Where the next record goes. Atomic for writers sharing the file, who take room
    /// with [`Log::reserve_shared`]; everything else holds the log alone.
    tail: AtomicU64,
    /// End of the last commit record: everything before it is durable and committed.
    committed_tail: u64,
    /// As found by [`Log::open`]: end of the last record recovery uses (commit or undo).
    needed_tail: u64,
    /// The medium may grow to this size; beyond it, appends report ENOSPC.
    max_len: u64,
    /// One write larger than `max_len` may take the log up to here until the next reset
    /// (see [`Log::allow_oversized`]; 0: none).
    oversized_to: u64,
    /// The medium doubles as it grows up to here, then grows by an eighth (see
    /// [`Log::grow_slowly_from`]).
    growth_knee: u64,
    /// The header was written back but not waited for (see [`Log::create_lazily`]): the next
    /// fence makes it durable.
    header_unfenced: bool,
    /// Held while a writer sharing an undo epoch takes room and places its records' headers.
    placing: Mutex<()>,
    /// Test builds only: deliberately broken variants, to show that the tests catch them.
    #[cfg(test)]
    mutation: Mutation,
}

/// A deliberately removed safety point (tests only).
#[cfg(test)]
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub enum Mutation {
    #[default]
    None,
    /// Commit without flushing the records and the commit record.
    NoFlushAtCommit,
    /// Accept records without checking their checksums.
    NoChecksums,
    /// Overwrite in place before the undo records are durable (no flush, no fence).
    UndoNotDurable,
}

/// What opening a log found.
pub struct Opened<M: Medium> {
    pub log: Log<M>,
    /// Committed records, in order, commit records included.
    pub committed: Vec<Found>,
    /// Records after the last commit (written, never committed), dropped.
    pub discarded: usize,
    /// The undo records among those, in order: their old contents go back into the data file.
    pub undo: Vec<Found>,
    /// The header's base size: the file's size if no commit follows.
    pub base_size: Option<u64>,
}

impl<M: Medium> Log<M> {
    /// Starts an empty log on `medium` (overwriting whatever it held), for a data file of
    /// `base_size` bytes, with a generation above `after` (recovery replays a file's logs in
    /// generation order).
    pub fn create(medium: M, max_len: u64, base_size: Option<u64>, after: u32) -> Result<Log<M>, Errno> {
        Self::start(medium, max_len, base_size, after, true)
    }

    /// [`Log::create`] on a medium whose durable contents hold no record that counts (a log
    /// voided durably, or a new medium): the new header is written back but not waited for.
    /// The next commit's fence makes it durable with the records; a crash before then finds
    /// the old header, whose generation no new record carries, so nothing counts either way.
    /// Saves a sync (on a disk, an `fdatasync`) per log set up.
    pub fn create_lazily(medium: M, max_len: u64, base_size: Option<u64>, after: u32) -> Result<Log<M>, Errno> {
        Self::start(medium, max_len, base_size, after, false)
    }

    fn start(mut medium: M, max_len: u64, base_size: Option<u64>, after: u32, wait: bool) -> Result<Log<M>, Errno> {
        if medium.len() < LOG_HEADER_LEN {
            medium.grow(4096)?;
        }
        // Records of an earlier use may still lie past the header: the new generation must
        // differ from any they carry. After a valid header, the next number does; a zero header
        // means a fresh medium; anything else gets a number from the clock.
        let mut header = [0u8; LOG_HEADER_LEN as usize];
        medium.read(0, &mut header);
        let previous = match decode_log_header(&header) {
            Ok(h) => h.generation,
            Err(_) if header.iter().all(|&b| b == 0) => 0,
            Err(_) => (crate::sys::monotonic_ns() as u32) | 0x8000_0000,
        };
        let mut log = Log {
            medium,
            generation: previous.max(after),
            tail: AtomicU64::new(LOG_HEADER_LEN),
            committed_tail: LOG_HEADER_LEN,
            needed_tail: LOG_HEADER_LEN,
            max_len,
            oversized_to: 0,
            growth_knee: u64::MAX,
            header_unfenced: false,
            placing: Mutex::new(()),
            #[cfg(test)]
            mutation: Mutation::None,
        };
        log.write_header(base_size)?;
        if wait {
            log.ensure_header_durable()?;
            log.give_back_room();
        }
        Ok(log)
    }

    /// After a durable header (the records past it are void): a medium grown past the limit
    /// by one large write (see [`Log::allow_oversized`]) gives the room back.
    fn give_back_room(&mut self) {
        self.oversized_to = 0;
        if self.medium.len() > self.max_len {
            self.medium.shrink(self.max_len);
        }
    }

    /// Test builds: breaks the log on purpose (see [`Mutation`]).
    #[cfg(test)]
    pub(super) fn set_mutation(&mut self, mutation: Mutation) {
        self.mutation = mutation;
    }

    /// Gives the medium back (for reuse by another file; the log must be empty: reset).
    pub fn into_medium(self) -> M {
        self.medium
    }

    /// Reads the log on `medium`: the committed records, ready to be applied. A medium that is
    /// empty (all zeros) is a new log; a damaged header is an error, and the medium is left as
    /// it was.
    pub fn open(medium: M, max_len: u64) -> Result<Opened<M>, OpenError> {
        let empty = |medium| {
            Ok(Opened {
                log: Log::create_lazily(medium, max_len, None, 0)?,
                committed: Vec::new(),
                discarded: 0,
                undo: Vec::new(),
                base_size: None,
            })
        };
        if medium.len() < LOG_HEADER_LEN {
            return empty(medium);
        }
        let mut header = [0u8; LOG_HEADER_LEN as usize];
        medium.read(0, &mut header);
        if header.iter().all(|&b| b == 0) {
            return empty(medium);
        }
        let LogHeader { generation, base_size } = decode_log_header(&header).map_err(OpenError::Damaged)?;
        let mut log = Log {
            medium,
            generation,
            tail: AtomicU64::new(LOG_HEADER_LEN),
            committed_tail: LOG_HEADER_LEN,
            needed_tail: LOG_HEADER_LEN,
            max_len,
            oversized_to: 0,
            growth_knee: u64::MAX,
            header_unfenced: false,
            placing: Mutex::new(()),
            #[cfg(test)]
            mutation: Mutation::None,
        };
        let mut found = Vec::new();
        let mut committed = 0;
        let mut walked_past = false;
        loop {
            let Some(record) = log.record_at(log.tail()) else {
                // A shared undo writer's record placed but not sealed: the next ones may be.
                match log.unsealed_undo_at(log.tail()) {
                    Some(size) => {
                        log.set_tail(log.tail() + size);
                        walked_past = true;
                        continue;
                    }
                    None => break,
                }
            };
            if walked_past && record.header.kind != Kind::Undo {
                break;
            }
            log.set_tail(record.data_pos - RECORD_HEADER_LEN + record.header.size());
            found.push(record);
            if record.header.kind == Kind::Commit {
                committed = found.len();
                log.committed_tail = log.tail();
            }
        }
        let discarded = found.len() - committed;
        let undo: Vec<Found> = found[committed..].iter().filter(|r| r.header.kind == Kind::Undo).copied().collect();
        // Until recovery is done, the undo records are needed as much as the committed ones.
        log.needed_tail = undo.last().map_or(log.committed_tail, |r| r.data_pos + r.header.size() - RECORD_HEADER_LEN);
        found.truncate(committed);
        // New records go right after the last commit: the uncommitted ones are dropped.
        log.set_tail(log.committed_tail);
        Ok(Opened { log, committed: found, discarded, undo, base_size })
    }

    /// The record header at `pos` and the checksum it carries, if one decodes there.
    fn header_at(&self, pos: u64) -> Option<(RecordHeader, u32)> {
        if pos + RECORD_HEADER_LEN > self.medium.len() {
            return None;
        }
        let mut raw = [0u8; RECORD_HEADER_LEN as usize];
        self.medium.read(pos, &mut raw);
        RecordHeader::decode(&raw)
    }

    /// The valid record at `pos` of this generation, if any.
    fn record_at(&self, pos: u64) -> Option<Found> {
        let (header, crc) = self.header_at(pos)?;
        let data_pos = pos + RECORD_HEADER_LEN;
        if header.generation != self.generation || data_pos + header.len as u64 > self.medium.len() {
            return None;
        }
        let mut data = vec![0u8; header.len as usize];
        self.medium.read(data_pos, &mut data);
        #[cfg(test)]
        if self.mutation == Mutation::NoChecksums {
            return Some(Found { header, data_pos });
        }
        header.check(crc, &data).then_some(Found { header, data_pos })
    }

    /// The size of the unsealed undo record of this generation at `pos`, if one is there
    /// (see [`Log::place_undo_shared`]).
    fn unsealed_undo_at(&self, pos: u64) -> Option<u64> {
        let (header, crc) = self.header_at(pos)?;
        let fits = pos + header.size() <= self.medium.len();
        (header.kind == Kind::Undo && header.generation == self.generation && crc == 0 && fits).then_some(header.size())
    }

    fn tail(&self) -> u64 {
        self.tail.load(Relaxed)
    }

    fn set_tail(&mut self, tail: u64) {
        *self.tail.get_mut() = tail;
    }

    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// End of the last commit record: nothing past it is ever replayed.
    pub fn committed_end(&self) -> u64 {
        self.committed_tail
    }

    /// As opened: end of the last record recovery needs, the last commit record or the last
    /// undo record after it (whose old contents go back into the data file).
    pub fn needed_end(&self) -> u64 {
        self.needed_tail.max(self.committed_tail)
    }

    /// Bytes of records since the last reset.
    pub fn used(&self) -> u64 {
        self.tail() - LOG_HEADER_LEN
    }

    /// Whether the record whose data starts at `data_pos` is committed.
    pub fn is_committed(&self, data_pos: u64) -> bool {
        data_pos < self.committed_tail
    }

    /// Whether records were appended since the last commit.
    pub fn has_uncommitted(&self) -> bool {
        self.tail() > self.committed_tail
    }

    /// Whether a record of `len` data bytes fits without growing past the limit.
    pub fn fits(&self, len: u64) -> bool {
        self.tail() + record_size(len) <= self.limit()
    }

    fn limit(&self) -> u64 {
        self.max_len.max(self.oversized_to)
    }

    /// Lets records of `bytes` in all, and a commit record, fit in an empty log even past its
    /// limit, until the next reset (which gives the room back): a single write larger than
    /// the log's limit is logged whole, as atomic as any other, rather than refused.
    pub fn allow_oversized(&mut self, bytes: u64) {
        self.oversized_to = self.tail() + bytes + 2 * RECORD_HEADER_LEN;
    }

    /// Grows the medium so that `bytes` more fit after the tail (doubling if it can, else
    /// exactly): ENOSPC now rather than in the middle of a write.
    pub fn reserve(&mut self, bytes: u64) -> Result<(), Errno> {
        let end = self.tail() + bytes;
        if end <= self.medium.len() {
            return Ok(());
        }
        let want = self.grown_len(end);
        self.medium.grow(want).or_else(|_| self.medium.grow(end))
    }

    /// From `len` on, the medium grows by an eighth (at least 1 MiB) instead of doubling: a log
    /// that reaches the checkpoint size is about to be handed to a checkpoint and the file
    /// goes on with its other log, so that room past it is mostly never used. On a disk each
    /// byte of growth is written (zeros) and synced once: a log doubled from 8 to 16 MiB for
    /// the one record that crossed 8 MiB stalled that write for 10 ms.
    pub fn grow_slowly_from(&mut self, len: u64) {
        self.growth_knee = len;
    }

    /// The medium length to grow to for a record ending at `end`.
    fn grown_len(&self, end: u64) -> u64 {
        let len = self.medium.len();
        let want = if len < self.growth_knee { (len * 2).min(self.growth_knee) } else { len + (len / 8).max(1 << 20) };
        want.clamp(end, self.limit().max(end))
    }

    /// Stores a record; returns the position of its data. ENOSPC (nothing stored) if the log
    /// cannot grow to hold it.
    pub fn append(&mut self, kind: Kind, offset: u64, epoch: u32, data: &[u8]) -> Result<u64, Errno> {
        self.append_with(kind, offset, epoch, data.len(), &mut |dst| {
            dst.copy_from_slice(data);
            Ok(())
        })
    }

    /// Stores a record of `len` data bytes that `fill` writes in place (it may fail, e.g. on a
    /// bad buffer: then nothing is stored and its error is returned).
    pub fn append_with(
        &mut self,
        kind: Kind,
        offset: u64,
        epoch: u32,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<u64, Errno> {
        let data_pos = self.allocate(kind, offset, epoch, len)?;
        if let Err(e) = self.medium.write_with(data_pos, len, fill) {
            // Nothing was stored: the unsealed header past the tail is never read.
            self.set_tail(data_pos - RECORD_HEADER_LEN);
            return Err(e);
        }
        // Sealed last: a record is complete, or invisible to recovery.
        self.seal(data_pos);
        Ok(data_pos)
    }

    /// Reserves a record whose data is filled (and may be rewritten) later, until it is sealed
    /// by [`Log::commit`]; until then its checksum is unset and the record is invisible to
    /// recovery. Returns the position of its data.
    pub fn allocate(&mut self, kind: Kind, offset: u64, epoch: u32, len: usize) -> Result<u64, Errno> {
        let header = self.header(kind, offset, epoch, len)?;
        let end = self.tail() + header.size();
        if end > self.medium.len() {
            if end > self.limit() {
                return Err(Errno(libc::ENOSPC));
            }
            let want = self.grown_len(end);
            self.medium.grow(want).or_else(|_| self.medium.grow(end))?;
        }
        // Not valid until sealed: a crash before the commit finds a bad checksum and stops.
        self.medium.write(self.tail(), &header.encode_unsealed());
        let data_pos = self.tail() + RECORD_HEADER_LEN;
        self.set_tail(end);
        Ok(data_pos)
    }

    fn header(&self, kind: Kind, offset: u64, epoch: u32, len: usize) -> Result<RecordHeader, Errno> {
        Ok(RecordHeader {
            kind,
            len: u32::try_from(len).map_err(|_| Errno(libc::EFBIG))?,
            offset,
            generation: self.generation,
            epoch,
            header_only_crc: !self.medium.checks_data(),
        })
    }

    /// Takes `bytes` of room at the tail for a writer sharing the log with others, who lays
    /// its records out there ([`Log::place_record`]); returns where the room starts. Never
    /// grows the medium: `None` if the room, and a commit record after it, do not fit as it is
    /// (or the medium takes no shared stores); the caller then takes the log alone.
    pub fn reserve_shared(&self, bytes: u64) -> Option<u64> {
        if !self.medium.takes_shared_stores() {
            return None;
        }
        let room = self.medium.len().min(self.limit());
        let fits = |tail: u64| (tail + bytes + RECORD_HEADER_LEN <= room).then_some(tail + bytes);
        self.tail.fetch_update(Relaxed, Relaxed, fits).ok()
    }

    /// Stores the header of an unsealed record of `len` data bytes at `at` (as
    /// [`Log::allocate`] does at the tail); returns the position of its data.
    ///
    /// # Safety
    /// `[at, at + record_size(len))` is room the caller took with [`Log::reserve_shared`] and
    /// has not used yet.
    #[allow(unsafe_code)]
    pub unsafe fn place_record(&self, at: u64, kind: Kind, offset: u64, epoch: u32, len: usize) -> u64 {
        let header = self.header(kind, offset, epoch, len).expect("records of shared writers are small");
        // SAFETY: the header's bytes are in the caller's own room (the caller's promise).
        unsafe { self.store_shared(at, &header.encode_unsealed()) };
        at + RECORD_HEADER_LEN
    }

    /// Takes room for the undo records of `images` (file offset, length) and places their
    /// headers, unsealed, under the placing lock (see the module doc); returns their data
    /// positions, for [`Log::fill_shared`] and [`Log::seal_shared`]. `None`: no room as the
    /// log is (growing it needs the file alone).
    #[allow(unsafe_code)]
    pub fn place_undo_shared(&self, epoch: u32, images: &[(u64, usize)]) -> Option<Vec<u64>> {
        let bytes = images.iter().map(|&(_, len)| record_size(len as u64)).sum();
        let _placing = self.placing.lock().unwrap_or_else(|p| p.into_inner());
        let mut at = self.reserve_shared(bytes)?;
        let positions = images
            .iter()
            .map(|&(offset, len)| {
                // SAFETY: the next record of the room just taken.
                let pos = unsafe { self.place_record(at, Kind::Undo, offset, epoch, len) };
                at += record_size(len as u64);
                pos
            })
            .collect();
        Some(positions)
    }

    /// Seals the record whose data starts at `data_pos` (its checksum stored), for a writer
    /// sharing the log.
    ///
    /// # Safety
    /// The record is the caller's own (placed in room it took) and filled.
    #[allow(unsafe_code)]
    pub unsafe fn seal_shared(&self, data_pos: u64) {
        if let Some(sealed) = self.sealed_header(data_pos) {
            // SAFETY: the caller's record (its promise).
            unsafe { self.store_shared(data_pos - RECORD_HEADER_LEN, &sealed) };
        }
    }

    /// Whether the header is durable (no store in place waits for a fence first).
    pub fn header_durable(&self) -> bool {
        !self.header_unfenced
    }

    /// [`Log::fill`] for a writer sharing the log.
    ///
    /// # Safety
    /// No other code reads or writes `[data_pos, data_pos + len)` until this returns: room of
    /// the caller's own, or a slot it holds the lock of.
    #[allow(unsafe_code)]
    pub unsafe fn fill_shared(
        &self,
        data_pos: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.medium.write_disjoint(data_pos, len, fill) }
    }

    /// Stores `bytes` at `pos` for a writer sharing the log.
    ///
    /// # Safety
    /// As [`Log::fill_shared`].
    #[allow(unsafe_code)]
    pub unsafe fn store_shared(&self, pos: u64, bytes: &[u8]) {
        // SAFETY: the caller's promise, passed on.
        let stored = unsafe {
            self.fill_shared(pos, bytes.len(), &mut |dst| {
                dst.copy_from_slice(bytes);
                Ok(())
            })
        };
        debug_assert!(stored.is_ok(), "reserve_shared checks that the medium takes shared stores");
    }

    /// Lets `fill` rewrite part of an unsealed record's data in place.
    pub fn fill(
        &mut self,
        data_pos: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        self.medium.write_with(data_pos, len, fill)
    }

    /// Withdraws the unsealed record whose data starts at `data_pos`: recovery skips it.
    pub fn void(&mut self, data_pos: u64) {
        let mut raw = [0u8; RECORD_HEADER_LEN as usize];
        self.medium.read(data_pos - RECORD_HEADER_LEN, &mut raw);
        if let Some((header, _)) = RecordHeader::decode(&raw) {
            let voided = RecordHeader { kind: Kind::Void, ..header };
            self.medium.write(data_pos - RECORD_HEADER_LEN, &voided.encode_unsealed());
        }
    }

    /// Cuts the unsealed record whose data starts at `data_pos` to its first `len` bytes (a
    /// multiple of 8, less than its length): the rest becomes a void record, whose data
    /// position is returned, to be sealed with the others at commit (a scan walks through
    /// both). `None` if there is no such record.
    pub fn shorten(&mut self, data_pos: u64, len: u64) -> Option<u64> {
        let (kept, filler) = self.shortened(data_pos, len)?;
        self.medium.write(data_pos - RECORD_HEADER_LEN, &kept);
        self.medium.write(data_pos + len, &filler);
        Some(data_pos + len + RECORD_HEADER_LEN)
    }

    /// [`Log::shorten`] for a writer sharing the log.
    ///
    /// # Safety
    /// The record is the caller's own (in room it took with [`Log::reserve_shared`]).
    #[allow(unsafe_code)]
    pub unsafe fn shorten_shared(&self, data_pos: u64, len: u64) -> Option<u64> {
        let (kept, filler) = self.shortened(data_pos, len)?;
        // SAFETY: both headers are inside the caller's record (the caller's promise).
        unsafe {
            self.store_shared(data_pos - RECORD_HEADER_LEN, &kept);
            self.store_shared(data_pos + len, &filler);
        }
        Some(data_pos + len + RECORD_HEADER_LEN)
    }

    /// The headers of a record cut to its first `len` bytes and of the void record after it.
    fn shortened(
        &self,
        data_pos: u64,
        len: u64,
    ) -> Option<([u8; RECORD_HEADER_LEN as usize], [u8; RECORD_HEADER_LEN as usize])> {
        let mut raw = [0u8; RECORD_HEADER_LEN as usize];
        self.medium.read(data_pos - RECORD_HEADER_LEN, &mut raw);
        let (header, _) = RecordHeader::decode(&raw)?;
        let rest = (header.len as u64).checked_sub(len + RECORD_HEADER_LEN)?;
        debug_assert!(len.is_multiple_of(8));
        let kept = RecordHeader { len: len as u32, ..header };
        let filler = RecordHeader { kind: Kind::Void, len: rest as u32, offset: 0, ..header };
        Some((kept.encode_unsealed(), filler.encode_unsealed()))
    }

    /// Undo logging: stores one sealed undo record per `(offset, len)` of `images`, whose data
    /// `read(offset, dst)` fills with the bytes there now, then makes them durable with one
    /// flush and fence: only then may the data file's bytes there change. Room must have been
    /// reserved (ENOSPC otherwise, with some records stored: harmless, as their images are
    /// what the data file holds).
    pub fn save_undo(&mut self, epoch: u32, images: &[(u64, usize)], read: &mut ImageReader) -> Result<(), Errno> {
        if images.is_empty() {
            return Ok(());
        }
        let from = self.tail();
        for &(offset, len) in images {
            self.append_with(Kind::Undo, offset, epoch, len, &mut |dst| read(offset, dst))?;
        }
        #[cfg(test)]
        if self.mutation == Mutation::UndoNotDurable {
            return Ok(());
        }
        self.medium.flush(from, self.tail() - from)?;
        self.fence()
    }

    /// Stores the checksum of the record whose data starts at `data_pos`.
    fn seal(&mut self, data_pos: u64) {
        if let Some(sealed) = self.sealed_header(data_pos) {
            self.medium.write(data_pos - RECORD_HEADER_LEN, &sealed);
        }
    }

    /// The header of the record whose data starts at `data_pos`, with its checksum.
    fn sealed_header(&self, data_pos: u64) -> Option<[u8; RECORD_HEADER_LEN as usize]> {
        let mut raw = [0u8; RECORD_HEADER_LEN as usize];
        self.medium.read(data_pos - RECORD_HEADER_LEN, &mut raw);
        let (header, _) = RecordHeader::decode(&raw)?;
        Some(header.encode(self.medium.bytes(data_pos, header.len as usize)))
    }

    /// Seals the `unsealed` records and commits every record so far with one record carrying
    /// `size` (also when there are none: the size alone may have changed), made durable by one
    /// flush of them all (see the module's ordering notes).
    pub fn commit(&mut self, epoch: u32, size: u64, unsealed: &[u64]) -> Result<(), Errno> {
        for &pos in unsealed {
            self.seal(pos);
        }
        let from = self.committed_tail;
        self.append(Kind::Commit, size, epoch, &[])?;
        #[cfg(test)]
        let skip_flush = self.mutation == Mutation::NoFlushAtCommit;
        #[cfg(not(test))]
        let skip_flush = false;
        if !skip_flush {
            self.medium.flush(from, self.tail() - from)?;
        }
        self.fence()?;
        self.committed_tail = self.tail();
        Ok(())
    }

    /// Waits for a header written by [`Log::create_lazily`] (before bytes go where only its
    /// base size makes a crash cut them away).
    pub fn ensure_header_durable(&mut self) -> Result<(), Errno> {
        if self.header_unfenced {
            self.fence()?;
        }
        Ok(())
    }

    /// Every flush so far becomes durable, a header written back included.
    fn fence(&mut self) -> Result<(), Errno> {
        self.medium.fence()?;
        self.header_unfenced = false;
        Ok(())
    }

    /// Voids every record: the next generation starts empty, for a data file of `base_size`
    /// bytes. Call only once the data file holds everything committed, durably.
    pub fn reset(&mut self, base_size: Option<u64>) -> Result<(), Errno> {
        self.write_header(base_size)?;
        self.ensure_header_durable()?;
        self.give_back_room();
        Ok(())
    }

    /// A header of the next generation, written back (durable at the next fence).
    fn write_header(&mut self, base_size: Option<u64>) -> Result<(), Errno> {
        self.generation = self.generation.wrapping_add(1).max(1);
        self.medium.write(0, &encode_log_header(LogHeader { generation: self.generation, base_size }));
        self.medium.flush(0, LOG_HEADER_LEN)?;
        self.header_unfenced = true;
        self.set_tail(LOG_HEADER_LEN);
        self.committed_tail = LOG_HEADER_LEN;
        self.needed_tail = LOG_HEADER_LEN;
        Ok(())
    }

    pub fn read(&self, pos: u64, buf: &mut [u8]) {
        self.medium.read(pos, buf);
    }

    pub fn bytes(&self, pos: u64, len: usize) -> &[u8] {
        self.medium.bytes(pos, len)
    }

    pub fn medium(&self) -> &M {
        &self.medium
    }
}

/// Why a log could not be opened.
#[derive(Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The header is not a valid log header: the log is left untouched.
    Damaged(&'static str),
    Io(Errno),
}

impl From<Errno> for OpenError {
    fn from(e: Errno) -> Self {
        OpenError::Io(e)
    }
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Damaged(why) => write!(f, "damaged log: {why}"),
            OpenError::Io(e) => write!(f, "{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::sim::{Crash, SimMedium};

    fn reopen(medium: SimMedium) -> Opened<SimMedium> {
        Log::open(medium, 1 << 20).map_err(|e| e.to_string()).unwrap()
    }

    #[test]
    fn only_committed_records_survive() {
        let mut log = Log::create(SimMedium::new(4096), 1 << 20, None, 0).unwrap();
        log.append(Kind::Write, 0, 0, b"first").unwrap();
        log.commit(0, 5, &[]).unwrap();
        log.append(Kind::Write, 5, 1, b"second").unwrap();
        for crash in [Crash::ProcessKill, Crash::PowerLoss] {
            let opened = reopen(log.medium().after(crash));
            let kinds: Vec<Kind> = opened.committed.iter().map(|f| f.header.kind).collect();
            assert_eq!(kinds, vec![Kind::Write, Kind::Commit], "{crash:?}");
            assert_eq!(opened.discarded, if crash == Crash::ProcessKill { 1 } else { 0 });
        }
    }

    #[test]
    fn a_commit_never_outlives_its_records() {
        // Power loss right after commit: all durable. Without the first flush it would not be.
        let mut log = Log::create(SimMedium::new(4096), 1 << 20, None, 0).unwrap();
        log.append(Kind::Write, 0, 0, &[7u8; 300]).unwrap();
        log.commit(0, 300, &[]).unwrap();
        let opened = reopen(log.medium().after(Crash::PowerLoss));
        assert_eq!(opened.committed.len(), 2);
        let mut data = [0u8; 300];
        opened.log.read(opened.committed[0].data_pos, &mut data);
        assert_eq!(data, [7u8; 300]);
    }

    #[test]
    fn reset_voids_old_records_and_grows_on_demand() {
        let mut log = Log::create(SimMedium::new(4096), 1 << 20, None, 0).unwrap();
        for i in 0..100u64 {
            log.append(Kind::Write, i * 100, 0, &[1u8; 100]).unwrap();
        }
        assert!(log.medium().len() > 4096);
        log.commit(0, 10_000, &[]).unwrap();
        log.reset(Some(10_000)).unwrap();
        let opened = reopen(log.medium().after(Crash::PowerLoss));
        assert!(opened.committed.is_empty());
        assert_eq!(opened.log.generation(), 2);
        assert_eq!(opened.base_size, Some(10_000));
    }

    /// The medium doubles up to the knee, then grows by an eighth of itself (at least 1 MiB),
    /// never past the limit, and always enough for the record.
    #[test]
    fn logs_grow_slowly_past_the_knee() {
        let mut log = Log::create(SimMedium::new(4096), 64 << 20, None, 0).unwrap();
        log.grow_slowly_from(3 << 20);
        let mut lens = vec![log.medium().len()];
        for i in 0..1800u64 {
            log.append(Kind::Write, i * 4096, 0, &[7u8; 8192]).unwrap();
            if log.medium().len() != *lens.last().unwrap() {
                lens.push(log.medium().len());
            }
        }
        let (m, knee) = (1 << 20, 3 << 20);
        for w in lens.windows(2) {
            let (a, b) = (w[0], w[1]);
            if a < knee {
                assert!(b == knee || b >= 2 * a, "doubling up to the knee: {lens:?}");
            } else {
                assert_eq!(b - a, (a / 8).max(m), "an eighth past the knee: {lens:?}");
            }
        }
        assert!(lens.contains(&knee) && *lens.last().unwrap() > 12 * m, "{lens:?}");
        // A record larger than a step still fits; the limit holds.
        log.append(Kind::Write, 0, 0, &vec![1u8; 6 << 20]).unwrap();
        assert!(log.medium().len() <= 64 << 20);
        assert_eq!(log.append(Kind::Write, 0, 0, &vec![1u8; 64 << 20]), Err(Errno(libc::ENOSPC)));
    }

    #[test]
    fn full_logs_refuse_appends_and_keep_what_they_hold() {
        let mut log = Log::create(SimMedium::new(4096), 8192, None, 0).unwrap();
        log.append(Kind::Write, 0, 0, &[1u8; 4000]).unwrap();
        assert_eq!(log.append(Kind::Write, 0, 0, &[2u8; 5000]), Err(Errno(libc::ENOSPC)));
        log.commit(0, 4000, &[]).unwrap();
        assert_eq!(reopen(log.medium().after(Crash::PowerLoss)).committed.len(), 2);
    }

    /// Removing the commit's flush loses an acknowledged commit on power loss; the same
    /// scenario with the shipped ordering keeps it.
    #[test]
    fn removing_the_commit_flush_is_caught() {
        let run = |mutation| {
            let mut log = Log::create(SimMedium::new(4096), 1 << 20, None, 0).unwrap();
            log.mutation = mutation;
            log.append(Kind::Write, 0, 0, &[9u8; 700]).unwrap();
            log.commit(0, 700, &[]).unwrap();
            reopen(log.medium().after(Crash::PowerLoss)).committed.len()
        };
        assert_eq!(run(Mutation::None), 2, "shipped ordering keeps the commit");
        assert_ne!(run(Mutation::NoFlushAtCommit), 2, "the mutation must be caught");
    }

    /// Without checksums a torn record (its data half written when the process died) would be
    /// applied; with them recovery stops before it.
    #[test]
    fn removing_checksums_is_caught() {
        let run = |mutation| {
            let mut log = Log::create(SimMedium::new(4096), 1 << 20, None, 0).unwrap();
            let pos = log.append(Kind::Write, 0, 0, &[5u8; 600]).unwrap();
            log.commit(0, 600, &[]).unwrap();
            let mut medium = log.medium().after(Crash::ProcessKill);
            medium.write(pos + 100, &[0u8; 200]); // torn: part of the data never arrived
            let mut opened = Log::open(medium, 1 << 20).map_err(|e| e.to_string()).unwrap();
            opened.log.mutation = mutation;
            // Rescan with the mutation in force.
            let rescanned = (opened.log.record_at(LOG_HEADER_LEN)).is_some();
            (opened.committed.len(), rescanned)
        };
        assert_eq!(run(Mutation::None), (0, false), "a torn record is never accepted");
        assert!(run(Mutation::NoChecksums).1, "the mutation must be caught");
    }

    /// Undo records after the last commit are handed to recovery, and count as needed (`nvmmio
    /// recover` trims a log after them, not after the commit); those before it are void.
    #[test]
    fn undo_records_after_the_last_commit_are_kept_for_recovery() {
        let mut log = Log::create(SimMedium::new(4096), 1 << 20, Some(8192), 0).unwrap();
        log.save_undo(0, &[(0, 4096)], &mut |_, dst| {
            dst.fill(1);
            Ok(())
        })
        .unwrap();
        log.commit(0, 8192, &[]).unwrap();
        let committed_end = log.committed_end();
        log.save_undo(1, &[(4096, 4096), (0, 100)], &mut |_, dst| {
            dst.fill(2);
            Ok(())
        })
        .unwrap();
        for crash in [Crash::ProcessKill, Crash::PowerLoss] {
            let opened = reopen(log.medium().after(crash));
            let undo: Vec<u64> = opened.undo.iter().map(|r| r.header.offset).collect();
            assert_eq!(undo, vec![4096, 0], "{crash:?}");
            assert_eq!(opened.log.committed_end(), committed_end);
            assert_eq!(opened.log.needed_end(), committed_end + 2 * RECORD_HEADER_LEN + 4096 + 104);
        }
    }

    /// A writer sharing an undo epoch placed its record and was stopped before sealing it (it
    /// had stored nothing in place): the sealed records of other writers after it still count.
    /// Shared undo writes run on tmpfs only, where a crash is a process kill.
    #[test]
    fn unsealed_undo_records_are_walked_past() {
        let mut log = Log::create(SimMedium::new(4096), 1 << 20, Some(8192), 0).unwrap();
        let placed = log.allocate(Kind::Undo, 0, 1, 4096).unwrap();
        log.save_undo(1, &[(4096, 4096)], &mut |_, dst| {
            dst.fill(2);
            Ok(())
        })
        .unwrap();
        let opened = reopen(log.medium().after(Crash::ProcessKill));
        let undo: Vec<(u64, u64)> = opened.undo.iter().map(|r| (r.header.offset, r.data_pos)).collect();
        let second = placed + 4096 + RECORD_HEADER_LEN;
        assert_eq!(undo, vec![(4096, second)]);
        assert_eq!(opened.log.needed_end(), second + 4096);
        // Nothing but undo records counts after an unsealed one: a commit record never follows
        // one, and a stale one must not stand in.
        let mut log = Log::create(SimMedium::new(4096), 1 << 20, Some(8192), 0).unwrap();
        log.allocate(Kind::Undo, 0, 1, 100).unwrap();
        log.commit(1, 100, &[]).unwrap();
        let opened = reopen(log.medium().after(Crash::ProcessKill));
        assert!(opened.committed.is_empty());
        assert_eq!(opened.log.committed_end(), LOG_HEADER_LEN);
    }

    #[test]
    fn damaged_headers_are_reported() {
        let log = Log::create(SimMedium::new(4096), 1 << 20, None, 0).unwrap();
        let mut medium = log.medium().after(Crash::PowerLoss);
        medium.write(3, b"x");
        assert!(matches!(Log::open(medium, 1 << 20), Err(OpenError::Damaged(_))));
    }
}
