//! Files in managed directories: which calls the engine serves, and how every other call that
//! touches such a file stays coherent with it. The data calls themselves are in [`io`]; the
//! process's tables in [`table`].
//!
//! Coherence rules (see STATUS.md):
//! - data calls on a managed descriptor are served by the engine and never reach the kernel;
//! - a call the engine does not serve that moves data through a managed descriptor (sendfile,
//!   copy_file_range, fallocate, ioctl...) runs on a checkpointed file with the descriptor's
//!   offset handed to the kernel first, and the size and offset are read back after;
//! - mmap of a managed file hands it to the kernel for good (the program's mapping must see
//!   every write);
//! - fork, vfork, exec and exit checkpoint every file first (a forked child then uses the
//!   kernel path for the files it inherited); path calls (stat, truncate) are matched by inode.

mod background;
mod closed;
mod io;
mod marks;
mod share;
mod short_lived;
pub mod table;

use std::ffi::CString;
use std::sync::atomic::{
    AtomicU64,
    Ordering::{Relaxed, SeqCst},
};
use std::sync::{Arc, Mutex, OnceLock};

use nvmmio_core::config::Settings;
use nvmmio_core::engine::log::OpenError;
use nvmmio_core::engine::{EngineSettings, Logging, ManagedFile};
use nvmmio_core::persist::{mark, LogFile, MappedStorage, Storage};
use nvmmio_core::sys::{self, Errno};
use nvmmio_core::trace::signature::{signature, Arg};

use crate::{reserved_fd, usercopy};
use table::{Inode, OpenFile, State};

struct Config {
    dirs: Vec<String>,
    /// The device of each directory in `dirs`.
    devs: Vec<u64>,
    engine: EngineSettings,
    in_place_on_disks: bool,
    /// How many closed files stay served (see `closed`).
    keep_closed: usize,
    /// Files created under names that die young go to the kernel (see `short_lived`).
    short_lived_to_kernel: bool,
    /// Where the exit summary goes: a copy of stderr taken at start-up (programs often close
    /// their own stderr before exiting), or -1 for none.
    stats_fd: i32,
}

static CONFIG: OnceLock<Config> = OnceLock::new();

/// What to do with a call.
pub enum Plan {
    /// Served here: the result.
    Served(isize),
    /// The kernel runs it, then [`after`] sees the result.
    KernelThen,
    /// Not ours.
    Kernel,
}

/// Descriptors that refer to managed files, for a lock-free "is it ours?" on every call.
static MANAGED_FDS: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

fn mark(fd: i32, managed: bool) {
    let Some(word) = usize::try_from(fd).ok().and_then(|f| MANAGED_FDS.get(f / 64)) else {
        return;
    };
    let bit = 1u64 << (fd % 64);
    if managed {
        word.fetch_or(bit, Relaxed);
    } else {
        word.fetch_and(!bit, Relaxed);
    }
}

pub fn is_managed_fd(fd: i32) -> bool {
    usize::try_from(fd)
        .ok()
        .and_then(|f| MANAGED_FDS.get(f / 64))
        .is_some_and(|w| w.load(Relaxed) & (1 << (fd % 64)) != 0)
}

