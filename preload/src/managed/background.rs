//! The checkpoint thread: it applies logs frozen by
//! [`ManagedFile::begin_background_checkpoint`](nvmmio_core::engine::ManagedFile) to their data
//! files while the program goes on writing into each file's second log, so that the second copy
//! of every logged block is made on another core.
//!
//! One thread per process, started the first time a checkpoint is due, with every signal
//! blocked. It takes no lock the program's threads hold while they wait for it: a thread that
//! needs a frozen log back (a synchronous checkpoint, a truncate, close, exit, fork) cancels
//! the job and waits only until the worker lets go of the log, which it does before it takes
//! the file's lock to finish.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use nvmmio_core::engine::Frozen;
use nvmmio_core::persist::{LogFile, Mapping};
use nvmmio_core::sys;

use super::table::{Inode, State};
use crate::usercopy;

enum Job {
    /// Apply a frozen log.
    Apply {
        inode: Arc<Inode>,
        /// Weak: a job the engine took back (and applied itself) is skipped.
        frozen: Weak<Frozen<LogFile>>,
        /// The data file's descriptor (the engine's own; open while the frozen log is alive).
        fd: i32,
        /// Bytes below this may be stored through a mapping (tmpfs: the data file's length
        /// when the log was frozen; it cannot shrink before the engine takes the log back).
        /// 0: every store is a `pwritev`.
        direct_to: u64,
    },
    /// Void a retired log (its file is gone) and pool it (see `managed::pool_voided`).
    Void { dir: String, path: std::ffi::CString, log: LogFile },
}

static QUEUE: Mutex<VecDeque<Job>> = Mutex::new(VecDeque::new());
static WAKE: Condvar = Condvar::new();
static STARTED: AtomicBool = AtomicBool::new(false);
/// The worker is voiding a retired log.
static VOIDING: AtomicBool = AtomicBool::new(false);

fn queue() -> MutexGuard<'static, VecDeque<Job>> {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands a frozen log to the worker (started now if need be). False if no worker could be
/// started: the caller applies it itself.
pub fn submit(inode: &Arc<Inode>, frozen: &Arc<Frozen<LogFile>>, fd: i32, direct_to: u64) -> bool {
    if !start() {
        return false;
    }
    queue().push_back(Job::Apply { inode: inode.clone(), frozen: Arc::downgrade(frozen), fd, direct_to });
    WAKE.notify_one();
    true
}

/// Waits (at most a second) until the worker has applied `job`: a writer that outran it (see
/// `ManagedFile::background_behind`). The worker never waits for the writer's lock, which the
/// caller holds.
pub fn wait_applied(job: Arc<Frozen<LogFile>>) {
    let start = sys::monotonic_ns();
    while !job.is_applied() {
        let waited = sys::monotonic_ns() - start;
        if waited > 1_000_000_000 {
            break;
        }
        // Most waits are short (the rest of one job): yield first, then sleep.
        if waited < 2_000_000 {
            std::thread::yield_now();
        } else {
            sys::sleep_ms(1);
        }
    }
}

/// Hands a retired log to the worker, to be voided and pooled; `Err` gives it back if no
/// worker could be started.
pub fn submit_void(dir: &str, path: std::ffi::CString, log: LogFile) -> Result<(), LogFile> {
    if !start() {
        return Err(log);
    }
    queue().push_back(Job::Void { dir: dir.to_string(), path, log });
    WAKE.notify_one();
    Ok(())
}

/// At exit or exec: retired logs still waiting are removed.
pub fn remove_retired() {
    let retired: Vec<Job> = {
        let mut q = queue();
        let (void, apply): (VecDeque<Job>, VecDeque<Job>) = q.drain(..).partition(|j| matches!(j, Job::Void { .. }));
        *q = apply;
        void.into_iter().collect()
    };
    for job in retired {
        if let Job::Void { path, .. } = job {
            let _ = sys::unlink(&path);
        }
    }
    // One in the worker's hands: it removes it (the process is leaving); wait for that, so
    // that no log outlives the process (a few milliseconds at most: one sync).
    for _ in 0..10_000 {
        if !VOIDING.load(Acquire) {
            break;
        }
        sys::sleep_ms(1);
    }
}

