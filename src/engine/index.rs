//! The block index: block number -> where the block's latest contents are in the log. It is
//! split into shards by stripes of the file, each shard with its own lock, so that threads
//! writing blocks of different stripes do not wait for each other (the paper's lock per index
//! entry); a write locks the shards of the blocks it covers, in order.
//!
//! Two ways in: with the file held by one thread (`&mut`, no locking at all), and shared
//! (`&self`): readers lock one shard at a time for reading, writers lock the shards of their
//! blocks for writing ([`BlockIndex::lock_blocks`]) and keep the lists of what they made there
//! (records to seal, new slots to publish) in those shards until the next commit gathers them.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU32};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::record::BLOCK;

/// Where a block's latest contents are in the log.
#[derive(Clone, Copy, Debug)]
pub(super) struct Slot {
    pub pos: u64,
    /// Writable in place while this equals the file's current `era` (same epoch, no truncate
    /// since): older slots are committed, or ordered before a truncate, and never change.
    pub era: u64,
    /// Copied into the data file at an fsync (see `ManagedFile::publish_epoch`): a
    /// checkpoint has nothing left to write for it.
    pub published: bool,
    /// The slot is the record's `nth` block: the record's data starts `nth` blocks before.
    pub nth: u16,
}

impl Slot {
    /// Where the data of the record holding this slot starts.
    pub fn record_pos(&self) -> u64 {
        self.pos - self.nth as u64 * BLOCK
    }
}

/// Block numbers need no mixing to be spread: the hash is the block number itself, so that
/// consecutive blocks (a large write, a sequential pass) fall into consecutive buckets and their
/// inserts and lookups share cache lines, with a multiplicative hash in the top 7 bits, which
/// hashbrown keeps as each entry's tag (equal tags would make every probe compare keys).
#[derive(Default)]
pub(super) struct BlockHasher(u64);

impl Hasher for BlockHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        const TAG: u64 = 0x7f << 57;
        self.0 = (n.wrapping_mul(0x9e37_79b9_7f4a_7c15) & TAG) | (n & !TAG);
    }
}

type Map = HashMap<u64, Slot, BuildHasherDefault<ShardHasher>>;
type Set = HashSet<u64, BuildHasherDefault<ShardHasher>>;

/// [`BlockHasher`] for a shard's map, whose blocks all share the bits that pick the shard:
/// those are left out (kept, every key would fall into a sixteenth of the buckets).
#[derive(Default)]
struct ShardHasher(BlockHasher);

impl Hasher for ShardHasher {
    fn finish(&self) -> u64 {
        self.0.finish()
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(bytes);
    }
    fn write_u64(&mut self, n: u64) {
        let stripe_bits = (1 << STRIPE_SHIFT) - 1;
        let local = (n >> (STRIPE_SHIFT + SHARD_BITS)) << STRIPE_SHIFT | (n & stripe_bits);
        self.0.write_u64(local);
    }
}

/// Stripes of 16 blocks (64 KiB) go round the shards: a small file still spreads over all of
/// them, and a 4 KiB write locks one.
const STRIPE_SHIFT: u32 = 4;
const SHARD_BITS: u32 = 5;
const SHARDS: usize = 1 << SHARD_BITS;

/// One shard: its blocks' slots, and what writers sharing the file made in it this epoch.
#[derive(Default)]
pub(super) struct Shard {
    map: Map,
    /// Data positions of records made in the current epoch, to be sealed at commit.
    pub unsealed: Vec<u64>,
    /// (block, slot) of every new slot of the current epoch (published at its fsync).
    pub epoch_blocks: Vec<(u64, u64)>,
    /// Undo epochs: the blocks whose old contents the log holds for this epoch (saved once: a
    /// second write must not replace the image with already changed bytes, the original's bug).
    undone: Set,
}

/// A shard's lock on a cache line of its own: two threads locking neighbours do not share one.
#[derive(Default)]
#[repr(align(128))]
struct Padded(RwLock<Shard>);

