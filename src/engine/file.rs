//! One managed file: the data file (a [`Storage`]) plus its redo log and block index. A write
//! below the committed size lands in log slots (one per 4 KiB block of the file it touches, the
//! new ones of a write in one record; a block already logged in the current epoch is updated in
//! place, so rewriting the same data costs no log space); a write at or past the committed size,
//! on a block with nothing logged, goes straight into the data file (recovery cuts the file back
//! to the committed size, so nothing there needs an undo copy: appends cost one copy). Reads take each block from the log
//! or the data file; `sync` seals and commits the epoch; `checkpoint` writes the latest block
//! of each into the data file and empties the log. Opening a file recovers it first.
//!
//! That is redo logging. An epoch may use undo logging instead (`undo.rs`; picked per epoch by
//! [`Policy`]): the old contents of each block are saved in the log, durably, before the block
//! is overwritten in place, and the commit voids them.
//!
//! Guarantee: after a crash at any instant, reopening gives exactly what the last successful
//! `sync` covered, plus possibly whole later writes (a checkpoint commits first), never part of
//! a write.

mod shared;
mod undo;

use undo::roll_back;

use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::{Acquire, Release};
use std::sync::Arc;

use super::index::{BlockIndex, FrozenIndex, Slot};
use super::log::{Found, Log, OpenError, Opened};
use super::policy::{Logging, Mode, Policy};
use super::record::{Kind, BLOCK, RECORD_HEADER_LEN};
use super::stats;
use crate::persist::{Medium, Storage};
use crate::sys::Errno;
use std::sync::atomic::Ordering::Relaxed;

/// Runtime settings of the engine (documented in `config`).
#[derive(Clone, Copy, Debug)]
pub struct EngineSettings {
    /// A log may grow to this many bytes; then it is checkpointed to make room.
    pub log_max: u64,
    /// Checkpoint after a commit once the log holds this much.
    pub checkpoint_at: u64,
    /// Writes past the committed size go straight into the data file only from this file
    /// offset on: below it (small files, such as SQLite's short-lived journals) the log is
    /// cheaper than setting up the data file's mapping and its append room.
    pub in_place_from: u64,
    /// Writes past the committed size also go straight into the data file below
    /// `in_place_from` once the file has made this many commits (0: never): a file appended
    /// and synced again and again (a database's log) outlives the set-up, where a short-lived
    /// journal (two commits) does not. Not while `in_place_from` is `u64::MAX` (disks).
    pub in_place_after_commits: u64,
    /// Redo, undo, or picked per epoch (see [`Policy`]).
    pub logging: Logging,
    /// Hybrid logging: a write share (percent of the calls since the last commit) above this
    /// picks redo logging for the next epoch, else undo.
    pub redo_above_write_share: u8,
    /// Hybrid logging: [`super::policy::SHORT_RUN`] epochs in a row of at most this many writes
    /// each pick undo logging for the next (0: the write share alone decides).
    pub undo_for_epochs_upto: u64,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            log_max: 256 << 20,
            checkpoint_at: 8 << 20,
            in_place_from: 64 << 10,
            in_place_after_commits: 8,
            logging: Logging::Hybrid,
            redo_above_write_share: 40,
            undo_for_epochs_upto: 8,
        }
    }
}

/// A piece of file contents handed out by [`ManagedFile::read_pieces`].
pub enum Piece<'a> {
    Bytes(&'a [u8]),
    Zeros(usize),
}

