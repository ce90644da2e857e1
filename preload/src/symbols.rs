//! Fast entry points: the hottest data calls, `fcntl` (SQLite's locks), `close` and the path
//! calls SQLite makes every transaction (`stat`, `unlink`) are also exported as libc symbols, so
//! a program's `pread`/`write`/`lseek`/`fcntl`/`stat`... reach nvmmio by a plain function call,
//! without paying for syscall_intercept's register save and trampoline (about 30 ns a call;
//! SQLite's WAL inserts on tmpfs, six `fcntl` each, ran 6% faster with `fcntl` here; a loop of
//! `stat` calls went from 5% over the kernel's time to none). Calls libc makes internally still
//! arrive through the patched `syscall` instructions and the same dispatch.
//!
//! Semantics match glibc's wrappers: `-1` and `errno` on failure, the same system call (fstat is
//! `newfstatat(fd, "", buf, AT_EMPTY_PATH)` as in glibc 2.36), and the same cancellation points:
//! in a multi-threaded process a call on a regular file or block device (which cannot block
//! indefinitely) checks for a pending `pthread_cancel` before and after, and a call on anything
//! else (a pipe or socket, where a thread may be cancelled while blocked) goes through libc's own
//! wrapper. The functions use the C-unwind ABI so that cancellation may unwind through them.
//!
//! # Safety
//! The exported functions only pass the caller's pointers on to the kernel (which checks them)
//! or to libc's own implementation, found with `dlsym(RTLD_NEXT)` at start-up; they never
//! dereference them.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::OnceLock;

use libc::{off_t, size_t, ssize_t};
use nvmmio_core::sys::syscall6;

use crate::{fd_table, ffi, hook};

extern "C" {
    /// glibc's public "no thread was ever created" flag (<sys/single_threaded.h>).
    static __libc_single_threaded: c_char;
}

extern "C-unwind" {
    /// Acts on a pending cancellation request (by unwinding the thread).
    fn pthread_testcancel();
}

type ReadFn = unsafe extern "C" fn(c_int, *mut c_void, size_t) -> ssize_t;
type WriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t) -> ssize_t;
type PreadFn = unsafe extern "C" fn(c_int, *mut c_void, size_t, off_t) -> ssize_t;
type PwriteFn = unsafe extern "C" fn(c_int, *const c_void, size_t, off_t) -> ssize_t;
type SyncFn = unsafe extern "C" fn(c_int) -> c_int;
type FcntlFn = unsafe extern "C" fn(c_int, c_int, ...) -> c_int;

/// libc's own implementations of the cancellation points we export.
struct Originals {
    read: ReadFn,
    write: WriteFn,
    pread64: PreadFn,
    pwrite64: PwriteFn,
    fsync: SyncFn,
    fdatasync: SyncFn,
    close: SyncFn,
    fcntl: FcntlFn,
}

static ORIGINALS: OnceLock<Option<Originals>> = OnceLock::new();

fn next_symbol(name: &CStr) -> Option<*mut c_void> {
    // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name; called once, from the constructor.
    let p = unsafe { libc::dlsym(libc::RTLD_NEXT, name.as_ptr()) };
    (!p.is_null()).then_some(p)
}

/// Finds libc's implementations; called from the constructor (dlsym may allocate).
pub fn resolve_originals() {
    ORIGINALS.get_or_init(|| {
        // SAFETY: each pointer is libc's definition of the symbol with exactly this C signature.
        unsafe {
            Some(Originals {
                read: std::mem::transmute::<*mut c_void, ReadFn>(next_symbol(c"read")?),
                write: std::mem::transmute::<*mut c_void, WriteFn>(next_symbol(c"write")?),
                pread64: std::mem::transmute::<*mut c_void, PreadFn>(next_symbol(c"pread64")?),
                pwrite64: std::mem::transmute::<*mut c_void, PwriteFn>(next_symbol(c"pwrite64")?),
                fsync: std::mem::transmute::<*mut c_void, SyncFn>(next_symbol(c"fsync")?),
                fdatasync: std::mem::transmute::<*mut c_void, SyncFn>(next_symbol(c"fdatasync")?),
                close: std::mem::transmute::<*mut c_void, SyncFn>(next_symbol(c"close")?),
                fcntl: std::mem::transmute::<*mut c_void, FcntlFn>(next_symbol(c"fcntl64")?),
            })
        }
    });
}

fn single_threaded() -> bool {
    // SAFETY: a plain byte that glibc only ever changes from 1 to 0.
    unsafe { core::ptr::read_volatile(&raw const __libc_single_threaded) != 0 }
}

