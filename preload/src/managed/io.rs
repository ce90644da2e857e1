//! The data calls the engine serves for a managed descriptor, with the kernel's argument checks
//! and error numbers, and the stat results it corrects.

use std::sync::Arc;

use nvmmio_core::engine::{Mode, Piece};
use nvmmio_core::sys::{self, Errno};

use super::table::{self, Engine, Inode, OpenFile, State};
use crate::usercopy;

/// The kernel's largest single transfer (MAX_RW_COUNT).
const MAX_RW: usize = 0x7fff_f000;
const IOV_MAX: usize = 1024;

fn err(e: i32) -> isize {
    Errno(e).to_raw()
}

fn result(r: Result<usize, Errno>) -> isize {
    match r {
        Ok(n) => n as isize,
        Err(e) => e.to_raw(),
    }
}

/// One program buffer of an I/O call.
#[derive(Clone, Copy)]
struct Buf {
    addr: usize,
    len: usize,
}

/// The buffers of one call: most calls have one, kept without allocating (an allocation and
/// its free were about 7% of the instructions of a served 128-byte write).
enum Bufs {
    One([Buf; 1]),
    Many(Vec<Buf>),
}

impl std::ops::Deref for Bufs {
    type Target = [Buf];
    fn deref(&self) -> &[Buf] {
        match self {
            Bufs::One(b) => b,
            Bufs::Many(v) => v,
        }
    }
}

impl std::ops::DerefMut for Bufs {
    fn deref_mut(&mut self) -> &mut [Buf] {
        match self {
            Bufs::One(b) => b,
            Bufs::Many(v) => v,
        }
    }
}

/// The buffers of a call: one, or an iovec array (copied in, checked like the kernel does).
fn buffers(single: Option<(usize, usize)>, iov: Option<(usize, usize)>) -> Result<Bufs, Errno> {
    if let Some((addr, len)) = single {
        return Ok(Bufs::One([Buf { addr, len: len.min(MAX_RW) }]));
    }
    let (addr, count) = iov.unwrap_or((0, 0));
    if count > IOV_MAX {
        return Err(Errno(libc::EINVAL));
    }
    let mut raw = vec![0u8; count * 16];
    usercopy::copy_from_user(&mut raw, addr)?;
    let mut total = 0usize;
    let mut bufs = Vec::with_capacity(count);
    for c in raw.chunks_exact(16) {
        let base = usize::from_ne_bytes(c[..8].try_into().unwrap());
        let len = usize::from_ne_bytes(c[8..].try_into().unwrap());
        if len > isize::MAX as usize {
            return Err(Errno(libc::EINVAL));
        }
        // The kernel caps the total at MAX_RW_COUNT, shortening the last buffers.
        let len = len.min(MAX_RW - total);
        total += len;
        bufs.push(Buf { addr: base, len });
    }
    Ok(Bufs::Many(bufs))
}

/// Reads from the engine into the program's buffers. A bad buffer gives EFAULT if nothing was
/// read, else the count so far (as the kernel).
fn read_into(engine: &Engine, offset: u64, bufs: &[Buf]) -> Result<usize, Errno> {
    let total: usize = bufs.iter().map(|b| b.len).sum();
    let (mut buf_i, mut in_buf, mut done) = (0usize, 0usize, 0usize);
    let copied = engine.read_pieces(offset, total, &mut |piece| {
        let mut left = piece.len();
        let mut from = 0;
        while left > 0 {
            while bufs[buf_i].len == in_buf {
                buf_i += 1;
                in_buf = 0;
            }
            let b = bufs[buf_i];
            let n = left.min(b.len - in_buf);
            let dst = b.addr + in_buf;
            match &piece {
                Piece::Bytes(bytes) => usercopy::copy_to_user(dst, &bytes[from..from + n])?,
                Piece::Zeros(_) => usercopy::zero_user(dst, n)?,
            }
            in_buf += n;
            from += n;
            left -= n;
            done += n;
        }
        Ok(())
    });
    match copied {
        Ok(n) => Ok(n),
        Err(e) if done == 0 => Err(e),
        Err(_) => Ok(done),
    }
}