/// Starts the worker if it is not running; whether it runs.
fn start() -> bool {
    if !STARTED.load(Relaxed) {
        let builder = std::thread::Builder::new().name("nvmmio-checkpoint".into()).stack_size(256 << 10);
        let spawned = super::spawn_quiet(builder, worker);
        if spawned.is_err() {
            return false;
        }
        STARTED.store(true, Relaxed);
    }
    true
}

fn worker() {
    let _inside = crate::guard::enter();
    // A fault in a fault-safe store must reach its handler: a blocked SIGSEGV or SIGBUS
    // would kill the process instead. (Only faults this thread makes are sent to it.)
    let faults = (1u64 << (libc::SIGSEGV - 1)) | (1u64 << (libc::SIGBUS - 1));
    let _ = sys::set_signal_mask(!faults);
    loop {
        let job = {
            let mut q = queue();
            loop {
                match q.pop_front() {
                    Some(job) => {
                        // Taken with the queue's lock: `remove_retired` sees the job queued or
                        // in hand.
                        VOIDING.store(matches!(job, Job::Void { .. }), Relaxed);
                        break job;
                    }
                    None => q = WAKE.wait(q).unwrap_or_else(|p| p.into_inner()),
                }
            }
        };
        let (inode, frozen, fd, direct_to) = match job {
            Job::Apply { inode, frozen, fd, direct_to } => (inode, frozen, fd, direct_to),
            Job::Void { dir, path, log } => {
                super::pool_voided(dir, path, log);
                VOIDING.store(false, Release);
                continue;
            }
        };
        if let Some(frozen) = frozen.upgrade() {
            let mut view = inode.checkpoint_view.lock().unwrap_or_else(|p| p.into_inner());
            let direct = ensure_view(&mut view, fd, direct_to);
            frozen.apply(&mut |offset, pieces| {
                let end = offset + pieces.iter().map(|p| p.len() as u64).sum::<u64>();
                match direct {
                    Some(base) if end <= direct_to && store(base + offset as usize, pieces) => Ok(()),
                    _ => sys::pwritev_all(fd, pieces, offset),
                }
            });
            // The view's lock goes before the log: whoever waits for the log may want it next.
            drop(view);
        }
        // Let go of the log before taking the file's lock: its owner may be waiting for that.
        // Only a free lock: a thread that holds it nearly always (large writes back to back)
        // would starve this one, and the log would fill meanwhile. The program's next write
        // takes the applied log back instead (`take_back_applied`).
        if let Ok(mut state) = inode.state.try_write() {
            if let State::Engine(engine) = &mut *state {
                let _ = engine.finish_background_checkpoint(frozen.as_ptr());
            }
        };
    }
}

/// The address of the thread's mapping of the data file, made or grown to cover `[0, len)`
/// (`None`: no direct stores for this job). A store of one block through the mapping costs a
/// third of a `pwritev` of it (no page cache lookup, no system call), which lets this thread
/// keep up with a program writing random blocks on the other core. Kept across jobs: its page
/// table entries are made once per page.
fn ensure_view(view: &mut Option<Mapping>, fd: i32, len: u64) -> Option<usize> {
    if len == 0 {
        return None;
    }
    if view.as_ref().is_none_or(|m| (m.len() as u64) < len) {
        view.take();
        let size = (len as usize).next_power_of_two();
        *view = Mapping::map(fd, size, false, false).ok();
    }
    view.as_ref().map(|m| m.base_addr())
}

/// Copies `pieces` one after the other to `addr` in the mapping; false if a store faulted (the
/// file was cut by a process without nvmmio, say): the caller writes them with `pwritev`.
fn store(mut addr: usize, pieces: &[&[u8]]) -> bool {
    for piece in pieces {
        if usercopy::copy_to_user(addr, piece).is_err() {
            return false;
        }
        addr += piece.len();
    }
    true
}

/// The queue, locked across a fork: the child must not inherit it locked by the worker.
pub struct QueueHeld(MutexGuard<'static, VecDeque<Job>>);

pub fn hold() -> QueueHeld {
    QueueHeld(queue())
}

/// In a forked child: there is no worker (threads do not survive a fork) and the jobs were
/// the parent's.
pub fn forget_in_child(mut held: QueueHeld) {
    held.0.clear();
    STARTED.store(false, Relaxed);
    VOIDING.store(false, Relaxed);
}