impl Padded {
    /// The shard, with the index held alone (no lock taken).
    fn unlocked(&mut self) -> &mut Shard {
        self.0.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(super) struct BlockIndex {
    shards: Box<[Padded; SHARDS]>,
    /// Some shard may hold a block (a read of a file with nothing logged locks nothing). Set by
    /// every insert, cleared only with the index held alone: a flag, not a count, so that
    /// writers sharing the index store it only when it changes.
    filled: AtomicBool,
    /// Bit per shard whose epoch lists may hold something: a commit visits only those.
    listed: AtomicU32,
}

fn shard_of(block: u64) -> usize {
    (block >> STRIPE_SHIFT) as usize % SHARDS
}

impl Default for BlockIndex {
    fn default() -> Self {
        BlockIndex {
            shards: Box::new(std::array::from_fn(|_| Padded::default())),
            filled: AtomicBool::new(false),
            listed: AtomicU32::new(0),
        }
    }
}

impl BlockIndex {
    pub fn is_empty(&self) -> bool {
        !self.filled.load(Acquire)
    }

    fn read(&self, shard: usize) -> RwLockReadGuard<'_, Shard> {
        self.shards[shard].0.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self, shard: usize) -> RwLockWriteGuard<'_, Shard> {
        self.shards[shard].0.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[inline]
    fn shard_mut(&mut self, block: u64) -> &mut Shard {
        self.shards[shard_of(block)].unlocked()
    }

    fn all_mut(&mut self) -> impl Iterator<Item = &mut Shard> {
        self.shards.iter_mut().map(Padded::unlocked)
    }

    pub fn get(&self, block: u64) -> Option<Slot> {
        if self.is_empty() {
            return None;
        }
        self.read(shard_of(block)).map.get(&block).copied()
    }

    pub fn contains(&self, block: u64) -> bool {
        self.get(block).is_some()
    }

    /// [`BlockIndex::get`] with the index held alone: no lock taken.
    #[inline]
    pub fn peek(&mut self, block: u64) -> Option<Slot> {
        if !*self.filled.get_mut() {
            return None;
        }
        self.shard_mut(block).map.get(&block).copied()
    }

    pub fn get_mut(&mut self, block: u64) -> Option<&mut Slot> {
        self.shard_mut(block).map.get_mut(&block)
    }

    pub fn insert(&mut self, block: u64, slot: Slot) -> Option<Slot> {
        let old = self.shard_mut(block).map.insert(block, slot);
        *self.filled.get_mut() = true;
        old
    }

    /// Notes a record made by a writer holding the file (sealed at the next commit).
    pub fn push_unsealed(&mut self, pos: u64) {
        *self.listed.get_mut() |= 1;
        self.shard_mut(0).unsealed.push(pos);
    }

    pub fn push_epoch_block(&mut self, block: u64, pos: u64) {
        *self.listed.get_mut() |= 1 << shard_of(block);
        self.shard_mut(block).epoch_blocks.push((block, pos));
    }

    /// Undo epochs: whether `block`'s old contents are saved already (the index held alone).
    pub fn undone(&mut self, block: u64) -> bool {
        *self.listed.get_mut() & 1 << shard_of(block) != 0 && self.shard_mut(block).undone.contains(&block)
    }

    pub fn mark_undone(&mut self, block: u64) {
        *self.listed.get_mut() |= 1 << shard_of(block);
        self.shard_mut(block).undone.insert(block);
    }

    /// Runs `f` on each shard whose epoch lists may hold something (a commit after an append
    /// in place visits none).
    fn for_listed(&mut self, mut f: impl FnMut(&mut Shard)) {
        let mut listed = *self.listed.get_mut();
        while listed != 0 {
            let shard = listed.trailing_zeros() as usize;
            listed &= listed - 1;
            f(self.shards[shard].unlocked());
        }
    }

    pub fn retain(&mut self, mut keep: impl FnMut(u64, &Slot) -> bool) {
        let mut filled = false;
        for shard in self.all_mut() {
            shard.map.retain(|&b, slot| keep(b, slot));
            filled |= !shard.map.is_empty();
        }
        *self.filled.get_mut() = filled;
    }

    /// Moves every slot out into a [`FrozenIndex`] (no copy, no sort: the index of a log
    /// frozen for the background, which sorts what it applies itself); the shards start again
    /// empty, with room for as many.
    pub fn freeze(&mut self) -> FrozenIndex {
        let maps = std::array::from_fn(|i| {
            let map = &mut self.shards[i].unlocked().map;
            let room = Map::with_capacity_and_hasher(map.len(), Default::default());
            std::mem::replace(map, room)
        });
        *self.filled.get_mut() = false;
        FrozenIndex { maps: Box::new(maps) }
    }

    /// Empties the index and the epoch's lists.
    pub fn clear(&mut self) {
        for shard in self.all_mut() {
            shard.map.clear();
        }
        *self.filled.get_mut() = false;
        self.clear_epoch();
    }

    /// Forgets the epoch's lists (after its commit).
    pub fn clear_epoch(&mut self) {
        self.for_listed(|shard| {
            shard.unsealed.clear();
            shard.epoch_blocks.clear();
            shard.undone.clear();
        });
        *self.listed.get_mut() = 0;
    }

    /// The records of the epoch, made by every writer.
    pub fn unsealed(&mut self) -> Vec<u64> {
        let mut all = Vec::new();
        self.for_listed(|shard| all.extend_from_slice(&shard.unsealed));
        all
    }

    /// The epoch's new slots, taken out of the lists.
    pub fn take_epoch_blocks(&mut self) -> Vec<(u64, u64)> {
        let mut all = Vec::new();
        self.for_listed(|shard| all.append(&mut shard.epoch_blocks));
        all
    }

    /// Every (block, slot), with the index held alone.
    pub fn for_each_mut(&mut self, mut f: impl FnMut(u64, &Slot)) {
        if !*self.filled.get_mut() {
            return;
        }
        for shard in self.all_mut() {
            for (&b, slot) in &shard.map {
                f(b, slot);
            }
        }
    }

    /// Every (block, slot), shard by shard (each read-locked in turn).
    pub fn for_each(&self, mut f: impl FnMut(u64, &Slot)) {
        if self.is_empty() {
            return;
        }
        for shard in 0..SHARDS {
            for (&b, slot) in &self.read(shard).map {
                f(b, slot);
            }
        }
    }

    /// Looks blocks up for a reader sharing the file, holding one shard at a time.
    pub fn reader(&self) -> Reader<'_> {
        Reader { index: self, held: None }
    }