/// How a write reaches the engine: with the file held alone, or shared with other readers and
/// writers (the engine may then decline: see `ManagedFile::write_shared`).
enum Writer<'a> {
    Alone(&'a mut Engine),
    Shared(&'a Engine),
}

impl Writer<'_> {
    fn engine(&self) -> &Engine {
        match self {
            Writer::Alone(e) => e,
            Writer::Shared(e) => e,
        }
    }
}

/// Writes the program's buffers at `offset`. A bad buffer ends the write where it starts to be
/// unreadable (EFAULT if that is the first byte), as the kernel does. `None`: a shared writer
/// was declined, nothing was written.
fn write_from(writer: &mut Writer, offset: u64, bufs: &[Buf]) -> Option<Result<usize, Errno>> {
    let total: usize = bufs.iter().map(|b| b.len).sum();
    let (mut buf_i, mut in_buf) = (0usize, 0usize);
    let mut faulted = false;
    let mut fill = |dst: &mut [u8]| {
        let mut at = 0;
        while at < dst.len() && !faulted {
            while bufs[buf_i].len == in_buf {
                buf_i += 1;
                in_buf = 0;
            }
            let b = bufs[buf_i];
            let n = (dst.len() - at).min(b.len - in_buf);
            let got = usercopy::copy_from_user_partial(&mut dst[at..at + n], b.addr + in_buf);
            at += got;
            in_buf += got;
            faulted = got < n;
        }
        at
    };
    let written = match writer {
        Writer::Alone(engine) => engine.write_with(offset, total, &mut fill),
        Writer::Shared(engine) => engine.write_shared(offset, total, &mut fill)?,
    };
    Some(match written {
        Ok(0) if total > 0 => Err(Errno(libc::EFAULT)),
        other => other,
    })
}

