//! The hybrid logging policy: which kind of log each epoch of a file uses, picked at every
//! commit from the calls the epoch saw (as Libnvmmio does, with the ratio computed so that it
//! can take values other than 0 and 100), and, beyond the paper, from how many writes the
//! epochs had: an fsync after every write or few makes redo logging copy each block into the
//! file at once anyway (published at the fsync, on the writer's thread), where undo logging
//! copies its old contents once and commits by emptying the log. Only a run of such epochs
//! counts: a switch to undo checkpoints first, and a short-lived file (SQLite's rollback
//! journal: two fsyncs, then closed and unlinked) must not pay for it.
//!
//! - **Redo** logging: writes below the committed size go into log blocks; the data file is
//!   untouched until a checkpoint, and reads of logged blocks look them up in the index. Cheap
//!   writes, dearer reads.
//! - **Undo** logging: the old contents of a block go into the log (durable) before the block
//!   is overwritten in place; reads go straight to the data file. Cheap reads; a write's first
//!   store to a block in an epoch costs a copy of the block and a flush.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Which logging a file uses (the `NVMMIO_LOGGING` setting).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Logging {
    /// Picked per epoch from the write share of the calls since the last commit.
    #[default]
    Hybrid,
    /// Always redo logging.
    Redo,
    /// Always undo logging.
    Undo,
}

impl Logging {
    pub fn parse(text: &str) -> Option<Logging> {
        match text.trim() {
            "hybrid" => Some(Logging::Hybrid),
            "redo" => Some(Logging::Redo),
            "undo" => Some(Logging::Undo),
            _ => None,
        }
    }
}

/// The logging of one epoch.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Redo,
    Undo,
}

/// Short epochs in a row (see [`Policy::undo_upto`]) that make the next use undo logging.
pub const SHORT_RUN: u32 = 4;

/// A file's policy state: the setting and the calls counted since the last commit.
#[derive(Debug)]
pub struct Policy {
    logging: Logging,
    /// Percent: a write share above it picks redo logging for the next epoch, else undo.
    redo_above: u8,
    /// [`SHORT_RUN`] epochs in a row of at most this many writes each pick undo logging for
    /// the next (0: the write share alone decides).
    undo_upto: u64,
    /// Short epochs in a row so far.
    short_run: u32,
    /// Writes since the last decision that changed bytes below the committed size.
    overwrites: AtomicU64,
    /// Reads since the last decision. Counted under the file's shared lock by any number of
    /// readers (and writers, for writes) at once: a relaxed load and store (no locked
    /// instruction on the data path), so concurrent calls may be counted once; the policy only
    /// needs the proportion.
    reads: AtomicU64,
    writes: AtomicU64,
}

