//! The only code that talks to the kernel: thin, typed wrappers over raw system calls.
//!
//! Everything here bypasses libc (see [`raw`]), so it is safe to call from inside the syscall
//! hook, after `fork`, and in signal handlers: no allocation, no locks.
//!
//! # Safety
//! The private `plain` helper issues calls whose pointer arguments each public wrapper derives
//! from Rust references of the right size and lifetime; nothing else here dereferences memory.
#![allow(unsafe_code)]

pub mod ipc;
mod raw;

pub use raw::{syscall6, syscall6_cancellable};

/// An error number as the kernel returns it (positive, e.g. `libc::ENOENT`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Errno(pub i32);

impl Errno {
    /// Splits a raw kernel result into a value or an error.
    pub fn result(raw: isize) -> Result<usize, Errno> {
        if (-4095..0).contains(&raw) {
            Err(Errno(-raw as i32))
        } else {
            Ok(raw as usize)
        }
    }

    /// The value the hook hands back to libc: `-errno`.
    pub fn to_raw(self) -> isize {
        -(self.0 as isize)
    }
}

impl std::fmt::Display for Errno {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", crate::trace::errno_name(self.0), crate::trace::errno_text(self.0))
    }
}

/// Calls a system call whose arguments carry no pointers the kernel could misuse.
fn plain(nr: i64, a: [usize; 6]) -> Result<usize, Errno> {
    // SAFETY: only used below for calls whose arguments are integers or pointers that each
    // wrapper documents and derives from Rust references of the right size.
    Errno::result(unsafe { syscall6(nr as usize, a) })
}

pub fn getpid() -> i32 {
    plain(libc::SYS_getpid, [0; 6]).unwrap_or(0) as i32
}

/// Whether process `pid` exists (`kill(pid, 0)`; EPERM means it does, owned by another user).
pub fn process_exists(pid: i32) -> bool {
    !matches!(plain(libc::SYS_kill, [pid as usize, 0, 0, 0, 0, 0]), Err(Errno(libc::ESRCH)))
}

/// Sleeps for `ms` milliseconds (a signal may end it early).
pub fn sleep_ms(ms: u32) {
    let _ = plain(libc::SYS_poll, [0, 0, ms as usize, 0, 0, 0]);
}

pub fn gettid() -> i32 {
    plain(libc::SYS_gettid, [0; 6]).unwrap_or(0) as i32
}

/// Writes all of `buf` with as few calls as the kernel allows (one, for a pipe or an O_APPEND
/// file when `buf` is at most PIPE_BUF: lines from many writers never interleave).
pub fn write_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        let n = match plain(libc::SYS_write, [fd as usize, buf.as_ptr() as usize, buf.len(), 0, 0, 0]) {
            Ok(n) => n,
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        };
        buf = &buf[n.min(buf.len())..];
    }
    Ok(())
}

/// Opens `path` (NUL-terminated) relative to the current directory.
pub fn open(path: &std::ffi::CStr, flags: i32, mode: u32) -> Result<i32, Errno> {
    let a = [libc::AT_FDCWD as usize, path.as_ptr() as usize, flags as usize, mode as usize, 0, 0];
    plain(libc::SYS_openat, a).map(|fd| fd as i32)
}

pub fn close(fd: i32) -> Result<(), Errno> {
    plain(libc::SYS_close, [fd as usize, 0, 0, 0, 0, 0]).map(drop)
}

/// `fcntl(fd, F_DUPFD_CLOEXEC, min)`: a close-on-exec copy of `fd` numbered at least `min`.
pub fn dup_cloexec_at_least(fd: i32, min: i32) -> Result<i32, Errno> {
    let a = [fd as usize, libc::F_DUPFD_CLOEXEC as usize, min as usize, 0, 0, 0];
    plain(libc::SYS_fcntl, a).map(|fd| fd as i32)
}

/// Whether `fd` is closed on exec (FD_CLOEXEC); an error counts as not.
pub fn is_cloexec(fd: i32) -> bool {
    plain(libc::SYS_fcntl, [fd as usize, libc::F_GETFD as usize, 0, 0, 0, 0])
        .is_ok_and(|f| f as i32 & libc::FD_CLOEXEC != 0)
}