/// Reads the managed directories; true if there are any.
pub fn init(settings: &Settings) -> bool {
    let dirs: Vec<String> = settings
        .dirs
        .iter()
        .filter_map(|d| std::fs::canonicalize(d).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if dirs.is_empty() {
        return false;
    }
    // Logs and data files close their descriptors through this: stop guarding them.
    sys::set_close_hook(reserved_fd::unreserve);
    crate::ffi::at_fork(fork_prepare, fork_parent, fork_child);
    let stats_fd = if settings.stats { reserved_fd::reserve_copy(2).unwrap_or(-1) } else { -1 };
    if settings.stats {
        nvmmio_core::engine::stats::enable();
    }
    note_file_size_limit();
    let devs = dirs.iter().map(|d| cstring(d.clone()).and_then(|c| sys::stat(&c)).map_or(0, |st| st.st_dev)).collect();
    let in_place_on_disks = settings.in_place_on_disks;
    CONFIG
        .set(Config {
            dirs,
            devs,
            engine: settings.engine,
            in_place_on_disks,
            keep_closed: settings.keep_closed,
            short_lived_to_kernel: settings.short_lived_to_kernel,
            stats_fd,
        })
        .is_ok()
}

pub fn active() -> bool {
    CONFIG.get().is_some()
}

/// Calls the dispatcher must see when directories are managed.
pub const WATCHED: &[i64] = &[
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_creat,
    libc::SYS_close,
    libc::SYS_close_range,
    libc::SYS_dup,
    libc::SYS_dup2,
    libc::SYS_dup3,
    libc::SYS_fcntl,
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_preadv,
    libc::SYS_pwritev,
    libc::SYS_preadv2,
    libc::SYS_pwritev2,
    libc::SYS_lseek,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_sync_file_range,
    libc::SYS_ftruncate,
    libc::SYS_truncate,
    libc::SYS_fstat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_mmap,
    libc::SYS_fallocate,
    libc::SYS_copy_file_range,
    libc::SYS_sendfile,
    libc::SYS_splice,
    libc::SYS_ioctl,
    libc::SYS_clone,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_exit_group,
    libc::SYS_rt_sigaction,
    libc::SYS_setrlimit,
    libc::SYS_prlimit64,
    libc::SYS_utimensat,
    libc::SYS_utimes,
    libc::SYS_utime,
    libc::SYS_futimesat,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_getxattr,
    libc::SYS_lgetxattr,
    libc::SYS_fgetxattr,
    libc::SYS_listxattr,
    libc::SYS_llistxattr,
    libc::SYS_flistxattr,
];

/// Decides a call before it runs.
pub fn before(nr: usize, args: [usize; 6]) -> Plan {
    let fd0 = args[0] as i32;
    match nr as i64 {
        libc::SYS_open | libc::SYS_openat | libc::SYS_openat2 | libc::SYS_creat => {
            io::truncate_before_open(nr, args);
            Plan::KernelThen
        }
        libc::SYS_close => {
            if is_managed_fd(fd0) {
                release(fd0);
            }
            Plan::Kernel
        }
        libc::SYS_close_range => {
            if args[2] as u32 & libc::CLOSE_RANGE_CLOEXEC == 0 {
                for (fd, _) in table::all_fds() {
                    if (args[0] as u32..=args[1] as u32).contains(&(fd as u32)) {
                        release(fd);
                    }
                }
            }
            Plan::Kernel
        }
        libc::SYS_dup2 | libc::SYS_dup3 => {
            let new = args[1] as i32;
            if is_managed_fd(new) && new != fd0 {
                release(new);
            }
            if is_managed_fd(fd0) {
                Plan::KernelThen
            } else {
                Plan::Kernel
            }
        }
        libc::SYS_dup if is_managed_fd(fd0) => Plan::KernelThen,
        libc::SYS_fcntl if is_managed_fd(fd0) => match args[1] as i32 {
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC | libc::F_SETFL => Plan::KernelThen,
            _ => Plan::Kernel,
        },
        // A managed file's size is corrected: this process's, or another's (see `share`).
        libc::SYS_fstat if is_managed_fd(fd0) => Plan::KernelThen,
        libc::SYS_stat | libc::SYS_lstat | libc::SYS_newfstatat | libc::SYS_statx => Plan::KernelThen,
        libc::SYS_truncate => match io::truncate_by_path(args[0], args[1] as i64) {
            Some(result) => Plan::Served(result),
            None => Plan::Kernel,
        },
        libc::SYS_mmap if is_managed_fd(args[4] as i32) => {
            if let Some(file) = table::get(args[4] as i32) {
                hand_to_kernel(&file.inode);
            }
            Plan::Kernel
        }
        libc::SYS_fallocate | libc::SYS_ioctl if is_managed_fd(fd0) => kernel_on_checkpointed(&[fd0]),
        libc::SYS_copy_file_range | libc::SYS_splice if is_managed_fd(fd0) || is_managed_fd(args[2] as i32) => {
            kernel_on_checkpointed(&[fd0, args[2] as i32])
        }
        libc::SYS_sendfile if is_managed_fd(fd0) || is_managed_fd(args[1] as i32) => {
            kernel_on_checkpointed(&[fd0, args[1] as i32])
        }
        // Threads share everything; glibc's fork was prepared by `fork_prepare` (here, inside
        // the fork, allocating could deadlock on malloc's locks).
        libc::SYS_clone if args[0] as i32 & (libc::CLONE_THREAD | libc::CLONE_VM) != libc::CLONE_VM => Plan::Kernel,
        libc::SYS_fork => Plan::Kernel,
        // exec: this image's files go to the kernel (offsets included), its logs away; if the
        // exec fails the program goes on with them served by the kernel.
        libc::SYS_execve | libc::SYS_execveat => {
            checkpoint_all(true);
            leave_process();
            Plan::Kernel
        }
        // vfork and posix_spawn: the child borrows our memory and will exec; the kernel must
        // hold current data and offsets first.
        libc::SYS_clone | libc::SYS_vfork => {
            checkpoint_all(true);
            // The new program inherits every descriptor without FD_CLOEXEC: it shares those
            // open file descriptions with us, as a forked child does.
            for (fd, file) in table::all_fds() {
                if !sys::is_cloexec(fd) {
                    hand_to_kernel(&file.inode);
                }
            }
            Plan::Kernel
        }
        libc::SYS_exit_group => {
            leave_process();
            print_stats();
            Plan::Kernel
        }
        // A finite file size limit: the kernel serves every file from then on (it applies the
        // limit, and nvmmio's logs must not meet it: SIGXFSZ).
        libc::SYS_setrlimit if args[0] as u32 == libc::RLIMIT_FSIZE => {
            if limits_file_size(args[1]) {
                closed::forget_all();
                hand_all_to_kernel();
            }
            Plan::KernelThen
        }
        libc::SYS_prlimit64 if args[1] as u32 == libc::RLIMIT_FSIZE && args[2] != 0 => {
            let pid = args[0] as i32;
            if (pid == 0 || pid == sys::getpid()) && limits_file_size(args[2]) {
                closed::forget_all();
                hand_all_to_kernel();
            }
            Plan::KernelThen
        }
        // Times set by the program: written data first (a checkpoint would move mtime later),
        // and the engine's own modification time forgotten.
        libc::SYS_utimensat if args[1] == 0 => match table::get(fd0) {
            Some(file) => {
                file.inode.modified_ns.store(0, Relaxed);
                kernel_on_checkpointed(&[fd0])
            }
            None => Plan::Kernel,
        },
        libc::SYS_utimensat => {
            io::checkpoint_by_path(fd0, args[1], args[3] as i32 & (libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH));
            Plan::Kernel
        }
        libc::SYS_futimesat => {
            io::checkpoint_by_path(fd0, args[1], 0);
            Plan::Kernel
        }
        libc::SYS_utimes | libc::SYS_utime => {
            io::checkpoint_by_path(libc::AT_FDCWD, args[0], 0);
            Plan::Kernel
        }
        // A closed file still served may lose its last name: its log is then dropped.
        libc::SYS_unlink | libc::SYS_unlinkat | libc::SYS_rename | libc::SYS_renameat | libc::SYS_renameat2
            if closed::any() =>
        {
            Plan::KernelThen
        }
        // The mark nvmmio keeps on files with logs is not the program's.
        libc::SYS_getxattr | libc::SYS_lgetxattr | libc::SYS_fgetxattr if marks::is_mark_name(args[1]) => {
            Plan::KernelThen
        }
        libc::SYS_listxattr | libc::SYS_llistxattr | libc::SYS_flistxattr => Plan::KernelThen,
        libc::SYS_rt_sigaction => match usercopy::program_sigaction(args[0] as i32, args[1], args[2])
            .or_else(|| crate::signals::program_sigaction(args[0] as i32, args[1], args[2], args[3]))
        {
            Some(result) => Plan::Served(result),
            None => Plan::Kernel,
        },
        // The lock-free bitmap first: most descriptors (pipes, sockets, other files) are not ours.
        _ if !is_managed_fd(fd0) || !uses_fd_as_file(nr) => Plan::Kernel,
        _ => match table::with_file(fd0, |file| io::serve(nr, args, file)) {
            Some(result) => Plan::Served(result),
            None => Plan::Kernel,
        },
    }
}

/// Whether argument 0 of `nr` is a descriptor (so that a managed one matters).
fn uses_fd_as_file(nr: usize) -> bool {
    matches!(signature(nr).args.first(), Some(Arg::Fd))
}

/// How many times a file went from the engine to the kernel (counted once its data file is
/// final: log applied, size set).
static HANDOVERS: AtomicU64 = AtomicU64::new(0);

/// [`HANDOVERS`] now: read before a call planned [`Plan::KernelThen`] runs, given to [`after`].
pub fn handovers() -> u64 {
    HANDOVERS.load(SeqCst)
}

/// Sees the result of a call planned [`Plan::KernelThen`]; returns the result the program
/// gets: the kernel's, or the reason an open is refused (see [`NotServed::Refused`]).
/// `handovers` is [`handovers`] from before it ran.
pub fn after(nr: usize, args: [usize; 6], result: isize, handovers: u64) -> isize {
    if matches!(nr as i64, libc::SYS_getxattr | libc::SYS_lgetxattr | libc::SYS_fgetxattr) {
        // The mark's attribute (see `before`): the file's own errors stand, else it is absent.
        let absent = result >= 0 || result == Errno(libc::ERANGE).to_raw();
        return if absent { Errno(libc::ENODATA).to_raw() } else { result };
    }
    if result < 0 {
        return result;
    }
    let open_result = |flags: i32, path: usize| match opened(result as i32, flags, path) {
        Ok(()) => result,
        Err(e) => e.to_raw(),
    };
    match nr as i64 {
        libc::SYS_open => return open_result(args[1] as i32, args[0]),
        libc::SYS_creat => return open_result(libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, args[0]),
        libc::SYS_openat => return open_result(args[2] as i32, args[1]),
        libc::SYS_openat2 => {
            let mut how = [0u8; 8];
            if usercopy::copy_from_user(&mut how, args[2]).is_ok() {
                return open_result(u64::from_ne_bytes(how) as i32, args[1]);
            }
        }
        libc::SYS_dup | libc::SYS_dup2 | libc::SYS_dup3 => {
            if let Some(file) = table::get(args[0] as i32) {
                table::set(result as i32, Some(file));
            }
        }
        libc::SYS_fcntl => match args[1] as i32 {
            libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => {
                if let Some(file) = table::get(args[0] as i32) {
                    table::set(result as i32, Some(file));
                }
            }
            libc::F_SETFL => {
                if let Some(file) = table::get(args[0] as i32) {
                    // Only O_APPEND (and status flags) change; the access mode stays.
                    let changeable = libc::O_APPEND | libc::O_NONBLOCK | libc::O_ASYNC | libc::O_NOATIME;
                    let old = file.flags.load(Relaxed);
                    file.flags.store((old & !changeable) | (args[2] as i32 & changeable), Relaxed);
                }
            }
            _ => {}
        },
        libc::SYS_setrlimit | libc::SYS_prlimit64 => note_file_size_limit(),
        libc::SYS_unlink | libc::SYS_unlinkat => closed::after_names_changed(false),
        libc::SYS_rename | libc::SYS_renameat | libc::SYS_renameat2 => closed::after_names_changed(true),
        libc::SYS_listxattr | libc::SYS_llistxattr | libc::SYS_flistxattr => {
            return marks::strip_from_list(args[1], result)
        }
        libc::SYS_fstat | libc::SYS_stat | libc::SYS_lstat | libc::SYS_newfstatat | libc::SYS_statx => {
            patch_stat_result(nr, args, handovers)
        }
        libc::SYS_fallocate | libc::SYS_ioctl | libc::SYS_copy_file_range | libc::SYS_splice | libc::SYS_sendfile => {
            // The descriptor arguments only: another argument may hold a managed fd's number.
            let fds = match nr as i64 {
                libc::SYS_copy_file_range | libc::SYS_splice => [args[0], args[2]],
                libc::SYS_sendfile => [args[0], args[1]],
                _ => [args[0], args[0]],
            };
            for fd in fds.map(|fd| fd as i32) {
                if let Some(file) = table::get(fd) {
                    io::pull_from_kernel(fd, &file);
                }
            }
        }
        _ => {}
    }
    result
}

/// Corrects the stat structure a stat call filled for a managed file. A file handed to the
/// kernel while the call ran (its last descriptor closed in another thread, say) may have been
/// seen with its data file not yet final (the log not applied, the room kept for appends past
/// its end), and is no longer the engine's to correct: the call is made again.
fn patch_stat_result(nr: usize, args: [usize; 6], mut handovers: u64) {
    // A bound, should other threads hand files over without end.
    for _ in 0..100 {
        match nr as i64 {
            libc::SYS_newfstatat => io::patch_stat(args[2]),
            libc::SYS_statx => io::patch_statx(args[4]),
            _ => io::patch_stat(args[1]),
        }
        let now = HANDOVERS.load(SeqCst);
        if now == handovers || crate::dispatch::run(nr, args) < 0 {
            return;
        }
        handovers = now;
    }
}

/// Locks held across a fork (see [`table::hold`]).
struct ForkHold {
    /// A signal handler's calls on managed files would wait for these locks (held by its own
    /// thread) until the fork returns: signals wait instead.
    _signals: crate::guard::SignalsHeld,
    _opening: std::sync::MutexGuard<'static, ()>,
    _tables: table::TablesHeld,
    _pool: std::sync::MutexGuard<'static, Vec<PooledLog>>,
    queue: background::QueueHeld,
}

thread_local! {
    /// Set by `fork_prepare`, taken by `fork_parent` / `fork_child` (the same thread).
    static FORK_HOLD: std::cell::RefCell<Option<ForkHold>> = const { std::cell::RefCell::new(None) };
}

/// glibc's fork runs these handlers (pthread_atfork) *before* it takes malloc's locks for the
/// fork and after it releases them: the only place where a fork can be prepared with code that
/// allocates (a checkpoint does). Parent and child share every open file description (and so
/// the offsets) after a fork, as two processes sharing a file: the prepare handler hands every
/// file to the kernel, then holds the tables' locks (and every file's) across the fork, so the
/// child never inherits one held by another thread.
extern "C" fn fork_prepare() {
    let Some(_inside) = crate::guard::enter() else { return };
    let signals = crate::guard::hold_signals();
    let opening = OPENING.lock().unwrap_or_else(|p| p.into_inner());
    closed::forget_all_held();
    hand_all_to_kernel();
    let tables = table::hold();
    let pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    let queue = background::hold();
    FORK_HOLD.with(|h| {
        *h.borrow_mut() = Some(ForkHold { _signals: signals, _opening: opening, _tables: tables, _pool: pool, queue })
    });
}

extern "C" fn fork_parent() {
    let Some(_inside) = crate::guard::enter() else { return };
    FORK_HOLD.with(|h| h.borrow_mut().take());
}

/// The child: the files it inherited are the kernel's (the parent handed them over), and the
/// pooled logs are the parent's (their locks are shared with it). It joins each file's users
/// with lock descriptions of its own.
extern "C" fn fork_child() {
    let Some(_inside) = crate::guard::enter() else { return };
    if let Some(held) = FORK_HOLD.with(|h| h.borrow_mut().take()) {
        let ForkHold { _signals, _opening, _tables, _pool, queue } = held;
        drop((_opening, _tables, _pool, _signals));
        background::forget_in_child(queue);
    }
    std::mem::take(&mut *POOL.lock().unwrap_or_else(|p| p.into_inner()));
    share::after_fork_in_child(&table::all_inodes());
}

/// The exit summary (NVMMIO_STATS=1), on stderr.
fn print_stats() {
    let Some(fd) = CONFIG.get().map(|c| c.stats_fd).filter(|&fd| fd >= 0) else { return };
    let in_handlers = match crate::handler_alloc::REGION_ALLOCATIONS.load(Relaxed) {
        0 => String::new(),
        n => format!(", {n} allocations in signal handlers"),
    };
    let line = format!(
        "nvmmio: pid {}: {} calls served, {} short-lived files left to the kernel, {}{in_handlers}\n",
        sys::getpid(),
        io::SERVED.load(Relaxed),
        short_lived::LEFT_TO_KERNEL.load(Relaxed),
        nvmmio_core::engine::stats::summary()
    );
    let _ = sys::write_all(fd, line.as_bytes());
}

/// The logical size of file `key` if another process serves it with the engine, and when it
/// last changed it there.
fn size_elsewhere(key: (u64, u64)) -> Option<(u64, u64)> {
    let config = CONFIG.get()?;
    let mut dirs = config.dirs.iter().zip(&config.devs);
    dirs.find_map(|(dir, &dev)| if dev == key.0 { share::size_elsewhere(dir, key) } else { None })
}

/// The largest file size on device `dev` (probed once per device with `fd`, a descriptor of
/// our own on it).
fn largest_file_size(dev: u64, fd: i32) -> u64 {
    static KNOWN: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());
    let mut known = KNOWN.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&(_, max)) = known.iter().find(|(d, _)| *d == dev) {
        return max;
    }
    let max = sys::largest_file_size(fd);
    known.push((dev, max));
    max
}

