//! A data file read through a shared mapping (no system call per access) and written by the
//! checkpoint with pwrite (small runs) or through the mapping (large runs, blocks allocated
//! first), resized with ftruncate and synced with fdatasync (which also writes back pages
//! dirtied through the mapping; nothing to do on tmpfs). The mapping is made lazily, sized in powers of two from 64 KiB (small files stay
//! cheap), and remade when the file grows past it. Only bytes below the file's size are ever
//! touched.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::ranges::Ranges;
use super::{Mapping, Storage};
use crate::sys::{self, Errno};

pub struct MappedStorage {
    fd: i32,
    /// On tmpfs there is no durable medium: syncing has nothing to do.
    tmpfs: bool,
    /// The file's size as far as this process made it.
    len: u64,
    /// Changed only through `&mut self`: readers sharing `&self` see a stable mapping.
    map: Option<Mapping>,
    /// Inside `prepare_bulk`'s ranges (allocated): writes go through the mapping.
    bulk: Vec<(u64, u64)>,
    /// Every block below this is known to be allocated (tmpfs; 0 if unknown): saves asking
    /// the kernel again at every commit's publishing.
    hole_free_to: u64,
    /// Blocks past the end are allocated up to here for logged bytes (see
    /// [`Storage::reserve_past_end`]; 0: none). Not counted in `hole_free_to`, which stays at
    /// or below `len`.
    reserved_to: u64,
    /// Ranges known to be allocated, in the file or reserved past its end (besides
    /// `hole_free_to`): logged writes there need not ask the kernel about holes.
    allocated: Ranges,
    /// On tmpfs, a bit per [`POPULATE_CHUNK`] of the mapping whose pages were set up (see
    /// [`MappedStorage::populate_chunks`]). Atomic: readers and writers sharing the file set
    /// them too.
    populated: Vec<AtomicU64>,
}

/// Pages are set up this much at a time, when a store first reaches a chunk: one call instead
/// of a fault a page, and never a whole large file at once (populating 1 GiB stalled the call
/// that mapped it, an fsync under the file's lock, for 0.5 to 3 s on this machine). They are
/// set up as for reading (see [`Mapping::populate`]): 4 KiB random writes with an fsync every
/// 16 on an 8 GiB file ran 0.62x the kernel with pages set up for writing, 1.0x as for
/// reading, 0.55x with none (a fault a page); one thread's write + fsync on a fallocated file
/// (whose pages fault in one at a time either way) about 4% slower.
const POPULATE_CHUNK: u64 = 2 << 20;

impl MappedStorage {
    /// Takes ownership of `fd` (closed on drop).
    pub fn new(fd: i32) -> Result<Self, Errno> {
        Ok(Self::with_size(fd, sys::file_size(fd)?, sys::on_tmpfs(fd)))
    }

    /// The file's descriptor (for a background writer; it stays owned here).
    pub fn raw_fd(&self) -> i32 {
        self.fd
    }

    /// Whether the file is in memory (tmpfs): stores through a mapping are then as good as a
    /// `pwrite` (nothing to write back) and much cheaper for a block.
    pub fn in_memory(&self) -> bool {
        self.tmpfs
    }

    /// As [`MappedStorage::new`], with the size and file system already known.
    pub fn with_size(fd: i32, len: u64, tmpfs: bool) -> Self {
        MappedStorage {
            fd,
            tmpfs,
            len,
            map: None,
            bulk: Vec::new(),
            hole_free_to: 0,
            reserved_to: 0,
            allocated: Ranges::default(),
            populated: Vec::new(),
        }
    }
}

impl MappedStorage {
    /// Makes sure the mapping covers `[0, end)`. It grows in place (mremap): the pages already
    /// mapped stay.
    fn ensure_mapped(&mut self, end: usize) -> Result<(), Errno> {
        let size = end.max(self.len as usize).next_power_of_two().max(64 << 10);
        if self.map.as_ref().is_some_and(|m| m.len() >= end) {
            return Ok(());
        }
        if self.tmpfs {
            // Chunks are populated only below this (see `populate_chunks`).
            self.allocated_prefix(self.len)?;
        }
        match self.map.as_mut() {
            Some(m) => m.grow(size, false)?,
            None => self.map = Some(Mapping::map(self.fd, size, false, false)?),
        }
        if self.tmpfs {
            let words = (size as u64).div_ceil(POPULATE_CHUNK).div_ceil(64) as usize;
            self.populated.resize_with(words, AtomicU64::default);
        }
        Ok(())
    }