    /// Locks the shards of blocks `first..=last` for writing, in shard order (so that writers
    /// of overlapping ranges cannot deadlock).
    pub fn lock_blocks(&self, first: u64, last: u64) -> Locked<'_> {
        if first >> STRIPE_SHIFT == last >> STRIPE_SHIFT {
            // One stripe (a write of up to 64 KiB, most often): one shard.
            let shard = shard_of(first);
            return Locked { index: self, guards: Guards::One(shard, self.write(shard)) };
        }
        let mut wanted = 0u64;
        if last - first >= (SHARDS as u64) << STRIPE_SHIFT {
            wanted = (1 << SHARDS) - 1;
        } else {
            for stripe in first >> STRIPE_SHIFT..=last >> STRIPE_SHIFT {
                wanted |= 1 << shard_of(stripe << STRIPE_SHIFT);
            }
        }
        let guards = std::array::from_fn(|shard| (wanted & 1 << shard != 0).then(|| self.write(shard)));
        Locked { index: self, guards: Guards::Many(Box::new(guards)) }
    }
}

/// The slots of a frozen log: looked up by readers and writers of the file (shared), walked by
/// the applier.
pub(super) struct FrozenIndex {
    maps: Box<[Map; SHARDS]>,
}

impl FrozenIndex {
    pub fn get(&self, block: u64) -> Option<Slot> {
        self.maps[shard_of(block)].get(&block).copied()
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, Slot)> + '_ {
        self.maps.iter().flat_map(|m| m.iter().map(|(&b, &s)| (b, s)))
    }

    /// (block, slot position) of the slots not published, sorted by block (one merging sort of
    /// the shards' runs).
    pub fn to_apply(&self) -> Vec<(u64, u64)> {
        let mut blocks: Vec<(u64, u64)> = self.iter().filter(|(_, s)| !s.published).map(|(b, s)| (b, s.pos)).collect();
        blocks.sort();
        blocks
    }
}