/// RLIMIT_FSIZE is finite: no file is served by the engine.
static FILE_SIZE_LIMITED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Reads the process's file size limit into [`FILE_SIZE_LIMITED`].
fn note_file_size_limit() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    let a = [0, libc::RLIMIT_FSIZE as usize, 0, &mut limit as *mut libc::rlimit as usize, 0, 0];
    if Errno::result(crate::dispatch::run(libc::SYS_prlimit64 as usize, a)).is_ok() {
        FILE_SIZE_LIMITED.store(limit.rlim_cur != libc::RLIM_INFINITY, Relaxed);
    }
}

/// Whether the `struct rlimit` the program passes at `addr` limits the file size.
fn limits_file_size(addr: usize) -> bool {
    let mut raw = [0u8; 8];
    usercopy::copy_from_user(&mut raw, addr).is_ok() && u64::from_ne_bytes(raw) != libc::RLIM_INFINITY
}

/// Every file to the kernel (a file size limit is coming).
fn hand_all_to_kernel() {
    for inode in table::all_inodes() {
        hand_to_kernel(&inode);
    }
}

/// If another process serves file `key` with the engine, asks it to hand the file to the
/// kernel (before a truncate by path or an O_TRUNC open here).
fn hand_over_elsewhere(key: (u64, u64)) {
    let Some(config) = CONFIG.get() else { return };
    for (dir, &dev) in config.dirs.iter().zip(&config.devs) {
        if dev == key.0 {
            share::hand_over_elsewhere(dir, key);
        }
    }
}

