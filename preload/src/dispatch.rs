//! What nvmmio does with one system call: protect its own descriptors, let the engine serve
//! calls on managed files, keep process bookkeeping, and trace. Raw registers are turned into
//! decisions here, once.

use nvmmio_core::sys::{self, syscall6_cancellable, Errno};

use crate::managed::{self, Plan};
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
    /// The engine wants to see the result (an open, a dup, a stat...).
    managed: bool,
    /// [`managed::handovers`] before the call ran.
    handovers: u64,
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
        panic!("injected failure in {} (NVMMIO_TEST_PANIC_IN)", nvmmio_core::trace::names::NAMES[nr]);
    }
    let tracer = tracer::get();
    let start = if tracer.is_some() { sys::monotonic_ns() } else { 0 };
    let report = |result: isize| {
        if let Some(t) = tracer {
            t.completed(nr, args, result, sys::monotonic_ns() - start);
        }
        Action::Return(result)
    };
    if let Some(result) = reserved_fd::protect(nr, args) {
        return report(result);
    }
    let (mut managed_after, mut handovers) = (false, 0);
    if managed::active() && !process::is_borrowed() {
        match managed::before(nr, args) {
            Plan::Served(result) => return report(result),
            Plan::KernelThen => (managed_after, handovers) = (true, managed::handovers()),
            Plan::Kernel => {}
        }
    }
    fd_table::before_call(nr, args);
    match nr as i64 {
        // syscall_intercept cannot give a clone3 child its own stack safely; glibc falls back
        // to clone when clone3 is missing.
        libc::SYS_clone3 => report(Errno(libc::ENOSYS).to_raw()),
        libc::SYS_clone | libc::SYS_fork | libc::SYS_vfork => process::fork_or_clone(tracer, nr, args),
        libc::SYS_execve | libc::SYS_execveat if tracer.is_some() => {
            if let Some(t) = tracer {
                t.before_exec(nr, args);
            }
            Action::Run(Pending { start, exec: true, managed: false, handovers })
        }
        libc::SYS_exit_group | libc::SYS_exit | libc::SYS_rt_sigreturn if tracer.is_some() => {
            if let Some(t) = tracer {
                t.no_return(nr, args);
                if nr as i64 == libc::SYS_exit_group {
                    t.at_exit();
                }
            }
            Action::Forward
        }
        _ if tracer.is_some() || managed_after => {
            Action::Run(Pending { start, exec: false, managed: managed_after, handovers })
        }
        _ => Action::Forward,
    }
}

/// Reports a call that [`Action::Run`] issued; returns the result the program gets (the
/// kernel's, unless a managed file's open is refused).
pub fn finish(nr: usize, args: [usize; 6], mut result: isize, pending: Pending) -> isize {
    if pending.managed {
        result = managed::after(nr, args, result, pending.handovers);
    }
    let Some(t) = tracer::get() else { return result };
    if pending.exec {
        // Only a failed exec comes back.
        t.exec_failed(nr, result);
    } else {
        t.completed(nr, args, result, sys::monotonic_ns() - pending.start);
    }
    result
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