/// glibc's convention: the value, or -1 with errno set.
fn libc_result(raw: isize) -> isize {
    if (-4095..0).contains(&raw) {
        ffi::set_errno(-raw as i32);
        -1
    } else {
        raw
    }
}

/// Serves the call here when possible; `None` means "use libc's wrapper" (a cancellation point
/// on a descriptor that may block, in a multi-threaded process: only libc can make it
/// cancellable while blocked).
///
/// Inlined into each exported function on purpose: on this kernel every return to user space
/// empties the return-stack predictor, so each `ret` between the `syscall` instruction and the
/// program costs a misprediction (about 5 ns). Like libc's wrappers, we execute just one.
#[inline(always)]
fn serve(nr: i64, args: [usize; 6], cancellation_point: bool) -> Option<isize> {
    serve_if(nr, args, cancellation_point, fd_table::never_blocks)
}

/// [`serve`], with `never_blocks` deciding which descriptors a cancellation point is served on.
#[inline(always)]
fn serve_if(nr: i64, args: [usize; 6], cancellation_point: bool, never_blocks: fn(i32) -> bool) -> Option<isize> {
    let cancellable = cancellation_point && ORIGINALS.get().is_some_and(Option::is_some) && !single_threaded();
    if cancellable && !never_blocks(args[0] as i32) {
        // libc's wrapper makes the (possibly blocking) call cancellable; it then reaches us
        // through syscall_intercept.
        return None;
    }
    if cancellable {
        // SAFETY: a libc function without arguments; it may unwind, which our C-unwind callers
        // allow, and no value with a destructor is alive here.
        unsafe { pthread_testcancel() };
    }
    let result = match hook::handle(nr as usize, args) {
        Some(result) => result,
        // SAFETY: the caller's own arguments for its own call. Deferred cancellation cannot
        // interrupt this instruction (regular files only, see above), so it need not unwind.
        None => unsafe { syscall6(nr as usize, args) },
    };
    if cancellable {
        // SAFETY: as above.
        unsafe { pthread_testcancel() };
    }
    Some(libc_result(result))
}

fn originals() -> &'static Originals {
    // `serve` returns None only when they were found.
    ORIGINALS.get().and_then(Option::as_ref).expect("libc originals resolved")
}

/// Exports each name as a fast entry for system call `$nr`. A `Some` fallback (libc's own
/// implementation) marks a cancellation point. Aliases get full copies, not calls to each other:
/// every extra `ret` after the `syscall` instruction costs a misprediction (see `serve`).
macro_rules! fast_entry {
    ($($name:ident),+ => $nr:expr, $params:tt -> $ret:ty, $fallback:expr) => {
        $( fast_entry!(@one $name, $nr, $params, $ret, $fallback); )+
    };
    (@one $name:ident, $nr:expr, ($($arg:ident: $ty:ty),*), $ret:ty, $fallback:expr) => {
        #[no_mangle]
        pub extern "C-unwind" fn $name($($arg: $ty),*) -> $ret {
            let mut args = [0usize; 6];
            let values = [$($arg as usize),*];
            args[..values.len()].copy_from_slice(&values);
            let fallback: Option<fn($($ty),*) -> $ret> = $fallback;
            match serve($nr, args, fallback.is_some()) {
                Some(result) => result as $ret,
                None => fallback.map_or(-1 as $ret, |f| f($($arg),*)),
            }
        }
    };
}

/// Defines `fn $name(args) -> ret` calling libc's implementation `originals().$field`.
macro_rules! libc_original {
    ($name:ident => $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        fn $name($($arg: $ty),*) -> $ret {
            // SAFETY: libc's own implementation, called with the caller's own arguments;
            // `originals()` holds it whenever `serve` declines a call.
            unsafe { (originals().$field)($($arg),*) }
        }
    };
}

