//! The hybrid logging policy: which kind of log each epoch of a file uses, picked at every
//! commit from the calls the epoch saw (as Libnvmmio does, with the ratio computed so that it
//! can take values other than 0 and 100).
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

/// A file's policy state: the setting and the calls counted since the last commit.
#[derive(Debug)]
pub struct Policy {
    logging: Logging,
    /// Percent: a write share above it picks redo logging for the next epoch, else undo.
    redo_above: u8,
    /// Reads since the last decision. Counted under the file's shared lock by any number of
    /// readers at once: a relaxed load and store (no locked instruction on the read path), so
    /// concurrent reads may be counted once; the policy only needs the proportion.
    reads: AtomicU64,
    writes: u64,
}

impl Policy {
    pub fn new(logging: Logging, redo_above: u8) -> Policy {
        Policy { logging, redo_above: redo_above.min(100), reads: AtomicU64::new(0), writes: 0 }
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
            self.reads.store(self.reads.load(Relaxed).wrapping_add(1), Relaxed);
        }
    }

    #[inline]
    pub fn note_write(&mut self) {
        self.writes += 1;
    }

    /// At an epoch boundary: the next epoch's logging, given the current one; starts counting
    /// afresh. An epoch with no calls keeps the current logging.
    pub fn next(&mut self, current: Mode) -> Mode {
        let reads = self.reads.swap(0, Relaxed);
        let writes = std::mem::take(&mut self.writes);
        match self.logging {
            Logging::Redo => Mode::Redo,
            Logging::Undo => Mode::Undo,
            Logging::Hybrid if reads + writes == 0 => current,
            // In u128: no overflow, and no integer division before the comparison (the
            // original's ratio was always 0 or 100).
            Logging::Hybrid => {
                if writes as u128 * 100 > self.redo_above as u128 * (reads as u128 + writes as u128) {
                    Mode::Redo
                } else {
                    Mode::Undo
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decide(logging: Logging, reads: u64, writes: u64, current: Mode) -> Mode {
        let mut p = Policy::new(logging, 40);
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

    #[test]
    fn counts_start_afresh_at_each_decision() {
        let mut p = Policy::new(Logging::Hybrid, 40);
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