impl Piece<'_> {
    pub fn len(&self) -> usize {
        match self {
            Piece::Bytes(b) => b.len(),
            Piece::Zeros(n) => *n,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What recovery did when the file was opened.
#[derive(Clone, Copy, Default, PartialEq, Eq, Debug)]
pub struct Recovered {
    /// Committed records applied to the data file.
    pub applied: usize,
    /// Records found after the last commit and dropped.
    pub discarded: usize,
    /// Undo records among those, whose old contents were written back.
    pub rolled_back: usize,
}

/// A record of new slots a write is filling: `blocks` consecutive blocks of the file, from
/// log position `pos`; the first `next` are taken.
#[derive(Clone, Copy)]
struct NewRecord {
    pos: u64,
    blocks: u64,
    next: u64,
}

/// The largest record a write makes (2 MiB, as the paper's largest log entry): a larger
/// write takes several.
const RECORD_BLOCKS_MAX: u64 = 512;

/// How many blocks from `block` (which takes a new slot) up to `last` one record holds: those
/// that follow it and take new slots too (`needs_slot`), at most [`RECORD_BLOCKS_MAX`].
fn new_slot_run(block: u64, last: u64, mut needs_slot: impl FnMut(u64) -> bool) -> u64 {
    let mut blocks = 1;
    while blocks < RECORD_BLOCKS_MAX && block + blocks <= last && needs_slot(block + blocks) {
        blocks += 1;
    }
    blocks
}

/// Writes a run of consecutive pieces of a file from an offset (see [`Frozen::apply`]).
pub type RunWriter<'a> = dyn FnMut(u64, &[&[u8]]) -> Result<(), Errno> + 'a;

/// A committed log handed to another thread to apply to the data file (a background
/// checkpoint, see [`ManagedFile::begin_background_checkpoint`]); the file goes on with a new
/// log meanwhile. Reads of its blocks come from it until the engine takes it back.
pub struct Frozen<M: Medium> {
    log: Log<M>,
    /// Block number -> its latest contents in `log`: where reads of these blocks go, and why
    /// no write goes in place on them (recovery replays `log`). Its slots not published at an
    /// fsync are what the data file does not hold yet.
    blocks: FrozenIndex,
    /// The file's size when frozen: bytes past it are not written.
    size: u64,
    /// Set by whoever starts applying: a job is applied by one thread at most.
    claimed: AtomicBool,
    /// The engine wants the log back now: the applier stops early.
    cancel: AtomicBool,
    /// Every block was written by [`Frozen::apply`].
    applied: AtomicBool,
}

impl<M: Medium> Frozen<M> {
    /// Writes the frozen blocks into the data file with `write(offset, bytes)` (from another
    /// thread, without the file's lock: no one else writes these blocks meanwhile). Returns
    /// whether it wrote them all; false if the job was claimed already, cancelled, or `write`
    /// failed (the engine then writes them itself).
    /// `write(offset, pieces)` gets runs of consecutive blocks (up to 1 MiB), to be written
    /// one after the other from `offset`.
    pub fn apply(&self, write: &mut RunWriter) -> bool {
        if self.claimed.swap(true, Acquire) {
            return false;
        }
        // A run: consecutive blocks of the file, as pieces (log position, length); blocks that
        // also follow each other in the log (one record) are one piece.
        let mut run: Vec<(u64, u64)> = Vec::with_capacity(256);
        let (mut run_start, mut run_len) = (0, 0);
        let mut pieces: Vec<&[u8]> = Vec::with_capacity(256);
        // Sorted here, by the applier, not by the writer that froze the log.
        let to_apply = self.blocks.to_apply();
        let mut flush = |run: &mut Vec<(u64, u64)>, start: u64| {
            pieces.clear();
            pieces.extend(run.iter().map(|&(pos, len)| self.log.bytes(pos, len as usize)));
            let ok = pieces.is_empty() || write(start, &pieces).is_ok();
            run.clear();
            ok
        };
        for &(block, pos) in &to_apply {
            let start = block * BLOCK;
            if start >= self.size {
                break;
            }
            let n = (self.size - start).min(BLOCK);
            if run_start + run_len != start || run_len >= RUN_MAX {
                if self.cancel.load(Relaxed) || !flush(&mut run, run_start) {
                    return false;
                }
                (run_start, run_len) = (start, 0);
            }
            run_len += n;
            match run.last_mut() {
                Some(last) if last.0 + last.1 == pos => last.1 += n,
                _ => run.push((pos, n)),
            }
        }
        if !flush(&mut run, run_start) {
            return false;
        }
        self.applied.store(true, Release);
        true
    }

    /// Whether every block was written by [`Frozen::apply`].
    pub fn is_applied(&self) -> bool {
        self.applied.load(Acquire)
    }

    fn slot(&self, block: u64) -> Option<u64> {
        self.blocks.get(block).map(|s| s.pos)
    }
}

pub struct ManagedFile<M: Medium, S: Storage> {
    data: S,
    log: Log<M>,
    /// Block number -> its latest contents in the log; also the epoch's records to seal and
    /// new slots to publish.
    index: BlockIndex,
    /// The file's size as the program sees it.
    size: u64,
    /// The size recovery would give now (the last commit's, or the log's base size). Bytes of
    /// the data file at or past it matter to no crash image: writes there go in place. Within
    /// one log generation it never decreases (a truncate below it commits at once, see
    /// [`ManagedFile::truncate`]), so no committed block record lies wholly past it.
    committed_size: u64,
    /// Bytes were written to the data file in place since the last commit: it must be synced
    /// before the next commit record.
    in_place_dirty: bool,
    epoch: u32,
    /// Changes at every commit and truncate; see [`Slot::era`].
    era: u64,
    /// Commit records written since open (statistics; tests use it as the oracle's clock).
    commits: u64,
    settings: EngineSettings,
    /// A committed log being applied in the background.
    frozen: Option<Arc<Frozen<M>>>,
    /// A second log medium, to go on with while the first is frozen.
    spare: Option<M>,
    /// An fsync committed blocks it then failed to publish: the next one publishes them too.
    unpublished: bool,
    /// The current epoch's logging. **Invariant:** in undo mode the index is empty, no log is
    /// frozen and the log holds undo records only (after the last reset): a switch to undo
    /// checkpoints first, and an undo epoch commits by emptying the log.
    mode: Mode,
    policy: Policy,
    /// Changes of logging since open (statistics and tests).
    switches: u64,
}

impl<M: Medium, S: Storage> ManagedFile<M, S> {
    fn with_log(data: S, mut log: Log<M>, settings: EngineSettings) -> Result<Self, Errno> {
        log.grow_slowly_from(settings.checkpoint_at);
        let size = data.size()?;
        let policy = Policy::new(settings.logging, settings.redo_above_write_share, settings.undo_for_epochs_upto);
        Ok(ManagedFile {
            data,
            log,
            index: BlockIndex::default(),
            size,
            committed_size: size,
            in_place_dirty: false,
            epoch: 0,
            era: 0,
            commits: 0,
            settings,
            frozen: None,
            spare: None,
            unpublished: false,
            mode: policy.initial(),
            policy,
            switches: 0,
        })
    }

    /// Opens a file, first applying whatever its log committed (recovery).
    pub fn open(data: S, medium: M, settings: EngineSettings) -> Result<(Self, Recovered), OpenError> {
        Self::open_pair(data, medium, None, settings)
    }

    /// Opens a file that may have a second log (left by a background checkpoint), applying
    /// what both committed, the older generation first. The second becomes the spare.
    pub fn open_pair(
        mut data: S,
        medium: M,
        second: Option<M>,
        settings: EngineSettings,
    ) -> Result<(Self, Recovered), OpenError> {
        let first = Log::open(medium, settings.log_max)?;
        let second = second.map(|m| Log::open(m, settings.log_max)).transpose()?;
        let mut recovered = Recovered::default();
        let mut work = false;
        let mut logs: Vec<&Opened<M>> = std::iter::once(&first).chain(second.as_ref()).collect();
        logs.sort_by_key(|o| o.log.generation());
        // Room for everything the replay writes first: without it (a full file system) the
        // file is left as it was, not half replayed.
        let mut ranges: Vec<(u64, u64)> = logs
            .iter()
            .flat_map(|o| o.committed.iter())
            .chain(logs.iter().flat_map(|o| o.undo.iter()))
            .filter(|r| matches!(r.header.kind, Kind::Block | Kind::Write | Kind::Undo) && r.header.len > 0)
            .map(|r| (r.header.offset, r.header.offset + r.header.len as u64))
            .collect();
        ranges.sort_unstable();
        ranges.dedup_by(|next, run| {
            let joins = next.0 <= run.1;
            run.1 = if joins { run.1.max(next.1) } else { run.1 };
            joins
        });
        data.allocate_keep_size(&ranges)?;
        let mut final_size = None;
        for o in logs {
            recovered.applied += o.committed.len();
            recovered.discarded += o.discarded;
            let has_commit = o.committed.iter().any(|r| r.header.kind == Kind::Commit);
            work |= !o.committed.is_empty() || o.discarded > 0;
            if has_commit || o.base_size.is_some() {
                final_size = replay(&mut data, &o.log, &o.committed, o.base_size)?.or(final_size);
            }
            // An undo epoch that never committed: its blocks get their old contents back (the
            // size goes back to the last commit's with the rest). A generation holds one kind
            // of logging, so these images are of the state the replay above left.
            roll_back(&mut data, &o.log, &o.undo)?;
            recovered.rolled_back += o.undo.len();
        }
        work |= final_size.is_some_and(|size| data.size() != Ok(size));
        let (mut log, spare) = (first.log, second.map(|o| o.log));
        if work {
            stats::RECOVERED_RECORDS.fetch_add(recovered.applied as u64, Relaxed);
            if let Some(size) = final_size {
                data.set_len(size)?;
            }
            data.sync()?;
        }
        // Both logs are voided, the older first: a crash in between leaves the newer, whose
        // replay over the data file (which holds everything now) changes nothing. Voiding the
        // newer first would leave the older alone, and its replay would undo the newer's
        // commits. The first log records the size a crash must come back to, in a new
        // generation: records an earlier use left past the last commit are void from now on (a
        // commit's single flush relies on it, see `engine::log`).
        let size = data.size()?;
        let after = spare.as_ref().map_or(0, |l| l.generation()).max(log.generation());
        let void_spare = |spare: Option<Log<M>>| -> Result<Option<M>, Errno> {
            spare
                .map(|mut l| {
                    l.reset(None)?;
                    Ok(l.into_medium())
                })
                .transpose()
        };
        let first_is_older = spare.as_ref().is_some_and(|l| log.generation() < l.generation());
        // Without anything committed in either log, no record on the media counts: the new
        // header need not be waited for (see `Log::create_lazily`).
        let create = if work || spare.is_some() { Log::create } else { Log::create_lazily };
        let spare = if first_is_older {
            log = create(log.into_medium(), settings.log_max, Some(size), after)?;
            void_spare(spare)?
        } else {
            let spare = void_spare(spare)?;
            log = create(log.into_medium(), settings.log_max, Some(size), after)?;
            spare
        };
        let mut file = Self::with_log(data, log, settings)?;
        file.spare = spare;
        Ok((file, recovered))
    }

    /// Opens a file whose old log (if any) is to be ignored: a truncating open supersedes it.
    /// `void`: the medium holds no record that counts (see `Log::create_lazily`).
    pub fn create(data: S, medium: M, settings: EngineSettings, void: bool) -> Result<Self, Errno> {
        let create = if void { Log::create_lazily } else { Log::create };
        let log = create(medium, settings.log_max, Some(data.size()?), 0)?;
        Self::with_log(data, log, settings)
    }

    /// After the kernel changed the (checkpointed) data file on the program's behalf: take its
    /// size as ours. Checkpoints first if anything is logged.
    pub fn reload(&mut self) -> Result<(), Errno> {
        self.checkpoint()?;
        let size = self.data.refresh()?;
        if size != self.size {
            // The kernel's size is the one a crash must come back to from now on.
            self.log.reset(Some(size))?;
        }
        self.size = size;
        self.committed_size = size;
        Ok(())
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The 512-byte blocks the file would have through the kernel, given the data file's
    /// (`data_blocks`): without the room kept for appends past the size (in the data file, or
    /// reserved past its end), with the logged blocks past both.
    pub fn blocks(&self, data_blocks: u64) -> u64 {
        // Reserved blocks are allocated whole, and past the size without a gap.
        let data_len = self.data.size().unwrap_or(0).max(self.data.reserved_to().next_multiple_of(BLOCK));
        let padding = data_len.saturating_sub(self.size.next_multiple_of(BLOCK)) / 512;
        if self.size <= data_len {
            // Every block below the size is in the data file's range (a stat must stay cheap:
            // no walk over the index then).
            return data_blocks.saturating_sub(padding);
        }
        let end = data_len.div_ceil(BLOCK);
        let frozen = self.frozen.as_ref().map(|f| f.blocks.iter());
        let mut logged_past =
            frozen.into_iter().flatten().filter(|&(b, _)| b >= end && !self.index.contains(b)).count();
        self.index.for_each(|b, _| logged_past += (b >= end) as usize);
        data_blocks.saturating_sub(padding) + logged_past as u64 * (BLOCK / 512)
    }

    /// Whether reads can run with the file shared (`&self`) without a system call; else
    /// [`ManagedFile::prepare_reads`] makes it so.
    pub fn reads_ready(&self) -> bool {
        self.data.reads_ready()
    }

    pub fn prepare_reads(&mut self) -> Result<(), Errno> {
        self.data.prepare_reads()
    }

    /// Bytes of log in use (for statistics).
    pub fn log_used(&self) -> u64 {
        self.log.used()
    }

    /// Reads at `offset`; returns the byte count (short at end of file).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Errno> {
        let mut at = 0;
        self.read_pieces(offset, buf.len(), &mut |piece| {
            let n = piece.len();
            match piece {
                Piece::Bytes(b) => buf[at..at + n].copy_from_slice(b),
                Piece::Zeros(_) => buf[at..at + n].fill(0),
            }
            at += n;
            Ok(())
        })
    }

    /// Hands the file's bytes at `offset` (at most `len`, stopping at the end of file) to
    /// `sink` in order, as slices of the data file or the log, or runs of zeros; returns the
    /// total. No copy is made here: the sink copies each piece where it belongs.
    pub fn read_pieces(
        &self,
        offset: u64,
        len: usize,
        sink: &mut dyn FnMut(Piece) -> Result<(), Errno>,
    ) -> Result<usize, Errno> {
        self.policy.note_read();
        if offset >= self.size {
            return Ok(0);
        }
        let end = offset + (len as u64).min(self.size - offset);
        if self.index.is_empty() && self.frozen.is_none() {
            // Nothing logged (undo logging, or just checkpointed): all from the data file.
            self.base_pieces(offset..end, sink)?;
            return Ok((end - offset) as usize);
        }
        // Runs of blocks that are not in the log go to the data file in one piece.
        let mut base_from = offset;
        let mut pos = offset;
        let mut index = self.index.reader();
        while pos < end {
            let block = pos / BLOCK;
            let chunk_end = ((block + 1) * BLOCK).min(end);
            let logged = match index.get(block) {
                Some(slot) => Some((&self.log, slot.pos)),
                None => self.frozen.as_ref().and_then(|f| Some((&f.log, f.slot(block)?))),
            };
            if let Some((log, slot_pos)) = logged {
                self.base_pieces(base_from..pos, sink)?;
                let in_block = (pos - block * BLOCK) as usize;
                sink(Piece::Bytes(log.bytes(slot_pos + in_block as u64, (chunk_end - pos) as usize)))?;
                base_from = chunk_end;
            }
            pos = chunk_end;
        }
        self.base_pieces(base_from..end, sink)?;
        Ok((end - offset) as usize)
    }

    /// The data file's bytes for `range`, zeros past its end.
    fn base_pieces(
        &self,
        range: std::ops::Range<u64>,
        sink: &mut dyn FnMut(Piece) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        if range.is_empty() {
            return Ok(());
        }
        let len = (range.end - range.start) as usize;
        let got = self.data.with_bytes(range.start, len, &mut |b| sink(Piece::Bytes(b)))?;
        if got < len {
            sink(Piece::Zeros(len - got))?;
        }
        Ok(())
    }

    /// Writes `data` at `offset`, all or nothing (ENOSPC, EFBIG: nothing changed).
    pub fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let mut at = 0;
        self.write_with(offset, data.len(), &mut |dst| {
            dst.copy_from_slice(&data[at..at + dst.len()]);
            at += dst.len();
            dst.len()
        })
        .map(drop)
    }

    /// Writes `len` bytes at `offset`, which `fill` copies straight into log blocks or the data
    /// file, piece by piece (consecutive destination slices), returning how many bytes of each
    /// piece it copied. A short copy (a bad program buffer) ends the write there, as the kernel
    /// does: the bytes before it are written, the rest of the file is unchanged, and the count is
    /// returned. ENOSPC or EFBIG: nothing changed.
    pub fn write_with(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        if len == 0 {
            return Ok(0);
        }
        let end = offset.checked_add(len as u64).filter(|&e| e <= i64::MAX as u64).ok_or(Errno(libc::EFBIG))?;
        self.policy.note_write();
        if offset < self.committed_size {
            self.policy.note_overwrite();
        }
        if self.mode == Mode::Undo {
            return self.write_undo(offset, len, fill);
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        // Make room for every new slot first, so the write cannot fail half-way for lack of it.
        // A checkpoint (a new log generation) changes what needs a slot: count again after one.
        let needed = |f: &mut Self| {
            (first..=last).filter(|&b| f.needs_new_slot(b, offset.max(b * BLOCK))).count() as u64
                * (BLOCK + RECORD_HEADER_LEN)
        };
        let generation = self.log.generation();
        let bytes = needed(self);
        self.make_room(bytes)?;
        if self.log.generation() != generation {
            let bytes = needed(self);
            self.make_room(bytes)?;
        }
        // The part that goes in place gets its blocks now too (ENOSPC before any change).
        if let Some(from) =
            (first..=last).map(|b| offset.max(b * BLOCK)).find(|&from| self.goes_in_place(from / BLOCK, from))
        {
            self.allocate_logged_gap(from / BLOCK * BLOCK, first)?;
            self.data.reserve(from, end)?;
        }
        // So do logged blocks past the data file's end, which publishing and checkpoints write
        // there later, as the kernel's write would take them now. Left until then, their room
        // could be gone (the logs grow into it), and a checkpoint that finds none can never
        // empty the log to give its room back.
        if end > self.data.size()? {
            self.data.reserve_past_end(offset, end)?;
        }
        // And logged blocks inside it that are holes (left by a truncate upwards, say).
        let data_len = self.data.size()?;
        if offset < data_len {
            self.data.reserve_holes(offset, end.min(data_len))?;
        }
        let mut done = 0usize;
        let (mut logged_blocks, mut logged_bytes) = (0, 0);
        // The record being filled with new slots, if any.
        let mut record: Option<NewRecord> = None;
        let mut block = first;
        while block <= last {
            let block_start = block * BLOCK;
            let from = offset.max(block_start);
            if self.goes_in_place(block, from) {
                // A run of such blocks is one store into the data file.
                let mut run_end = block;
                while run_end < last && self.goes_in_place(run_end + 1, (run_end + 1) * BLOCK) {
                    run_end += 1;
                }
                let to = end.min((run_end + 1) * BLOCK);
                let n = (to - from) as usize;
                // Only the header's base size makes a crash cut these bytes away.
                self.log.ensure_header_durable()?;
                let copied = self.data.write_in_place(from, n, fill)?;
                self.in_place_dirty = true;
                stats::count(&stats::BYTES_IN_PLACE, copied as u64);
                done += copied;
                if copied < n {
                    break;
                }
                block = run_end + 1;
                continue;
            }
            let to = end.min(block_start + BLOCK);
            let n = (to - from) as usize;
            let (slot, fresh) = match self.index.peek(block) {
                Some(s) if s.era == self.era => (s.pos, None),
                _ => {
                    if record.as_ref().is_none_or(|r| r.next >= r.blocks) {
                        // One record for the run of blocks from here that take new slots (a
                        // large write is one header and one contiguous copy).
                        let blocks = new_slot_run(block, last, |b| self.needs_new_slot(b, b * BLOCK));
                        let len = (blocks * BLOCK) as usize;
                        let pos = self.log.allocate(Kind::Block, block_start, self.epoch, len)?;
                        self.index.push_unsealed(pos);
                        record = Some(NewRecord { pos, blocks, next: 0 });
                    }
                    let r = record.as_mut().expect("allocated above");
                    let pos = r.pos + r.next * BLOCK;
                    let nth = r.next as u16;
                    r.next += 1;
                    let old = self.index.insert(block, Slot { pos, era: self.era, published: false, nth });
                    self.index.push_epoch_block(block, pos);
                    // Start from the block's current contents unless the write covers it all.
                    let whole = n as u64 == BLOCK;
                    if !whole {
                        self.copy_current_block(block, old, pos)?;
                    }
                    logged_blocks += 1;
                    (pos, whole.then_some(old))
                }
            };
            let mut copied = 0;
            self.log.fill(slot + (from - block_start), n, &mut |dst| {
                copied = fill(dst);
                Ok(())
            })?;
            logged_bytes += copied as u64;
            done += copied;
            if copied < n {
                // A new slot that was to be overwritten whole gets its old contents back
                // (around the bytes that did arrive).
                if let Some(old) = fresh {
                    let keep = self.log.bytes(slot, copied).to_vec();
                    self.copy_current_block(block, old, slot)?;
                    self.log.fill(slot, copied, &mut |dst| {
                        dst.copy_from_slice(&keep);
                        Ok(())
                    })?;
                }
                if let Some(r) = record.filter(|r| r.next < r.blocks) {
                    // The record's blocks the write did not reach are cut away from it.
                    if let Some(filler) = self.log.shorten(r.pos, r.next * BLOCK) {
                        self.index.push_unsealed(filler);
                    }
                }
                break;
            }
            block += 1;
        }
        self.size = self.size.max(offset + done as u64);
        stats::count(&stats::BLOCKS_LOGGED, logged_blocks);
        stats::count(&stats::BYTES_LOGGED, logged_bytes);
        Ok(done)
    }

    /// Whether bytes from `from` on in `block` go straight into the data file: nothing of the
    /// block is logged (so reads take it from the file) and no crash image needs the bytes there.
    fn goes_in_place(&mut self, block: u64, from: u64) -> bool {
        from >= self.committed_size
            && (from >= self.settings.in_place_from || self.appends_in_place())
            && self.index.peek(block).is_none()
            && self.frozen.as_ref().is_none_or(|f| f.slot(block).is_none())
    }

    /// Whether appends go in place at any offset: a file that commits often (see
    /// [`EngineSettings::in_place_after_commits`]).
    fn appends_in_place(&self) -> bool {
        let after = self.settings.in_place_after_commits;
        after != 0 && self.commits >= after && self.settings.in_place_from != u64::MAX
    }

    /// Before a store in place at `at`: if the data file ends before it and every block in
    /// between is logged (the first blocks of a new file, say), allocate them too, so the data
    /// file has no hole there (it would be filled at checkpoint anyway). A gap the program left
    /// stays a hole.
    /// Blocks from `writing` on are about to be logged by the write at hand.
    fn allocate_logged_gap(&mut self, at: u64, writing: u64) -> Result<(), Errno> {
        let data_len = self.data.size()?;
        let (index, frozen) = (&mut self.index, &self.frozen);
        let mut logged = |b: &u64| {
            *b >= writing || index.peek(*b).is_some() || frozen.as_ref().is_some_and(|f| f.slot(*b).is_some())
        };
        if data_len < at && (data_len / BLOCK..at / BLOCK).all(|b| logged(&b)) {
            self.data.prepare_bulk(&[(data_len, at)])?;
        }
        Ok(())
    }

    /// Whether writing `block` from `from` on takes a new log slot.
    fn needs_new_slot(&mut self, block: u64, from: u64) -> bool {
        !self.goes_in_place(block, from) && !self.writable_in_place(block)
    }

    fn writable_in_place(&mut self, block: u64) -> bool {
        self.index.peek(block).is_some_and(|s| s.era == self.era)
    }

    /// Fills the new slot at `pos` with block `block`'s contents as they are now (from its
    /// previous slot, else the data file, zeros past what is valid).
    fn copy_current_block(&mut self, block: u64, old: Option<Slot>, pos: u64) -> Result<(), Errno> {
        if old.is_none() {
            self.data.prepare_reads()?;
        }
        let buf = self.current_block(block, old)?;
        self.log.fill(pos, BLOCK as usize, &mut |dst| {
            dst.copy_from_slice(&buf);
            Ok(())
        })
    }

    /// Block `block`'s contents as they are now: from its previous slot `old`, else a frozen
    /// log, else the data file (whose reads must be ready), zeros past what is valid.
    fn current_block(&self, block: u64, old: Option<Slot>) -> Result<[u8; BLOCK as usize], Errno> {
        let mut buf = [0u8; BLOCK as usize];
        match old {
            Some(s) => buf.copy_from_slice(self.log.bytes(s.pos, BLOCK as usize)),
            None => match self.frozen.as_ref().and_then(|f| Some((f, f.slot(block)?))) {
                Some((f, slot_pos)) => buf.copy_from_slice(f.log.bytes(slot_pos, BLOCK as usize)),
                // Past the data file's end the block reads as zeros.
                None => {
                    self.data.read_at(block * BLOCK, &mut buf)?;
                }
            },
        }
        Ok(buf)
    }

    /// Sets the size: bytes beyond it are gone, a later extension reads zeros.
    ///
    /// Past the committed size the cut is made in the data file at once (no crash image needs
    /// the bytes there), and the log slots of the blocks cut away are withdrawn.
    /// Below it, the file is checkpointed, the truncate logged and committed on its own, and then
    /// made in the data file: a truncate below the committed size is durable when it returns (a
    /// whole change, as a checkpoint's commit is), and the data file never holds stale bytes.
    pub fn truncate(&mut self, size: u64) -> Result<(), Errno> {
        if size < self.size {
            // The data file is about to be cut: no background writer may be at work in it.
            self.settle_frozen()?;
        }
        if size >= self.size {
            // Bytes past the old size read as zeros already: in the file, in the log slots.
            self.size = size;
            return Ok(());
        }
        if size < self.committed_size {
            self.checkpoint()?;
            self.log.append(Kind::Truncate, size, self.epoch, &[])?;
            self.size = size;
            self.commit()?;
            self.data.set_len(size)?;
            self.data.sync()?;
            self.log.reset(Some(size))?;
            return Ok(());
        }
        if !size.is_multiple_of(BLOCK) && self.index.peek(size / BLOCK).is_some() {
            // The logged block that now ends the file loses its tail, like a write of zeros.
            let tail = (BLOCK - size % BLOCK).min(self.size - size) as usize;
            self.write_with(size, tail, &mut |dst| {
                dst.fill(0);
                dst.len()
            })?;
            if size < self.committed_size {
                // Making room for that checkpointed the file: the cut is below the new commit.
                return self.truncate(size);
            }
        }
        // Log slots of blocks past the cut (all uncommitted: a committed record's block starts
        // below the committed size) are withdrawn: replayed later, they would bring back bytes
        // over whatever is written there next, in place or not.
        let cut_from = size.div_ceil(BLOCK);
        // (record, its first block) of every record holding a block past the cut.
        let mut cut = Vec::new();
        self.index.retain(|b, slot| {
            if b < cut_from {
                return true;
            }
            cut.push((slot.record_pos(), b - slot.nth as u64));
            false
        });
        cut.sort_unstable();
        cut.dedup();
        for (record, first) in cut {
            // A record that starts below the cut keeps its blocks there (they are indexed).
            match cut_from.saturating_sub(first) {
                0 => self.log.void(record),
                kept => {
                    if let Some(filler) = self.log.shorten(record, kept * BLOCK) {
                        self.index.push_unsealed(filler);
                    }
                }
            }
        }
        if self.data.size()? > size {
            self.data.set_len(size)?;
            self.in_place_dirty = true;
        }
        self.size = size;
        Ok(())
    }

    /// Makes every write so far durable and committed (fsync); then picks the next epoch's
    /// logging.
    pub fn sync(&mut self) -> Result<(), Errno> {
        match self.mode {
            Mode::Redo => self.sync_redo()?,
            Mode::Undo => self.commit()?,
        }
        let next = self.policy.next(self.mode);
        if next != self.mode {
            self.switch_to(next);
        }
        Ok(())
    }

    fn sync_redo(&mut self) -> Result<(), Errno> {
        let mut epoch = self.index.take_epoch_blocks();
        self.commit()?;
        if self.unpublished {
            // An earlier fsync failed publishing (ENOSPC, EIO): every committed block not in
            // the data file yet, so that its retry returns only when the kernel's readers see it.
            epoch = self.unpublished_blocks();
        }
        self.unpublished = true;
        self.publish_epoch(epoch)?;
        self.unpublished = false;
        // With a second log the checkpoint runs in the background (the caller starts it); a
        // log that fills up meanwhile is checkpointed here when it must make room.
        let background = self.spare.is_some() || self.frozen.is_some();
        if self.log.used() >= self.settings.checkpoint_at && !background {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Commits, writes the latest contents of every logged block into the data file, syncs
    /// it, and empties the log (after taking back a log frozen for the background).
    pub fn checkpoint(&mut self) -> Result<(), Errno> {
        self.settle_frozen()?;
        self.commit()?;
        if self.log.used() == 0 {
            // Nothing logged (a background checkpoint took it all): only the room kept for
            // appends goes.
            if self.cut_append_room()? {
                self.data.sync()?;
            }
            return Ok(());
        }
        stats::CHECKPOINTS.fetch_add(1, Relaxed);
        stats::note_log_used(self.log.used());
        let mut blocks = self.unpublished_blocks();
        // The index's shards come in sorted runs: a merging sort takes them as they are.
        blocks.sort();
        write_blocks(&mut self.data, &self.log, &blocks, self.size)?;
        self.cut_append_room()?;
        self.data.sync()?;
        self.log.reset(Some(self.size))?;
        self.index.clear();
        self.committed_size = self.size;
        Ok(())
    }

    /// Gives the engine a second log medium, so that checkpoints can run in the background.
    pub fn set_spare(&mut self, medium: M) {
        self.spare = Some(medium);
    }

    pub fn has_spare(&self) -> bool {
        self.spare.is_some()
    }

    /// Takes back a frozen log the background has applied in full (a cheap step: its blocks
    /// are in the data file). Called by the program's writes: the checkpoint thread finishes
    /// a job itself only when the file's lock is free, and a program that writes large blocks
    /// back to back holds it nearly all the time.
    pub fn take_back_applied(&mut self) -> Result<(), Errno> {
        match &self.frozen {
            Some(f) if f.is_applied() => self.settle_frozen(),
            _ => Ok(()),
        }
    }

    /// The frozen log being applied in the background, if the log in use has reached the
    /// checkpoint size meanwhile: the background falls behind (it copies from memory the
    /// caches may no longer hold, where the writer copies from a buffer they do), and the
    /// writer should wait for it rather than let the log grow until a full log makes it
    /// checkpoint everything itself. Logs of that size also stay in the caches for the
    /// background.
    pub fn background_behind(&self) -> Option<Arc<Frozen<M>>> {
        let f = self.frozen.as_ref()?;
        let behind = !f.is_applied() && self.log.used() >= self.settings.checkpoint_at;
        behind.then(|| f.clone())
    }

    /// Whether a writer sharing the file must take it alone after its write, for
    /// [`ManagedFile::background_behind`], [`ManagedFile::take_back_applied`] or
    /// [`ManagedFile::wants_background_checkpoint`].
    pub fn background_due(&self) -> bool {
        let behind_or_applied =
            self.frozen.as_ref().is_some_and(|f| f.is_applied() || self.log.used() >= self.settings.checkpoint_at);
        behind_or_applied || self.wants_background_checkpoint()
    }

    /// Whether the log is due for a checkpoint and one can start in the background now.
    pub fn wants_background_checkpoint(&self) -> bool {
        self.mode == Mode::Redo && self.log.used() >= self.settings.checkpoint_at && self.frozen.is_none()
    }

    /// Commits and freezes the log for another thread to apply ([`Frozen::apply`], then
    /// [`ManagedFile::finish_background_checkpoint`] under the file's lock); the file goes on
    /// with the spare medium as its log. `None`: nothing to do, or no spare.
    pub fn begin_background_checkpoint(&mut self) -> Result<Option<Arc<Frozen<M>>>, Errno> {
        if self.frozen.is_some() || self.spare.is_none() || self.mode == Mode::Undo {
            return Ok(None);
        }
        self.commit()?;
        if self.log.used() == 0 {
            return Ok(None);
        }
        let spare = self.spare.take().expect("checked above");
        // The new log's generation follows the frozen one's: recovery replays them in order.
        let mut next = Log::create(spare, self.settings.log_max, Some(self.size), self.log.generation())?;
        next.grow_slowly_from(self.settings.checkpoint_at);
        stats::CHECKPOINTS.fetch_add(1, Relaxed);
        stats::note_log_used(self.log.used());
        let log = std::mem::replace(&mut self.log, next);
        let blocks = self.index.freeze();
        self.index.clear_epoch();
        let frozen = Arc::new(Frozen {
            log,
            blocks,
            size: self.size,
            claimed: AtomicBool::new(false),
            cancel: AtomicBool::new(false),
            applied: AtomicBool::new(false),
        });
        self.frozen = Some(frozen.clone());
        Ok(Some(frozen))
    }

    /// Applies the frozen log in this thread, as a background worker would, and takes it back
    /// (for callers without a worker, and for tests).
    pub fn apply_frozen_here(&mut self) -> Result<(), Errno> {
        let Some(frozen) = self.frozen.clone() else { return Ok(()) };
        let job = Arc::as_ptr(&frozen);
        let data = &mut self.data;
        frozen.apply(&mut |offset, pieces| crate::persist::write_each(data, offset, pieces));
        drop(frozen);
        self.finish_background_checkpoint(job)
    }

    /// The background apply of `job` ended (or gave up): if it is still this file's frozen log
    /// and no one else holds it, take it back now (see [`ManagedFile::settle_frozen`]).
    pub fn finish_background_checkpoint(&mut self, job: *const Frozen<M>) -> Result<(), Errno> {
        match &self.frozen {
            Some(f) if Arc::as_ptr(f) == job && Arc::strong_count(f) == 1 => self.settle_frozen(),
            _ => Ok(()),
        }
    }

    /// Ends a background checkpoint now: stops the applier and waits until it lets go of the
    /// frozen log, writes the blocks it did not, syncs the data file, and keeps the voided log
    /// as the spare.
    fn settle_frozen(&mut self) -> Result<(), Errno> {
        let Some(mut frozen) = self.frozen.take() else { return Ok(()) };
        frozen.cancel.store(true, Relaxed);
        let frozen = loop {
            match Arc::try_unwrap(frozen) {
                Ok(f) => break f,
                Err(shared) => {
                    // The applier checks `cancel` between blocks: a short wait.
                    frozen = shared;
                    std::thread::yield_now();
                }
            }
        };
        let applied = frozen.applied.load(Acquire);
        if let Err(e) = self.write_frozen(&frozen, applied) {
            // No room in the data file (ENOSPC), say: the frozen log stays, still serving its
            // blocks' reads and still replayed by recovery; the next settle tries again.
            frozen.claimed.store(true, Relaxed);
            self.frozen = Some(Arc::new(frozen));
            return Err(e);
        }
        if applied {
            stats::CHECKPOINTS_IN_BACKGROUND.fetch_add(1, Relaxed);
        }
        let mut log = frozen.log;
        log.reset(None)?;
        self.spare = Some(log.into_medium());
        Ok(())
    }

    /// Writes what a frozen log holds into the data file (unless the worker did) and syncs it.
    fn write_frozen(&mut self, frozen: &Frozen<M>, applied: bool) -> Result<(), Errno> {
        if !applied {
            write_blocks(&mut self.data, &frozen.log, &frozen.blocks.to_apply(), frozen.size)?;
        }
        // Blocks committed since then were published before the frozen (older) contents went
        // in: publish them again.
        let mut newer = Vec::new();
        let log = &self.log;
        self.index.for_each_mut(|block, slot| {
            if log.is_committed(slot.pos) && frozen.slot(block).is_some() {
                newer.push((block, slot.pos));
            }
        });
        self.publish(&mut newer)?;
        // Everything it held must be durable in the data file before the log is voided.
        self.data.sync()?;
        self.data.refresh()?;
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Errno> {
        if self.mode == Mode::Undo {
            return self.commit_undo();
        }
        if self.log.has_uncommitted() || self.size != self.committed_size {
            if self.in_place_dirty {
                // Bytes written in place become part of the committed state: durable first.
                self.data.sync()?;
                self.in_place_dirty = false;
            }
            self.log.commit(self.epoch, self.size, &self.index.unsealed())?;
            self.committed_size = self.size;
            self.index.clear_epoch();
            self.commits += 1;
            stats::count(&stats::COMMITS, 1);
            stats::note_log_used(self.log.used());
            self.epoch = self.epoch.wrapping_add(1);
            self.era += 1;
        }
        Ok(())
    }

    /// Copies the blocks (block, slot) an fsync's commit covered into the data file (not
    /// synced: the log keeps them durable until a checkpoint), so that processes reading the
    /// file through the kernel see what the fsync covered when it returns. Reads here still
    /// come from the log. (Other commits, before checkpoints, need not: those copy everything.)
    fn publish_epoch(&mut self, mut blocks: Vec<(u64, u64)>) -> Result<(), Errno> {
        let index = &mut self.index;
        blocks.retain(|&(block, pos)| index.peek(block).is_some_and(|s| s.pos == pos));
        self.publish(&mut blocks)?;
        if self.data.size()? < self.committed_size {
            // Grown without data (a truncate upwards, or a write past a hole's end).
            self.data.grow(self.committed_size)?;
        }
        Ok(())
    }

    /// Writes committed `blocks` (block, slot) into the data file, up to the committed size.
    fn publish(&mut self, blocks: &mut [(u64, u64)]) -> Result<(), Errno> {
        if blocks.is_empty() {
            return Ok(());
        }
        blocks.sort();
        write_blocks(&mut self.data, &self.log, blocks, self.committed_size)?;
        stats::count(&stats::BLOCKS_PUBLISHED, blocks.len() as u64);
        for (block, pos) in blocks.iter() {
            if let Some(slot) = self.index.get_mut(*block).filter(|s| s.pos == *pos) {
                slot.published = true;
            }
        }
        Ok(())
    }

    /// Commits made since the file was opened (commit records, and undo epochs' resets).
    pub fn commits(&self) -> u64 {
        self.commits
    }

    /// The current epoch's logging.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Changes of logging since open.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    /// Ensures `bytes` of new records and a commit record fit in the log, checkpointing (which
    /// commits whole writes only) when they would not.
    /// The log's medium is grown for them now: a write then never fails half-way because the
    /// file system is full (ENOSPC comes before any change). A log that cannot grow is
    /// checkpointed, to reuse its room.
    fn make_room(&mut self, bytes: u64) -> Result<(), Errno> {
        let needed = bytes + RECORD_HEADER_LEN;
        if self.log.fits(needed) && self.log.reserve(needed).is_ok() {
            return Ok(());
        }
        self.checkpoint()?;
        if !self.log.fits(needed) && self.log.used() == 0 {
            // One write larger than the log's limit: logged whole all the same (the room goes
            // back at the next reset), as atomic as any other; the kernel would take it too.
            self.log.allow_oversized(needed);
        }
        if self.log.fits(needed) {
            self.log.reserve(needed)
        } else {
            Err(Errno(libc::ENOSPC))
        }
    }

    /// The last descriptor closes and the file stays served (its log kept): everything written
    /// is committed, and in the data file at its size (not synced: the log keeps it durable),
    /// as a reader through the kernel expects from a closed file. Costs no sync unless there
    /// are writes since the last commit.
    pub fn publish_for_close(&mut self) -> Result<(), Errno> {
        // A background checkpoint's blocks may not be in the data file yet.
        self.settle_frozen()?;
        self.commit()?;
        let mut blocks = self.unpublished_blocks();
        self.publish(&mut blocks)?;
        self.cut_append_room()?;
        Ok(())
    }

    /// (block, slot) of every logged block the data file does not hold yet.
    fn unpublished_blocks(&mut self) -> Vec<(u64, u64)> {
        let mut blocks = Vec::new();
        self.index.for_each_mut(|b, s| {
            if !s.published {
                blocks.push((b, s.pos));
            }
        });
        blocks
    }

    /// Sets the data file to the size, cutting the room kept for appends (in it, or reserved
    /// past its end). Whether it had any.
    fn cut_append_room(&mut self) -> Result<bool, Errno> {
        let any = self.data.size()? != self.size || self.data.reserved_to() > self.size;
        if any {
            self.data.set_len(self.size)?;
        }
        Ok(any)
    }

    /// The file is gone (unlinked, no descriptor left): its log is not applied. Gives back
    /// the data file, the log medium *as it is* (committed records and all: it must be voided,
    /// e.g. by [`Log::create`], before another file uses it) and the spare (void).
    pub fn discard(mut self) -> Result<(S, M, Option<M>), Errno> {
        self.settle_frozen()?;
        Ok((self.data, self.log.into_medium(), self.spare))
    }

    /// Checkpoints and gives back the data file, the (now empty) log medium, which no longer
    /// describes the file (no base size: it may be reused for another), and the spare.
    pub fn into_parts(mut self) -> Result<(S, M, Option<M>), Errno> {
        // The checkpoint also cut the room kept for appends.
        self.checkpoint()?;
        self.log.reset(None)?;
        Ok((self.data, self.log.into_medium(), self.spare))
    }

    pub fn data(&self) -> &S {
        &self.data
    }

    pub fn log_medium(&self) -> &M {
        self.log.medium()
    }

    /// The second log's medium, spare or frozen, if there is one.
    pub fn other_log_medium(&self) -> Option<&M> {
        self.spare.as_ref().or_else(|| self.frozen.as_ref().map(|f| f.log.medium()))
    }
}

/// Writes `blocks` (block number, position in `log`; sorted) into the data file, up to `size`.
fn write_blocks<M: Medium, S: Storage>(
    data: &mut S,
    log: &Log<M>,
    blocks: &[(u64, u64)],
    size: u64,
) -> Result<(), Errno> {
    if blocks.len() >= 256 || data.few_writes_prefer_bulk() {
        // Many blocks: let the storage allocate the runs at once and copy through memory.
        let mut runs: Vec<(u64, u64)> = Vec::new();
        for &(b, _) in blocks {
            let (start, end) = (b * BLOCK, ((b + 1) * BLOCK).min(size));
            match runs.last_mut() {
                Some(last) if last.1 == start => last.1 = end.max(last.1),
                _ if start < end => runs.push((start, end)),
                _ => {}
            }
        }
        data.prepare_bulk(&runs)?;
    }
    // Blocks that follow each other in the file are one write of pieces; those that also
    // follow each other in the log (one record of a large write) are one piece.
    let mut at = 0; // where the pieces go
    let mut pieces: Vec<(u64, u64)> = Vec::new(); // (log position, length)
    let mut flush = |at: u64, pieces: &mut Vec<(u64, u64)>| -> Result<(), Errno> {
        let slices: Vec<&[u8]> = pieces.iter().map(|&(from, len)| log.bytes(from, len as usize)).collect();
        pieces.clear();
        data.write_pieces_at(at, &slices)
    };
    let mut run_len = 0;
    for &(b, pos) in blocks {
        let start = b * BLOCK;
        if start >= size {
            break;
        }
        let n = (size - start).min(BLOCK);
        if !pieces.is_empty() && (at + run_len != start || run_len >= RUN_MAX || pieces.len() >= PIECES_MAX) {
            flush(at, &mut pieces)?;
        }
        if pieces.is_empty() {
            (at, run_len) = (start, 0);
        }
        match pieces.last_mut() {
            Some(last) if last.0 + last.1 == pos => last.1 += n,
            _ => pieces.push((pos, n)),
        }
        run_len += n;
    }
    if !pieces.is_empty() {
        flush(at, &mut pieces)?;
    }
    Ok(())
}

/// The most pieces one write takes (IOV_MAX).
const PIECES_MAX: usize = 1024;

/// The largest store a checkpoint makes at once.
const RUN_MAX: u64 = 1 << 20;

/// Replays committed records onto the data file, in log order. Returns the size they leave:
/// the last commit's, else the log's base size (bytes written in place and never committed are
/// cut away by the caller). Replaying twice gives the same file (recovery may be interrupted
/// and run again).
fn replay<M: Medium, S: Storage>(
    data: &mut S,
    log: &Log<M>,
    records: &[Found],
    base_size: Option<u64>,
) -> Result<Option<u64>, Errno> {
    let mut final_size = base_size;
    for r in records {
        match r.header.kind {
            Kind::Block | Kind::Write => {
                data.write_at(r.header.offset, log.bytes(r.data_pos, r.header.len as usize))?;
            }
            Kind::Truncate => data.set_len(r.header.offset)?,
            Kind::Commit => final_size = Some(r.header.offset),
            // Committed over: void.
            Kind::Void | Kind::Undo => {}
        }
    }
    Ok(final_size)
}