/// Calls served by the engine, for the exit summary.
pub static SERVED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Serves a data call on a managed descriptor; `None` when the kernel should run it (the file
/// was handed to the kernel, or the call is not a data call).
pub fn serve(nr: usize, args: [usize; 6], file: &Arc<OpenFile>) -> Option<isize> {
    let mut held = None;
    if plain_write(nr, args) && !file.append() {
        // A write that finds the file free takes it alone (no shard locks: the cheapest way);
        // one that finds another thread in it shares it where the engine can (see
        // `ManagedFile::write_shared`), so that threads writing at once run side by side.
        held = file.inode.try_lock();
        if held.is_none() {
            let state = file.inode.read();
            if let State::Engine(engine) = &*state {
                if let Some(result) = serve_shared_write(nr, args, file, engine) {
                    if engine.background_due() {
                        drop(state);
                        if let State::Engine(engine) = &mut *file.inode.lock() {
                            background_steps(file, engine);
                        }
                    }
                    return Some(result);
                }
            }
        }
    }
    if is_read(nr) {
        // Reads share the file: threads reading at once do not wait for each other.
        let state = file.inode.read();
        match &*state {
            State::Engine(engine) if engine.reads_ready() => {
                nvmmio_core::engine::stats::count(&SERVED, 1);
                return serve_read(nr, args, file, engine);
            }
            State::Engine(_) => {}
            State::Kernel => return None,
        }
    }
    let mut state = held.unwrap_or_else(|| file.inode.lock());
    let State::Engine(engine) = &mut *state else {
        return None;
    };
    if !is_read(nr) && nr as i64 != libc::SYS_lseek {
        if let Err(e) = super::marks::before_change(&file.inode, engine) {
            return Some(e.to_raw());
        }
        // Undo logging stores in place below the committed size (after a durable undo image):
        // on a disk the log's name must be durable before any such store may reach the disk.
        if commits(nr, args) || engine.mode() == Mode::Undo {
            if let Err(e) = super::marks::before_commit(&file.inode, engine) {
                return Some(e.to_raw());
            }
        }
    }
    let mut result = serve_engine(nr, args, file, engine);
    // Not a synced write: one whose sync failed has written, and run again it would append
    // twice, or write at a file offset it already moved. It retries its sync itself.
    if result == Some(err(libc::ENOSPC)) && !synced_write(nr, args) && super::drain_pool() {
        // Emptied logs kept for reuse held room on this file system: try once more without them.
        result = serve_engine(nr, args, file, engine);
    }
    if changes_file(nr, result) {
        file.inode.touch();
    }
    background_steps(file, engine);
    result
}

/// After a call that may have changed the file: wait for a checkpoint thread that fell behind,
/// take back what it applied, start the next.
fn background_steps(file: &OpenFile, engine: &mut Engine) {
    if let Some(job) = engine.background_behind() {
        super::background::wait_applied(job);
    }
    let _ = engine.take_back_applied();
    if engine.wants_background_checkpoint() {
        super::start_background_checkpoint(&file.inode, engine);
    }
}

/// A write without flags (none that syncs or appends), which may share the file.
fn plain_write(nr: usize, args: [usize; 6]) -> bool {
    match nr as i64 {
        libc::SYS_write | libc::SYS_writev | libc::SYS_pwrite64 | libc::SYS_pwritev => true,
        libc::SYS_pwritev2 => args[5] == 0,
        _ => false,
    }
}

/// A [`plain_write`] with the file shared; `None` if the engine declines it (nothing done).
fn serve_shared_write(nr: usize, args: [usize; 6], file: &OpenFile, engine: &Engine) -> Option<isize> {
    if let Err(e) = super::marks::before_change(&file.inode, engine) {
        return Some(e.to_raw());
    }
    let (bufs, at) = write_call(nr, args);
    let result = write_at_pos(&mut Writer::Shared(engine), file, bufs, at, false)?;
    nvmmio_core::engine::stats::count(&SERVED, 1);
    if changes_file(nr, Some(result)) {
        file.inode.touch();
    }
    Some(result)
}

/// The buffers of a write call and its offset (`None`: the file offset).
fn write_call(nr: usize, args: [usize; 6]) -> (Result<Bufs, Errno>, Option<i64>) {
    let (single, vector) = (Some((args[1], args[2])), Some((args[1], args[2])));
    let at = Some(args[3] as i64);
    match nr as i64 {
        libc::SYS_write => (buffers(single, None), None),
        libc::SYS_writev => (buffers(None, vector), None),
        libc::SYS_pwrite64 => (buffers(single, None), at),
        libc::SYS_pwritev2 if args[3] as i64 == -1 => (buffers(None, vector), None),
        // pwritev, pwritev2
        _ => (buffers(None, vector), at),
    }
}

/// Whether the call is a `pwritev2` that syncs what it wrote (RWF_SYNC, RWF_DSYNC).
fn synced_write(nr: usize, args: [usize; 6]) -> bool {
    nr as i64 == libc::SYS_pwritev2 && args[5] as i32 & (libc::RWF_DSYNC | libc::RWF_SYNC) != 0
}

/// Whether a call that returned `result` changed the file's contents or size (as the kernel
/// sees it: a write of nothing changes nothing, a truncate always does).
fn changes_file(nr: usize, result: Option<isize>) -> bool {
    let Some(r) = result else { return false };
    match nr as i64 {
        libc::SYS_write | libc::SYS_writev | libc::SYS_pwrite64 | libc::SYS_pwritev | libc::SYS_pwritev2 => r > 0,
        libc::SYS_ftruncate => r == 0,
        _ => false,
    }
}

/// Whether the call may commit the file's log (fsync and its kin).
fn commits(nr: usize, args: [usize; 6]) -> bool {
    match nr as i64 {
        // A truncate below the committed size commits at once.
        libc::SYS_fsync | libc::SYS_fdatasync | libc::SYS_ftruncate => true,
        libc::SYS_pwritev2 => args[5] as i32 & (libc::RWF_DSYNC | libc::RWF_SYNC) != 0,
        _ => false,
    }
}

/// The calls [`serve_read`] handles.
fn is_read(nr: usize) -> bool {
    matches!(nr as i64, libc::SYS_read | libc::SYS_readv | libc::SYS_pread64 | libc::SYS_preadv | libc::SYS_preadv2)
}

/// Reads, with the engine shared.
fn serve_read(nr: usize, args: [usize; 6], file: &OpenFile, engine: &Engine) -> Option<isize> {
    let a = args;
    let (single, vector) = (Some((a[1], a[2])), Some((a[1], a[2])));
    Some(match nr as i64 {
        libc::SYS_read => read_at_pos(engine, file, buffers(single, None), None),
        libc::SYS_readv => read_at_pos(engine, file, buffers(None, vector), None),
        libc::SYS_pread64 => read_at_pos(engine, file, buffers(single, None), Some(a[3] as i64)),
        libc::SYS_preadv => read_at_pos(engine, file, buffers(None, vector), Some(a[3] as i64)),
        libc::SYS_preadv2 => {
            if a[5] as i32 & !(libc::RWF_HIPRI | libc::RWF_NOWAIT | libc::RWF_DSYNC | libc::RWF_SYNC) != 0 {
                return Some(err(libc::EOPNOTSUPP));
            }
            let at = if a[3] as i64 == -1 { None } else { Some(a[3] as i64) };
            read_at_pos(engine, file, buffers(None, vector), at)
        }
        _ => return None,
    })
}

fn serve_engine(nr: usize, args: [usize; 6], file: &Arc<OpenFile>, engine: &mut Engine) -> Option<isize> {
    nvmmio_core::engine::stats::count(&SERVED, 1);
    if is_read(nr) {
        // Set up what lets later reads share the file.
        let _ = engine.prepare_reads();
        return serve_read(nr, args, file, engine);
    }
    let a = args;
    Some(match nr as i64 {
        libc::SYS_write | libc::SYS_writev | libc::SYS_pwrite64 | libc::SYS_pwritev => {
            let (bufs, at) = write_call(nr, args);
            write_alone(engine, file, bufs, at, false)
        }
        libc::SYS_pwritev2 => {
            let flags = a[5] as i32;
            let known = libc::RWF_HIPRI | libc::RWF_NOWAIT | libc::RWF_DSYNC | libc::RWF_SYNC | libc::RWF_APPEND;
            if flags & !known != 0 {
                return Some(err(libc::EOPNOTSUPP));
            }
            let (bufs, at) = write_call(nr, args);
            let r = write_alone(engine, file, bufs, at, flags & libc::RWF_APPEND != 0);
            if r >= 0 && flags & (libc::RWF_DSYNC | libc::RWF_SYNC) != 0 {
                let mut synced = engine.sync();
                if synced == Err(Errno(libc::ENOSPC)) && super::drain_pool() {
                    synced = engine.sync();
                }
                if let Err(e) = synced {
                    return Some(e.to_raw());
                }
            }
            r
        }
        libc::SYS_lseek => seek(engine, file, a[1] as i64, a[2] as i32),
        libc::SYS_fsync | libc::SYS_fdatasync => match engine.sync() {
            Ok(()) => 0,
            Err(e) => e.to_raw(),
        },
        libc::SYS_sync_file_range => {
            let valid =
                libc::SYNC_FILE_RANGE_WAIT_BEFORE | libc::SYNC_FILE_RANGE_WRITE | libc::SYNC_FILE_RANGE_WAIT_AFTER;
            if a[3] as u32 & !valid != 0 || (a[1] as i64) < 0 || (a[2] as i64) < 0 {
                err(libc::EINVAL)
            } else {
                0
            }
        }
        libc::SYS_ftruncate => {
            if !file.writable() || (a[1] as i64) < 0 {
                err(libc::EINVAL)
            } else if a[1] as u64 > file.inode.max_size {
                err(libc::EFBIG)
            } else {
                match engine.truncate(a[1] as u64) {
                    Ok(()) => 0,
                    Err(e) => e.to_raw(),
                }
            }
        }
        _ => return None,
    })
}

/// The buffers of a call allowed on `file` (`allowed`: the access mode permits it), or the
/// call's result, in the kernel's order: EINVAL for a negative offset `at`, then EBADF, then
/// the buffers.
fn checked(allowed: bool, bufs: Result<Bufs, Errno>, at: Option<i64>) -> Result<Bufs, isize> {
    if at.is_some_and(|off| off < 0) {
        return Err(err(libc::EINVAL));
    }
    if !allowed {
        return Err(err(libc::EBADF));
    }
    bufs.map_err(Errno::to_raw)
}

/// Whether a transfer of `bufs` at `offset` would end past the largest offset there is (the
/// kernel's EINVAL, before any other check of the offset).
fn overflows(offset: u64, bufs: &[Buf]) -> bool {
    let total: u64 = bufs.iter().map(|b| b.len as u64).sum();
    offset.checked_add(total).is_none_or(|end| end > i64::MAX as u64)
}

fn read_at_pos(engine: &Engine, file: &OpenFile, bufs: Result<Bufs, Errno>, at: Option<i64>) -> isize {
    let bufs = match checked(file.readable(), bufs, at) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match at {
        Some(off) if overflows(off as u64, &bufs) => err(libc::EINVAL),
        Some(off) => result(read_into(engine, off as u64, &bufs)),
        None => {
            let mut pos = file.lock_pos();
            if overflows(*pos, &bufs) {
                return err(libc::EINVAL);
            }
            let r = read_into(engine, *pos, &bufs);
            if let Ok(n) = r {
                *pos += n as u64;
            }
            result(r)
        }
    }
}

/// A write at `at` (else at the file offset, which it moves); `None` if a shared writer was
/// declined (nothing done, the offset unmoved).
fn write_at_pos(
    writer: &mut Writer,
    file: &OpenFile,
    bufs: Result<Bufs, Errno>,
    at: Option<i64>,
    append: bool,
) -> Option<isize> {
    let bufs = match checked(file.writable(), bufs, at) {
        Ok(b) => b,
        Err(r) => return Some(r),
    };
    let max = file.inode.max_size;
    let appends = file.append() || append;
    Some(match at {
        // Linux appends pwrite on an O_APPEND descriptor at the end, whatever the offset.
        Some(off) => {
            let off = if appends { writer.engine().size() } else { off as u64 };
            match within_limit(off, bufs, max) {
                Ok(bufs) => result(write_from(writer, off, &bufs)?),
                Err(r) => r,
            }
        }
        None => {
            let mut pos = file.lock_pos();
            let off = if appends { writer.engine().size() } else { *pos };
            let bufs = match within_limit(off, bufs, max) {
                Ok(b) => b,
                Err(r) => return Some(r),
            };
            let r = write_from(writer, off, &bufs)?;
            if let Ok(n) = r {
                *pos = off + n as u64;
            }
            result(r)
        }
    })
}

/// [`write_at_pos`] with the file held alone.
fn write_alone(
    engine: &mut Engine,
    file: &OpenFile,
    bufs: Result<Bufs, Errno>,
    at: Option<i64>,
    append: bool,
) -> isize {
    // Only a shared writer is ever declined.
    write_at_pos(&mut Writer::Alone(engine), file, bufs, at, append).unwrap_or(err(libc::EIO))
}

/// The kernel's limits on a write at `offset`: EINVAL if it would end past the largest
/// offset, EFBIG if it starts at or past the largest file size `max`, else cut short there.
fn within_limit(offset: u64, mut bufs: Bufs, max: u64) -> Result<Bufs, isize> {
    if overflows(offset, &bufs) {
        return Err(err(libc::EINVAL));
    }
    let total: u64 = bufs.iter().map(|b| b.len as u64).sum();
    if total > 0 && offset >= max {
        return Err(err(libc::EFBIG));
    }
    let mut room = max - offset.min(max);
    for b in bufs.iter_mut() {
        b.len = b.len.min(room.min(usize::MAX as u64) as usize);
        room -= b.len as u64;
    }
    Ok(bufs)
}

fn seek(engine: &Engine, file: &OpenFile, offset: i64, whence: i32) -> isize {
    let mut pos = file.lock_pos();
    let size = engine.size() as i64;
    let target = match whence {
        libc::SEEK_SET => Some(offset),
        libc::SEEK_CUR => (*pos as i64).checked_add(offset),
        libc::SEEK_END => size.checked_add(offset),
        // No holes are reported: data runs to the end of the file.
        libc::SEEK_DATA if offset >= 0 && offset < size => Some(offset),
        libc::SEEK_HOLE if offset >= 0 && offset < size => Some(size),
        libc::SEEK_DATA | libc::SEEK_HOLE => return err(libc::ENXIO),
        _ => return err(libc::EINVAL),
    };
    match target {
        Some(t) if t >= 0 && t as u64 <= file.inode.max_size => {
            *pos = t as u64;
            t as isize
        }
        // Past the largest file size, or past the largest offset.
        _ => err(libc::EINVAL),
    }
}

/// The kernel will run a call on this descriptor: give it our offset.
pub fn push_to_kernel(fd: i32, file: &OpenFile) {
    // A file already handed to the kernel has its offsets there: ours are stale.
    if !matches!(&*file.inode.lock(), State::Engine(_)) {
        return;
    }
    let pos = *file.lock_pos();
    let _ = sys::lseek(fd, pos as i64, libc::SEEK_SET);
}

/// The kernel ran a call on this (checkpointed) file: take back its size and our offset.
pub fn pull_from_kernel(fd: i32, file: &OpenFile) {
    let mut state = file.inode.lock();
    let State::Engine(engine) = &mut *state else { return };
    if let Ok(pos) = sys::lseek(fd, 0, libc::SEEK_CUR) {
        *file.lock_pos() = pos;
    }
    let _ = engine.reload();
}

/// If this process has file `key` open: `Some` of, if the engine serves it, its logical size,
/// when a served call last changed it (ns since the epoch, 0 if none has), and its blocks given
/// the data file's.
fn managed_state(key: (u64, u64), data_blocks: u64) -> Option<Option<(u64, u64, u64)>> {
    let inode = table::find_inode(key)?;
    let state = inode.read();
    Some(match &*state {
        State::Engine(engine) => Some((engine.size(), inode.modified_for_stat(), engine.blocks(data_blocks))),
        // The kernel serves it here, and while this process holds it open no other process
        // can serve it with the engine (see `share`): the kernel's numbers stand.
        State::Kernel => None,
    })
}

/// Where a stat structure keeps the fields nvmmio corrects.
struct StatFields {
    size: usize,
    blocks: usize,
    /// (seconds, nanoseconds) of mtime and ctime; `u32_nsec`: nanoseconds are a u32 (statx).
    mtime: (usize, usize),
    ctime: (usize, usize),
    u32_nsec: bool,
    /// A regular file (only those can be served by another process: others need no question).
    regular: bool,
}

/// Corrects `struct stat` at `addr` (just filled by the kernel) for a managed file.
pub fn patch_stat(addr: usize) {
    let mut st = [0u8; std::mem::size_of::<libc::stat>()];
    if usercopy::copy_from_user(&mut st, addr).is_err() {
        return;
    }
    let field = |off: usize| u64::from_ne_bytes(st[off..off + 8].try_into().unwrap());
    let dev = field(std::mem::offset_of!(libc::stat, st_dev));
    let ino = field(std::mem::offset_of!(libc::stat, st_ino));
    let mode_at = std::mem::offset_of!(libc::stat, st_mode);
    let fields = StatFields {
        size: std::mem::offset_of!(libc::stat, st_size),
        blocks: std::mem::offset_of!(libc::stat, st_blocks),
        mtime: (std::mem::offset_of!(libc::stat, st_mtime), std::mem::offset_of!(libc::stat, st_mtime_nsec)),
        ctime: (std::mem::offset_of!(libc::stat, st_ctime), std::mem::offset_of!(libc::stat, st_ctime_nsec)),
        u32_nsec: false,
        regular: u32::from_ne_bytes(st[mode_at..mode_at + 4].try_into().unwrap()) & libc::S_IFMT == libc::S_IFREG,
    };
    write_logical_state(addr, &st, (dev, ino), &fields);
}

/// Corrects `struct statx` at `addr` for a managed file.
pub fn patch_statx(addr: usize) {
    let mut st = [0u8; std::mem::size_of::<libc::statx>()];
    if usercopy::copy_from_user(&mut st, addr).is_err() {
        return;
    }
    let u32_at = |off: usize| u32::from_ne_bytes(st[off..off + 4].try_into().unwrap());
    let u64_at = |off: usize| u64::from_ne_bytes(st[off..off + 8].try_into().unwrap());
    let dev = libc::makedev(
        u32_at(std::mem::offset_of!(libc::statx, stx_dev_major)),
        u32_at(std::mem::offset_of!(libc::statx, stx_dev_minor)),
    );
    let ino = u64_at(std::mem::offset_of!(libc::statx, stx_ino));
    let time = |t: usize| (t, t + 8);
    let fields = StatFields {
        size: std::mem::offset_of!(libc::statx, stx_size),
        blocks: std::mem::offset_of!(libc::statx, stx_blocks),
        mtime: time(std::mem::offset_of!(libc::statx, stx_mtime)),
        ctime: time(std::mem::offset_of!(libc::statx, stx_ctime)),
        u32_nsec: true,
        regular: u32_at(std::mem::offset_of!(libc::statx, stx_mode)) as u16 as u32 & libc::S_IFMT == libc::S_IFREG,
    };
    write_logical_state(addr, &st, (dev, ino), &fields);
}

/// If `key` is a managed file, stores its logical size (and at least as many 512-byte blocks as
/// that needs), and the time a served call last changed it if the kernel's is older, into the
/// stat structure at `addr` (whose bytes as the kernel filled them are `st`).
fn write_logical_state(addr: usize, st: &[u8], key: (u64, u64), fields: &StatFields) {
    let u64_at = |off: usize| u64::from_ne_bytes(st[off..off + 8].try_into().unwrap());
    let here = managed_state(key, u64_at(fields.blocks));
    let elsewhere = || match fields.regular {
        true => super::size_elsewhere(key).map(|(size, at)| (size, at, u64_at(fields.blocks))),
        false => None,
    };
    let Some((size, modified_ns, blocks)) = here.unwrap_or_else(elsewhere) else { return };
    let _ = usercopy::copy_to_user(addr + fields.size, &size.to_ne_bytes());
    let _ = usercopy::copy_to_user(addr + fields.blocks, &blocks.to_ne_bytes());
    let (sec, nsec) = ((modified_ns / 1_000_000_000) as i64, modified_ns % 1_000_000_000);
    for (sec_at, nsec_at) in [fields.mtime, fields.ctime] {
        let kernel_nsec = if fields.u32_nsec {
            u32::from_ne_bytes(st[nsec_at..nsec_at + 4].try_into().unwrap()) as u64
        } else {
            u64_at(nsec_at)
        };
        if (sec, nsec) > (u64_at(sec_at) as i64, kernel_nsec) {
            let _ = usercopy::copy_to_user(addr + sec_at, &sec.to_ne_bytes());
            let nsec_bytes = nsec.to_ne_bytes();
            let _ = usercopy::copy_to_user(addr + nsec_at, &nsec_bytes[..if fields.u32_nsec { 4 } else { 8 }]);
        }
    }
}

/// An open with O_TRUNC of a file this process manages: the engine truncates it first (a
/// truncate below the committed size commits at once), so that the kernel's O_TRUNC finds it
/// empty instead of cutting the data file under the log. Only when an open for writing shows
/// the program may truncate it; otherwise the kernel decides, as before.
pub fn truncate_before_open(nr: usize, args: [usize; 6]) {
    let (dirfd, path, flags) = match nr as i64 {
        libc::SYS_open => (libc::AT_FDCWD, args[0], args[1] as i32),
        libc::SYS_creat => (libc::AT_FDCWD, args[0], libc::O_TRUNC),
        libc::SYS_openat => (args[0] as i32, args[1], args[2] as i32),
        libc::SYS_openat2 => {
            let mut how = [0u8; 8];
            if usercopy::copy_from_user(&mut how, args[2]).is_err() {
                return;
            }
            (args[0] as i32, args[1], u64::from_ne_bytes(how) as i32)
        }
        _ => return,
    };
    if flags & libc::O_TRUNC == 0 {
        return;
    }
    let Some((inode, size, writable)) = managed_by_path(dirfd, path) else { return };
    if size == 0 || writable.is_err() {
        return;
    }
    let mut state = inode.lock();
    if let State::Engine(engine) = &mut *state {
        if super::marks::before_change(&inode, engine)
            .and_then(|()| super::marks::before_commit(&inode, engine))
            .is_ok()
        {
            let _ = engine.truncate(0);
        }
    }
}

/// The file this process manages that the program's path string at `path` (relative to
/// `dirfd`) names, if any (one another process manages is handed to the kernel first), with its size as the kernel has it and whether the program may
/// write it (an open for writing makes the kernel's permission checks).
fn managed_by_path(dirfd: i32, path: usize) -> Option<(Arc<Inode>, u64, Result<(), Errno>)> {
    let mut name = [0u8; 4096];
    let cpath = usercopy::copy_cstr_from_user(path, &mut name).ok()?;
    let st = sys::stat_at(dirfd, cpath, 0).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let Some(inode) = table::find_inode((st.st_dev, st.st_ino)) else {
        // Served by another process? It hands the file to the kernel, which then truncates it.
        super::hand_over_elsewhere((st.st_dev, st.st_ino));
        return None;
    };
    if !matches!(&*inode.read(), State::Engine(_)) {
        return None;
    }
    let writable = sys::openat(dirfd, cpath, libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NONBLOCK, 0).map(|fd| {
        let _ = sys::close(fd);
    });
    Some((inode, st.st_size as u64, writable))
}

/// Before the program sets the times of the file a path names: if this process serves it,
/// its logged data goes into the file first (a checkpoint would move the times later); if
/// another does, that one hands it to the kernel.
pub fn checkpoint_by_path(dirfd: i32, path: usize, stat_flags: i32) {
    let mut name = [0u8; 4096];
    let Ok(cpath) = usercopy::copy_cstr_from_user(path, &mut name) else { return };
    let Ok(st) = sys::stat_at(dirfd, cpath, stat_flags) else { return };
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return;
    }
    match table::find_inode((st.st_dev, st.st_ino)) {
        Some(inode) => {
            if let State::Engine(engine) = &mut *inode.lock() {
                let _ = engine.checkpoint();
            }
            // Served writes before the times set no longer count as later.
            inode.modified_ns.store(0, std::sync::atomic::Ordering::Relaxed);
        }
        None => super::hand_over_elsewhere((st.st_dev, st.st_ino)),
    }
}

/// `truncate(path, len)` of a managed file, served by the engine: the kernel must not cut the
/// data file under the log (committed bytes there may still be needed by a crash). The
/// permission checks are the kernel's: the file is opened for writing first. `None`: not a
/// managed file, the kernel runs the call.
pub fn truncate_by_path(path: usize, len: i64) -> Option<isize> {
    let (inode, _, writable) = managed_by_path(libc::AT_FDCWD, path)?;
    if len < 0 {
        return Some(err(libc::EINVAL));
    }
    if let Err(e) = writable {
        return Some(e.to_raw());
    }
    if len as u64 > inode.max_size {
        return Some(err(libc::EFBIG));
    }
    let mut state = inode.lock();
    let State::Engine(engine) = &mut *state else { return None };
    if let Err(e) =
        super::marks::before_change(&inode, engine).and_then(|()| super::marks::before_commit(&inode, engine))
    {
        return Some(e.to_raw());
    }
    Some(match engine.truncate(len as u64) {
        Ok(()) => {
            inode.touch();
            if !table::inode_in_use(&inode) {
                // A closed file still served: the data file shows it as a closed file does.
                let _ = engine.publish_for_close();
            }
            0
        }
        Err(e) => e.to_raw(),
    })
}
