//! A data file read and written through a shared mapping (no system call per access), resized
//! with ftruncate and synced with fdatasync (which also writes back pages dirtied through the
//! mapping). The mapping is made lazily, sized in powers of two from 64 KiB (small files stay
//! cheap), and remade when the file grows past it. Only bytes below the file's size are ever
//! touched.

use std::cell::RefCell;

use super::{Mapping, Storage};
use crate::sys::{self, Errno};

pub struct MappedStorage {
    fd: i32,
    /// The file's size as far as this process made it.
    len: u64,
    map: RefCell<Option<Mapping>>,
}

impl MappedStorage {
    /// Takes ownership of `fd` (closed on drop).
    pub fn new(fd: i32) -> Result<Self, Errno> {
        Ok(MappedStorage {
            fd,
            len: sys::file_size(fd)?,
            map: RefCell::new(None),
        })
    }

    pub fn fd(&self) -> i32 {
        self.fd
    }
}

impl MappedStorage {
    /// Makes sure the mapping covers `[0, end)`.
    fn ensure_mapped(&self, end: usize) -> Result<(), Errno> {
        let mut map = self.map.borrow_mut();
        if map.as_ref().is_none_or(|m| m.len() < end) {
            let size = end.max(self.len as usize).next_power_of_two().max(64 << 10);
            *map = None;
            *map = Some(Mapping::map(self.fd, size)?);
        }
        Ok(())
    }
}

impl Drop for MappedStorage {
    fn drop(&mut self) {
        self.map.get_mut().take();
        let _ = sys::close(self.fd);
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
        if end > self.len {
            self.set_len(end)?;
        }
        self.ensure_mapped(end as usize)?;
        let map = self.map.get_mut().as_mut().expect("mapped above");
        map.as_mut_slice()[offset as usize..end as usize].copy_from_slice(data);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<(), Errno> {
        sys::ftruncate(self.fd, len)?;
        self.len = len;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Errno> {
        sys::fdatasync(self.fd)
    }

    fn reserve(&mut self, offset: u64, len: u64) -> Result<(), Errno> {
        // A store into an unallocated page of a shared mapping would raise SIGBUS on a full
        // file system; allocating first turns that into ENOSPC here.
        sys::fallocate(self.fd, offset, len)?;
        self.len = self.len.max(offset + len);
        Ok(())
    }

    fn refresh(&mut self) -> Result<u64, Errno> {
        self.len = sys::file_size(self.fd)?;
        Ok(self.len)
    }
}