/// The file type bits (`S_IFMT`) of an open descriptor.
pub fn file_type(fd: i32) -> Result<u32, Errno> {
    Ok(fstat(fd)?.st_mode & libc::S_IFMT)
}

/// Copies `dst.len()` bytes of this process's memory at `addr` without faulting: the kernel
/// reports an unmapped or unreadable range as `EFAULT` instead of a SIGSEGV.
pub fn read_own_memory(addr: usize, dst: &mut [u8]) -> Result<usize, Errno> {
    let local = libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: dst.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: dst.len() };
    let a = [getpid() as usize, &local as *const libc::iovec as usize, 1, &remote as *const libc::iovec as usize, 1, 0];
    plain(libc::SYS_process_vm_readv, a)
}

/// The time of `clock` in nanoseconds (vDSO, no system call).
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; clock_gettime goes through the vDSO and makes
    // no system call for these clocks, so it cannot re-enter the hook.
    unsafe {
        libc::clock_gettime(clock, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Monotonic time in nanoseconds.
pub fn monotonic_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Wall-clock time in nanoseconds since the epoch.
pub fn realtime_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME)
}

/// [`realtime_ns`] as of the last clock tick (CLOCK_REALTIME_COARSE: the clock the kernel
/// stamps file times with when no one looked at them; a fraction of the cost).
pub fn realtime_coarse_ns() -> u64 {
    clock_ns(libc::CLOCK_REALTIME_COARSE)
}

/// A small buffered writer to a descriptor, for multi-line output (summaries) without allocating.
pub struct FdWriter {
    fd: i32,
    buf: [u8; 1024],
    len: usize,
    error: Option<Errno>,
}

impl FdWriter {
    pub fn new(fd: i32) -> Self {
        FdWriter { fd, buf: [0; 1024], len: 0, error: None }
    }

    /// Writes what is buffered; reports the first error seen.
    pub fn flush(&mut self) -> Result<(), Errno> {
        if let Err(e) = write_all(self.fd, &self.buf[..self.len]) {
            self.error.get_or_insert(e);
        }
        self.len = 0;
        self.error.map_or(Ok(()), Err)
    }
}

impl std::fmt::Write for FdWriter {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        for chunk in s.as_bytes().chunks(self.buf.len()) {
            if self.len + chunk.len() > self.buf.len() {
                let _ = self.flush();
            }
            self.buf[self.len..self.len + chunk.len()].copy_from_slice(chunk);
            self.len += chunk.len();
        }
        Ok(())
    }
}

/// `pread64`: reads up to `buf.len()` bytes at `offset`; retries on EINTR.
pub fn pread(fd: i32, buf: &mut [u8], offset: u64) -> Result<usize, Errno> {
    loop {
        let a = [fd as usize, buf.as_mut_ptr() as usize, buf.len(), offset as usize, 0, 0];
        match plain(libc::SYS_pread64, a) {
            Err(Errno(libc::EINTR)) => continue,
            r => return r,
        }
    }
}