    /// Whether `[offset, end)` lies in one range [`Storage::prepare_bulk`] allocated (a store
    /// there can go through the mapping).
    fn in_bulk(&self, offset: u64, end: u64) -> bool {
        // The ranges are sorted and disjoint: the one that may hold `offset` is the last that
        // starts at or before it.
        let i = self.bulk.partition_point(|&(s, _)| s <= offset);
        i > 0 && end <= self.bulk[i - 1].1
    }

    /// Before a store into `[offset, end)`: sets up the pages of the chunks it falls in that
    /// are not yet, one call per chunk (tmpfs; only where the file is known to have no hole,
    /// below `hole_free_to` or in ranges it allocated such as the room kept for appends:
    /// populating a hole allocates it). Best effort: a page left out faults when used.
    fn populate_chunks(&self, offset: u64, end: u64) {
        let Some(map) = self.map.as_ref().filter(|_| self.tmpfs && end > offset) else { return };
        for chunk in offset / POPULATE_CHUNK..=(end - 1) / POPULATE_CHUNK {
            let Some(word) = self.populated.get((chunk / 64) as usize) else { return };
            let bit = 1 << (chunk % 64);
            if word.load(Relaxed) & bit != 0 {
                continue;
            }
            let (start, stop) = (chunk * POPULATE_CHUNK, (chunk + 1) * POPULATE_CHUNK);
            let in_file = stop.min(self.len).min(map.len() as u64);
            let known = if self.allocated.covers(start, in_file) { in_file } else { in_file.min(self.hole_free_to) };
            if known <= start {
                continue;
            }
            map.populate(start as usize, (known - start) as usize);
            // Once per chunk: whatever of it was left out (a hole, past the end) faults.
            word.fetch_or(bit, Relaxed);
        }
    }

    /// Extends the file to at least `end` with its blocks allocated, leaving room for the
    /// appends to come (a step proportional to the file, 4 KiB to 64 MiB), so that appending
    /// takes a system call only now and then.
    fn allocate_to(&mut self, from: u64, end: u64) -> Result<(), Errno> {
        let step = (self.len / 8).clamp(4 << 10, 64 << 20);
        let roomy = end.max(self.len + step).next_multiple_of(4096);
        // From the write's first page: a hole before it stays a hole (sparse files stay sparse).
        let start = self.len.max(from & !4095);
        let hole_free = self.hole_free_to >= start;
        if self.allocate_growing(start, roomy).is_err() {
            // Maybe no room for the extra: exactly what is needed, or the error.
            self.allocate_growing(start, end)?;
            self.len = end;
        } else {
            self.len = roomy;
        }
        self.allocated.insert(start, self.len);
        if hole_free {
            self.hole_free_to = self.len;
        }
        Ok(())
    }
}

impl MappedStorage {
    /// A length below which every block of the file is known to be allocated (0 if unknown).
    /// On tmpfs the block count is exact (no metadata blocks): a file with as many blocks as
    /// pages has no hole, and the checkpoint can skip a `fallocate` that walks every page.
    /// `need`: the caller wants to know about bytes below it (no need to ask the kernel if
    /// they are known to be allocated).
    fn allocated_prefix(&mut self, need: u64) -> Result<u64, Errno> {
        if !self.tmpfs {
            return Ok(0);
        }
        if need <= self.hole_free_to {
            return Ok(self.hole_free_to);
        }
        let st = sys::fstat(self.fd)?;
        let size = st.st_size as u64;
        // Blocks reserved past the end count too: leave them out (all of that range, at most).
        let past_end = self.reserved_to.next_multiple_of(4096).saturating_sub(size.next_multiple_of(4096));
        let blocks = (st.st_blocks as u64 * 512).saturating_sub(past_end);
        let prefix = if blocks >= size.next_multiple_of(4096) { size } else { 0 };
        self.hole_free_to = self.hole_free_to.max(prefix);
        Ok(prefix)
    }
}

