//! What nvmmio does with one system call. Today: forward it, or run it and trace it; the engine
//! will plug in here. Raw registers are turned into decisions once, in this file.

use nvmmio_core::sys::{self, syscall6_cancellable, Errno};

use crate::{fd_table, process, reserved_fd, tracer};

/// The hook's answer for one call.
pub enum Action {
    /// The call is done; this is its result (`-errno` on failure).
    Return(isize),
    /// Let syscall_intercept hand the call to the kernel unchanged.
    Forward,
    /// Issue the call now, outside the panic fence and with the guard lowered (it may block, be
    /// interrupted by a signal whose handler makes calls, or be cancelled by `pthread_cancel`,
    /// which unwinds the thread through this frame), then hand the result to [`finish`].
    Run(Pending),
}

/// What [`finish`] needs to report a call that ran.
pub struct Pending {
    start: u64,
    exec: bool,
}

/// Calls the dispatcher must see whenever tracing is on, whatever the filter says.
pub const ALWAYS_WHILE_TRACING: [i64; 10] = [
    libc::SYS_clone,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit_group,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_dup2,
    libc::SYS_dup3,
];

pub fn dispatch(nr: usize, args: [usize; 6]) -> Action {
    if crate::SETTINGS.get().and_then(|s| s.test_panic_in) == Some(nr) {
        panic!(
            "injected failure in {} (NVMMIO_TEST_PANIC_IN)",
            nvmmio_core::trace::names::NAMES[nr]
        );
    }
    fd_table::before_call(nr, args);
    let tracer = tracer::get();
    match nr as i64 {
        // syscall_intercept cannot give a clone3 child its own stack safely; glibc falls back
        // to clone when clone3 is missing.
        libc::SYS_clone3 => {
            let result = Errno(libc::ENOSYS).to_raw();
            if let Some(t) = tracer {
                t.completed(nr, args, result, 0);
            }
            Action::Return(result)
        }
        _ => match tracer {
            Some(t) => traced(t, nr, args),
            None => Action::Forward,
        },
    }
}

/// Decides how a traced call runs, and reports calls that do not come back.
fn traced(t: &tracer::Tracer, nr: usize, args: [usize; 6]) -> Action {
    match nr as i64 {
        libc::SYS_clone | libc::SYS_fork | libc::SYS_vfork => process::fork_or_clone(t, nr, args),
        libc::SYS_execve | libc::SYS_execveat => {
            t.before_exec(nr, args);
            Action::Run(Pending {
                start: sys::monotonic_ns(),
                exec: true,
            })
        }
        libc::SYS_exit_group | libc::SYS_exit | libc::SYS_rt_sigreturn => {
            t.no_return(nr, args);
            if nr as i64 == libc::SYS_exit_group {
                t.at_exit();
            }
            Action::Forward
        }
        _ => match reserved_fd::protect(nr, args) {
            Some(result) => {
                t.completed(nr, args, result, 0);
                Action::Return(result)
            }
            None => Action::Run(Pending {
                start: sys::monotonic_ns(),
                exec: false,
            }),
        },
    }
}

/// Reports a call that [`Action::Run`] issued.
pub fn finish(nr: usize, args: [usize; 6], result: isize, pending: Pending) {
    let Some(t) = tracer::get() else { return };
    if pending.exec {
        // Only a failed exec comes back.
        t.exec_failed(nr, result);
    } else {
        t.completed(nr, args, result, sys::monotonic_ns() - pending.start);
    }
}

/// Issues the program's call to the kernel, unchanged.
pub fn run(nr: usize, args: [usize; 6]) -> isize {
    // SAFETY: these are the program's own arguments for its own call, exactly as libc was about
    // to pass them; calls that need syscall_intercept's special handling (clone with a new stack,
    // vfork, rt_sigreturn) never reach here.
    #[allow(unsafe_code)]
    unsafe {
        syscall6_cancellable(nr, args)
    }
}
