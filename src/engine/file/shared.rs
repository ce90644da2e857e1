//! Writes with the file shared (`&self`): threads writing blocks of different index shards
//! run at once, each holding only its own shards' locks while it copies (see `index.rs`). The
//! preload takes this path for a write that finds another thread in the file; one that finds
//! the file free takes it alone, which needs no shard lock at all.
//!
//! Only the common cases take this path: overwrites of blocks below the committed size, inside
//! the data file, with no hole there, whose records fit in the log as it is:
//! - in a redo epoch, new slots (or the epoch's slots) in the log;
//! - in an undo epoch on tmpfs, the old contents of each block not saved yet this epoch, then
//!   the store in place (see [`Log::place_undo_shared`] for the order a crash relies on).
//!
//! Everything else (appends in place, a log that must grow or be checkpointed, reserving room
//! in the data file, undo epochs where stores need writing back) declines before changing
//! anything, and the caller takes the file for itself and calls [`ManagedFile::write_with`].
//!
//! Why the stores are sound: a writer stores only into room it took from the log's tail
//! atomically ([`Log::reserve_shared`]), into a slot of the current epoch found under its
//! shard's write lock, or into data file blocks whose shard it holds locked; readers look slots
//! up and copy them under the shard's read lock; and whatever moves or reuses the log (growth,
//! commit, checkpoint, truncate) holds the file alone.
#![allow(unsafe_code)]

use super::*;
use crate::engine::index::Locked;
use crate::engine::record::record_size;

