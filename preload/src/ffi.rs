//! The only unsafe code of the preload: syscall_intercept's hook points, errno, the constructor.
//!
//! # Safety
//! syscall_intercept reads its hook pointers on every intercepted call. They are written once,
//! from the ELF constructor, before any other thread of the program exists, and point to
//! `extern "C"` functions with exactly the signatures the C code calls.
#![allow(unsafe_code)]

use syscall_intercept::set_hook_fn;

use crate::hook;

extern "C" {
    /// Called in the child of a `clone` that got a new stack (threads, posix_spawn).
    static mut intercept_hook_point_clone_child: Option<extern "C" fn()>;
    /// Called in the parent of such a `clone`, with the kernel's result.
    static mut intercept_hook_point_clone_parent: Option<extern "C" fn(libc::c_long)>;
}

type HookEntry = extern "C-unwind" fn(
    isize,
    isize,
    isize,
    isize,
    isize,
    isize,
    isize,
    &mut isize,
) -> syscall_intercept::InterceptResult;

/// Points syscall_intercept at nvmmio's entry functions.
pub fn install_hooks() {
    // SAFETY: see the module doc: single-threaded start-up, matching signatures; the pointers are
    // written through raw places, never through references to the mutable statics.
    unsafe {
        core::ptr::addr_of_mut!(intercept_hook_point_clone_child).write(Some(hook::clone_child));
        core::ptr::addr_of_mut!(intercept_hook_point_clone_parent).write(Some(hook::clone_parent));
        // The entry is C-unwind (see hook::entry); the calling convention is the same as the
        // C function type syscall_intercept declares.
        let entry: syscall_intercept::HookFn = std::mem::transmute::<HookEntry, syscall_intercept::HookFn>(hook::entry);
        set_hook_fn(entry);
    }
}

/// Registers fork handlers with glibc (run around its fork, outside malloc's fork locks).
pub fn at_fork(prepare: extern "C" fn(), parent: extern "C" fn(), child: extern "C" fn()) {
    // SAFETY: plain `extern "C"` functions without arguments, valid for the process lifetime.
    unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
}

/// The calling thread's `errno`.
pub fn errno() -> i32 {
    // SAFETY: __errno_location returns a valid pointer to this thread's errno for its lifetime.
    unsafe { *libc::__errno_location() }
}

pub fn set_errno(value: i32) {
    // SAFETY: as in `errno`.
    unsafe { *libc::__errno_location() = value }
}

extern "C" fn constructor() {
    // Nothing may unwind out of a constructor into the dynamic loader.
    let _ = std::panic::catch_unwind(crate::init);
}

/// Runs [`constructor`] when the dynamic loader maps the library, before the program's `main`.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = constructor;