impl MappedStorage {
    /// Allocates `from..end` and makes the file at least `end` long; if the room runs out,
    /// gives back what it got and leaves the size. tmpfs does both itself. A disk file system
    /// keeps what a failed fallocate got, and (without KEEP_SIZE) the size it reached (ext4):
    /// undoing that takes a truncate, which also frees the blocks reserved past the end for
    /// logged bytes (`reserve_past_end`), so that publishing them could later meet ENOSPC. So
    /// there the blocks are taken with the size kept, what a failure got past every block in
    /// use is punched out again, and the size is set over them only once they are all there.
    /// (ext4 ignores a punch past the end: what a failure got stays allocated there until the
    /// next checkpoint cuts the file, and the next extension, which starts at the same place,
    /// uses it.)
    fn allocate_growing(&mut self, from: u64, end: u64) -> Result<(), Errno> {
        if self.tmpfs || end <= self.len {
            // (Inside the file a failed call moves no size.)
            return sys::fallocate(self.fd, from, end - from);
        }
        if let Err(e) = sys::fallocate_keep_size(self.fd, from, end - from) {
            // Past the file's bytes (the checkpoint thread may have written past `len`) and
            // past the reserved blocks, nothing of anyone's is stored.
            let in_use = sys::file_size(self.fd)?.max(self.len).max(self.reserved_to).next_multiple_of(4096);
            if in_use < end {
                let _ = sys::punch_hole(self.fd, in_use, end - in_use);
            }
            return Err(e);
        }
        // Every block is there: this only moves the size (never back).
        sys::fallocate(self.fd, from, end - from)
    }
}

impl MappedStorage {
    /// Unmaps the file and hands its descriptor to the caller instead of closing it: closing
    /// any descriptor of a file drops every POSIX record lock the process holds on it, so one
    /// must stay open while the program may hold such locks (SQLite does).
    pub fn into_fd(mut self) -> i32 {
        self.map.take();
        std::mem::replace(&mut self.fd, -1)
    }
}

impl Drop for MappedStorage {
    fn drop(&mut self) {
        self.map.take();
        if self.fd >= 0 {
            sys::close_owned(self.fd);
        }
    }
}

impl Storage for MappedStorage {
    fn size(&self) -> Result<u64, Errno> {
        Ok(self.len)
    }

    fn with_bytes(
        &self,
        offset: u64,
        len: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Errno>,
    ) -> Result<usize, Errno> {
        if offset >= self.len || len == 0 {
            return Ok(0);
        }
        let n = (len as u64).min(self.len - offset) as usize;
        let end = offset as usize + n;
        // On tmpfs a read through the shared mapping allocates a page for a hole (SIGBUS when the
        // file system is full): there, only ranges known to have none are read that way.
        let mapped_read_safe = !self.tmpfs || end as u64 <= self.hole_free_to;
        match &self.map {
            // Not populated for reading: a read faults in 16 pages at a time, and populating
            // a range reads may never come back to would only cost.
            Some(map) if map.len() >= end && mapped_read_safe => sink(&map.as_slice()[offset as usize..end])?,
            // Not mapped that far yet (see `Storage::prepare_reads`), or maybe a hole: read with
            // the kernel.
            _ => {
                let mut buf = vec![0u8; n];
                let got = sys::pread(self.fd, &mut buf, offset)?;
                sink(&buf[..got])?;
                return Ok(got);
            }
        }
        Ok(n)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let end = offset + data.len() as u64;
        if !self.in_bulk(offset, end) {
            // One pwrite: no mapping to set up, and ENOSPC comes back as an error.
            sys::pwrite_all(self.fd, data, offset)?;
            self.len = self.len.max(end);
            return Ok(());
        }
        // Allocated blocks (prepare_bulk) can take a store through the mapping: no SIGBUS.
        self.ensure_mapped(end as usize)?;
        self.populate_chunks(offset, end);
        let map = self.map.as_mut().expect("mapped above");
        map.as_mut_slice()[offset as usize..end as usize].copy_from_slice(data);
        Ok(())
    }