/// The program opened `fd` with `flags`, by the path string at `path` (in its memory):
/// registers the descriptor if it is a regular file in a managed directory. An error: the open
/// is refused (the descriptor is closed again, see [`NotServed::Refused`]).
fn opened(fd: i32, flags: i32, path: usize) -> Result<(), Errno> {
    let Some(config) = CONFIG.get() else { return Ok(()) };
    if flags & (libc::O_PATH | libc::O_DIRECT) != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        return Ok(());
    }
    let forgotten = FORGOTTEN.load(SeqCst);
    let Ok(st) = sys::fstat(fd) else { return Ok(()) };
    crate::fd_table::learn(fd, st.st_mode);
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Ok(());
    }
    if FILE_SIZE_LIMITED.load(Relaxed) {
        return Ok(());
    }
    let key = (st.st_dev, st.st_ino);
    // One thread at a time decides how a file is served (two threads opening a new file at once
    // must not both set it up), and not while another closes its last descriptor (`release`).
    let _opening = OPENING.lock().unwrap_or_else(|p| p.into_inner());
    let inode = match table::find_inode(key).filter(closed::reopened) {
        Some(inode) => {
            if flags & libc::O_TRUNC != 0 {
                if let State::Engine(engine) = &mut *inode.lock() {
                    if marks::before_change(&inode, engine).and_then(|()| marks::before_commit(&inode, engine)).is_ok()
                    {
                        let _ = engine.truncate(0);
                    }
                }
            }
            inode
        }
        None => {
            let Some((dir, name)) = managed_dir_of(fd, st.st_dev, flags, path, config) else {
                return Ok(());
            };
            // Again under the lock if a file was forgotten meanwhile: the size read before may
            // have been that of a file whose last descriptor was closing, with the room kept
            // for appends past its end.
            let st = match FORGOTTEN.load(SeqCst) == forgotten {
                true => st,
                false => match sys::fstat(fd) {
                    Ok(st) => st,
                    Err(_) => return Ok(()),
                },
            };
            // A file with other links may be open through a path outside the managed
            // directory too, served by the kernel there: the kernel serves it here as well.
            if st.st_nlink > 1 {
                return Ok(());
            }
            // A file found with data under its name outlived its open: the name is ordinary.
            if st.st_size > 0 {
                short_lived::forget(name);
            }
            let short_lived = st.st_size == 0 && config.short_lived_to_kernel && short_lived::known(name);
            if short_lived {
                short_lived::LEFT_TO_KERNEL.fetch_add(1, Relaxed);
            }
            let role = share::join(dir, key, !short_lived);
            // Named only if it was created empty by this open (or found so).
            let name = if st.st_size == 0 { name } else { 0 };
            match role {
                Ok(share::Role::Owner) => {
                    let mut set_up = open_inode(fd, &st, dir, name, flags, config);
                    if matches!(set_up, Err(NotServed::Refused(Errno(libc::ENOSPC)))) && drain_pool() {
                        // Emptied logs kept for reuse held room on this file system.
                        set_up = open_inode(fd, &st, dir, name, flags, config);
                    }
                    match set_up {
                        Ok(inode) => {
                            table::add_inode(inode.clone());
                            share::settle(dir, key);
                            inode
                        }
                        Err(NotServed::Kernel) => {
                            share::leave(dir, key, true, true);
                            return Ok(());
                        }
                        Err(NotServed::Refused(e)) => {
                            share::leave(dir, key, true, true);
                            let _ = sys::close(fd);
                            return Err(e);
                        }
                    }
                }
                // Other processes have it open: the kernel serves it here too.
                Ok(share::Role::Kernel) => {
                    let inode = Arc::new(Inode::served_by_kernel(key, dir));
                    table::add_inode(inode.clone());
                    inode
                }
                Err(_) => return Ok(()),
            }
        }
    };
    usercopy::ensure_installed();
    let open_file = OpenFile { inode, pos: Mutex::new(0), flags: std::sync::atomic::AtomicI32::new(flags) };
    table::set(fd, Some(Arc::new(open_file)));
    Ok(())
}