impl Policy {
    pub fn new(logging: Logging, redo_above: u8, undo_upto: u64) -> Policy {
        Policy {
            logging,
            redo_above: redo_above.min(100),
            undo_upto,
            short_run: 0,
            overwrites: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// The first epoch's logging.
    pub fn initial(&self) -> Mode {
        match self.logging {
            Logging::Undo => Mode::Undo,
            Logging::Redo | Logging::Hybrid => Mode::Redo,
        }
    }

    #[inline]
    pub fn note_read(&self) {
        if self.logging == Logging::Hybrid {
            count(&self.reads);
        }
    }

    #[inline]
    pub fn note_write(&self) {
        count(&self.writes);
    }

    /// A write that changes bytes below the committed size (an overwrite: appends go in place
    /// under either logging, so only overwrites tell the two apart).
    #[inline]
    pub fn note_overwrite(&self) {
        count(&self.overwrites);
    }

    /// At an epoch boundary: the next epoch's logging, given the current one; starts counting
    /// afresh. An epoch with no calls keeps the current logging.
    pub fn next(&mut self, current: Mode) -> Mode {
        let reads = self.reads.swap(0, Relaxed);
        let writes = std::mem::take(self.writes.get_mut());
        let overwrites = std::mem::take(self.overwrites.get_mut());
        // An epoch without overwrites (appends only, or another thread's fsync committed the
        // writes) neither extends nor ends a run: two threads writing with an fsync each see
        // every other epoch empty, and a log appended with an fsync each (RocksDB's, synced)
        // gains nothing from undo logging (measured: 6-12% slower).
        if overwrites > 0 {
            let short = writes <= self.undo_upto;
            self.short_run = if short { self.short_run.saturating_add(1) } else { 0 };
        }
        match self.logging {
            Logging::Redo => Mode::Redo,
            Logging::Undo => Mode::Undo,
            Logging::Hybrid if reads + writes == 0 => current,
            // In u128: no overflow, and no integer division before the comparison (the
            // original's ratio was always 0 or 100).
            Logging::Hybrid => {
                let write_heavy = writes as u128 * 100 > self.redo_above as u128 * (reads as u128 + writes as u128);
                if write_heavy && self.short_run < SHORT_RUN {
                    Mode::Redo
                } else {
                    Mode::Undo
                }
            }
        }
    }
}

/// One more call (see [`Policy::reads`]).
#[inline]
fn count(counter: &AtomicU64) {
    counter.store(counter.load(Relaxed).wrapping_add(1), Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(logging: Logging, reads: u64, writes: u64, current: Mode) -> Mode {
        decide_with(logging, 0, reads, writes, current)
    }

    fn decide_with(logging: Logging, undo_upto: u64, reads: u64, writes: u64, current: Mode) -> Mode {
        let mut p = Policy::new(logging, 40, undo_upto);
        for _ in 0..reads {
            p.note_read();
        }
        for _ in 0..writes {
            p.note_write();
        }
        p.next(current)
    }

    #[test]
    fn write_share_above_the_threshold_picks_redo() {
        use Mode::*;
        assert_eq!(decide(Logging::Hybrid, 60, 40, Redo), Undo, "40% is not above 40%");
        assert_eq!(decide(Logging::Hybrid, 59, 41, Undo), Redo);
        assert_eq!(decide(Logging::Hybrid, 99, 1, Redo), Undo);
        assert_eq!(decide(Logging::Hybrid, 0, 1, Undo), Redo);
        assert_eq!(decide(Logging::Hybrid, 0, 0, Undo), Undo, "no calls: no change");
        assert_eq!(decide(Logging::Hybrid, 0, 0, Redo), Redo);
        // Forced settings never switch.
        assert_eq!(decide(Logging::Redo, 100, 0, Redo), Redo);
        assert_eq!(decide(Logging::Undo, 0, 100, Undo), Undo);
    }

    /// The decisions after epochs of these many writes each (no reads).
    fn decisions(undo_upto: u64, epochs: &[u64]) -> Vec<Mode> {
        let mut p = Policy::new(Logging::Hybrid, 40, undo_upto);
        let mut mode = Mode::Redo;
        epochs
            .iter()
            .map(|&writes| {
                for _ in 0..writes {
                    p.note_write();
                    p.note_overwrite();
                }
                mode = p.next(mode);
                mode
            })
            .collect()
    }

    #[test]
    fn runs_of_short_epochs_pick_undo() {
        use Mode::*;
        assert_eq!(decisions(4, &[1, 1, 1, 1, 1]), [Redo, Redo, Redo, Undo, Undo], "an fsync after each write");
        assert_eq!(decisions(4, &[4, 4, 4, 4, 5, 1]), [Redo, Redo, Redo, Undo, Redo, Redo], "a long epoch ends a run");
        assert_eq!(decisions(4, &[2, 1]), [Redo, Redo], "a journal's two fsyncs: no switch");
        assert_eq!(decisions(0, &[1, 1, 1, 1, 1]), [Redo; 5], "off");
        let mut appends = Policy::new(Logging::Hybrid, 40, 4);
        for _ in 0..6 {
            appends.note_write();
            assert_eq!(appends.next(Redo), Redo, "appends only: no run");
        }
        assert_eq!(
            decisions(4, &[2, 0, 2, 0, 2, 0, 2, 0]),
            [Redo, Redo, Redo, Redo, Redo, Redo, Undo, Undo],
            "empty epochs (two threads, an fsync each) neither end nor extend a run"
        );
        assert_eq!(decide_with(Logging::Hybrid, 4, 100, 50, Redo), Undo, "read-heavy: undo as before");
        assert_eq!(decide_with(Logging::Redo, 4, 0, 1, Redo), Redo, "forced settings never switch");
    }

    #[test]
    fn counts_start_afresh_at_each_decision() {
        let mut p = Policy::new(Logging::Hybrid, 40, 0);
        for _ in 0..10 {
            p.note_read();
        }
        assert_eq!(p.next(Mode::Redo), Mode::Undo);
        p.note_write();
        assert_eq!(p.next(Mode::Undo), Mode::Redo, "the earlier reads no longer count");
    }

    #[test]
    fn settings_parse() {
        assert_eq!(Logging::parse("undo"), Some(Logging::Undo));
        assert_eq!(Logging::parse(" redo"), Some(Logging::Redo));
        assert_eq!(Logging::parse("hybrid"), Some(Logging::Hybrid));
        assert_eq!(Logging::parse("both"), None);
    }
}
