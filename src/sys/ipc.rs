//! Wrappers for what processes sharing a managed file coordinate with: byte-range locks (each
//! lock byte stands for one file) and local stream sockets in the abstract namespace.
//!
//! # Safety
//! Every call passes pointers to locals of the exact type the kernel expects.
#![allow(unsafe_code)]

use super::{plain, Errno};

/// A lock on one byte: shared, exclusive, or none.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum LockKind {
    Shared,
    Exclusive,
    Unlock,
}

impl LockKind {
    fn raw(self) -> i16 {
        match self {
            LockKind::Shared => libc::F_RDLCK as i16,
            LockKind::Exclusive => libc::F_WRLCK as i16,
            LockKind::Unlock => libc::F_UNLCK as i16,
        }
    }
}

/// `len` 0 means to the end of any file.
fn range_lock(fd: i32, cmd: i32, kind: LockKind, start: i64, len: i64) -> Result<libc::flock, Errno> {
    let mut lock =
        libc::flock { l_type: kind.raw(), l_whence: libc::SEEK_SET as i16, l_start: start, l_len: len, l_pid: 0 };
    loop {
        let a = [fd as usize, cmd as usize, &mut lock as *mut libc::flock as usize, 0, 0, 0];
        match plain(libc::SYS_fcntl, a) {
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(lock),
        }
    }
}

fn byte_lock(fd: i32, cmd: i32, kind: LockKind, byte: i64) -> Result<libc::flock, Errno> {
    range_lock(fd, cmd, kind, byte, 1)
}

/// An open-file-description lock on the whole file, never waiting (EAGAIN if any other lock is
/// held on any byte of it).
pub fn description_lock_all(fd: i32, kind: LockKind) -> Result<(), Errno> {
    range_lock(fd, libc::F_OFD_SETLK, kind, 0, 0).map(drop)
}

/// An open-file-description lock on `byte` (F_OFD_SETLK, or F_OFD_SETLKW with `wait`): owned by
/// the description, so every process that opens the lock file holds its own, and a process's
/// death drops them. Converting a held lock to another kind is atomic. EAGAIN when it conflicts
/// and `wait` is false.
pub fn description_lock(fd: i32, kind: LockKind, byte: i64, wait: bool) -> Result<(), Errno> {
    let cmd = if wait { libc::F_OFD_SETLKW } else { libc::F_OFD_SETLK };
    byte_lock(fd, cmd, kind, byte).map(drop)
}

/// [`description_lock`] on the bytes `first` and `first + 1` at once, never waiting: all of the
/// range is taken, or none (EAGAIN).
pub fn description_lock_pair(fd: i32, kind: LockKind, first: i64) -> Result<(), Errno> {
    range_lock(fd, libc::F_OFD_SETLK, kind, first, 2).map(drop)
}

/// A process-owned lock on `byte` (F_SETLK, never waits): [`lock_holder`] reports its owner's
/// process ID. EAGAIN when another process holds it.
pub fn process_lock(fd: i32, kind: LockKind, byte: i64) -> Result<(), Errno> {
    byte_lock(fd, libc::F_SETLK, kind, byte).map(drop)
}

/// The process ID of another process holding a process-owned lock on `byte` (F_GETLK).
pub fn lock_holder(fd: i32, byte: i64) -> Result<Option<i32>, Errno> {
    let lock = byte_lock(fd, libc::F_GETLK, LockKind::Exclusive, byte)?;
    Ok((lock.l_type != libc::F_UNLCK as i16 && lock.l_pid > 0).then_some(lock.l_pid))
}

/// An abstract-namespace address (`name` without the leading NUL) and its length.
fn abstract_address(name: &[u8]) -> Result<(libc::sockaddr_un, u32), Errno> {
    // SAFETY: sockaddr_un is plain data; all zeros is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if name.len() + 1 > addr.sun_path.len() {
        return Err(Errno(libc::ENAMETOOLONG));
    }
    addr.sun_family = libc::AF_UNIX as u16;
    for (dst, &b) in addr.sun_path[1..].iter_mut().zip(name) {
        *dst = b as libc::c_char;
    }
    Ok((addr, (std::mem::size_of::<libc::sa_family_t>() + 1 + name.len()) as u32))
}

