//! Process and thread life cycle: cached ids, fork children, vfork and posix_spawn children
//! that borrow our memory, and clones that syscall_intercept runs on a new stack (their result
//! arrives later, in `clone_parent`).

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use nvmmio_core::sys;

use crate::dispatch::{run, Action};
use crate::tracer::{self, Tracer};

#[derive(Clone, Copy)]
struct PendingClone {
    args: [usize; 6],
    start: u64,
    /// The tracer wants the result.
    report: bool,
}

/// A vfork handed to syscall_intercept (which always runs vfork itself). The child borrows this
/// thread's memory, thread-locals included, until it execs or exits; the parent gets no callback.
#[derive(Clone, Copy)]
struct PendingVfork {
    parent_pid: i32,
    /// The child's pid, noted by the child itself (it writes our shared thread-locals).
    child_pid: i32,
    start: u64,
}

thread_local! {
    /// (pid, tid) of this thread, 0 when not yet known or possibly stale.
    static IDS: Cell<(i32, i32)> = const { Cell::new((0, 0)) };
    /// A clone handed to syscall_intercept, waiting for its result.
    static PENDING: Cell<Option<PendingClone>> = const { Cell::new(None) };
    static VFORK: Cell<Option<PendingVfork>> = const { Cell::new(None) };
    /// Set while posix_spawn's child runs on our thread-locals.
    static BORROWED: Cell<bool> = const { Cell::new(false) };
}

/// Threads with `VFORK` or `BORROWED` set: while none has, [`is_borrowed`] (asked on every call)
/// reads no thread-local (in a shared library each read is a call into the dynamic linker).
static BORROWING: AtomicUsize = AtomicUsize::new(0);

/// Whether this code runs in a child that borrows the parent's memory (vfork, posix_spawn)
/// until it execs or exits: it must not touch the parent's engine state. When the parent is
/// seen running again, a pending vfork is reported.
pub fn is_borrowed() -> bool {
    if BORROWING.load(Relaxed) == 0 {
        return false;
    }
    if BORROWED.with(Cell::get) {
        return true;
    }
    let Some(mut v) = VFORK.with(Cell::get) else {
        return false;
    };
    let pid = sys::getpid();
    if pid != v.parent_pid {
        if v.child_pid == 0 {
            v.child_pid = pid;
            VFORK.with(|c| c.set(Some(v)));
        }
        return true;
    }
    VFORK.with(|c| c.set(None));
    BORROWING.fetch_sub(1, Relaxed);
    forget_ids();
    if let Some(t) = tracer::get() {
        let result = if v.child_pid > 0 { v.child_pid as isize } else { -(libc::EAGAIN as isize) };
        t.completed(libc::SYS_vfork as usize, [0; 6], result, sys::monotonic_ns() - v.start);
    }
    false
}

/// The calling thread's process and thread ids, cached per thread (looked up afresh while a
/// vfork child may be running on our thread-locals).
pub fn ids() -> (i32, i32) {
    if is_borrowed() {
        return (sys::getpid(), sys::gettid());
    }
    IDS.with(|ids| {
        let (pid, tid) = ids.get();
        if pid != 0 {
            return (pid, tid);
        }
        let fresh = (sys::getpid(), sys::gettid());
        ids.set(fresh);
        fresh
    })
}

fn forget_ids() {
    IDS.with(|ids| ids.set((0, 0)));
}

/// clone, fork and vfork (while tracing or managing files).
pub fn fork_or_clone(t: Option<&Tracer>, nr: usize, args: [usize; 6]) -> Action {
    if nr as i64 == libc::SYS_vfork {
        is_borrowed();
        let parent_pid = sys::getpid();
        let pending = PendingVfork { parent_pid, child_pid: 0, start: sys::monotonic_ns() };
        if VFORK.with(|c| c.replace(Some(pending))).is_none() {
            BORROWING.fetch_add(1, Relaxed);
        }
        return Action::Forward;
    }
    let flags = if nr as i64 == libc::SYS_clone { args[0] as u64 } else { 0 };
    let new_stack = nr as i64 == libc::SYS_clone && args[1] != 0;
    if new_stack || flags & libc::CLONE_VM as u64 != 0 {
        // A thread or a child sharing our memory: only syscall_intercept's wrapper can start it
        // on its own stack. The result comes back in `clone_parent`.
        let report = t.is_some_and(|t| t.wants(nr));
        PENDING.with(|p| p.set(Some(PendingClone { args, start: sys::monotonic_ns(), report })));
        return Action::Forward;
    }
    // A plain fork: it returns twice, here.
    let start = sys::monotonic_ns();
    let result = run(nr, args);
    let nanos = sys::monotonic_ns() - start;
    if result == 0 {
        after_fork_in_child(t);
    } else if let Some(t) = t {
        t.completed(nr, args, result, nanos);
    }
    Action::Return(result)
}

/// In a forked child, still inside glibc's fork (malloc's locks are held: nothing here may
/// allocate; the managed files are handed over by the pthread_atfork child handler).
fn after_fork_in_child(t: Option<&Tracer>) {
    forget_ids();
    if let Some(t) = t {
        t.after_fork();
    }
}

/// In the child of a clone started on a new stack.
pub fn clone_child() {
    // Read, not take: posix_spawn's child shares our thread-locals, and the parent still needs
    // the pending call to report it. A thread has fresh thread-locals (nothing pending).
    let Some(p) = PENDING.with(Cell::get) else {
        forget_ids();
        return;
    };
    forget_ids();
    let flags = p.args[0] as u64;
    if flags & libc::CLONE_VM as u64 != 0 && flags & libc::CLONE_THREAD as u64 == 0 {
        if !BORROWED.with(|b| b.replace(true)) {
            BORROWING.fetch_add(1, Relaxed);
        }
    } else if flags & libc::CLONE_VM as u64 == 0 {
        // A fork on a new stack: its own memory.
        after_fork_in_child(tracer::get());
    }
}

/// In the parent of a clone started on a new stack.
pub fn clone_parent(result: isize) {
    // posix_spawn's child ran on our thread-locals until it exec'd: refresh them.
    if BORROWED.with(|b| b.replace(false)) {
        BORROWING.fetch_sub(1, Relaxed);
    }
    forget_ids();
    if let (Some(p), Some(t)) = (PENDING.with(Cell::take), tracer::get()) {
        if p.report {
            t.completed(libc::SYS_clone as usize, p.args, result, sys::monotonic_ns() - p.start);
        }
    }
}
