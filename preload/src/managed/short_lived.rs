//! Names whose files die young, again and again: a file created empty, written, and removed
//! before its log was ever applied (SQLite's rollback journal, every transaction; a temporary
//! file unlinked while open), twice within [`WINDOW_NS`]. The next file created empty under such
//! a name is left to the kernel (`NVMMIO_SHORT_LIVED`): setting up a log for it, binding the log
//! to it and voiding it at the unlink cost about 30 system calls, more than the file's own calls
//! save. One death is not enough: a database destroyed and created again at start-up (db_bench)
//! makes the same names once, and those files then live long. A file found non-empty under a
//! known name (a journal a crash left, to be rolled back) makes the name ordinary again.
//!
//! Names are kept as hashes of the file's real path, in a small table that forgets the oldest:
//! no allocation on the open path; updated only with the opening lock held.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// How many names are remembered.
const SLOTS: usize = 16;
/// A second death within this long of the last one makes the name known.
pub const WINDOW_NS: u64 = 1_000_000_000;

/// A remembered name: its hash (0: free), its deaths in a row, each within [`WINDOW_NS`] of the
/// one before, and when the last was.
struct Slot {
    name: AtomicU64,
    deaths: AtomicU64,
    last_ns: AtomicU64,
}

static SLOTS_TABLE: [Slot; SLOTS] =
    [const { Slot { name: AtomicU64::new(0), deaths: AtomicU64::new(0), last_ns: AtomicU64::new(0) } }; SLOTS];
/// The slot the next name takes (the oldest).
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Files left to the kernel for their name (the exit summary).
pub static LEFT_TO_KERNEL: AtomicU64 = AtomicU64::new(0);

/// The hash of a real path (FNV-1a; never 0, which marks a free slot and "no name").
pub fn name_hash(path: &[u8]) -> u64 {
    let hash = path.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    hash.max(1)
}

fn slot_of(name: u64) -> Option<&'static Slot> {
    SLOTS_TABLE.iter().find(|slot| name != 0 && slot.name.load(Relaxed) == name)
}

/// Whether files named `name` die young.
pub fn known(name: u64) -> bool {
    slot_of(name).is_some_and(|slot| slot.deaths.load(Relaxed) >= 2)
}

/// A file named `name`, with data in it, died young at `now_ns` (monotonic).
pub fn died(name: u64, now_ns: u64) {
    if name == 0 {
        return;
    }
    if let Some(slot) = slot_of(name) {
        let recent = now_ns.saturating_sub(slot.last_ns.load(Relaxed)) <= WINDOW_NS;
        slot.deaths.store(if recent { slot.deaths.load(Relaxed) + 1 } else { 1 }, Relaxed);
        slot.last_ns.store(now_ns, Relaxed);
        return;
    }
    let slot = &SLOTS_TABLE[NEXT.fetch_add(1, Relaxed) % SLOTS];
    slot.name.store(name, Relaxed);
    slot.deaths.store(1, Relaxed);
    slot.last_ns.store(now_ns, Relaxed);
}

/// A file named `name` outlived its open: the name is ordinary again.
pub fn forget(name: u64) {
    if let Some(slot) = slot_of(name) {
        slot.name.store(0, Relaxed);
        slot.deaths.store(0, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_known_after_two_deaths_close_together_forgotten_and_bounded() {
        let first = name_hash(b"/dev/shm/a/db-journal");
        assert_ne!(first, name_hash(b"/dev/shm/a/db-journak"));
        died(first, 10);
        assert!(!known(first), "one death is not enough");
        died(first, 10 + WINDOW_NS + 1);
        assert!(!known(first), "nor two far apart");
        died(first, 20 + WINDOW_NS);
        assert!(known(first));
        forget(first);
        assert!(!known(first));
        died(first, 1);
        died(first, 2);
        for i in 0..SLOTS as u64 {
            let name = name_hash(format!("/x/{i}").as_bytes());
            died(name, 3);
            died(name, 4);
        }
        assert!(!known(first), "the oldest name makes room");
        assert!(known(name_hash(b"/x/0")) && !known(0));
    }
}