/// `pwrite64` of all of `buf` at `offset` (loops over short writes, retries on EINTR).
pub fn pwrite_all(fd: i32, mut buf: &[u8], mut offset: u64) -> Result<(), Errno> {
    while !buf.is_empty() {
        let a = [fd as usize, buf.as_ptr() as usize, buf.len(), offset as usize, 0, 0];
        match plain(libc::SYS_pwrite64, a) {
            Ok(0) => return Err(Errno(libc::EIO)),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Writes every byte of `pieces`, in order, at `offset` (pwritev; short writes resumed).
pub fn pwritev_all(fd: i32, pieces: &[&[u8]], offset: u64) -> Result<(), Errno> {
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    let iov: Vec<libc::iovec> =
        pieces.iter().map(|p| libc::iovec { iov_base: p.as_ptr() as *mut libc::c_void, iov_len: p.len() }).collect();
    let a = [fd as usize, iov.as_ptr() as usize, iov.len(), offset as usize, 0, 0];
    match plain(libc::SYS_pwritev, a) {
        Ok(n) if n == total => Ok(()),
        Ok(n) => {
            // Rare: finish piece by piece from where it stopped.
            let mut skip = n;
            let mut at = offset + n as u64;
            for p in pieces {
                let rest = &p[skip.min(p.len())..];
                skip -= (p.len() - rest.len()).min(skip);
                pwrite_all(fd, rest, at)?;
                at += rest.len() as u64;
            }
            Ok(())
        }
        Err(Errno(libc::EINTR)) => pwritev_all(fd, pieces, offset),
        Err(e) => Err(e),
    }
}

pub fn ftruncate(fd: i32, len: u64) -> Result<(), Errno> {
    plain(libc::SYS_ftruncate, [fd as usize, len as usize, 0, 0, 0, 0]).map(drop)
}

pub fn fdatasync(fd: i32) -> Result<(), Errno> {
    plain(libc::SYS_fdatasync, [fd as usize, 0, 0, 0, 0, 0]).map(drop)
}

pub fn fsync(fd: i32) -> Result<(), Errno> {
    plain(libc::SYS_fsync, [fd as usize, 0, 0, 0, 0, 0]).map(drop)
}

pub fn fchmod(fd: i32, mode: u32) -> Result<(), Errno> {
    plain(libc::SYS_fchmod, [fd as usize, mode as usize, 0, 0, 0, 0]).map(drop)
}

/// `fsetxattr(fd, name, value, 0)`: creates or replaces the attribute.
pub fn fsetxattr(fd: i32, name: &std::ffi::CStr, value: &[u8]) -> Result<(), Errno> {
    let a = [fd as usize, name.as_ptr() as usize, value.as_ptr() as usize, value.len(), 0, 0];
    plain(libc::SYS_fsetxattr, a).map(drop)
}

/// `fgetxattr(fd, name, buf)`: the attribute's length (ENODATA when there is none).
pub fn fgetxattr(fd: i32, name: &std::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let a = [fd as usize, name.as_ptr() as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0];
    plain(libc::SYS_fgetxattr, a)
}

pub fn fremovexattr(fd: i32, name: &std::ffi::CStr) -> Result<(), Errno> {
    plain(libc::SYS_fremovexattr, [fd as usize, name.as_ptr() as usize, 0, 0, 0, 0]).map(drop)
}

/// Blocks every signal in the calling thread and returns the mask it had (a helper thread: the
/// program's signals are for its own threads).
pub fn block_all_signals() -> Result<u64, Errno> {
    let all: u64 = !0;
    let mut old: u64 = 0;
    let a = [libc::SIG_BLOCK as usize, &all as *const u64 as usize, &mut old as *mut u64 as usize, 8, 0, 0];
    plain(libc::SYS_rt_sigprocmask, a).map(|_| old)
}

/// Sets the calling thread's signal mask (back to what [`block_all_signals`] returned).
pub fn set_signal_mask(mask: u64) -> Result<(), Errno> {
    let a = [libc::SIG_SETMASK as usize, &mask as *const u64 as usize, 0, 8, 0, 0];
    plain(libc::SYS_rt_sigprocmask, a).map(drop)
}

/// `fallocate(fd, 0, offset, len)`: reserves blocks so later stores cannot hit ENOSPC.
pub fn fallocate(fd: i32, offset: u64, len: u64) -> Result<(), Errno> {
    plain(libc::SYS_fallocate, [fd as usize, 0, offset as usize, len as usize, 0, 0]).map(drop)
}

/// `fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, len)`: blocks allocated, size and contents
/// unchanged.
pub fn fallocate_keep_size(fd: i32, offset: u64, len: u64) -> Result<(), Errno> {
    let a = [fd as usize, libc::FALLOC_FL_KEEP_SIZE as usize, offset as usize, len as usize, 0, 0];
    plain(libc::SYS_fallocate, a).map(drop)
}

/// [`fallocate`] of a range that may end past the file's end. If it fails (ENOSPC) after
/// moving the size, the file is cut back to the size it had: ext4 keeps the blocks a failed
/// fallocate got before it ran out, and the size they reach (tmpfs gives them back itself), so
/// that room would be lost to every later write, ours and other files', and the file would
/// look longer than it is. The cut also frees blocks allocated past the end before.
pub fn fallocate_or_undo(fd: i32, offset: u64, len: u64) -> Result<(), Errno> {
    let before = file_size(fd)?;
    let r = fallocate(fd, offset, len);
    if r.is_err() && file_size(fd).is_ok_and(|now| now > before) {
        let _ = ftruncate(fd, before);
    }
    r
}

/// Allocates `offset..offset + len`, past the file's end, without changing its size
/// (`FALLOC_FL_KEEP_SIZE`). If that fails, the range is punched out again (ext4 keeps what a
/// failed call allocated): only for a range that holds nothing else.
pub fn fallocate_past_end(fd: i32, offset: u64, len: u64) -> Result<(), Errno> {
    let call =
        |mode: i32| plain(libc::SYS_fallocate, [fd as usize, mode as usize, offset as usize, len as usize, 0, 0]);
    let r = call(libc::FALLOC_FL_KEEP_SIZE).map(drop);
    if r.is_err() {
        let _ = call(libc::FALLOC_FL_KEEP_SIZE | libc::FALLOC_FL_PUNCH_HOLE);
    }
    r
}

/// `fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, len)`: the blocks of the
/// range are freed (it reads as zeros), the size is unchanged.
pub fn punch_hole(fd: i32, offset: u64, len: u64) -> Result<(), Errno> {
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    plain(libc::SYS_fallocate, [fd as usize, mode as usize, offset as usize, len as usize, 0, 0]).map(drop)
}

/// The size in bytes of an open file.
pub fn file_size(fd: i32) -> Result<u64, Errno> {
    Ok(fstat(fd)?.st_size as u64)
}

/// `openat(dirfd, path, flags, mode)`.
pub fn openat(dirfd: i32, path: &std::ffi::CStr, flags: i32, mode: u32) -> Result<i32, Errno> {
    let a = [dirfd as usize, path.as_ptr() as usize, flags as usize, mode as usize, 0, 0];
    plain(libc::SYS_openat, a).map(|fd| fd as i32)
}

/// `fstat` (as glibc does it: `newfstatat(fd, "", AT_EMPTY_PATH)`).
pub fn fstat(fd: i32) -> Result<libc::stat, Errno> {
    stat_at(fd, c"", libc::AT_EMPTY_PATH)
}

/// `stat` of a path (following symbolic links).
pub fn stat(path: &std::ffi::CStr) -> Result<libc::stat, Errno> {
    stat_at(libc::AT_FDCWD, path, 0)
}

/// `newfstatat(dirfd, path, flags)`.
pub fn stat_at(dirfd: i32, path: &std::ffi::CStr, flags: i32) -> Result<libc::stat, Errno> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    let a = [dirfd as usize, path.as_ptr() as usize, st.as_mut_ptr() as usize, flags as usize, 0, 0];
    plain(libc::SYS_newfstatat, a)?;
    // SAFETY: zero-initialised, and filled by the kernel on success.
    Ok(unsafe { st.assume_init() })
}

/// `readlink` into `buf`; returns the length (not NUL-terminated).
pub fn readlink(path: &std::ffi::CStr, buf: &mut [u8]) -> Result<usize, Errno> {
    let a = [libc::AT_FDCWD as usize, path.as_ptr() as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0];
    plain(libc::SYS_readlinkat, a)
}

pub fn mkdir(path: &std::ffi::CStr, mode: u32) -> Result<(), Errno> {
    plain(libc::SYS_mkdirat, [libc::AT_FDCWD as usize, path.as_ptr() as usize, mode as usize, 0, 0, 0]).map(drop)
}

pub fn unlink(path: &std::ffi::CStr) -> Result<(), Errno> {
    plain(libc::SYS_unlinkat, [libc::AT_FDCWD as usize, path.as_ptr() as usize, 0, 0, 0, 0]).map(drop)
}

/// The names in directory `dir` (without `.` and `..`), read with `getdents64`.
pub fn dir_names(dir: &std::ffi::CStr) -> Result<Vec<Vec<u8>>, Errno> {
    let fd = openat(libc::AT_FDCWD, dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)?;
    let mut names = Vec::new();
    let mut buf = vec![0u8; 8192];
    let result = loop {
        let n = match plain(libc::SYS_getdents64, [fd as usize, buf.as_mut_ptr() as usize, buf.len(), 0, 0, 0]) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        // Records: inode u64, offset i64, length u16, type u8, NUL-terminated name.
        let mut at = 0;
        while at + 19 < n {
            let len = u16::from_ne_bytes([buf[at + 16], buf[at + 17]]) as usize;
            if len == 0 || at + len > n {
                break;
            }
            let name = &buf[at + 19..at + len];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
            at += len;
        }
    };
    close_owned(fd);
    result.map(|()| names)
}

pub fn flock(fd: i32, op: i32) -> Result<(), Errno> {
    plain(libc::SYS_flock, [fd as usize, op as usize, 0, 0, 0, 0]).map(drop)
}

pub fn lseek(fd: i32, offset: i64, whence: i32) -> Result<u64, Errno> {
    plain(libc::SYS_lseek, [fd as usize, offset as usize, whence as usize, 0, 0, 0]).map(|o| o as u64)
}

/// The largest offset `lseek` accepts on `fd`: its file system's largest file size (the
/// kernel's `s_maxbytes`), found by bisection. Moves `fd`'s offset: for nvmmio's own ones.
pub fn largest_file_size(fd: i32) -> u64 {
    let fits = |offset: i64| lseek(fd, offset, libc::SEEK_SET).is_ok();
    if fits(i64::MAX) {
        return i64::MAX as u64;
    }
    let (mut ok, mut too_far) = (0i64, i64::MAX);
    while too_far - ok > 1 {
        let mid = ok + (too_far - ok) / 2;
        if fits(mid) {
            ok = mid;
        } else {
            too_far = mid;
        }
    }
    let _ = lseek(fd, 0, libc::SEEK_SET);
    ok as u64
}

/// Whether `fd` is on tmpfs (memory only: nothing there survives a power loss, so there is
/// nothing to write back, and a process kill keeps what is in memory).
pub fn on_tmpfs(fd: i32) -> bool {
    let mut st = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    let ok = plain(libc::SYS_fstatfs, [fd as usize, st.as_mut_ptr() as usize, 0, 0, 0, 0]).is_ok();
    // SAFETY: zero-initialised, and filled by the kernel on success.
    ok && unsafe { st.assume_init() }.f_type == libc::TMPFS_MAGIC
}

/// `renameat2(from, to, RENAME_NOREPLACE)`: EEXIST if `to` exists.
pub fn rename_noreplace(from: &std::ffi::CStr, to: &std::ffi::CStr) -> Result<(), Errno> {
    let a = [
        libc::AT_FDCWD as usize,
        from.as_ptr() as usize,
        libc::AT_FDCWD as usize,
        to.as_ptr() as usize,
        libc::RENAME_NOREPLACE as usize,
        0,
    ];
    plain(libc::SYS_renameat2, a).map(drop)
}

/// Called with each descriptor [`close_owned`] closes (the preload unguards its own ones).
static CLOSE_HOOK: std::sync::OnceLock<fn(i32)> = std::sync::OnceLock::new();

/// Registers the function told about descriptors nvmmio's own objects close.
pub fn set_close_hook(hook: fn(i32)) {
    let _ = CLOSE_HOOK.set(hook);
}

/// Closes a descriptor owned by one of nvmmio's objects (a log, a data file).
pub fn close_owned(fd: i32) {
    if let Some(hook) = CLOSE_HOOK.get() {
        hook(fd);
    }
    let _ = close(fd);
}