/// The managed directory holding the file open at `fd` (on device `dev`, opened with `flags`
/// by the path string at `path`), if any, and the hash of the file's real path (see
/// [`short_lived`]). The real path decides; a file on another device than the directory (a
/// mount inside it) is not managed.
fn managed_dir_of(fd: i32, dev: u64, flags: i32, path: usize, config: &'static Config) -> Option<(&'static str, u64)> {
    if !config.devs.contains(&dev) {
        return None;
    }
    // No allocation here: libc's own internals open files while holding malloc's locks
    // (malloc reads /proc/sys/vm/overcommit_memory), and every open passes through.
    if let Some(found) = direct_child(path, flags, config) {
        return Some(found);
    }
    let mut link = nvmmio_core::trace::line::LineBuf::new();
    let _ = std::fmt::Write::write_fmt(&mut link, format_args!("/proc/self/fd/{fd}\0"));
    let link = std::ffi::CStr::from_bytes_with_nul(link.as_bytes()).ok()?;
    let mut buf = [0u8; 4096];
    let n = sys::readlink(link, &mut buf).ok()?;
    let path = std::str::from_utf8(&buf[..n]).ok()?;
    let dir = config.dirs.iter().find(|d| {
        path.starts_with(d.as_str()) && path[d.len()..].starts_with('/') && !path[d.len()..].starts_with("/.nvmmio/")
    })?;
    Some((dir.as_str(), short_lived::name_hash(path.as_bytes())))
}

/// The managed directory and real path hash of a file opened by an absolute path naming a
/// direct child of a managed directory (whose path is canonical), when the open cannot have
/// followed a symbolic link at the last step (O_NOFOLLOW, or O_CREAT | O_EXCL): then that path
/// is the real one, without asking /proc (SQLite opens its journal this way every
/// transaction).
fn direct_child(path: usize, flags: i32, config: &'static Config) -> Option<(&'static str, u64)> {
    let created = libc::O_CREAT | libc::O_EXCL;
    if flags & libc::O_NOFOLLOW == 0 && flags & created != created {
        return None;
    }
    let mut buf = [0u8; 4096];
    let path = usercopy::copy_cstr_from_user(path, &mut buf).ok()?.to_bytes();
    let dir = config
        .dirs
        .iter()
        .find(|d| path.len() > d.len() + 1 && path.starts_with(d.as_bytes()) && path[d.len()] == b'/')?;
    let name = &path[dir.len() + 1..];
    if name.contains(&b'/') || name == b"." || name == b".." || name == b".nvmmio" {
        return None;
    }
    Some((dir.as_str(), short_lived::name_hash(path)))
}

/// Log files kept open, mapped, locked and empty after their file closed, for the next file
/// of the same directory: opening and closing small files (SQLite's journal, every
/// transaction) then costs two renames instead of creating, mapping and removing a log.
struct PooledLog {
    dir: String,
    path: CString,
    log: LogFile,
}

static POOL: Mutex<Vec<PooledLog>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 8;
static POOL_SEQ: AtomicU64 = AtomicU64::new(0);

fn cstring(s: String) -> Result<CString, Errno> {
    CString::new(s).map_err(|_| Errno(libc::EINVAL))
}

/// The log for file `key` in `dir`: a pooled one renamed to the file's log name, unless a log of
/// that name is already there (left by a crash: it is opened and recovered; `true`), else a new
/// one. The log is locked: a file is managed by one process at a time.
fn acquire_log(dir: &str, key: (u64, u64), kind: LogKind) -> Result<(LogFile, CString, bool), Errno> {
    let meta = format!("{dir}/.nvmmio");
    let target = log_path(dir, key, kind)?;
    let pooled = {
        let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
        pool.iter().position(|p| p.dir == dir).map(|i| pool.swap_remove(i))
    };
    if let Some(p) = pooled {
        match sys::rename_noreplace(&p.path, &target) {
            Ok(()) => return Ok((p.log, target, false)),
            Err(_) => POOL.lock().unwrap_or_else(|p| p.into_inner()).push(p),
        }
    }
    let _ = sys::mkdir(&cstring(meta.clone())?, 0o700);
    sweep_dead_pools(dir, &meta);
    match open_locked_log(&target, libc::O_CREAT | libc::O_EXCL) {
        Ok(log) => Ok((log, target, false)),
        // Left by a crash: opened, for recovery.
        Err(Errno(libc::EEXIST)) => open_locked_log(&target, 0).map(|log| (log, target, true)),
        Err(e) => {
            // A new log that could not be set up (no room for it, say) is not left behind.
            let _ = sys::unlink(&target);
            Err(e)
        }
    }
}

/// Directories whose pools were swept by this process.
static SWEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Once per directory and process, before its first new log: removes the pooled logs of
/// processes that are gone (killed with logs in their pool; a live owner holds its pooled logs
/// locked), which would otherwise take room (on tmpfs, memory) until `nvmmio recover`. They
/// hold nothing anyone needs: a pool name is given only to an emptied log or to the log of a
/// file that is gone.
fn sweep_dead_pools(dir: &str, meta: &str) {
    {
        // Only tried: a fork in another thread may have left it held in a child (the sweep can
        // wait for another process start).
        let Ok(mut swept) = SWEPT.try_lock() else { return };
        if swept.iter().any(|d| d == dir) {
            return;
        }
        swept.push(dir.to_string());
    }
    let Ok(names) = cstring(meta.to_string()).and_then(|m| sys::dir_names(&m)) else { return };
    for name in names.iter().filter(|n| n.starts_with(b"pool-") && n.ends_with(b".log")) {
        let Ok(path) = cstring(format!("{meta}/{}", String::from_utf8_lossy(name))) else { continue };
        let Ok(fd) = sys::openat(libc::AT_FDCWD, &path, libc::O_RDONLY | libc::O_CLOEXEC, 0) else { continue };
        if sys::flock(fd, libc::LOCK_EX | libc::LOCK_NB).is_ok() {
            let _ = sys::unlink(&path);
        }
        sys::close_owned(fd);
    }
}

