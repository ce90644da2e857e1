//! The entry point for every system call libc makes, in this order: early filter (calls nvmmio
//! does not look at go to the kernel at once), reentrancy guard, errno saved, dispatch behind a
//! panic fence, errno restored. A panic never unwinds into the program: the call is forwarded.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use nvmmio_core::config::{Mode, Settings};
use nvmmio_core::trace::names::SYSCALL_COUNT;
use syscall_intercept::InterceptResult;

use crate::dispatch::{self, Action};
use crate::{fd_table, ffi, guard, process};

const WORDS: usize = SYSCALL_COUNT.div_ceil(64);

/// Bit set of the call numbers that [`dispatch`] wants to see; everything else is forwarded
/// without touching thread-local state.
static EARLY: [AtomicU64; WORDS] = [const { AtomicU64::new(0) }; WORDS];
/// Whether numbers beyond the table (newer kernels) are dispatched too.
static EARLY_UNKNOWN: AtomicBool = AtomicBool::new(false);
/// Whether every `fcntl` is dispatched (tracing it), or only the commands that make or change
/// descriptors (see [`fcntl_wanted`]): not the record locks SQLite takes several times a
/// transaction.
static EVERY_FCNTL: AtomicBool = AtomicBool::new(false);

fn early_insert(nr: i64) {
    let nr = nr as usize;
    EARLY[nr / 64].fetch_or(1 << (nr % 64), Relaxed);
}

#[inline(always)]
fn early_wants(nr: usize) -> bool {
    match EARLY.get(nr / 64) {
        Some(word) => word.load(Relaxed) & (1 << (nr % 64)) != 0,
        None => EARLY_UNKNOWN.load(Relaxed),
    }
}

/// Fills the early filter from the settings.
pub fn init_filter(settings: &Settings) {
    // Always: glibc must fall back from clone3 to clone, which syscall_intercept can hook; and
    // the descriptor table must hear of every close.
    early_insert(libc::SYS_clone3);
    for nr in fd_table::INVALIDATING {
        early_insert(nr);
    }
    if crate::managed::active() {
        for &nr in crate::managed::WATCHED {
            early_insert(nr);
        }
    }
    if let Some(nr) = settings.test_panic_in {
        early_insert(nr as i64);
        EVERY_FCNTL.fetch_or(nr as i64 == libc::SYS_fcntl, Relaxed);
    }
    if settings.mode == Mode::Trace {
        EVERY_FCNTL.fetch_or(settings.trace.filter.contains(libc::SYS_fcntl as usize), Relaxed);
        for nr in 0..SYSCALL_COUNT {
            if settings.trace.filter.contains(nr) {
                early_insert(nr as i64);
            }
        }
        // Process bookkeeping (per-process output, counters) and nvmmio's own descriptor.
        for nr in dispatch::ALWAYS_WHILE_TRACING {
            early_insert(nr);
        }
        EARLY_UNKNOWN.store(settings.trace.filter.contains(usize::MAX), Relaxed);
    }
}

/// syscall_intercept's hook: `InterceptResult::Hook` with `*result` set, or `Forward`.
/// C-unwind: a thread cancelled while blocked in a call we issued unwinds through here.
#[allow(clippy::too_many_arguments)]
pub extern "C-unwind" fn entry(
    nr: isize,
    a0: isize,
    a1: isize,
    a2: isize,
    a3: isize,
    a4: isize,
    a5: isize,
    result: &mut isize,
) -> InterceptResult {
    let args = [a0, a1, a2, a3, a4, a5].map(|a| a as usize);
    match handle(nr as usize, args) {
        Some(value) => {
            *result = value;
            InterceptResult::Hook
        }
        None => InterceptResult::Forward,
    }
}

/// The common path of the hook and the fast symbols: `Some(result)` when nvmmio ran the call,
/// `None` when it should simply go to the kernel.
#[inline(always)]
pub fn handle(nr: usize, args: [usize; 6]) -> Option<isize> {
    if !early_wants(nr) || (nr == libc::SYS_fcntl as usize && !fcntl_wanted(args[1] as i32)) {
        return None;
    }
    handle_wanted(nr, args)
}

/// Whether the dispatcher must see `fcntl` command `cmd`: the managed files' descriptor table
/// follows duplicates and status flags; the rest (locks, descriptor flags...) is the kernel's.
#[inline(always)]
fn fcntl_wanted(cmd: i32) -> bool {
    matches!(cmd, libc::F_DUPFD | libc::F_DUPFD_CLOEXEC | libc::F_SETFL) || EVERY_FCNTL.load(Relaxed)
}

#[inline(never)]
fn handle_wanted(nr: usize, args: [usize; 6]) -> Option<isize> {
    let Some(inside) = guard::enter() else {
        // nvmmio's own calls go to the kernel, except clone3, which glibc must not get even
        // then (nvmmio starting its checkpoint thread): its child would crash.
        return (nr == libc::SYS_clone3 as usize).then_some(-(libc::ENOSYS as isize));
    };
    // A handler of the program's that this thread left with siglongjmp is over if this frame
    // is above its trampoline's (nvmmio allocates from glibc again).
    let frame = 0u8;
    crate::handler_alloc::note_entry(std::hint::black_box(&frame) as *const u8 as usize);
    let saved_errno = ffi::errno();
    let action = catch_unwind(AssertUnwindSafe(|| dispatch::dispatch(nr, args)));
    let result = match action {
        Ok(Action::Return(value)) => Some(value),
        Ok(Action::Forward) | Err(_) => None,
        Ok(Action::Run(pending)) => {
            // Outside the fence: catch_unwind would turn a pthread_cancel unwind into an abort.
            let value = guard::lowered(&inside, || dispatch::run(nr, args));
            let finished = catch_unwind(AssertUnwindSafe(|| dispatch::finish(nr, args, value, pending)));
            Some(finished.unwrap_or(value))
        }
    };
    ffi::set_errno(saved_errno);
    result
}

/// In the child of a `clone` with a new stack (a thread, or posix_spawn's child).
pub extern "C" fn clone_child() {
    if let Some(_inside) = guard::enter() {
        let _ = catch_unwind(process::clone_child);
    }
}

/// In the parent of a `clone` with a new stack, with the kernel's result.
pub extern "C" fn clone_parent(result: libc::c_long) {
    if let Some(_inside) = guard::enter() {
        let _ = catch_unwind(|| process::clone_parent(result as isize));
    }
}

static REPORTED: AtomicBool = AtomicBool::new(false);

/// Replaces the default panic message: one line on stderr, the first time only.
pub fn install_panic_reporter() {
    std::panic::set_hook(Box::new(|info| {
        if !REPORTED.swap(true, Relaxed) {
            let what = info
                .payload()
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| info.payload().downcast_ref::<String>().map(String::as_str))
                .unwrap_or("panic");
            let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
            let msg = format!("nvmmio: internal error{place}: {what}; calls are passed to the kernel\n");
            let _ = nvmmio_core::sys::write_all(2, msg.as_bytes());
        }
    }));
}
