//! libnvmmio.so: the LD_PRELOAD library. An ELF constructor reads the settings and installs the
//! hook into syscall_intercept, which has patched every `syscall` instruction in libc.
//!
//! - [`ffi`]: the only unsafe code: syscall_intercept's hook points and the constructor;
//! - [`hook`]: the entry for every system call: early filter, reentrancy guard, panic fence;
//! - [`dispatch`]: what nvmmio does with a call: forward, serve (managed files) or trace it;
//! - [`managed`]: files in managed directories, served by the engine;
//! - [`usercopy`]: copies to and from program buffers that turn bad pointers into EFAULT;
//! - [`signals`]: the program's signal handlers wait while their thread is inside nvmmio;
//! - [`fd_table`]: what is known about each descriptor number;
//! - [`process`]: fork, vfork, clone and exec bookkeeping;
//! - [`symbols`]: the hottest data calls exported as libc symbols, skipping the trampoline;
//! - [`reserved_fd`]: keeps the program from closing or overwriting nvmmio's own descriptor;
//! - [`tracer`]: the process's trace output and counters.
#![deny(unsafe_code)]

mod dispatch;
mod fd_table;
mod ffi;
mod guard;
mod handler_alloc;
mod hook;
mod managed;
mod process;
mod reserved_fd;
mod signals;
mod symbols;
mod tracer;
mod usercopy;

/// glibc's malloc, except in the program's signal handlers (see [`handler_alloc`]).
#[global_allocator]
static ALLOCATOR: handler_alloc::HandlerSafe = handler_alloc::HandlerSafe;

use std::sync::OnceLock;

use nvmmio_core::config::Settings;

/// Settings read once at start-up; never changed afterwards.
static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// Called from the ELF constructor, before `main`.
fn init() {
    // Our own allocations and libc calls during set-up must not be traced.
    let _guard = guard::enter();
    let settings = match Settings::from_env() {
        Ok(s) => s,
        Err(msg) => {
            // Asked-for configuration is wrong: say so once, then stay out of the way.
            let _ = nvmmio_core::sys::write_all(2, format!("nvmmio: {msg}; running without nvmmio\n").as_bytes());
            return;
        }
    };
    hook::install_panic_reporter();
    let settings = SETTINGS.get_or_init(|| settings);
    tracer::init(settings);
    if managed::init(settings) {
        // Handlers installed before this constructor ran wait outside nvmmio too.
        signals::adopt_installed();
    }
    hook::init_filter(settings);
    symbols::resolve_originals();
    ffi::install_hooks();
}