impl<M: Medium, S: Storage> ManagedFile<M, S> {
    /// [`ManagedFile::write_with`] with the file shared with other readers and writers.
    /// `None`: declined, nothing changed (see the module doc).
    pub fn write_shared(
        &self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Option<Result<usize, Errno>> {
        let end = offset.checked_add(len as u64)?;
        // Below the committed size the size stays; inside the data file, with blocks there,
        // nothing needs room in it.
        let inside = len > 0
            && end <= self.committed_size
            && self.data.size().is_ok_and(|n| end <= n)
            && self.data.holds_blocks(offset, end);
        if !inside {
            return None;
        }
        match self.mode {
            // With reads ready (or whole blocks only), a partial block can be read.
            Mode::Redo if self.data.reads_ready() || (offset.is_multiple_of(BLOCK) && end.is_multiple_of(BLOCK)) => {
                self.write_shared_redo(offset, end, fill)
            }
            // Stores that need no writing back, after a durable header (see `write_undo`).
            Mode::Undo
                if self.data.takes_shared_stores() && self.log.header_durable() && !self.log.medium().checks_data() =>
            {
                self.write_shared_undo(offset, end, fill)
            }
            _ => None,
        }
    }

    /// [`ManagedFile::write_shared`] in a redo epoch.
    fn write_shared_redo(
        &self,
        offset: u64,
        end: u64,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Option<Result<usize, Errno>> {
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let mut index = self.index.lock_blocks(first, last);
        // The room of every record this write makes, taken at once.
        let mut bytes = 0;
        let mut block = first;
        while block <= last {
            if self.takes_slot(&mut index, block) {
                let blocks = new_slot_run(block, last, |b| self.takes_slot(&mut index, b));
                bytes += record_size(blocks * BLOCK);
                block += blocks;
            } else {
                block += 1;
            }
        }
        let room = if bytes == 0 { 0 } else { self.log.reserve_shared(bytes)? };
        stats::count(&stats::WRITES_SHARED, 1);
        self.policy.note_write();
        self.policy.note_overwrite();
        let mut placed = room;
        let done = self.write_locked(&mut index, offset, end, fill, &mut placed);
        if placed < room + bytes {
            // A short copy left room unused: one void record fills it, sealed at the commit, so
            // that a scan of the log walks past it.
            let len = (room + bytes - placed - RECORD_HEADER_LEN) as usize;
            // SAFETY: the rest of this write's own room.
            let filler = unsafe { self.log.place_record(placed, Kind::Void, 0, self.epoch, len) };
            index.lists(first).unsealed.push(filler);
        }
        Some(done)
    }

    /// [`ManagedFile::write_shared`] in an undo epoch: the images of the blocks not saved yet
    /// this epoch, placed in order with other writers', filled and sealed; then the store in
    /// place, all under the blocks' shard locks.
    fn write_shared_undo(
        &self,
        offset: u64,
        end: u64,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Option<Result<usize, Errno>> {
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let mut index = self.index.lock_blocks(first, last);
        let images: Vec<(u64, usize)> =
            (first..=last).filter(|&b| !index.undone(b)).map(|b| self.undo_image(b)).collect();
        if !images.is_empty() {
            let positions = self.log.place_undo_shared(self.epoch, &images)?;
            for (&(at, len), &pos) in images.iter().zip(&positions) {
                // SAFETY: the record's data is in this writer's own room.
                let saved = unsafe { self.log.fill_shared(pos, len, &mut |dst| undo::read_image(&self.data, at, dst)) };
                if let Err(e) = saved {
                    // Unsealed, the record guards nothing: recovery walks past it.
                    return Some(Err(e));
                }
                // SAFETY: as above, and filled.
                unsafe { self.log.seal_shared(pos) };
                index.mark_undone(at / BLOCK);
            }
            stats::count(&stats::BLOCKS_UNDO_SAVED, images.len() as u64);
        }
        stats::count(&stats::WRITES_SHARED, 1);
        self.policy.note_write();
        self.policy.note_overwrite();
        let len = (end - offset) as usize;
        // SAFETY: inside the data file with its blocks allocated (checked by `write_shared`), and
        // no other writer stores into these blocks: their shards are locked. (On tmpfs the
        // commit has nothing of the data file to sync: `in_place_dirty` need not be set.)
        let copied = unsafe { self.data.store_disjoint(offset, len, fill) };
        if let Ok(n) = copied {
            stats::count(&stats::BYTES_IN_PLACE, n as u64);
        }
        Some(copied)
    }

    /// Whether `block` takes a new slot: nothing logged for it in this epoch.
    fn takes_slot(&self, index: &mut Locked, block: u64) -> bool {
        index.get(block).is_none_or(|s| s.era != self.era)
    }

    /// The copies of [`ManagedFile::write_shared`], into records laid out from `placed` on
    /// (moved past each one placed) in room taken for them.
    fn write_locked(
        &self,
        index: &mut Locked,
        offset: u64,
        end: u64,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
        placed: &mut u64,
    ) -> Result<usize, Errno> {
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        let (mut done, mut logged_blocks, mut logged_bytes) = (0, 0, 0);
        let mut record: Option<NewRecord> = None;
        for block in first..=last {
            let block_start = block * BLOCK;
            let from = offset.max(block_start);
            let n = (end.min(block_start + BLOCK) - from) as usize;
            let (slot, fresh) = match index.get(block) {
                Some(s) if s.era == self.era => (s.pos, None),
                old => {
                    if record.as_ref().is_none_or(|r| r.next >= r.blocks) {
                        let blocks = new_slot_run(block, last, |b| self.takes_slot(index, b));
                        let len = (blocks * BLOCK) as usize;
                        // SAFETY: the next record of the room this write took.
                        let pos = unsafe { self.log.place_record(*placed, Kind::Block, block_start, self.epoch, len) };
                        *placed += record_size(len as u64);
                        index.lists(block).unsealed.push(pos);
                        record = Some(NewRecord { pos, blocks, next: 0 });
                    }
                    let r = record.as_mut().expect("placed above");
                    let pos = r.pos + r.next * BLOCK;
                    let nth = r.next as u16;
                    r.next += 1;
                    index.insert(block, Slot { pos, era: self.era, published: false, nth });
                    index.lists(block).epoch_blocks.push((block, pos));
                    // Start from the block's current contents unless the write covers it all.
                    let whole = n as u64 == BLOCK;
                    if !whole {
                        self.store_current_block(block, old, pos)?;
                    }
                    logged_blocks += 1;
                    (pos, whole.then_some(old))
                }
            };
            let mut copied = 0;
            // SAFETY: a slot of this epoch, whose shard this writer holds locked.
            unsafe {
                self.log.fill_shared(slot + (from - block_start), n, &mut |dst| {
                    copied = fill(dst);
                    Ok(())
                })?;
            }
            logged_bytes += copied as u64;
            done += copied;
            if copied < n {
                // As in `write_with`: a slot to be overwritten whole gets its old contents
                // back around the bytes that arrived, and the blocks not reached leave the
                // record.
                if let Some(old) = fresh {
                    let keep = self.log.bytes(slot, copied).to_vec();
                    self.store_current_block(block, old, slot)?;
                    // SAFETY: as above.
                    unsafe { self.log.store_shared(slot, &keep) };
                }
                if let Some(r) = record.filter(|r| r.next < r.blocks) {
                    // SAFETY: a record of this write's own room.
                    if let Some(filler) = unsafe { self.log.shorten_shared(r.pos, r.next * BLOCK) } {
                        index.lists(block).unsealed.push(filler);
                    }
                }
                break;
            }
        }
        stats::count(&stats::BLOCKS_LOGGED, logged_blocks);
        stats::count(&stats::BYTES_LOGGED, logged_bytes);
        Ok(done)
    }

    /// Fills the new slot at `pos` (in this writer's room) with block `block`'s current contents.
    fn store_current_block(&self, block: u64, old: Option<Slot>, pos: u64) -> Result<(), Errno> {
        let buf = self.current_block(block, old)?;
        // SAFETY: the slot is in this writer's own room.
        unsafe { self.log.store_shared(pos, &buf) };
        Ok(())
    }
}
