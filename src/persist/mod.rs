//! Persistence: the media nvmmio's logs live on, and the only code that makes stores durable.
//!
//! A [`Medium`] is a byte region with explicit durability: `write` stores bytes (visible to
//! readers at once, durable only later), `flush` starts making a range durable, and `fence`
//! waits until every flushed range is. The engine states its ordering with these three calls
//! alone, so the same engine runs on
//! - [`LogFile`]: a memory-mapped file. On persistent memory (a DAX file mapped with MAP_SYNC,
//!   or any file when `PMEM_IS_PMEM_FORCE=1`) stores are libpmem's non-temporal copies, `flush`
//!   is `pmem_flush` and `fence` is `pmem_drain`; on a disk file system `flush` is
//!   `msync(MS_SYNC)`; on tmpfs (memory only) there is nothing to write back;
//! - [`sim::SimMedium`]: memory that remembers what is durable, to build crash images in tests.
//!
//! The data file itself is a [`Storage`] (read, write, truncate, sync), reached with system
//! calls: the kernel's page cache keeps it coherent with the program's own mappings.

mod log_file;
mod mapped_storage;
mod mapping;
pub mod mark;
mod pmem;
mod ranges;
pub mod sim;

pub use log_file::LogFile;
pub use mapped_storage::MappedStorage;
pub use mapping::Mapping;

use crate::sys::{self, Errno};

/// A region of bytes with explicit durability.
pub trait Medium {
    /// Current size of the region.
    fn len(&self) -> u64;
    /// Grows the region to at least `len` bytes (new bytes read as zero).
    fn grow(&mut self, len: u64) -> Result<(), Errno>;
    /// Gives back the room past `len` bytes, if the region is larger (best effort: it may
    /// stay as it is).
    fn shrink(&mut self, _len: u64) {}
    /// The bytes at `[offset, offset + len)` (the region is memory: no copy).
    fn bytes(&self, offset: u64, len: usize) -> &[u8];
    /// Stores bytes: readable at once, durable only after `flush` of the range and `fence`.
    fn write(&mut self, offset: u64, data: &[u8]);
    /// Lets `fill` store `len` bytes at `offset` in place (e.g. copied from a program's buffer,
    /// which may fail); same durability rules as `write`.
    fn write_with(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno>;

    /// Whether [`Medium::write_disjoint`] works: several threads may store at once, each into
    /// a range of its own.
    fn takes_shared_stores(&self) -> bool {
        false
    }
    /// [`Medium::write_with`] through a shared reference (EOPNOTSUPP unless
    /// [`Medium::takes_shared_stores`]).
    ///
    /// # Safety
    /// `[offset, offset + len)` lies within `len()`, and no other code reads or writes it
    /// until this returns.
    #[allow(unsafe_code)]
    unsafe fn write_disjoint(
        &self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        let _ = (offset, len, fill);
        Err(Errno(libc::EOPNOTSUPP))
    }
    fn read(&self, offset: u64, buf: &mut [u8]) {
        buf.copy_from_slice(self.bytes(offset, buf.len()));
    }
    /// Starts writing back `[offset, offset + len)`.
    fn flush(&mut self, offset: u64, len: u64) -> Result<(), Errno>;
    /// Waits until every flushed range is durable.
    fn fence(&mut self) -> Result<(), Errno>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether records need a checksum over their data. Only memory that a crash can leave
    /// half-written needs one; a log in tmpfs (no power loss to survive, and a killed process
    /// leaves every completed store) is checked by record headers alone, saving a pass over
    /// every logged byte.
    fn checks_data(&self) -> bool {
        true
    }
}

/// [`Storage::write_pieces_at`] one [`Storage::write_at`] a piece.
pub fn write_each<S: Storage + ?Sized>(storage: &mut S, offset: u64, pieces: &[&[u8]]) -> Result<(), Errno> {
    let mut at = offset;
    for piece in pieces {
        storage.write_at(at, piece)?;
        at += piece.len() as u64;
    }
    Ok(())
}

/// A data file as the engine uses it.
pub trait Storage {
    /// The file's size.
    fn size(&self) -> Result<u64, Errno>;
    /// Reads at `offset`; bytes past the end are left untouched; returns how many were read.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut done = 0;
        self.with_bytes(offset, buf.len(), &mut |piece| {
            buf[done..done + piece.len()].copy_from_slice(piece);
            done += piece.len();
            Ok(())
        })
    }
    /// Hands the bytes at `[offset, offset + len)` to `sink` in order, in one or more pieces,
    /// stopping at the end of the file; returns how many were handed over.
    fn with_bytes(
        &self,
        offset: u64,
        len: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Errno>,
    ) -> Result<usize, Errno>;
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno>;
    /// Writes `pieces` one after the other from `offset` (a storage may do it in one call).
    fn write_pieces_at(&mut self, offset: u64, pieces: &[&[u8]]) -> Result<(), Errno> {
        write_each(self, offset, pieces)
    }
    /// Lets `fill` store up to `len` bytes at `offset` in place, the file growing as needed
    /// (its new blocks allocated first: ENOSPC here, never a fault in `fill`); returns how many
    /// bytes `fill` stored (fewer than `len` if its source ran out). The file may grow past
    /// `offset + len` (room for the next appends); [`Storage::size`] then says so.
    fn write_in_place(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, Errno>;
    fn set_len(&mut self, len: u64) -> Result<(), Errno>;
    /// Makes the file at least `len` long, keeping what is allocated past its end.
    fn grow(&mut self, len: u64) -> Result<(), Errno> {
        if self.size()? < len {
            self.set_len(len)?;
        }
        Ok(())
    }
    /// Makes every completed write and size change durable.
    fn sync(&mut self) -> Result<(), Errno>;
    /// About to write many blocks in `ranges` (sorted, disjoint): a storage may allocate them
    /// now (ENOSPC here rather than later) and take a faster path for the writes that follow.
    fn prepare_bulk(&mut self, ranges: &[(u64, u64)]) -> Result<(), Errno> {
        let _ = ranges;
        Ok(())
    }
    /// Allocates what a store in place of `from..end` needs (the file grows if it ends before),
    /// so that ENOSPC comes now and not half-way through a write.
    fn reserve(&mut self, from: u64, end: u64) -> Result<(), Errno> {
        let _ = (from, end);
        Ok(())
    }
    /// Allocates the blocks of `ranges` without changing the file's size or contents, so that
    /// writes there cannot meet ENOSPC (recovery reserves what its replay writes first).
    fn allocate_keep_size(&mut self, ranges: &[(u64, u64)]) -> Result<(), Errno> {
        let _ = ranges;
        Ok(())
    }
    /// Allocates the blocks of `from..end` past the file's end for bytes written elsewhere (a
    /// log) that [`Storage::write_at`] stores there later, without changing the file's size:
    /// that store then needs no room (ENOSPC now, as the kernel's write would give it).
    fn reserve_past_end(&mut self, from: u64, end: u64) -> Result<(), Errno> {
        let _ = (from, end);
        Ok(())
    }
    /// Allocates the blocks of `from..end` (inside the file) that are holes, for bytes written
    /// elsewhere (a log) that [`Storage::write_at`] stores there later: ENOSPC now, as the
    /// kernel's write into a hole would give it. Blocks known to be allocated cost no call.
    fn reserve_holes(&mut self, from: u64, end: u64) -> Result<(), Errno> {
        let _ = (from, end);
        Ok(())
    }
    /// Whether the blocks of `from..end` (inside the file) are known to be allocated, so that
    /// [`Storage::reserve_holes`] would have nothing to do (a check with the file shared).
    fn holds_blocks(&self, from: u64, end: u64) -> bool {
        let _ = (from, end);
        false
    }
    /// Whether [`Storage::store_disjoint`] works now: a file in memory (tmpfs: a store needs
    /// no write-back), mapped to its end.
    fn takes_shared_stores(&self) -> bool {
        false
    }
    /// [`Storage::write_in_place`] through a shared reference, inside the file (no growth, no
    /// allocation, nothing to write back): several threads may store at once, each into a range
    /// of its own. EOPNOTSUPP unless [`Storage::takes_shared_stores`].
    ///
    /// # Safety
    /// `[offset, offset + len)` lies within the file, its blocks are allocated
    /// ([`Storage::holds_blocks`]), and no other writer stores into it until this returns.
    /// (Readers may look at it meanwhile and see part of the store, as a reader through the
    /// kernel can during a write.)
    #[allow(unsafe_code)]
    unsafe fn store_disjoint(
        &self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        let _ = (offset, len, fill);
        Err(Errno(libc::EOPNOTSUPP))
    }
    /// How far [`Storage::reserve_past_end`] allocated (0: nothing past the end); cut back by
    /// [`Storage::set_len`].
    fn reserved_to(&self) -> u64 {
        0
    }
    /// Whether a few blocks are written faster after [`Storage::prepare_bulk`] than one call
    /// each (a mapping of a memory-backed file already set up).
    fn few_writes_prefer_bulk(&self) -> bool {
        false
    }
    /// Whether reads ([`Storage::with_bytes`]) are served without a system call, e.g. from a
    /// mapping already set up; if not, [`Storage::prepare_reads`] (which needs `&mut`) sets it
    /// up. Reads are right either way.
    fn reads_ready(&self) -> bool {
        true
    }
    fn prepare_reads(&mut self) -> Result<(), Errno> {
        Ok(())
    }
    /// Rereads the size after someone else (the kernel, on the program's behalf) changed it.
    fn refresh(&mut self) -> Result<u64, Errno> {
        self.size()
    }
}

/// A data file reached through its descriptor (the process's own fd, or one nvmmio opened).
pub struct FdStorage {
    pub fd: i32,
}

impl Storage for FdStorage {
    fn size(&self) -> Result<u64, Errno> {
        sys::file_size(self.fd)
    }