    fn write_pieces_at(&mut self, offset: u64, pieces: &[&[u8]]) -> Result<(), Errno> {
        let end = offset + pieces.iter().map(|p| p.len() as u64).sum::<u64>();
        if self.in_bulk(offset, end) || pieces.len() < 2 {
            // Through the mapping (see `write_at`), or a single piece anyway.
            return super::write_each(self, offset, pieces);
        }
        // One pwritev for blocks that follow each other in the file but not in the log (a
        // journal's header and pages, written by separate calls, published at its fsync).
        sys::pwritev_all(self.fd, pieces, offset)?;
        self.len = self.len.max(end);
        Ok(())
    }

    fn write_in_place(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        let end = offset + len as u64;
        if end > self.len {
            self.allocate_to(offset, end)?;
        } else if end > self.allocated_prefix(end)? {
            // Inside the file, maybe in a hole: a store there must not fault (SIGBUS on ENOSPC).
            sys::fallocate(self.fd, offset, end - offset)?;
            self.allocated.insert(offset, end);
            if offset <= self.hole_free_to {
                self.hole_free_to = end;
            }
        }
        self.ensure_mapped(self.len as usize)?;
        self.populate_chunks(offset, end);
        let map = self.map.as_mut().expect("mapped above");
        Ok(fill(&mut map.as_mut_slice()[offset as usize..end as usize]))
    }

    fn reserve(&mut self, from: u64, end: u64) -> Result<(), Errno> {
        if end > self.len {
            self.allocate_to(from, end)?;
        }
        Ok(())
    }

    fn reserve_past_end(&mut self, from: u64, end: u64) -> Result<(), Errno> {
        let have = self.len.max(self.reserved_to);
        if end <= have {
            return Ok(());
        }
        // In steps, as the room kept for appends (the size may stay behind until a checkpoint:
        // the step follows what is reserved); from the write's first page (a hole the program
        // leaves stays a hole). Nothing of ours is in that range: it may be punched.
        let start = have.max(from & !4095);
        let step = (have / 8).clamp(4 << 10, 64 << 20);
        let roomy = end.max(have + step).next_multiple_of(4096);
        if sys::fallocate_past_end(self.fd, start, roomy - start).is_err() {
            sys::fallocate_past_end(self.fd, start, end - start)?;
            self.reserved_to = end;
        } else {
            self.reserved_to = roomy;
        }
        self.allocated.insert(start, self.reserved_to);
        Ok(())
    }

    fn takes_shared_stores(&self) -> bool {
        self.tmpfs && self.map.as_ref().is_some_and(|m| m.len() as u64 >= self.len)
    }

    #[allow(unsafe_code)]
    unsafe fn store_disjoint(
        &self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        let end = offset.checked_add(len as u64).filter(|&end| end <= self.len).ok_or(Errno(libc::EINVAL))?;
        match &self.map {
            Some(map) if self.tmpfs && map.len() as u64 >= end => {
                self.populate_chunks(offset, end);
                // SAFETY: inside the mapping; no other writer stores there (the caller's promise).
                Ok(fill(unsafe { map.range_mut_shared(offset as usize, len) }))
            }
            _ => Err(Errno(libc::EOPNOTSUPP)),
        }
    }

    fn holds_blocks(&self, from: u64, end: u64) -> bool {
        let (from, end) = (from & !4095, end.min(self.len));
        from >= end || end <= self.hole_free_to || self.allocated.covers(from, end)
    }

    fn reserve_holes(&mut self, from: u64, end: u64) -> Result<(), Errno> {
        if self.holds_blocks(from, end) {
            return Ok(());
        }
        let (from, end) = (from & !4095, end.min(self.len));
        if end <= self.allocated_prefix(end)? {
            return Ok(());
        }
        // Where the holes are (on ext4 also blocks allocated but never written: allocating
        // them again is harmless, and only those not known to be ours are given back below).
        let mut holes = Vec::new();
        let mut at = from;
        while at < end {
            let hole = match sys::lseek(self.fd, at as i64, libc::SEEK_HOLE) {
                Ok(hole) => hole,
                Err(Errno(libc::ENXIO)) => at,
                Err(e) => return Err(e),
            };
            // Data up to the hole: known from now on (often all the file, in one call).
            self.allocated.insert(at, hole);
            if hole >= end {
                break;
            }
            let data = match sys::lseek(self.fd, hole as i64, libc::SEEK_DATA) {
                Ok(data) => data,
                Err(Errno(libc::ENXIO)) => end,
                Err(e) => return Err(e),
            };
            holes.extend(self.allocated.missing(hole, data.min(end)));
            at = data.max(hole + 1);
        }
        for (i, &(start, stop)) in holes.iter().enumerate() {
            if let Err(e) = sys::fallocate_keep_size(self.fd, start, stop - start) {
                // A disk keeps what a failed call got: give back these holes' blocks (they hold
                // nothing), as the kernel's failed write would leave them. (tmpfs did.)
                if !self.tmpfs {
                    for &(start, stop) in &holes[..=i] {
                        let _ = sys::punch_hole(self.fd, start, stop - start);
                    }
                }
                return Err(e);
            }
        }
        self.allocated.insert(from, end);
        Ok(())
    }