/// Opens the log file at `path` (`extra` open flags), locks it for this process and maps it.
fn open_locked_log(path: &CString, extra: i32) -> Result<LogFile, Errno> {
    let fd = reserved_fd::reserve(sys::openat(libc::AT_FDCWD, path, libc::O_RDWR | libc::O_CLOEXEC | extra, 0o600)?)?;
    let log = sys::flock(fd, libc::LOCK_EX | libc::LOCK_NB).and_then(|()| LogFile::open(fd, 64 << 10));
    if log.is_err() {
        reserved_fd::release_and_close(fd);
    }
    log
}

/// A file's first log, or its second (background checkpoints).
#[derive(Clone, Copy, PartialEq, Eq)]
enum LogKind {
    Main,
    Second,
}

/// `DIR/.nvmmio/DEV-INODE.log`, or `.log2` for the second log.
fn log_path(dir: &str, key: (u64, u64), kind: LogKind) -> Result<CString, Errno> {
    let bit = if kind == LogKind::Main { mark::MAIN } else { mark::SECOND };
    cstring(format!("{dir}/.nvmmio/{}", mark::log_file_name(key, bit)))
}

/// A second log that a crash left for this file, opened and locked (recovery needs it).
fn leftover_second_log(dir: &str, key: (u64, u64)) -> Result<Option<(LogFile, CString)>, Errno> {
    let path = log_path(dir, key, LogKind::Second)?;
    match open_locked_log(&path, 0) {
        Ok(log) => Ok(Some((log, path))),
        Err(Errno(libc::ENOENT)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// An emptied log goes back to the pool under a pool name (or away, if the pool is full).
fn release_log(dir: &str, log: LogFile, path: &CString) {
    let pool_len = POOL.lock().unwrap_or_else(|p| p.into_inner()).len();
    if pool_len < POOL_MAX {
        if let Ok(pool_path) = pool_path(dir) {
            if sys::rename_noreplace(path, &pool_path).is_ok() {
                let entry = PooledLog { dir: dir.to_string(), path: pool_path, log };
                POOL.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
                return;
            }
        }
    }
    let _ = sys::unlink(path);
    drop(log);
}

/// A new pool name in `dir`: `DIR/.nvmmio/pool-PID-N.log`.
fn pool_path(dir: &str) -> Result<CString, Errno> {
    let seq = POOL_SEQ.fetch_add(1, Relaxed);
    cstring(format!("{dir}/.nvmmio/pool-{}-{seq}.log", crate::process::ids().0))
}

/// A log holding records of a file that is gone: renamed to a pool name now, voided by the
/// checkpoint thread, then pooled (see [`pool_voided`]).
fn retire_log(dir: &str, log: LogFile, path: &CString) {
    if let Ok(pool_path) = pool_path(dir) {
        if sys::rename_noreplace(path, &pool_path).is_ok() {
            // Voiding costs a sync on a disk only: elsewhere it is done here.
            let log = if log.is_disk() { background::submit_void(dir, pool_path.clone(), log) } else { Err(log) };
            if let Err(log) = log {
                pool_voided(dir.to_string(), pool_path, log);
            }
            return;
        }
    }
    let _ = sys::unlink(path);
}

/// Voids a retired log (in the checkpoint thread) and pools it, or removes it if that fails,
/// the pool is full, or the process is leaving.
pub fn pool_voided(dir: String, path: CString, log: LogFile) {
    let max_len = CONFIG.get().map_or(1 << 20, |c| c.engine.log_max);
    let voided = nvmmio_core::engine::log::Log::create(log, max_len, None, 0).map(|l| l.into_medium());
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    match voided {
        Ok(log) if pool.len() < POOL_MAX && !LEAVING.load(Relaxed) => pool.push(PooledLog { dir, path, log }),
        _ => {
            drop(pool);
            let _ = sys::unlink(&path);
        }
    }
}

/// Set at exit and exec: retired logs are removed, not pooled.
static LEAVING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// At exit, or when a file system is full: the pooled logs are removed. Whether there were any.
fn drain_pool() -> bool {
    let pool = std::mem::take(&mut *POOL.lock().unwrap_or_else(|p| p.into_inner()));
    let any = !pool.is_empty();
    for p in pool {
        let _ = sys::unlink(&p.path);
    }
    any
}

/// Why the engine does not serve a file it was asked to.
enum NotServed {
    /// The kernel serves it: nothing of nvmmio's is pending on it, or its log is damaged or
    /// lost (reported in the exit summary and by `nvmmio recover`; the file is left as it is).
    Kernel,
    /// The open fails with this error: the file has a log that could not be applied now (no
    /// room, say). Served by the kernel meanwhile, it would take writes that a later replay of
    /// the old log would undo.
    Refused(Errno),
}

/// Opens the engine for a file: our own descriptor for it (a copy of the program's when that
/// one is open for reading and writing), its log, and recovery of what a crash left.
fn open_inode(
    fd: i32,
    st: &libc::stat,
    dir: &str,
    name: u64,
    flags: i32,
    config: &Config,
) -> Result<Arc<Inode>, NotServed> {
    let key = (st.st_dev, st.st_ino);
    let truncating = flags & libc::O_TRUNC != 0;
    // Whether a crash left logs with changes the file may lack (asked only when setting up fails
    // before the logs are opened).
    let exists = |kind| log_path(dir, key, kind).ok().and_then(|p| sys::stat(&p).ok()).is_some_and(|st| st.st_size > 0);
    let left_by_crash = || !truncating && (exists(LogKind::Main) || exists(LogKind::Second));
    let fail = |e: Errno| if left_by_crash() { NotServed::Refused(e) } else { NotServed::Kernel };
    // A file description of our own: a copy of the program's would share its O_APPEND (set at
    // open or later with F_SETFL), under which every pwrite appends.
    let reopen = cstring(format!("/proc/self/fd/{fd}")).map_err(fail)?;
    let data_fd =
        reserved_fd::reserve(sys::openat(libc::AT_FDCWD, &reopen, libc::O_RDWR | libc::O_CLOEXEC, 0).map_err(fail)?)
            .map_err(fail)?;
    let give_up = |why: NotServed| {
        reserved_fd::release_and_close(data_fd);
        why
    };
    let found = match marks::check_at_open(data_fd, key, dir) {
        Ok(found) => found,
        // A truncating open supersedes what the lost log held: its mark goes.
        Err(_) if truncating => {
            let _ = mark::Mark::remove(data_fd);
            mark::Marks::Unmarked
        }
        Err(_lost) => {
            nvmmio_core::engine::stats::LOST_LOGS.fetch_add(1, Relaxed);
            return Err(give_up(NotServed::Kernel));
        }
    };
    // Logs found under the name of a file without a mark are stale (see `Marks::Unmarked`):
    // superseded, as by a truncating open.
    let superseded = truncating || found == mark::Marks::Unmarked;
    let fail = |e: Errno| if !superseded && left_by_crash() { NotServed::Refused(e) } else { NotServed::Kernel };
    let (log, log_path, crashed) = acquire_log(dir, key, LogKind::Main).map_err(|e| give_up(fail(e)))?;
    let storage = MappedStorage::with_size(data_fd, st.st_size as u64, log.is_tmpfs());
    let mut settings = config.engine;
    if log.is_disk() && !config.in_place_on_disks {
        settings.in_place_from = u64::MAX;
    }
    if log.is_disk() && settings.logging == Logging::Hybrid {
        // On a disk every write's undo images would cost a log sync before the store in place
        // (and each commit a data sync): the hybrid policy keeps such files on redo logging;
        // NVMMIO_LOGGING=undo still forces it.
        settings.logging = Logging::Redo;
    }
    // A second log matters only if the mark names one (it does before the second log's first
    // change), or where marks are not kept.
    let second_named = match found {
        mark::Marks::Named(m) => m.logs & mark::SECOND != 0,
        mark::Marks::Unmarked => false,
        mark::Marks::NotKept => true,
    };
    let second = match if second_named { leftover_second_log(dir, key) } else { Ok(None) } {
        Ok(second) => second,
        Err(e) => {
            drop(log);
            return Err(give_up(fail(e)));
        }
    };
    let spare_path = second.as_ref().map(|(_, path)| path.clone());
    let old_logs = crashed || second.is_some();
    let pending = !superseded && old_logs;
    let fail = |e: Errno| if pending { NotServed::Refused(e) } else { NotServed::Kernel };
    // A truncating open supersedes whatever an old log holds. If setting up fails, the engine
    // closed the data descriptor with the rest.
    let engine = if superseded && (old_logs || truncating) {
        // Old records on the log's medium may count: the new header is waited for.
        let void = !old_logs;
        ManagedFile::create(storage, log, settings, void)
            .map(|mut engine| {
                if let Some((second, _)) = second {
                    engine.set_spare(second);
                }
                engine
            })
            .map_err(fail)
    } else {
        ManagedFile::open_pair(storage, log, second.map(|(l, _)| l), settings).map(|(engine, _)| engine).map_err(|e| {
            match e {
                OpenError::Damaged(_) => {
                    nvmmio_core::engine::stats::DAMAGED_LOGS.fetch_add(1, Relaxed);
                    NotServed::Kernel
                }
                OpenError::Io(e) => fail(e),
            }
        })
    }?;
    Ok(Arc::new(Inode {
        key,
        dir: dir.to_string(),
        log_path,
        spare_path: Mutex::new(spare_path),
        state: std::sync::RwLock::new(State::Engine(Box::new(engine))),
        parked_fd: std::sync::atomic::AtomicI32::new(-1),
        modified_ns: AtomicU64::new(0),
        modified_seen: std::sync::atomic::AtomicBool::new(false),
        max_size: largest_file_size(key.0, data_fd),
        mark: std::sync::atomic::AtomicU8::new(marks::bits(found)),
        checkpoint_view: Mutex::new(None),
        short_lived_name: name,
    }))
}

/// The program closes `fd`: forget it; the last descriptor of a file checkpoints it and removes
/// its log.
fn release(fd: i32) {
    let Some(file) = table::get(fd) else { return };
    // Another thread opening the file meanwhile either joins this inode before it is found
    // unused, or finds the file finished (checkpointed, at its size, its log gone): never a
    // file half handed to the kernel, whose log a new engine could not take (the kernel would
    // serve that descriptor alone, unseen by the next engine) and whose data file still has
    // the room kept for appends.
    let _opening = OPENING.lock().unwrap_or_else(|p| p.into_inner());
    table::set(fd, None);
    let inode = file.inode.clone();
    drop(file);
    if table::inode_in_use(&inode) {
        return;
    }
    let keep = CONFIG.get().map_or(0, |c| c.keep_closed);
    if closed::on_last_close(&inode, keep) {
        return;
    }
    forget(&inode);
}

/// A file no descriptor refers to any more is finished and forgotten (the opening lock held).
/// Finished before it is forgotten: a stat that finds no inode finds the file final (see
/// `patch_stat_result`).
fn forget(inode: &Arc<Inode>) {
    finish_inode(inode);
    table::remove_inode(inode);
    FORGOTTEN.fetch_add(1, SeqCst);
    inode.close_parked();
    // A file served by the kernel from its open (no log) was never this process's to own.
    share::leave(&inode.dir, inode.key, !inode.log_path.is_empty(), true);
}

/// How many files were forgotten (under the opening lock): an open that sees it unchanged
/// knows no file was finished since it looked at its own.
static FORGOTTEN: AtomicU64 = AtomicU64::new(0);

/// Held while a newly opened file is looked up and set up, and while a descriptor is released
/// (its file finished if it was the last).
static OPENING: Mutex<()> = Mutex::new(());

/// Applies a file's log and gives the log back to the pool; the file is the kernel's from then
/// on.
fn finish_inode(inode: &Inode) {
    finish_locked(inode, &mut inode.lock());
}

/// [`finish_inode`] with the file's lock held (`state`).
fn finish_locked(inode: &Inode, state: &mut State) {
    if let State::Engine(engine) = std::mem::replace(state, State::Kernel) {
        drop_checkpoint_view(inode);
        // If the log cannot be applied it stays where it is, for recovery.
        if let Ok((storage, log, spare)) = engine.into_parts() {
            // The program may hold record locks on the file (closing it would drop them).
            let fd = storage.into_fd();
            inode.parked_fd.store(fd, Relaxed);
            marks::after_logs_applied(inode, fd);
            release_logs(inode, log, spare);
        }
        // Under the file's lock: a stat that finds the file the kernel's sees the count moved.
        HANDOVERS.fetch_add(1, SeqCst);
    }
}

/// A file whose last name is gone and that no descriptor refers to: its logs are voided
/// without being applied, the data file closed. `unlinked`: its name was removed (not replaced
/// by a rename), so that it may count as having died young.
fn discard_locked(inode: &Inode, state: &mut State, unlinked: bool) {
    if let State::Engine(engine) = std::mem::replace(state, State::Kernel) {
        drop_checkpoint_view(inode);
        // The log is voided by the checkpoint thread, off the program's path; until then it
        // has a pool name, and a crash before the rename leaves it to recovery, which drops
        // it (its file is gone, or a new file has the inode number and no mark).
        // Created empty, written, and gone before its log was applied (see `short_lived`).
        if unlinked && engine.size() > 0 {
            short_lived::died(inode.short_lived_name, sys::monotonic_ns());
        }
        if let Ok((storage, log, spare)) = engine.discard() {
            reserved_fd::release_and_close(storage.into_fd());
            let (log_path, spare_path) = log_paths(inode, &log);
            retire_log(&inode.dir, log, &log_path);
            if let (Some(spare), Some(path)) = (spare, spare_path) {
                release_log(&inode.dir, spare, &path);
            }
        }
        HANDOVERS.fetch_add(1, SeqCst);
    }
}

/// The checkpoint thread's mapping of a file the engine lets go of (an unlinked file's memory
/// stays alive while it is mapped). The thread holds the lock only while it applies a job,
/// which the engine took back before it got here: never a wait.
fn drop_checkpoint_view(inode: &Inode) {
    if let Ok(mut view) = inode.checkpoint_view.try_lock() {
        view.take();
    }
}

/// A file's emptied logs go back to the pool.
fn release_logs(inode: &Inode, log: LogFile, spare: Option<LogFile>) {
    let (log_path, spare_path) = log_paths(inode, &log);
    release_log(&inode.dir, log, &log_path);
    if let (Some(spare), Some(path)) = (spare, spare_path) {
        release_log(&inode.dir, spare, &path);
    }
}

/// The paths of a file's log in use (`log`) and of its spare, if any. Background checkpoints
/// swap the two logs' roles: the log in use may be the file named `.log2`.
fn log_paths(inode: &Inode, log: &LogFile) -> (CString, Option<CString>) {
    let spare_path = inode.spare_path.lock().unwrap_or_else(|p| p.into_inner()).take();
    let swapped = |log: &LogFile| log.inode().ok() != sys::stat(&inode.log_path).ok().map(|st| st.st_ino);
    match spare_path {
        Some(second) if swapped(log) => (second, Some(inode.log_path.clone())),
        second => (inode.log_path.clone(), second),
    }
}

/// The file's log is due for a checkpoint: freeze it for the checkpoint thread, the file going
/// on with its second log (made now if need be). Without a second log or a thread, the
/// engine checkpoints by itself when the log must make room.
pub fn start_background_checkpoint(inode: &Arc<Inode>, engine: &mut table::Engine) {
    if !engine.has_spare() {
        let Ok((spare, path, _)) = acquire_log(&inode.dir, inode.key, LogKind::Second) else { return };
        engine.set_spare(spare);
        *inode.spare_path.lock().unwrap_or_else(|p| p.into_inner()) = Some(path);
    }
    if let Ok(Some(frozen)) = engine.begin_background_checkpoint() {
        let data = engine.data();
        // On tmpfs the thread may store below the data file's current end through a mapping.
        let direct_to = if data.in_memory() { data.size().unwrap_or(0) } else { 0 };
        if !background::submit(inode, &frozen, data.raw_fd(), direct_to) {
            drop(frozen);
            let _ = engine.apply_frozen_here();
        }
    }
}

/// The program maps the file, or shares it with another process: from now on the kernel
/// serves it here, with every offset handed over.
fn hand_to_kernel(inode: &Arc<Inode>) {
    // The file's lock is held from the first offset handed over until the file is the
    // kernel's: a call served in between (a read in another thread) would move an offset the
    // kernel already has.
    let mut state = inode.lock();
    if matches!(&*state, State::Engine(_)) {
        for (fd, file) in table::all_fds() {
            if Arc::ptr_eq(&file.inode, inode) {
                let _ = sys::lseek(fd, *file.lock_pos() as i64, libc::SEEK_SET);
            }
        }
    }
    finish_locked(inode, &mut state);
    drop(state);
    share::leave(&inode.dir, inode.key, true, false);
}

/// Checkpoints the files behind `fds` and hands their offsets to the kernel, which then runs
/// the call; [`after`] reads size and offsets back.
fn kernel_on_checkpointed(fds: &[i32]) -> Plan {
    for &fd in fds {
        if let Some(file) = table::get(fd) {
            if let State::Engine(engine) = &mut *file.inode.lock() {
                let _ = engine.checkpoint();
            }
            io::push_to_kernel(fd, &file);
        }
    }
    Plan::KernelThen
}

/// Starts a thread of nvmmio's own with every signal blocked from its first instruction (a
/// thread inherits its creator's mask, and one the program does not know of must never run the
/// program's signal handlers).
fn spawn_quiet(builder: std::thread::Builder, f: impl FnOnce() + Send + 'static) -> std::io::Result<()> {
    let old = sys::block_all_signals();
    let spawned = builder.spawn(f);
    if let Ok(mask) = old {
        let _ = sys::set_signal_mask(mask);
    }
    spawned.map(drop)
}

/// At exit, or exec (whose new image has no nvmmio state): every file finished, kept closed
/// files too, and every log of ours removed.
fn leave_process() {
    // The program's other threads run until the exit is made, and its descriptors stay open:
    // every file goes to the kernel under its lock first, so that a call the engine still serves
    // ends before the kernel serves any. Forgetting a descriptor first would send later calls
    // to the kernel while the engine still held older copies of their blocks, which its last
    // checkpoint would then write over them (a write an fsync had covered, lost).
    hand_all_to_kernel();
    for (fd, _) in table::all_fds() {
        release(fd);
    }
    closed::forget_all();
    LEAVING.store(true, Relaxed);
    background::remove_retired();
    let _ = drain_pool();
    share::at_exit();
}

/// Before fork, vfork or exec: every file checkpointed, every offset in the kernel.
fn checkpoint_all(push_offsets: bool) {
    for inode in table::all_inodes() {
        if let State::Engine(engine) = &mut *inode.lock() {
            let _ = engine.checkpoint();
        }
    }
    if push_offsets {
        for (fd, file) in table::all_fds() {
            io::push_to_kernel(fd, &file);
        }
    }
}