libc_original!(libc_read => read, (fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t);
libc_original!(libc_write => write, (fd: c_int, buf: *const c_void, count: size_t) -> ssize_t);
libc_original!(libc_pread64 => pread64, (fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t);
libc_original!(libc_pwrite64 => pwrite64, (fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t);
libc_original!(libc_fsync => fsync, (fd: c_int) -> c_int);
libc_original!(libc_fdatasync => fdatasync, (fd: c_int) -> c_int);
libc_original!(libc_close => close, (fd: c_int) -> c_int);

fast_entry!(read => libc::SYS_read, (fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t, Some(libc_read));
fast_entry!(write => libc::SYS_write, (fd: c_int, buf: *const c_void, count: size_t) -> ssize_t, Some(libc_write));
fast_entry!(pread64, pread => libc::SYS_pread64,
    (fd: c_int, buf: *mut c_void, count: size_t, offset: off_t) -> ssize_t, Some(libc_pread64));
fast_entry!(pwrite64, pwrite => libc::SYS_pwrite64,
    (fd: c_int, buf: *const c_void, count: size_t, offset: off_t) -> ssize_t, Some(libc_pwrite64));
fast_entry!(fsync => libc::SYS_fsync, (fd: c_int) -> c_int, Some(libc_fsync));
fast_entry!(fdatasync => libc::SYS_fdatasync, (fd: c_int) -> c_int, Some(libc_fdatasync));
fast_entry!(lseek64, lseek => libc::SYS_lseek, (fd: c_int, offset: off_t, whence: c_int) -> off_t, None);
fast_entry!(unlink => libc::SYS_unlink, (path: *const c_char) -> c_int, None);
fast_entry!(unlinkat => libc::SYS_unlinkat, (dirfd: c_int, path: *const c_char, flags: c_int) -> c_int, None);

/// glibc 2.36's `fstat`, `stat`, `lstat` and `fstatat` all make `newfstatat(dirfd, path, buf,
/// flags)` (fstat with the empty path and `AT_EMPTY_PATH`); the same system call is made. SQLite
/// stats its journal's and WAL's names every transaction.
macro_rules! newfstatat_entry {
    ($($name:ident($arg:ident: $ty:ty) => ($dirfd:expr, $path:expr, $flags:expr);)+) => {$(
        #[no_mangle]
        pub extern "C-unwind" fn $name($arg: $ty, buf: *mut libc::stat) -> c_int {
            let args = [$dirfd as usize, $path as usize, buf as usize, $flags as usize, 0, 0];
            serve(libc::SYS_newfstatat, args, false).unwrap_or(-1) as c_int
        }
    )+};
}

newfstatat_entry! {
    fstat(fd: c_int) => (fd, c"".as_ptr(), libc::AT_EMPTY_PATH);
    fstat64(fd: c_int) => (fd, c"".as_ptr(), libc::AT_EMPTY_PATH);
    stat(path: *const c_char) => (libc::AT_FDCWD, path, 0);
    stat64(path: *const c_char) => (libc::AT_FDCWD, path, 0);
    lstat(path: *const c_char) => (libc::AT_FDCWD, path, libc::AT_SYMLINK_NOFOLLOW);
    lstat64(path: *const c_char) => (libc::AT_FDCWD, path, libc::AT_SYMLINK_NOFOLLOW);
}

/// `close` is a cancellation point: in a multi-threaded process the kernel would have to be asked
/// the type of a descriptor nvmmio has not seen opened, which costs more than the trampoline
/// saves on a descriptor about to go, so such a descriptor goes to libc's `close`.
#[no_mangle]
pub extern "C-unwind" fn close(fd: c_int) -> c_int {
    match serve_if(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0], true, fd_table::known_to_never_block) {
        Some(result) => result as c_int,
        None => libc_close(fd),
    }
}

fast_entry!(fstatat, fstatat64 => libc::SYS_newfstatat,
    (dirfd: c_int, path: *const c_char, buf: *mut libc::stat, flags: c_int) -> c_int, None);

/// `fcntl` (SQLite takes its locks with it, several a transaction, on files nvmmio serves):
/// glibc 2.36 makes the `fcntl` system call with the third argument as is, except that the
/// waiting lock commands are cancellation points and `F_GETOWN` is answered with `F_GETOWN_EX`:
/// those go to libc's own `fcntl64`. Declared with a fixed third argument: on x86-64 a variadic
/// call passes it in the same register, and the commands that take none ignore it.
macro_rules! fcntl_entry {
    ($($name:ident),+) => {$(
        #[no_mangle]
        pub extern "C-unwind" fn $name(fd: c_int, cmd: c_int, arg: usize) -> c_int {
            let args = [fd as usize, cmd as usize, arg, 0, 0, 0];
            if !matches!(cmd, libc::F_SETLKW | libc::F_OFD_SETLKW | libc::F_GETOWN) {
                if let Some(result) = serve(libc::SYS_fcntl, args, false) {
                    return result as c_int;
                }
            }
            match ORIGINALS.get().and_then(Option::as_ref) {
                // SAFETY: libc's own implementation, called with the caller's own arguments.
                Some(originals) => unsafe { (originals.fcntl)(fd, cmd, arg) },
                // SAFETY: as libc would (without the cancellation point, as before start-up).
                None => libc_result(unsafe { syscall6(libc::SYS_fcntl as usize, args) }) as c_int,
            }
        }
    )+};
}

fcntl_entry!(fcntl, fcntl64);