    fn reserved_to(&self) -> u64 {
        self.reserved_to
    }

    fn few_writes_prefer_bulk(&self) -> bool {
        // Worth a mapping (set up once) on tmpfs unless the file is small (a short-lived
        // journal, say, is published once or twice and closed).
        self.tmpfs && (self.map.is_some() || self.len >= 1 << 20)
    }

    fn allocate_keep_size(&mut self, ranges: &[(u64, u64)]) -> Result<(), Errno> {
        super::allocate_keep_size(self.fd, ranges)
    }

    fn prepare_bulk(&mut self, ranges: &[(u64, u64)]) -> Result<(), Errno> {
        self.bulk.clear();
        let allocated = self.allocated_prefix(ranges.last().map_or(0, |r| r.1))?;
        for &(start, end) in ranges {
            if end > allocated {
                let from = start.max(allocated);
                self.allocate_growing(from, end)?;
            }
            self.len = self.len.max(end);
            self.allocated.insert(start, end);
            self.bulk.push((start, end));
            if self.tmpfs && start <= self.hole_free_to {
                self.hole_free_to = self.hole_free_to.max(end);
            }
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<(), Errno> {
        // Nothing stays allocated past the new end: a truncate that does not grow the file frees
        // what is past it, reserved blocks too (tmpfs and ext4 do so for a truncate to the size
        // the file has as well); one that grows it into reserved blocks is made twice. (The file
        // may be longer than `self.len`: the checkpoint thread writes past it.)
        let grows = len > self.len && sys::file_size(self.fd)? < len;
        sys::ftruncate(self.fd, len)?;
        if grows && self.reserved_to > len {
            sys::ftruncate(self.fd, len)?;
        }
        self.reserved_to = self.reserved_to.min(len);
        self.allocated.cut(len);
        self.len = len;
        self.hole_free_to = self.hole_free_to.min(len);
        // Blocks past a shrink are gone: no store through the mapping there any more.
        self.bulk.retain_mut(|r| {
            r.1 = r.1.min(len);
            r.0 < r.1
        });
        Ok(())
    }

    fn grow(&mut self, len: u64) -> Result<(), Errno> {
        // Not by a truncate to the size the file has already (the checkpoint thread may have
        // written up to it): that would free the blocks reserved past its end.
        if sys::file_size(self.fd)? < len {
            sys::ftruncate(self.fd, len)?;
        }
        self.len = self.len.max(len);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Errno> {
        self.bulk.clear();
        if self.tmpfs {
            return Ok(());
        }
        sys::fdatasync(self.fd)
    }

    fn reads_ready(&self) -> bool {
        self.len == 0 || self.map.as_ref().is_some_and(|m| m.len() as u64 >= self.len)
    }

    fn prepare_reads(&mut self) -> Result<(), Errno> {
        if self.len > 0 {
            self.ensure_mapped(self.len as usize)?;
        }
        Ok(())
    }

    fn refresh(&mut self) -> Result<u64, Errno> {
        // The kernel may have changed the file (a hole punched): ask again.
        self.hole_free_to = 0;
        self.allocated.clear();
        let len = sys::file_size(self.fd)?;
        if len < self.len {
            self.reserved_to = self.reserved_to.min(len);
        }
        self.len = len;
        // Asked now, not left unknown: reads go through the mapping only below it.
        self.allocated_prefix(self.len)?;
        Ok(self.len)
    }
}
