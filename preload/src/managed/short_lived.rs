//! Names whose files die young: a file created empty and removed before its log was ever
//! applied (SQLite's rollback journal, every transaction; a temporary file unlinked while open).
//! The next file created empty under such a name is left to the kernel (`NVMMIO_SHORT_LIVED`):
//! setting up a log for it, binding the log to it and voiding it at the unlink cost about 30
//! system calls, more than the file's own calls save. A file found non-empty under a known name
//! (a journal a crash left, to be rolled back) makes the name ordinary again.
//!
//! Names are kept as hashes of the file's real path, in a small table that forgets the oldest:
//! no allocation and no lock on the open path.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// How many names are remembered.
const SLOTS: usize = 16;

static NAMES: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
/// The slot the next name takes (the oldest).
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Files left to the kernel for their name (the exit summary).
pub static LEFT_TO_KERNEL: AtomicU64 = AtomicU64::new(0);

/// The hash of a real path (FNV-1a; never 0, which marks an empty slot and "no name").
pub fn name_hash(path: &[u8]) -> u64 {
    let hash = path.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    hash.max(1)
}

/// Whether files named `name` have died young.
pub fn known(name: u64) -> bool {
    name != 0 && NAMES.iter().any(|slot| slot.load(Relaxed) == name)
}

/// A file named `name` died young.
pub fn learn(name: u64) {
    if name == 0 || known(name) {
        return;
    }
    let slot = NEXT.fetch_add(1, Relaxed) % SLOTS;
    NAMES[slot].store(name, Relaxed);
}

/// A file named `name` outlived its open: the name is ordinary again.
pub fn forget(name: u64) {
    for slot in &NAMES {
        let _ = slot.compare_exchange(name, 0, Relaxed, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_learned_forgotten_and_bounded() {
        let first = name_hash(b"/dev/shm/a/db-journal");
        assert_ne!(first, name_hash(b"/dev/shm/a/db-journak"));
        assert!(!known(first));
        learn(first);
        assert!(known(first));
        forget(first);
        assert!(!known(first));
        learn(first);
        for i in 0..SLOTS as u64 {
            learn(name_hash(format!("/x/{i}").as_bytes()));
        }
        assert!(!known(first), "the oldest name makes room");
        assert!(known(name_hash(b"/x/0")) && !known(0));
    }
}
