//! A log kept in a file: memory-mapped, with libpmem's flush and drain, on persistent memory;
//! memory-mapped on tmpfs (where there is nothing to flush); on a disk, an image in private
//! memory whose flushed ranges are written with `pwrite` and `fdatasync`. On ext4, stores
//! through a shared mapping make every msync several times dearer than the same bytes
//! written with `pwrite` into blocks already written once (measured: ~400 us against ~106 us a
//! 4 KiB commit), which is why the log's blocks are also zeroed when they are allocated.

use super::{pmem, Mapping, Medium};
use crate::sys::{self, Errno};

pub struct LogFile {
    fd: i32,
    map: Mapping,
    /// The log's length: the file's exact size (a log cut short by damage must not read as
    /// padded with zeros, which a record checked by its header alone would take for data).
    len: u64,
    /// Stores, flushes and fences go through libpmem.
    pmem: bool,
    /// On tmpfs without pmem: memory is all there is, msync has nothing to do.
    tmpfs: bool,
    /// On a disk: `map` is private memory, written to the file at each flush.
    disk: bool,
    /// On a disk: ranges were written back since the last fence, which syncs them.
    written_back: bool,
    /// On a disk: the next fence is an `fsync` (see [`LogFile::commit_metadata_at_next_fence`]).
    metadata_at_next_fence: std::sync::atomic::AtomicBool,
}

impl LogFile {
    /// Maps `fd` (a log file nvmmio owns), allocating at least `min_len` bytes of it.
    pub fn open(fd: i32, min_len: u64) -> Result<LogFile, Errno> {
        let existing = sys::file_size(fd)?;
        // A new log gets `min_len` bytes; an existing one keeps its size until it grows.
        let len = if existing == 0 { min_len.next_multiple_of(4096) } else { existing };
        let tmpfs = sys::on_tmpfs(fd);
        allocate(fd, existing, len, tmpfs)?;
        // tmpfs is never DAX: no MAP_SYNC attempt there.
        // The log's blocks are allocated (fallocate): populating only maps them.
        let mapped_len = len.next_multiple_of(4096) as usize;
        let mut map = Mapping::map(fd, mapped_len, !tmpfs, tmpfs)?;
        let pmem = map.is_sync() || pmem::is_pmem(map.as_slice());
        let disk = !tmpfs && !pmem;
        if disk {
            let mut image = Mapping::anonymous(mapped_len)?;
            image.as_mut_slice()[..len as usize].copy_from_slice(&map.as_slice()[..len as usize]);
            map = image;
        }
        Ok(LogFile {
            fd,
            map,
            len,
            pmem,
            tmpfs,
            disk,
            written_back: false,
            metadata_at_next_fence: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The log file's inode number (which name it has is the caller's business).
    pub fn inode(&self) -> Result<u64, Errno> {
        Ok(sys::fstat(self.fd)?.st_ino)
    }

    /// Whether the log is on tmpfs.
    pub fn is_tmpfs(&self) -> bool {
        self.tmpfs
    }

    /// Whether the log is on a disk (neither tmpfs nor persistent memory).
    pub fn is_disk(&self) -> bool {
        self.disk
    }

    /// Whether the log is on (or forced to be treated as) persistent memory.
    /// On a disk: the next fence makes every metadata change made so far durable too (on
    /// ext4 and XFS, whose journals commit in order), with the log's own records in one sync:
    /// this log's inode is changed now (its mode set again) and the fence `fsync`s it, which
    /// commits the journal transaction holding that change and every earlier one (the log's
    /// rename to its file's name, the data file's mark). Not for tmpfs or pmem.
    pub fn commit_metadata_at_next_fence(&self) -> Result<(), Errno> {
        sys::fchmod(self.fd, 0o600)?;
        self.metadata_at_next_fence.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    pub fn is_pmem(&self) -> bool {
        self.pmem
    }
}

/// Allocates the log file's bytes `from..to`. On a disk they are also written (zeros) and
/// synced once: a block allocated but never written is an *unwritten* extent, whose first
/// write-back changes the file's metadata, so that every commit's msync would pay for a journal
/// commit as well as its one cache flush.
fn allocate(fd: i32, from: u64, to: u64, memory_only: bool) -> Result<(), Errno> {
    sys::fallocate_or_undo(fd, 0, to)?;
    if memory_only || from >= to {
        return Ok(());
    }
    let zeros = vec![0u8; (to - from).min(1 << 20) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(zeros.len() as u64) as usize;
        sys::pwrite_all(fd, &zeros[..n], at)?;
        at += n as u64;
    }
    sys::fdatasync(fd)
}

impl Drop for LogFile {
    fn drop(&mut self) {
        sys::close_owned(self.fd);
    }
}

impl Medium for LogFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn grow(&mut self, len: u64) -> Result<(), Errno> {
        if len <= self.len() {
            return Ok(());
        }
        let len = len.next_multiple_of(4096);
        // Blocks first: a store into the new range can then never fault for lack of space.
        allocate(self.fd, self.len, len, !self.disk)?;
        self.map.grow(len as usize, true)?;
        self.len = len;
        self.pmem = self.map.is_sync() || pmem::is_pmem(self.map.as_slice());
        Ok(())
    }

    fn shrink(&mut self, len: u64) {
        let len = len.next_multiple_of(4096);
        if len >= self.len || self.map.shrink(len as usize).is_err() {
            return;
        }
        self.len = len;
        // The bytes past it are void (never part of a record in use): losing the room is
        // harmless if this fails, and a crash keeps the longer file, which is as good.
        let _ = sys::ftruncate(self.fd, len);
    }

    fn bytes(&self, offset: u64, len: usize) -> &[u8] {
        &self.map.as_slice()[offset as usize..offset as usize + len]
    }

    fn write_with(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        // Plain stores, also on pmem: the commit's flush and drain make them durable.
        fill(&mut self.map.as_mut_slice()[offset as usize..offset as usize + len])
    }

    fn takes_shared_stores(&self) -> bool {
        true
    }

    #[allow(unsafe_code)]
    unsafe fn write_disjoint(
        &self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        // Plain stores, as `write_with`. (On a disk `map` is the private image, written to the
        // file at flushes, which hold the log alone.)
        // SAFETY: in range and not aliased: the caller's promise, passed on.
        fill(unsafe { self.map.range_mut_shared(offset as usize, len) })
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let o = offset as usize;
        let dst = &mut self.map.as_mut_slice()[o..o + data.len()];
        if self.pmem {
            pmem::copy_nodrain(dst, data);
        } else {
            dst.copy_from_slice(data);
        }
    }

    fn flush(&mut self, offset: u64, len: u64) -> Result<(), Errno> {
        if self.pmem {
            pmem::flush(&self.map.as_slice()[offset as usize..(offset + len) as usize]);
            Ok(())
        } else if self.disk {
            // Written back now, waited for at the fence (one fdatasync for every range since).
            let range = &self.map.as_slice()[offset as usize..(offset + len) as usize];
            sys::pwrite_all(self.fd, range, offset)?;
            self.written_back = true;
            Ok(())
        } else {
            Ok(())
        }
    }

    fn checks_data(&self) -> bool {
        !self.tmpfs || self.pmem
    }

    fn fence(&mut self) -> Result<(), Errno> {
        if self.pmem {
            pmem::drain();
        } else if self.disk && *self.metadata_at_next_fence.get_mut() {
            sys::fsync(self.fd)?;
            *self.metadata_at_next_fence.get_mut() = false;
            self.written_back = false;
        } else if self.written_back {
            sys::fdatasync(self.fd)?;
            self.written_back = false;
        }
        Ok(())
    }
}
