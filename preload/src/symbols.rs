//! Fast entry points: the hottest data calls are also exported as libc symbols, so a program's
//! `pread`/`write`/`lseek`... reach nvmmio by a plain function call, without paying for
//! syscall_intercept's register save and trampoline (about 30 ns a call). Calls libc makes
//! internally still arrive through the patched `syscall` instructions and the same dispatch.
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

use crate::dispatch::run;
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

/// libc's own implementations of the cancellation points we export.
struct Originals {
    read: ReadFn,
    write: WriteFn,
    pread64: PreadFn,
    pwrite64: PwriteFn,
    fsync: SyncFn,
    fdatasync: SyncFn,
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
/// in a multi-threaded process, which only libc can make cancellable).
fn serve(nr: i64, args: [usize; 6], cancellation_point: bool) -> Option<isize> {
    let cancellable =
        cancellation_point && ORIGINALS.get().is_some_and(Option::is_some) && !single_threaded();
    if cancellable && !fd_table::never_blocks(args[0] as i32) {
        // libc's wrapper makes the (possibly blocking) call cancellable; it then reaches us
        // through syscall_intercept.
        return None;
    }
    if cancellable {
        // SAFETY: a libc function without arguments; it may unwind, which our C-unwind callers
        // allow, and no value with a destructor is alive here.
        unsafe { pthread_testcancel() };
    }
    let result = hook::handle(nr as usize, args).unwrap_or_else(|| run(nr as usize, args));
    if cancellable {
        // SAFETY: as above.
        unsafe { pthread_testcancel() };
    }
    Some(libc_result(result))
}

fn originals() -> &'static Originals {
    // `serve` returns None only when they were found.
    ORIGINALS
        .get()
        .and_then(Option::as_ref)
        .expect("libc originals resolved")
}

#[no_mangle]
pub extern "C-unwind" fn read(fd: c_int, buf: *mut c_void, count: size_t) -> ssize_t {
    let args = [fd as usize, buf as usize, count, 0, 0, 0];
    // SAFETY: libc's read with the caller's own arguments.
    serve(libc::SYS_read, args, true)
        .unwrap_or_else(|| unsafe { (originals().read)(fd, buf, count) })
}

#[no_mangle]
pub extern "C-unwind" fn write(fd: c_int, buf: *const c_void, count: size_t) -> ssize_t {
    let args = [fd as usize, buf as usize, count, 0, 0, 0];
    // SAFETY: libc's write with the caller's own arguments.
    serve(libc::SYS_write, args, true)
        .unwrap_or_else(|| unsafe { (originals().write)(fd, buf, count) })
}

#[no_mangle]
pub extern "C-unwind" fn pread64(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    let args = [fd as usize, buf as usize, count, offset as usize, 0, 0];
    // SAFETY: libc's pread64 with the caller's own arguments.
    serve(libc::SYS_pread64, args, true)
        .unwrap_or_else(|| unsafe { (originals().pread64)(fd, buf, count, offset) })
}

#[no_mangle]
pub extern "C-unwind" fn pread(
    fd: c_int,
    buf: *mut c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    pread64(fd, buf, count, offset)
}

#[no_mangle]
pub extern "C-unwind" fn pwrite64(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    let args = [fd as usize, buf as usize, count, offset as usize, 0, 0];
    // SAFETY: libc's pwrite64 with the caller's own arguments.
    serve(libc::SYS_pwrite64, args, true)
        .unwrap_or_else(|| unsafe { (originals().pwrite64)(fd, buf, count, offset) })
}

#[no_mangle]
pub extern "C-unwind" fn pwrite(
    fd: c_int,
    buf: *const c_void,
    count: size_t,
    offset: off_t,
) -> ssize_t {
    pwrite64(fd, buf, count, offset)
}

#[no_mangle]
pub extern "C-unwind" fn lseek64(fd: c_int, offset: off_t, whence: c_int) -> off_t {
    let args = [fd as usize, offset as usize, whence as usize, 0, 0, 0];
    serve(libc::SYS_lseek, args, false).unwrap_or(-1) as off_t
}

#[no_mangle]
pub extern "C-unwind" fn lseek(fd: c_int, offset: off_t, whence: c_int) -> off_t {
    lseek64(fd, offset, whence)
}

#[no_mangle]
pub extern "C-unwind" fn fstat64(fd: c_int, buf: *mut libc::stat) -> c_int {
    let args = [
        fd as usize,
        c"".as_ptr() as usize,
        buf as usize,
        libc::AT_EMPTY_PATH as usize,
        0,
        0,
    ];
    serve(libc::SYS_newfstatat, args, false).unwrap_or(-1) as c_int
}

#[no_mangle]
pub extern "C-unwind" fn fstat(fd: c_int, buf: *mut libc::stat) -> c_int {
    fstat64(fd, buf)
}

#[no_mangle]
pub extern "C-unwind" fn fsync(fd: c_int) -> c_int {
    let args = [fd as usize, 0, 0, 0, 0, 0];
    // SAFETY: libc's fsync with the caller's own argument.
    serve(libc::SYS_fsync, args, true)
        .unwrap_or_else(|| unsafe { (originals().fsync)(fd) } as isize) as c_int
}

#[no_mangle]
pub extern "C-unwind" fn fdatasync(fd: c_int) -> c_int {
    let args = [fd as usize, 0, 0, 0, 0, 0];
    // SAFETY: libc's fdatasync with the caller's own argument.
    serve(libc::SYS_fdatasync, args, true)
        .unwrap_or_else(|| unsafe { (originals().fdatasync)(fd) } as isize) as c_int
}