fn stream_socket() -> Result<i32, Errno> {
    let a = [libc::AF_UNIX as usize, (libc::SOCK_STREAM | libc::SOCK_CLOEXEC) as usize, 0, 0, 0, 0];
    plain(libc::SYS_socket, a).map(|fd| fd as i32)
}

/// A listening stream socket bound to the abstract name `name`.
pub fn listen_abstract(name: &[u8]) -> Result<i32, Errno> {
    let (addr, len) = abstract_address(name)?;
    let fd = stream_socket()?;
    let bound = plain(libc::SYS_bind, [fd as usize, &addr as *const libc::sockaddr_un as usize, len as usize, 0, 0, 0])
        .and_then(|_| plain(libc::SYS_listen, [fd as usize, 64, 0, 0, 0, 0]));
    match bound {
        Ok(_) => Ok(fd),
        Err(e) => {
            let _ = super::close(fd);
            Err(e)
        }
    }
}

/// A stream socket connected to the abstract name `name` (ECONNREFUSED if nobody listens).
pub fn connect_abstract(name: &[u8]) -> Result<i32, Errno> {
    let (addr, len) = abstract_address(name)?;
    let fd = stream_socket()?;
    loop {
        let a = [fd as usize, &addr as *const libc::sockaddr_un as usize, len as usize, 0, 0, 0];
        match plain(libc::SYS_connect, a) {
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => {
                let _ = super::close(fd);
                return Err(e);
            }
            Ok(_) => return Ok(fd),
        }
    }
}

/// The next connection on a listening socket (close-on-exec); EAGAIN if none is waiting.
pub fn accept(fd: i32) -> Result<i32, Errno> {
    let flags = (libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK) as usize;
    loop {
        match plain(libc::SYS_accept4, [fd as usize, 0, 0, flags, 0, 0]) {
            Err(Errno(libc::EINTR)) => continue,
            r => return r.map(|c| c as i32),
        }
    }
}

/// Waits up to `timeout_ms` for `fd` to be readable (or closed by the other end).
pub fn wait_readable(fd: i32, timeout_ms: i32) -> Result<bool, Errno> {
    let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    match plain(libc::SYS_poll, [&mut poll as *mut libc::pollfd as usize, 1, timeout_ms as usize, 0, 0, 0]) {
        Err(Errno(libc::EINTR)) => Ok(false),
        r => r.map(|n| n > 0),
    }
}

/// Reads exactly `buf.len()` bytes (EPIPE if the other end closes first, EAGAIN if a
/// non-blocking socket stays silent for a second).
pub fn read_exact(fd: i32, buf: &mut [u8]) -> Result<(), Errno> {
    let mut at = 0;
    while at < buf.len() {
        let rest = &mut buf[at..];
        match plain(libc::SYS_read, [fd as usize, rest.as_mut_ptr() as usize, rest.len(), 0, 0, 0]) {
            Ok(0) => return Err(Errno(libc::EPIPE)),
            Ok(n) => at += n,
            Err(Errno(libc::EINTR)) => continue,
            // A non-blocking socket: wait a little for the rest.
            Err(Errno(libc::EAGAIN)) if wait_readable(fd, 1000)? => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Sends all of `buf` on a socket without raising SIGPIPE if the other end is gone.
pub fn send_all(fd: i32, mut buf: &[u8]) -> Result<(), Errno> {
    while !buf.is_empty() {
        let a = [fd as usize, buf.as_ptr() as usize, buf.len(), libc::MSG_NOSIGNAL as usize, 0, 0];
        match plain(libc::SYS_sendto, a) {
            Ok(n) => buf = &buf[n.min(buf.len())..],
            Err(Errno(libc::EINTR)) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
