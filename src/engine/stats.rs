//! Process-wide engine counters, for the exit summary (`nvmmio run --stats`). The data path
//! counts only when the summary was asked for ([`enable`]): every count stores into cache lines
//! all threads share, which threads writing at once would pass back and forth on every call.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns counting on (the exit summary was asked for).
pub fn enable() {
    ENABLED.store(true, Relaxed);
}

pub static BYTES_LOGGED: AtomicU64 = AtomicU64::new(0);
/// Bytes written straight into data files (past the committed size).
pub static BYTES_IN_PLACE: AtomicU64 = AtomicU64::new(0);
pub static BLOCKS_LOGGED: AtomicU64 = AtomicU64::new(0);
/// Undo logging: blocks whose old contents were saved before a write in place.
pub static BLOCKS_UNDO_SAVED: AtomicU64 = AtomicU64::new(0);
/// Changes between redo and undo logging (hybrid policy).
pub static LOGGING_SWITCHES: AtomicU64 = AtomicU64::new(0);
/// Committed blocks copied into data files at fsync (for processes that read through the
/// kernel).
pub static BLOCKS_PUBLISHED: AtomicU64 = AtomicU64::new(0);
/// Writes served with the file shared with other threads (`ManagedFile::write_shared`).
pub static WRITES_SHARED: AtomicU64 = AtomicU64::new(0);
pub static COMMITS: AtomicU64 = AtomicU64::new(0);
pub static CHECKPOINTS: AtomicU64 = AtomicU64::new(0);
/// Checkpoints whose blocks the checkpoint thread wrote.
pub static CHECKPOINTS_IN_BACKGROUND: AtomicU64 = AtomicU64::new(0);
pub static RECOVERED_RECORDS: AtomicU64 = AtomicU64::new(0);
/// Files left to the kernel because their log was found damaged at open.
pub static DAMAGED_LOGS: AtomicU64 = AtomicU64::new(0);
/// Files left to the kernel because their mark names a log that no longer exists.
pub static LOST_LOGS: AtomicU64 = AtomicU64::new(0);
/// Largest log seen in use, in bytes.
pub static LOG_PEAK: AtomicU64 = AtomicU64::new(0);

pub fn note_log_used(bytes: u64) {
    if ENABLED.load(Relaxed) && bytes > LOG_PEAK.load(Relaxed) {
        LOG_PEAK.store(bytes, Relaxed);
    }
}

/// Adds `n` to a counter, if counting is on, without a locked instruction: the data path
/// counts every call and block, and a locked add waits for every store before it (the block
/// just copied) to complete. Threads counting at the same instant may lose a count
/// (statistics only).
#[inline]
pub fn count(counter: &AtomicU64, n: u64) {
    if ENABLED.load(Relaxed) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }
}

/// `12.3 MiB` style.
pub fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// The engine's part of the summary line.
pub fn summary() -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "{} logged in {} blocks ({} writes sharing the file with other threads), {} blocks saved for undo, {} written in place, {} logging switches, {} commits, {} checkpoints ({} in the background), {} blocks published at commit, log peak {}, {} records recovered",
        human(BYTES_LOGGED.load(Relaxed)),
        BLOCKS_LOGGED.load(Relaxed),
        WRITES_SHARED.load(Relaxed),
        BLOCKS_UNDO_SAVED.load(Relaxed),
        human(BYTES_IN_PLACE.load(Relaxed)),
        LOGGING_SWITCHES.load(Relaxed),
        COMMITS.load(Relaxed),
        CHECKPOINTS.load(Relaxed),
        CHECKPOINTS_IN_BACKGROUND.load(Relaxed),
        BLOCKS_PUBLISHED.load(Relaxed),
        human(LOG_PEAK.load(Relaxed)),
        RECOVERED_RECORDS.load(Relaxed)
    );
    let damaged = DAMAGED_LOGS.load(Relaxed);
    if damaged > 0 {
        let _ = write!(s, ", {damaged} files left to the kernel with a damaged log (see `nvmmio recover`)");
    }
    let lost = LOST_LOGS.load(Relaxed);
    if lost > 0 {
        let _ = write!(s, ", {lost} files left to the kernel with a lost log (see `nvmmio recover`)");
    }
    s
}
