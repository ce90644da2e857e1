//! The engine when its data file refuses a write (ENOSPC, EIO): what the program is told, and
//! what a retried call does. The data file is a simulated one whose writes fail on demand.

use std::cell::Cell;

use nvmmio::engine::{EngineSettings, ManagedFile};
use nvmmio::persist::sim::{SimMedium, SimStorage};
use nvmmio::persist::Storage;
use nvmmio::sys::Errno;

/// A [`SimStorage`] whose `write_at` fails with ENOSPC while `full` is set.
struct Refusing {
    inner: SimStorage,
    full: Cell<bool>,
}

impl Storage for Refusing {
    fn size(&self) -> Result<u64, Errno> {
        self.inner.size()
    }
    fn with_bytes(
        &self,
        offset: u64,
        len: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Errno>,
    ) -> Result<usize, Errno> {
        self.inner.with_bytes(offset, len, sink)
    }
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if self.full.get() {
            return Err(Errno(libc::ENOSPC));
        }
        self.inner.write_at(offset, data)
    }
    fn write_in_place(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        self.inner.write_in_place(offset, len, fill)
    }
    fn set_len(&mut self, len: u64) -> Result<(), Errno> {
        self.inner.set_len(len)
    }
    fn sync(&mut self) -> Result<(), Errno> {
        self.inner.sync()
    }
}

type File = ManagedFile<SimMedium, Refusing>;

fn open(initial: &[u8]) -> File {
    let data = Refusing { inner: SimStorage::with_contents(initial), full: Cell::new(false) };
    ManagedFile::open(data, SimMedium::new(4096), EngineSettings::default()).map_err(|e| e.to_string()).unwrap().0
}

/// An fsync commits, then copies the blocks into the data file so that a process without
/// nvmmio sees them when it returns. If that copy fails after the commit, the fsync fails; its
/// retry has nothing new to commit but must still copy them (it used to return success with
/// the data file stale).
#[test]
fn a_retried_fsync_publishes_what_a_failed_one_committed() {
    let mut file = open(&[b'a'; 64 << 10]);
    file.write(4096, &[b'b'; 4096]).unwrap();
    file.write(20000, b"cc").unwrap();
    file.data().full.set(true);
    assert_eq!(file.sync(), Err(Errno(libc::ENOSPC)));
    file.data().full.set(false);
    assert_eq!(file.sync(), Ok(()));
    let data = file.data().inner.contents();
    assert_eq!(&data[4096..8192], &[b'b'; 4096][..], "the first block, in the data file after the retry");
    assert_eq!(&data[20000..20002], b"cc");
    assert_eq!(data[8192..20000].iter().filter(|&&b| b != b'a').count(), 0);

    // Failed again, then overwritten before the retry: the newer bytes are published.
    file.write(4096, b"dd").unwrap();
    file.data().full.set(true);
    assert_eq!(file.sync(), Err(Errno(libc::ENOSPC)));
    file.data().full.set(false);
    file.write(4098, b"ee").unwrap();
    assert_eq!(file.sync(), Ok(()));
    assert_eq!(&file.data().inner.contents()[4096..4101], b"ddeeb");
}