/// A reader's view of the index: the guard of the shard it last looked in stays held, so that
/// the log slot found there is not rewritten while the reader copies it.
pub(super) struct Reader<'a> {
    index: &'a BlockIndex,
    held: Option<(usize, RwLockReadGuard<'a, Shard>)>,
}

impl Reader<'_> {
    pub fn get(&mut self, block: u64) -> Option<Slot> {
        if self.index.is_empty() {
            return None;
        }
        let shard = shard_of(block);
        if self.held.as_ref().is_none_or(|(s, _)| *s != shard) {
            // The previous guard goes first: one shard at a time.
            self.held = None;
            self.held = Some((shard, self.index.read(shard)));
        }
        self.held.as_ref().and_then(|(_, g)| g.map.get(&block).copied())
    }
}

/// The shards of a shared writer's blocks, locked for writing.
pub(super) struct Locked<'a> {
    index: &'a BlockIndex,
    guards: Guards<'a>,
}

enum Guards<'a> {
    One(usize, RwLockWriteGuard<'a, Shard>),
    Many(Box<[Option<RwLockWriteGuard<'a, Shard>>; SHARDS]>),
}

impl Locked<'_> {
    /// The shard of `block`, which must be one of the locked blocks.
    pub fn shard(&mut self, block: u64) -> &mut Shard {
        let shard = shard_of(block);
        match &mut self.guards {
            Guards::One(locked, guard) if *locked == shard => guard,
            Guards::One(..) => panic!("block {block} is not in the locked range"),
            Guards::Many(guards) => guards[shard].as_deref_mut().expect("a block of the locked range"),
        }
    }

    pub fn get(&mut self, block: u64) -> Option<Slot> {
        self.shard(block).map.get(&block).copied()
    }

    /// The epoch lists of `block`'s shard, to add to (see [`BlockIndex::listed`]).
    pub fn lists(&mut self, block: u64) -> &mut Shard {
        let bit = 1 << shard_of(block);
        if self.index.listed.load(Relaxed) & bit == 0 {
            self.index.listed.fetch_or(bit, Relaxed);
        }
        self.shard(block)
    }

    /// See [`BlockIndex::undone`].
    pub fn undone(&mut self, block: u64) -> bool {
        self.shard(block).undone.contains(&block)
    }

    pub fn mark_undone(&mut self, block: u64) {
        self.lists(block).undone.insert(block);
    }

    pub fn insert(&mut self, block: u64, slot: Slot) -> Option<Slot> {
        let old = self.shard(block).map.insert(block, slot);
        if !self.index.filled.load(Relaxed) {
            self.index.filled.store(true, Release);
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(pos: u64) -> Slot {
        Slot { pos, era: 0, published: false, nth: 0 }
    }

    /// Undo epochs: a block saved through either view is saved for the other; a commit's
    /// clearing forgets them all.
    #[test]
    fn undone_blocks_are_seen_by_both_views_until_the_epoch_ends() {
        let mut index = BlockIndex::default();
        index.mark_undone(3);
        {
            let mut locked = index.lock_blocks(0, 40);
            assert!(locked.undone(3));
            assert!(!locked.undone(40));
            locked.mark_undone(40);
        }
        assert!(index.undone(40) && index.undone(3) && !index.undone(4));
        assert!(index.is_empty(), "undone blocks are not slots");
        index.clear_epoch();
        assert!(!index.undone(3) && !index.undone(40));
    }

    #[test]
    fn exclusive_and_shared_views_agree() {
        let mut index = BlockIndex::default();
        assert!(index.is_empty());
        for b in [0, 15, 16, 17, 5000, 1 << 40] {
            assert!(index.insert(b, slot(b * 7)).is_none());
        }
        assert!(index.insert(16, slot(1)).is_some(), "a second insert replaces");
        let mut reader = index.reader();
        assert_eq!(reader.get(16).map(|s| s.pos), Some(1));
        assert_eq!(reader.get(5000).map(|s| s.pos), Some(35000));
        assert!(reader.get(14).is_none());
        drop(reader);
        {
            let mut locked = index.lock_blocks(10, 40);
            assert_eq!(locked.get(17).map(|s| s.pos), Some(119));
            assert!(locked.insert(40, slot(3)).is_none());
            locked.lists(40).epoch_blocks.push((40, 3));
            locked.lists(10).unsealed.push(3);
        }
        let mut n = 0;
        index.for_each(|_, _| n += 1);
        assert_eq!(n, 7);
        assert_eq!(index.take_epoch_blocks(), vec![(40, 3)]);
        assert_eq!(index.unsealed(), vec![3]);
        index.retain(|b, _| b < 1000);
        let frozen = index.freeze();
        assert!(index.is_empty() && index.get(16).is_none());
        assert_eq!(frozen.iter().count(), 5);
        assert_eq!(frozen.get(16).map(|s| s.pos), Some(1));
        assert_eq!(frozen.to_apply().iter().map(|&(b, _)| b).collect::<Vec<_>>(), vec![0, 15, 16, 17, 40]);
    }

    #[test]
    fn writers_of_different_stripes_run_at_once_and_large_ranges_lock_all() {
        let index = BlockIndex::default();
        let a = index.lock_blocks(0, 15);
        // Another stripe, another shard: not blocked by `a`.
        let b = index.lock_blocks(16, 20);
        drop((a, b));
        let held = |locked: &Locked| match &locked.guards {
            Guards::One(shard, _) => vec![*shard],
            Guards::Many(guards) => (0..SHARDS).filter(|&s| guards[s].is_some()).collect(),
        };
        assert_eq!(held(&index.lock_blocks(0, 10_000)), (0..SHARDS).collect::<Vec<_>>());
        assert_eq!(held(&index.lock_blocks(16 * 31, 16 * 33)), vec![0, 1, 31]);
        assert_eq!(held(&index.lock_blocks(16 * 33 + 1, 16 * 33 + 15)), vec![1]);
    }

    #[test]
    fn many_threads_insert_into_their_own_stripes() {
        let index = BlockIndex::default();
        std::thread::scope(|s| {
            for t in 0..8u64 {
                let index = &index;
                s.spawn(move || {
                    for i in 0..2000u64 {
                        let block = (i * 8 + t) * 16 + (i % 16);
                        let mut locked = index.lock_blocks(block, block);
                        locked.insert(block, slot(block));
                        locked.lists(block).epoch_blocks.push((block, block));
                    }
                });
            }
        });
        let mut index = index;
        let mut n = 0;
        index.for_each(|_, _| n += 1);
        assert_eq!(n, 16_000);
        let mut blocks = index.take_epoch_blocks();
        blocks.sort_unstable();
        blocks.dedup();
        assert_eq!(blocks.len(), 16_000);
        assert!(blocks.iter().all(|&(b, pos)| index.get(b).is_some_and(|s| s.pos == pos)));
    }
}
