//! Undo logging for [`ManagedFile`]: an epoch in undo mode writes in place, below the committed
//! size too, after saving the old contents of each block it changes there.
//!
//! Ordering (the failure-atomicity argument; docs/design.md has the whole of it):
//! 1. A write first stores one sealed undo record per block it changes below the committed size
//!    `C` and not yet saved this epoch (the bytes the block had below `C` when the epoch began:
//!    saved once, so a second write to the block cannot replace the image with changed bytes),
//!    then flushes and fences them, all of a write's records at once.
//! 2. Only then does it store the new bytes into the data file (through its mapping: on a disk
//!    or persistent memory they may reach the medium at any moment from now on).
//! 3. The commit (fsync) syncs the data file, then resets the log with the new size as its base:
//!    that one header store, flushed and fenced, voids every undo record of the epoch at once.
//!
//! A crash before 3's fence leaves the undo records of the epoch (each whole, or with a bad
//! checksum and then never followed by stores it guards) and the old header: recovery writes the
//! images back and cuts the file to the base size: the last commit's state. Writing back is
//! idempotent. After the fence, the data file holds the epoch durably and the log is empty.

use super::*;

/// Fills `dst` with the data file's bytes at `at`, an undo image (past the file's end the bytes
/// read as zeros).
pub(super) fn read_image<S: Storage>(data: &S, at: u64, dst: &mut [u8]) -> Result<(), Errno> {
    dst.fill(0);
    data.read_at(at, dst).map(drop)
}

impl<M: Medium, S: Storage> ManagedFile<M, S> {
    /// Whether storing into `block` from `from` on needs the block's old contents saved first.
    fn needs_undo(&mut self, block: u64, from: u64) -> bool {
        from < self.committed_size && !self.index.undone(block)
    }

    /// The undo images (file offset, length) a write of `offset..end` needs: each changed
    /// block's part below the committed size.
    fn undo_images(&mut self, offset: u64, end: u64) -> Vec<(u64, usize)> {
        let blocks: Vec<u64> =
            (offset / BLOCK..=(end - 1) / BLOCK).filter(|&b| self.needs_undo(b, offset.max(b * BLOCK))).collect();
        blocks.into_iter().map(|b| self.undo_image(b)).collect()
    }

    /// The undo image of `block`: its part below the committed size (file offset, length).
    pub(super) fn undo_image(&self, block: u64) -> (u64, usize) {
        (block * BLOCK, (self.committed_size - block * BLOCK).min(BLOCK) as usize)
    }

    /// [`ManagedFile::write_with`] in undo mode: old contents saved (durably), then the new
    /// bytes stored in place.
    pub(super) fn write_undo(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        debug_assert!(self.index.is_empty() && self.frozen.is_none());
        let end = offset + len as u64;
        let room = |images: &[(u64, usize)]| -> u64 {
            images.iter().map(|&(_, n)| RECORD_HEADER_LEN + (n as u64).next_multiple_of(8)).sum()
        };
        // Room for the records first (a full log commits the epoch so far: a new one, needing
        // other images, begins).
        let generation = self.log.generation();
        let images = self.undo_images(offset, end);
        self.make_room(room(&images))?;
        if self.log.generation() != generation {
            let images = self.undo_images(offset, end);
            self.make_room(room(&images))?;
        }
        // The data file's blocks too: ENOSPC before any change.
        self.data.reserve(offset, end)?;
        let images = self.undo_images(offset, end);
        if !images.is_empty() {
            self.data.prepare_reads()?;
            let data = &self.data;
            self.log.save_undo(self.epoch, &images, &mut |at, dst| read_image(data, at, dst))?;
            for &(at, _) in &images {
                self.index.mark_undone(at / BLOCK);
            }
            stats::count(&stats::BLOCKS_UNDO_SAVED, images.len() as u64);
        }
        // Bytes past the committed size have no image: only the header's base size makes a
        // crash cut them away (a header written lazily at open must be durable first).
        self.log.ensure_header_durable()?;
        let copied = self.data.write_in_place(offset, len, fill)?;
        self.in_place_dirty = true;
        stats::count(&stats::BYTES_IN_PLACE, copied as u64);
        self.size = self.size.max(offset + copied as u64);
        Ok(copied)
    }

    /// The commit of an undo epoch: the data file made durable, then the log emptied with the
    /// new size as its base (voiding the epoch's undo records at once).
    pub(super) fn commit_undo(&mut self) -> Result<(), Errno> {
        if !self.log.has_uncommitted() && self.size == self.committed_size {
            return Ok(());
        }
        if self.data.size()? < self.size {
            // Grown without data (a truncate upwards): processes reading through the kernel
            // see the size too.
            self.data.grow(self.size)?;
            self.in_place_dirty = true;
        }
        if self.in_place_dirty {
            self.data.sync()?;
            self.in_place_dirty = false;
        }
        self.log.reset(Some(self.size))?;
        self.committed_size = self.size;
        self.index.clear_epoch();
        self.commits += 1;
        stats::count(&stats::COMMITS, 1);
        self.epoch = self.epoch.wrapping_add(1);
        self.era += 1;
        Ok(())
    }

    /// At an epoch boundary (just committed): goes on with `next` logging. To undo, the log is
    /// checkpointed first, so that no block's contents stay in a log (reads then go to the data
    /// file alone, and in-place stores never race a background writer); if that fails the file
    /// stays on redo logging. From undo the log is empty already.
    pub(super) fn switch_to(&mut self, next: Mode) {
        if next == Mode::Undo && self.checkpoint().is_err() {
            return;
        }
        debug_assert!(self.log.used() == 0 || next == Mode::Redo);
        self.mode = next;
        self.switches += 1;
        stats::LOGGING_SWITCHES.fetch_add(1, Relaxed);
    }
}

