//! Files whose last descriptor closed but which stay served, their logs kept
//! (`NVMMIO_KEEP_CLOSED`): a file closed and then unlinked (SQLite's rollback journal, every
//! transaction) is never checkpointed, its log is voided; one opened again by this process is
//! not set up again.
//!
//! At its close a kept file is committed and its data copied into the data file at its size
//! (not synced: the log keeps it durable), so a reader through the kernel sees what it would
//! after a close. At most `NVMMIO_KEEP_CLOSED` files are kept, none for longer than
//! [`KEPT_NS`] once another file closes: the oldest is finished as usual
//! (checkpointed, its log pooled). Exit, exec, fork and a file size limit finish them all;
//! another process that opens one asks for it as for any served file.

use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use nvmmio_core::sys;

use super::table::{self, Inode, State};

/// A kept file.
struct Kept {
    inode: Arc<Inode>,
    /// When it closed (monotonic ns).
    at: u64,
    /// Its data file's size and change time then: changed since, a process without nvmmio
    /// wrote it.
    seen: (i64, i64, i64),
}

/// Kept files, oldest first.
static CLOSED: Mutex<Vec<Kept>> = Mutex::new(Vec::new());
/// `CLOSED.len()`, read without the lock on every unlink and rename.
static COUNT: AtomicUsize = AtomicUsize::new(0);
/// A kept file is finished once it has been closed this long (and something else happens).
const KEPT_NS: u64 = 1_000_000_000;

fn list() -> std::sync::MutexGuard<'static, Vec<Kept>> {
    CLOSED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether any file is kept (cheap: checked before every unlink and rename).
pub fn any() -> bool {
    COUNT.load(Relaxed) > 0
}

/// Whether the data file has lost its last name (its log then matters to no one).
fn unlinked(inode: &Inode) -> bool {
    match &*inode.read() {
        State::Engine(engine) => sys::fstat(engine.data().raw_fd()).is_ok_and(|st| st.st_nlink == 0),
        State::Kernel => false,
    }
}

/// The last descriptor of `inode` was closed (the opening lock held): whether the file stays
/// served. A file already unlinked has its log voided; otherwise it is kept if the setting
/// allows and it could be published.
pub fn on_last_close(inode: &Arc<Inode>, limit: usize) -> bool {
    if unlinked(inode) {
        super::discard_locked(inode, &mut inode.lock(), true);
        return false;
    }
    if limit == 0 {
        return false;
    }
    let seen = {
        let mut state = inode.lock();
        let State::Engine(engine) = &mut *state else { return false };
        match engine.publish_for_close().and_then(|()| sys::fstat(engine.data().raw_fd())) {
            Ok(st) => stamp(&st),
            Err(_) => return false,
        }
    };
    let now = sys::monotonic_ns();
    let mut kept = list();
    kept.push(Kept { inode: inode.clone(), at: now, seen });
    // The oldest go: past the limit, closed too long ago, or handed to the kernel meanwhile
    // (another process opened it).
    let mut gone = Vec::new();
    kept.retain(|k| {
        let keep = matches!(&*k.inode.read(), State::Engine(_)) && now.saturating_sub(k.at) < KEPT_NS;
        if !keep {
            gone.push(k.inode.clone());
        }
        keep
    });
    while kept.len() > limit {
        gone.push(kept.remove(0).inode);
    }
    COUNT.store(kept.len(), Relaxed);
    drop(kept);
    for inode in gone {
        super::forget(&inode);
    }
    true
}

fn stamp(st: &libc::stat) -> (i64, i64, i64) {
    (st.st_size, st.st_ctime, st.st_ctime_nsec)
}

/// The program opens file `inode` (the opening lock held): a kept file is no longer closed.
/// False if it was kept and another process changed it through the kernel meanwhile: it is
/// finished and forgotten (everything of ours was in the data file already, so nothing of
/// theirs is overwritten), and the caller sets it up anew.
pub fn reopened(inode: &Arc<Inode>) -> bool {
    if !any() {
        return true;
    }
    let mut kept = list();
    let Some(i) = kept.iter().position(|k| Arc::ptr_eq(&k.inode, inode)) else { return true };
    let k = kept.remove(i);
    COUNT.store(kept.len(), Relaxed);
    drop(kept);
    let unchanged = match &*inode.read() {
        State::Engine(engine) => sys::fstat(engine.data().raw_fd()).is_ok_and(|st| stamp(&st) == k.seen),
        State::Kernel => true,
    };
    if !unchanged {
        super::forget(inode);
    }
    unchanged
}

/// After an unlink or a rename (`renamed`; it may replace a file): kept files that lost their
/// last name have their logs voided, unapplied. A file a rename replaced did not die young (it
/// was renamed to the name it lost after its own birth).
pub fn after_names_changed(renamed: bool) {
    let _opening = super::OPENING.lock().unwrap_or_else(|p| p.into_inner());
    let gone: Vec<Arc<Inode>> = {
        let mut kept = list();
        let mut gone = Vec::new();
        kept.retain(|k| {
            let keep = !unlinked(&k.inode);
            if !keep {
                gone.push(k.inode.clone());
            }
            keep
        });
        COUNT.store(kept.len(), Relaxed);
        gone
    };
    for inode in gone {
        if !table::inode_in_use(&inode) {
            super::discard_locked(&inode, &mut inode.lock(), !renamed);
            super::forget(&inode);
        }
    }
}

/// Finishes every kept file (the opening lock held): exit, exec, fork, a file size limit.
pub fn forget_all_held() {
    let kept = std::mem::take(&mut *list());
    COUNT.store(0, Relaxed);
    for k in kept {
        if !table::inode_in_use(&k.inode) {
            super::forget(&k.inode);
        }
    }
}

/// [`forget_all_held`], taking the opening lock.
pub fn forget_all() {
    if any() {
        let _opening = super::OPENING.lock().unwrap_or_else(|p| p.into_inner());
        forget_all_held();
    }
}
