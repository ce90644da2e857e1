//! A log medium with an ordering point or a check taken away, to show that the power-loss
//! checker notices: it wraps a [`SimMedium`] and drops chosen fences (after commit records,
//! other records, or undo records), or claims that records need no checksum over their data.
//! The engine is unchanged.

use nvmmio::engine::record::{Kind, RecordHeader, RECORD_HEADER_LEN};
use nvmmio::persist::sim::{SimMedium, Timeline};
use nvmmio::persist::Medium;
use nvmmio::sys::Errno;

/// What the wrapper takes away.
#[derive(Clone, Copy, Default, Debug)]
pub struct Weakening {
    /// Drop the fence after a flush that ends with a commit record: a sync returns before its
    /// commit record is durable (the next fence makes it so).
    pub commit_unfenced: bool,
    /// Drop the fence after a flush of records that does not end with a commit record (nor is
    /// the log header): records are no longer durable before the commit record that covers
    /// them is stored (their flush completes at the commit's own fence). An engine that flushes
    /// records and their commit record together has no such fence.
    pub records_unfenced: bool,
    /// Records' checksums cover their headers only, as on tmpfs: torn data goes unnoticed.
    pub header_only_checksums: bool,
    /// Drop the fence after a flush of undo records: a write overwrites the data file in place
    /// before the old contents are durable in the log.
    pub undo_unfenced: bool,
}

pub struct Weakened {
    inner: SimMedium,
    weakening: Weakening,
    /// What the last flush covered: (ended with a commit record, was the log header, began
    /// with an undo record).
    last_flush: (bool, bool, bool),
}

impl Weakened {
    pub fn on(timeline: &Timeline, weakening: Weakening) -> Self {
        Weakened { inner: SimMedium::on(timeline.clone(), 4096), weakening, last_flush: (false, false, false) }
    }

    /// Whether `[offset, offset + len)` starts with an undo record.
    fn starts_with_undo(&self, offset: u64, len: u64) -> bool {
        if len < RECORD_HEADER_LEN {
            return false;
        }
        let raw = self.inner.bytes(offset, RECORD_HEADER_LEN as usize);
        let header = raw.try_into().ok().and_then(RecordHeader::decode);
        header.is_some_and(|(h, _)| h.kind == Kind::Undo)
    }

    /// Whether `[offset, offset + len)` ends with a commit record.
    fn ends_with_commit(&self, offset: u64, len: u64) -> bool {
        if len < RECORD_HEADER_LEN {
            return false;
        }
        let raw = self.inner.bytes(offset + len - RECORD_HEADER_LEN, RECORD_HEADER_LEN as usize);
        let header = raw.try_into().ok().and_then(RecordHeader::decode);
        header.is_some_and(|(h, _)| h.kind == Kind::Commit && h.len == 0)
    }
}

impl Medium for Weakened {
    fn len(&self) -> u64 {
        self.inner.len()
    }

    fn grow(&mut self, len: u64) -> Result<(), Errno> {
        self.inner.grow(len)
    }

    fn bytes(&self, offset: u64, len: usize) -> &[u8] {
        self.inner.bytes(offset, len)
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.inner.write(offset, data)
    }

    fn write_with(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        self.inner.write_with(offset, len, fill)
    }

    fn flush(&mut self, offset: u64, len: u64) -> Result<(), Errno> {
        self.last_flush = (self.ends_with_commit(offset, len), offset == 0, self.starts_with_undo(offset, len));
        self.inner.flush(offset, len)
    }

    fn fence(&mut self) -> Result<(), Errno> {
        let (commit, header, undo) = self.last_flush;
        let dropped = if commit {
            self.weakening.commit_unfenced
        } else if undo {
            self.weakening.undo_unfenced
        } else {
            self.weakening.records_unfenced && !header
        };
        if dropped {
            // The flushed range stays in flight: the medium's next fence drains it.
            return Ok(());
        }
        self.inner.fence()
    }

    fn checks_data(&self) -> bool {
        !self.weakening.header_only_checksums
    }
}