/// Recovery: writes the old contents the `undo` records saved back into the data file (latest
/// first, though each block has one image per epoch). Idempotent.
pub(super) fn roll_back<M: Medium, S: Storage>(data: &mut S, log: &Log<M>, undo: &[Found]) -> Result<(), Errno> {
    for r in undo.iter().rev() {
        data.write_at(r.header.offset, log.bytes(r.data_pos, r.header.len as usize))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::super::log::Mutation;
    use super::*;
    use crate::persist::sim::{Crash, SimMedium, SimStorage};

    type File = ManagedFile<SimMedium, SimStorage>;

    fn undo_settings() -> EngineSettings {
        EngineSettings {
            log_max: 1 << 20,
            checkpoint_at: 512 << 10,
            in_place_from: 16 << 10,
            logging: Logging::Undo,
            ..EngineSettings::default()
        }
    }

    fn reopen(file: &File, crash: Crash) -> Vec<u8> {
        let (f, _) = File::open(file.data().after(crash), file.log_medium().after(crash), undo_settings()).unwrap();
        let mut buf = vec![0u8; f.size() as usize];
        f.read(0, &mut buf).unwrap();
        buf
    }

    #[test]
    fn undo_writes_go_in_place_and_roll_back_until_committed() {
        let initial = vec![1u8; 10_000];
        let (mut f, _) =
            File::open(SimStorage::with_contents(&initial), SimMedium::new(4096), undo_settings()).unwrap();
        assert_eq!(f.mode(), Mode::Undo);
        f.write(100, &[2u8; 5000]).unwrap();
        f.write(200, &[3u8; 10]).unwrap(); // same blocks again: no new image
        f.write(9000, &[4u8; 3000]).unwrap(); // across the committed size
        assert_eq!(f.data().contents()[150], 2, "in place");
        assert_eq!(f.data().contents()[205], 3);
        // Not committed: both kinds of crash give the initial file back.
        for crash in [Crash::ProcessKill, Crash::PowerLoss] {
            assert_eq!(reopen(&f, crash), initial, "{crash:?}");
        }
        f.sync().unwrap();
        let mut expected = initial.clone();
        expected[100..5100].fill(2);
        expected[200..210].fill(3);
        expected.resize(12_000, 0);
        expected[9000..12_000].fill(4);
        for crash in [Crash::ProcessKill, Crash::PowerLoss] {
            assert_eq!(reopen(&f, crash), expected, "{crash:?}");
        }
    }

    /// A second write to a block in one epoch keeps the first image (the original saved the
    /// block again, so a rollback restored the first write's bytes).
    #[test]
    fn a_second_write_keeps_the_first_image() {
        let (mut f, _) =
            File::open(SimStorage::with_contents(&[7u8; 4096]), SimMedium::new(4096), undo_settings()).unwrap();
        f.write(0, &[8u8; 10]).unwrap();
        let one_image = f.log_used();
        f.write(0, &[9u8; 20]).unwrap();
        assert_eq!(f.log_used(), one_image, "no second image of the block");
        assert_eq!(reopen(&f, Crash::ProcessKill), vec![7u8; 4096]);
    }

    /// The data file's pages may reach the medium at any moment (write-back of a disk's page
    /// cache, eviction of persistent memory's cache lines), the log's stores only once fenced:
    /// a power failure may leave the data file as stored and the log as fenced. With the undo
    /// records made durable before the store, that image rolls back to the old contents; without
    /// (the mutation), the uncommitted write survives the crash.
    #[test]
    fn undo_records_not_durable_before_the_store_is_caught() {
        let run = |mutation| {
            let (mut f, _) =
                File::open(SimStorage::with_contents(&[5u8; 8192]), SimMedium::new(4096), undo_settings()).unwrap();
            f.log.set_mutation(mutation);
            f.write(0, &[6u8; 8192]).unwrap();
            let data = f.data().after(Crash::ProcessKill);
            let (r, _) = File::open(data, f.log_medium().after(Crash::PowerLoss), undo_settings()).unwrap();
            let mut buf = vec![0u8; r.size() as usize];
            r.read(0, &mut buf).unwrap();
            buf
        };
        assert_eq!(run(Mutation::None), vec![5u8; 8192], "shipped ordering");
        assert_ne!(run(Mutation::UndoNotDurable), vec![5u8; 8192], "the mutation must be caught");
    }

    #[test]
    fn hybrid_switches_by_the_write_share() {
        // The write share alone (short epochs would pick undo too).
        let settings = EngineSettings { logging: Logging::Hybrid, undo_for_epochs_upto: 0, ..undo_settings() };
        let (mut f, _) = File::open(SimStorage::with_contents(&[1u8; 8192]), SimMedium::new(4096), settings).unwrap();
        assert_eq!(f.mode(), Mode::Redo);
        f.write(0, b"x").unwrap();
        let mut buf = [0u8; 10];
        for _ in 0..2 {
            f.read(0, &mut buf).unwrap();
        }
        f.sync().unwrap(); // 1 write in 3 calls: 33%
        assert_eq!(f.mode(), Mode::Undo);
        assert_eq!(f.log_used(), 0, "checkpointed at the switch");
        f.write(1, b"y").unwrap();
        f.sync().unwrap(); // all writes
        assert_eq!(f.mode(), Mode::Redo);
        assert_eq!(f.switches(), 2);
        f.read(0, &mut buf).unwrap();
        assert_eq!(&buf[..3], b"xy\x01");
    }
}
