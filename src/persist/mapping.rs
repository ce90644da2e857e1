//! One owner type per memory mapping of a file: the only code that calls mmap, munmap and
//! msync, and the only code that turns the mapping into byte slices.
//!
//! # Safety
//! A `Mapping` owns `[addr, addr + len)` from a successful `mmap` (shared, of a file; or
//! private anonymous memory) until drop, and
//! hands out slices only within it. The mapped file is nvmmio's own (a log, sized with
//! `fallocate` before mapping) or a data file whose users touch only bytes below its size,
//! with blocks allocated before any store (no access faults: SIGBUS).
#![allow(unsafe_code)]

use crate::sys::{syscall6, Errno};

pub struct Mapping {
    addr: usize,
    len: usize,
    /// Mapped with MAP_SYNC: the file is on persistent memory (DAX).
    sync: bool,
}

// SAFETY: the mapping is plain shared memory; `&self` gives read-only slices and `&mut self`
// exclusive ones, so the usual borrow rules make concurrent use sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `fd` from offset 0, shared and writable; with MAP_SYNC when the
    /// file system supports it (DAX), so that flushed stores are durable without msync.
    /// `populate`: set up every page table entry now (MAP_POPULATE) instead of one fault per
    /// page later; only for memory-backed files (on a disk it would read the whole file).
    pub fn map(fd: i32, len: usize, try_sync: bool, populate: bool) -> Result<Mapping, Errno> {
        debug_assert!(len > 0);
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as usize;
        let map = |flags: i32| {
            let a = [0, len, prot, flags as usize, fd as usize, 0];
            // SAFETY: a fresh mapping chosen by the kernel (no fixed address): nothing else is
            // replaced or aliased.
            Errno::result(unsafe { syscall6(libc::SYS_mmap as usize, a) })
        };
        if try_sync {
            if let Ok(addr) = map(libc::MAP_SHARED_VALIDATE | libc::MAP_SYNC) {
                return Ok(Mapping { addr, len, sync: true });
            }
        }
        let flags = if populate { libc::MAP_SHARED | libc::MAP_POPULATE } else { libc::MAP_SHARED };
        Ok(Mapping { addr: map(flags)?, len, sync: false })
    }

    /// `len` bytes of private anonymous memory (zeros), grown like a file mapping: the
    /// in-memory image of a log on a disk (see `LogFile`).
    pub fn anonymous(len: usize) -> Result<Mapping, Errno> {
        debug_assert!(len > 0);
        let prot = (libc::PROT_READ | libc::PROT_WRITE) as usize;
        let flags = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as usize;
        // SAFETY: fresh anonymous memory chosen by the kernel: nothing else is replaced.
        let addr = Errno::result(unsafe { syscall6(libc::SYS_mmap as usize, [0, len, prot, flags, usize::MAX, 0]) })?;
        Ok(Mapping { addr, len, sync: false })
    }

    /// Grows the mapping to `new_len` bytes of the same file, keeping the pages already mapped
    /// (mremap); `populate`: map the new part now (best effort; it allocates any hole there, so
    /// only for files whose blocks are all allocated).
    pub fn grow(&mut self, new_len: usize, populate: bool) -> Result<(), Errno> {
        if new_len <= self.len {
            return Ok(());
        }
        let a = [self.addr, self.len, new_len, libc::MREMAP_MAYMOVE as usize, 0, 0];
        // SAFETY: remapping exactly the range we own; `&mut self` guarantees no slice of the old
        // range is alive (the kernel may move it).
        let addr = Errno::result(unsafe { syscall6(libc::SYS_mremap as usize, a) })?;
        self.addr = addr;
        let old = self.len;
        self.len = new_len;
        if populate {
            self.populate_for_writing(old, new_len - old);
        }
        Ok(())
    }

    /// Shrinks the mapping to `new_len` bytes (a multiple of the page size), unmapping the rest.
    pub fn shrink(&mut self, new_len: usize) -> Result<(), Errno> {
        if new_len >= self.len || new_len == 0 {
            return Ok(());
        }
        let a = [self.addr, self.len, new_len, 0, 0, 0];
        // SAFETY: shrinking exactly the range we own, in place (no MREMAP_MAYMOVE): the pages
        // kept do not move; `&mut self` guarantees no slice of the part cut is alive.
        Errno::result(unsafe { syscall6(libc::SYS_mremap as usize, a) })?;
        self.len = new_len;
        Ok(())
    }

    /// Maps the pages of `[offset, offset + len)` now, in one call, instead of one fault each
    /// on first store (best effort: MADV_POPULATE_WRITE, Linux 5.14). It allocates any hole in
    /// the range: only for allocated ranges.
    pub fn populate_for_writing(&self, offset: usize, len: usize) {
        self.advise(offset, len, libc::MADV_POPULATE_WRITE);
    }

    /// As [`Mapping::populate_for_writing`] with read faults (MADV_POPULATE_READ). On tmpfs the
    /// pages of a shared mapping come writable (no dirty tracking), so stores then take no fault
    /// either, and no page is dirtied nor the file's times moved: a write fault a page costs 2.5
    /// times as much (256 MiB here: 33 ms against 81 ms). Elsewhere a first store still faults.
    pub fn populate(&self, offset: usize, len: usize) {
        self.advise(offset, len, libc::MADV_POPULATE_READ);
    }

    fn advise(&self, offset: usize, len: usize, advice: i32) {
        let start = offset & !4095;
        let end = (offset + len).min(self.len);
        if start >= end {
            return;
        }
        let a = [self.addr + start, end - start, advice as usize, 0, 0, 0];
        // SAFETY: advice on a range we own; it changes no contents.
        let _ = unsafe { syscall6(libc::SYS_madvise as usize, a) };
    }

    /// Whether the mapping is synchronous (MAP_SYNC on a DAX file).
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first mapped byte's address, for copies made outside Rust by code that survives a
    /// fault (the checkpoint thread's fault-safe stores; see `preload::usercopy`).
    pub fn base_addr(&self) -> usize {
        self.addr
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: owned, mapped and readable for `len` bytes (module doc).
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }

    /// Writable view.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: owned, mapped and writable for `len` bytes; `&mut self` makes it exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.len) }
    }

    /// A writable view of `[offset, offset + len)` through a shared reference, for threads that
    /// store into disjoint ranges at once.
    ///
    /// # Safety
    /// The range lies within the mapping, and until the slice is dropped no other code reads or
    /// writes it (no other slice over it exists).
    // A `&mut` from `&self` is this function's point; the caller promises it is not aliased.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn range_mut_shared(&self, offset: usize, len: usize) -> &mut [u8] {
        assert!(offset.checked_add(len).is_some_and(|end| end <= self.len));
        // SAFETY: mapped and writable (module doc), inside the mapping (checked above), and
        // not aliased (the caller's promise).
        unsafe { std::slice::from_raw_parts_mut((self.addr + offset) as *mut u8, len) }
    }

    /// Writes back `[offset, offset + len)` synchronously (rounded out to whole pages).
    pub fn sync_range(&self, offset: usize, len: usize) -> Result<(), Errno> {
        debug_assert!(offset + len <= self.len);
        let start = offset & !4095;
        let end = (offset + len).min(self.len);
        let a = [self.addr + start, end - start, libc::MS_SYNC as usize, 0, 0, 0];
        // SAFETY: msync of a range inside our own mapping changes no memory.
        Errno::result(unsafe { syscall6(libc::SYS_msync as usize, a) }).map(drop)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what we own; no slice outlives `self`.
        let _ = unsafe { syscall6(libc::SYS_munmap as usize, [self.addr, self.len, 0, 0, 0, 0]) };
    }
}
