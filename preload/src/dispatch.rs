//! What nvmmio does with one system call. Today: forward it, or run it and trace it; the engine
//! will plug in here. Raw registers are turned into decisions once, in this file.

use nvmmio_core::sys::{self, syscall6, Errno};

use crate::guard::{self, Guard};
use crate::{process, reserved_fd, tracer};

/// The hook's answer for one call.
pub enum Action {
    /// The call is done; this is its result (`-errno` on failure).
    Return(isize),
    /// Let syscall_intercept hand the call to the kernel unchanged.
    Forward,
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

pub fn dispatch(nr: usize, args: [usize; 6], inside: &Guard) -> Action {
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
            Some(t) => traced(t, nr, args, inside),
            None => Action::Forward,
        },
    }
}

/// Runs a call on behalf of the program and reports it to the tracer.
fn traced(t: &tracer::Tracer, nr: usize, args: [usize; 6], inside: &Guard) -> Action {
    match nr as i64 {
        libc::SYS_clone | libc::SYS_fork | libc::SYS_vfork => process::fork_or_clone(t, nr, args),
        libc::SYS_execve | libc::SYS_execveat => {
            t.before_exec(nr, args);
            let result = guard::lowered(inside, || run(nr, args));
            // Only a failed exec comes back here.
            t.exec_failed(nr, result);
            Action::Return(result)
        }
        libc::SYS_exit_group | libc::SYS_exit | libc::SYS_rt_sigreturn => {
            t.no_return(nr, args);
            if nr as i64 == libc::SYS_exit_group {
                t.at_exit();
            }
            Action::Forward
        }
        _ => {
            let start = sys::monotonic_ns();
            let result = match reserved_fd::protect(nr, args) {
                Some(result) => result,
                None => run(nr, args),
            };
            t.completed(nr, args, result, sys::monotonic_ns() - start);
            Action::Return(result)
        }
    }
}

/// Issues the program's call to the kernel, unchanged.
pub fn run(nr: usize, args: [usize; 6]) -> isize {
    // SAFETY: these are the program's own arguments for its own call, exactly as libc was about
    // to pass them; calls that need syscall_intercept's special handling (clone with a new stack,
    // vfork, rt_sigreturn) never reach here.
    #[allow(unsafe_code)]
    unsafe {
        syscall6(nr, args)
    }
}
