//! A data file read through a shared mapping (no system call per access) and written by the
//! checkpoint with pwrite (small runs) or through the mapping (large runs, blocks allocated
//! first), resized with ftruncate and synced with fdatasync (which also writes back pages
//! dirtied through the mapping; nothing to do on tmpfs). The mapping is made lazily, sized in powers of two from 64 KiB (small files stay
//! cheap), and remade when the file grows past it. Only bytes below the file's size are ever
//! touched.

use std::cell::RefCell;

use super::{Mapping, Storage};
use crate::sys::{self, Errno};

pub struct MappedStorage {
    fd: i32,
    /// On tmpfs there is no durable medium: syncing has nothing to do.
    tmpfs: bool,
    /// The file's size as far as this process made it.
    len: u64,
    map: RefCell<Option<Mapping>>,
    /// Inside `prepare_bulk`'s ranges (allocated): writes go through the mapping.
    bulk: Vec<(u64, u64)>,
}

impl MappedStorage {
    /// Takes ownership of `fd` (closed on drop).
    pub fn new(fd: i32) -> Result<Self, Errno> {
        Ok(Self::with_size(fd, sys::file_size(fd)?, sys::on_tmpfs(fd)))
    }

    /// As [`MappedStorage::new`], with the size and file system already known.
    pub fn with_size(fd: i32, len: u64, tmpfs: bool) -> Self {
        MappedStorage { fd, tmpfs, len, map: RefCell::new(None), bulk: Vec::new() }
    }
}

impl MappedStorage {
    /// Makes sure the mapping covers `[0, end)`.
    fn ensure_mapped(&self, end: usize) -> Result<(), Errno> {
        let mut map = self.map.borrow_mut();
        if map.as_ref().is_none_or(|m| m.len() < end) {
            let size = end.max(self.len as usize).next_power_of_two().max(64 << 10);
            *map = None;
            *map = Some(Mapping::map(self.fd, size, false, self.tmpfs)?);
        }
        Ok(())
    }
}

impl Drop for MappedStorage {
    fn drop(&mut self) {
        self.map.get_mut().take();
        sys::close_owned(self.fd);
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
        self.ensure_mapped(end)?;
        let map = self.map.borrow();
        sink(&map.as_ref().expect("mapped above").as_slice()[offset as usize..end])?;
        Ok(n)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let end = offset + data.len() as u64;
        let allocated = self.bulk.iter().any(|&(s, e)| s <= offset && end <= e);
        if !allocated {
            // One pwrite: no mapping to set up, and ENOSPC comes back as an error.
            sys::pwrite_all(self.fd, data, offset)?;
            self.len = self.len.max(end);
            return Ok(());
        }
        // Allocated blocks (prepare_bulk) can take a store through the mapping: no SIGBUS.
        self.ensure_mapped(end as usize)?;
        let map = self.map.get_mut().as_mut().expect("mapped above");
        map.as_mut_slice()[offset as usize..end as usize].copy_from_slice(data);
        Ok(())
    }

    fn prepare_bulk(&mut self, ranges: &[(u64, u64)]) -> Result<(), Errno> {
        self.bulk.clear();
        for &(start, end) in ranges {
            sys::fallocate(self.fd, start, end - start)?;
            self.len = self.len.max(end);
            self.bulk.push((start, end));
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<(), Errno> {
        sys::ftruncate(self.fd, len)?;
        self.len = len;
        // Blocks past a shrink are gone: no store through the mapping there any more.
        self.bulk.retain_mut(|r| {
            r.1 = r.1.min(len);
            r.0 < r.1
        });
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Errno> {
        self.bulk.clear();
        if self.tmpfs {
            return Ok(());
        }
        sys::fdatasync(self.fd)
    }

    fn refresh(&mut self) -> Result<u64, Errno> {
        self.len = sys::file_size(self.fd)?;
        Ok(self.len)
    }
}
