//! A log kept in a memory-mapped file: libpmem's flush and drain on persistent memory, msync
//! elsewhere.

use super::{pmem, Mapping, Medium};
use crate::sys::{self, Errno};

pub struct LogFile {
    fd: i32,
    map: Mapping,
    /// Stores, flushes and fences go through libpmem.
    pmem: bool,
    /// On tmpfs without pmem: memory is all there is, msync has nothing to do.
    tmpfs: bool,
}

impl LogFile {
    /// Maps `fd` (a log file nvmmio owns), allocating at least `min_len` bytes of it.
    pub fn open(fd: i32, min_len: u64) -> Result<LogFile, Errno> {
        let len = sys::file_size(fd)?.max(min_len).next_multiple_of(4096);
        sys::fallocate(fd, 0, len)?;
        let tmpfs = sys::on_tmpfs(fd);
        // tmpfs is never DAX: no MAP_SYNC attempt there.
        // The log's blocks are allocated (fallocate): populating only maps them.
        let map = Mapping::map(fd, len as usize, !tmpfs, true)?;
        let pmem = map.is_sync() || pmem::is_pmem(map.as_slice());
        Ok(LogFile { fd, map, pmem, tmpfs })
    }

    /// The log file's inode number (which name it has is the caller's business).
    pub fn inode(&self) -> Result<u64, Errno> {
        Ok(sys::fstat(self.fd)?.st_ino)
    }

    /// Whether the log is on tmpfs.
    pub fn is_tmpfs(&self) -> bool {
        self.tmpfs
    }

    /// Whether the log is on (or forced to be treated as) persistent memory.
    pub fn is_pmem(&self) -> bool {
        self.pmem
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        sys::close_owned(self.fd);
    }
}

impl Medium for LogFile {
    fn len(&self) -> u64 {
        self.map.len() as u64
    }

    fn grow(&mut self, len: u64) -> Result<(), Errno> {
        if len <= self.len() {
            return Ok(());
        }
        let len = len.next_multiple_of(4096);
        // Blocks first: a store into the new range can then never fault for lack of space.
        sys::fallocate(self.fd, 0, len)?;
        self.map.grow(len as usize, true)?;
        self.pmem = self.map.is_sync() || pmem::is_pmem(self.map.as_slice());
        Ok(())
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
        } else if self.tmpfs {
            Ok(())
        } else {
            self.map.sync_range(offset as usize, len as usize)
        }
    }

    fn checks_data(&self) -> bool {
        !self.tmpfs || self.pmem
    }

    fn fence(&mut self) -> Result<(), Errno> {
        if self.pmem {
            pmem::drain();
        }
        // msync(MS_SYNC) is durable when it returns.
        Ok(())
    }
}