    fn with_bytes(
        &self,
        offset: u64,
        len: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Errno>,
    ) -> Result<usize, Errno> {
        let mut chunk = vec![0u8; len.min(1 << 20)];
        let mut done = 0;
        while done < len {
            let want = (len - done).min(chunk.len());
            let n = sys::pread(self.fd, &mut chunk[..want], offset + done as u64)?;
            if n == 0 {
                break;
            }
            sink(&chunk[..n])?;
            done += n;
        }
        Ok(done)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        sys::pwrite_all(self.fd, data, offset)
    }

    fn write_in_place(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        let mut buf = vec![0u8; len];
        let n = fill(&mut buf);
        sys::pwrite_all(self.fd, &buf[..n], offset)?;
        Ok(n)
    }

    fn set_len(&mut self, len: u64) -> Result<(), Errno> {
        sys::ftruncate(self.fd, len)
    }

    fn sync(&mut self) -> Result<(), Errno> {
        sys::fdatasync(self.fd)
    }

    fn allocate_keep_size(&mut self, ranges: &[(u64, u64)]) -> Result<(), Errno> {
        allocate_keep_size(self.fd, ranges)
    }
}

/// [`Storage::allocate_keep_size`] on a descriptor. A file system without `fallocate` has
/// nothing to reserve with: the writes find out.
pub(crate) fn allocate_keep_size(fd: i32, ranges: &[(u64, u64)]) -> Result<(), Errno> {
    for &(start, end) in ranges {
        match sys::fallocate_keep_size(fd, start, end - start) {
            Ok(()) | Err(Errno(libc::EOPNOTSUPP)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
