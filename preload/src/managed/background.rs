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
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

use nvmmio_core::engine::Frozen;
use nvmmio_core::persist::LogFile;
use nvmmio_core::sys;

use super::table::{Inode, State};

struct Job {
    inode: Arc<Inode>,
    /// Weak: a job the engine took back (and applied itself) is skipped.
    frozen: Weak<Frozen<LogFile>>,
    /// The data file's descriptor (the engine's own; open while the frozen log is alive).
    fd: i32,
}

static QUEUE: Mutex<VecDeque<Job>> = Mutex::new(VecDeque::new());
static WAKE: Condvar = Condvar::new();
static STARTED: AtomicBool = AtomicBool::new(false);

fn queue() -> MutexGuard<'static, VecDeque<Job>> {
    QUEUE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Hands a frozen log to the worker (started now if need be). False if no worker could be
/// started: the caller applies it itself.
pub fn submit(inode: &Arc<Inode>, frozen: &Arc<Frozen<LogFile>>, fd: i32) -> bool {
    if !STARTED.load(Relaxed) {
        let builder = std::thread::Builder::new().name("nvmmio-checkpoint".into()).stack_size(256 << 10);
        let spawned = super::spawn_quiet(builder, worker);
        if spawned.is_err() {
            return false;
        }
        STARTED.store(true, Relaxed);
    }
    queue().push_back(Job { inode: inode.clone(), frozen: Arc::downgrade(frozen), fd });
    WAKE.notify_one();
    true
}

fn worker() {
    let _inside = crate::guard::enter();
    loop {
        let job = {
            let mut q = queue();
            loop {
                match q.pop_front() {
                    Some(job) => break job,
                    None => q = WAKE.wait(q).unwrap_or_else(|p| p.into_inner()),
                }
            }
        };
        if let Some(frozen) = job.frozen.upgrade() {
            frozen.apply(&mut |offset, pieces| sys::pwritev_all(job.fd, pieces, offset));
        }
        // Let go of the log before taking the file's lock: its owner may be waiting for that.
        let mut state = job.inode.lock();
        if let State::Engine(engine) = &mut *state {
            let _ = engine.finish_background_checkpoint(job.frozen.as_ptr());
        }
    }
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
}
