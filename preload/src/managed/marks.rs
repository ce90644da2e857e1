//! Keeping a served file's mark ([`nvmmio_core::persist::mark`]) in step with its logs: set
//! before the engine first changes the file, durable before the first commit on a disk (and
//! before the first write of an undo-logging epoch, which stores in place below the commit),
//! removed once the logs are applied; checked at open, where a mark whose logs are gone means
//! a lost log.

use std::sync::atomic::Ordering::Relaxed;

use nvmmio_core::persist::mark::{self, Mark, Marks, MAIN, SECOND};
use nvmmio_core::sys::{self, Errno};

use super::table::{Engine, Inode};
use crate::usercopy;

/// [`Inode::mark`] flag: the mark (and the logs' names) reached the disk.
const DURABLE: u8 = 0x80;
/// [`Inode::mark`] flag: the file system keeps no extended attributes.
const UNSUPPORTED: u8 = 0x40;
const LOGS: u8 = MAIN | SECOND;

/// Before a call that may change the file: the mark names every log file it has. An error:
/// the mark could not be written where marks are kept, and the change is refused (a log
/// without its file's mark is taken for a stale one at open, see [`Marks::Unmarked`]).
pub fn before_change(inode: &Inode, engine: &Engine) -> Result<(), Errno> {
    // A second log file, once made, stays the file's (spare or frozen) until its last close.
    let want = MAIN | if engine.other_log_medium().is_some() { SECOND } else { 0 };
    let current = inode.mark.load(Relaxed);
    if current & LOGS == want {
        return Ok(());
    }
    // A new log name: not durable until the next commit syncs it. Without extended attributes
    // a lost log goes unnoticed, as before marks.
    if current & UNSUPPORTED == 0 {
        match (Mark { key: inode.key, logs: want }).write(engine.data().raw_fd()) {
            Ok(()) => {
                inode.mark.store(want, Relaxed);
                return Ok(());
            }
            Err(Errno(libc::EOPNOTSUPP)) => {}
            Err(e) => return Err(e),
        }
    }
    inode.mark.store(want | UNSUPPORTED, Relaxed);
    Ok(())
}

/// Before a commit: on a disk, the mark and the log's name become durable with it (once per
/// log): the commit's sync of the log then commits the journal transaction that holds both
/// (see `LogFile::commit_metadata_at_next_fence`).
pub fn before_commit(inode: &Inode, engine: &Engine) -> Result<(), Errno> {
    let current = inode.mark.load(Relaxed);
    if current & DURABLE != 0 || current & LOGS == 0 || engine.log_medium().is_tmpfs() {
        return Ok(());
    }
    if engine.log_medium().is_pmem() {
        // No log sync to ride on: the data file's sync commits the transaction.
        sys::fsync(engine.data().raw_fd())?;
    } else {
        engine.log_medium().commit_metadata_at_next_fence()?;
    }
    if current & UNSUPPORTED != 0 {
        // No mark: the data file's transaction may not hold the log's name; sync the directory.
        let dir = super::cstring(format!("{}/.nvmmio", inode.dir))?;
        let fd = sys::openat(libc::AT_FDCWD, &dir, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC, 0)?;
        let synced = sys::fsync(fd);
        let _ = sys::close(fd);
        synced?;
    }
    inode.mark.fetch_or(DURABLE, Relaxed);
    Ok(())
}

/// The logs are applied and voided (data file `fd`): the mark goes, before the log files are
/// renamed away.
pub fn after_logs_applied(inode: &Inode, fd: i32) {
    let current = inode.mark.load(Relaxed);
    if current & LOGS != 0 && (current & UNSUPPORTED != 0 || Mark::remove(fd).is_ok()) {
        inode.mark.store(0, Relaxed);
    }
}

/// What file `key` (open as `fd`) says about its logs at open: a mark left by an earlier process
/// ([`Marks::Named`]), or `Err(path)` with the first log it names that no longer exists.
pub fn check_at_open(fd: i32, key: (u64, u64), dir: &str) -> Result<Marks, String> {
    let found = Mark::look(fd, key).unwrap_or(Marks::NotKept);
    let Marks::Named(mark) = found else { return Ok(found) };
    for bit in [MAIN, SECOND] {
        let path = format!("{dir}/.nvmmio/{}", mark::log_file_name(key, bit));
        if mark.logs & bit != 0 && super::cstring(path.clone()).ok().and_then(|p| sys::stat(&p).ok()).is_none() {
            return Err(path);
        }
    }
    Ok(found)
}

/// The log bits of what [`check_at_open`] found (for [`Inode::mark`]).
pub fn bits(found: Marks) -> u8 {
    match found {
        Marks::Named(mark) => mark.logs & LOGS,
        Marks::Unmarked | Marks::NotKept => 0,
    }
}

/// Whether the program's `getxattr` family call asks for the mark's attribute (argument `name`,
/// a string in the program's memory): it is nvmmio's, and absent as far as the program knows.
pub fn is_mark_name(name: usize) -> bool {
    let mut buf = [0u8; 32];
    usercopy::copy_cstr_from_user(name, &mut buf).is_ok_and(|n| n == mark::NAME)
}

/// After a `listxattr` family call filled `buf` with `len` bytes of names: the mark's name taken
/// out. Returns the program's result.
pub fn strip_from_list(buf: usize, len: isize) -> isize {
    if buf == 0 || len <= 0 || len > 65536 {
        // A size query may count the mark too: a larger buffer than needed does no harm.
        return len;
    }
    let mut names = vec![0u8; len as usize];
    if usercopy::copy_from_user(&mut names, buf).is_err() {
        return len;
    }
    let ours = mark::NAME.to_bytes_with_nul();
    let Some(at) = names
        .split_inclusive(|&b| b == 0)
        .scan(0, |pos, n| {
            let start = *pos;
            *pos += n.len();
            Some((start, n))
        })
        .find(|(_, n)| *n == ours)
        .map(|(start, _)| start)
    else {
        return len;
    };
    names.drain(at..at + ours.len());
    let _ = usercopy::copy_to_user(buf, &names);
    names.len() as isize
}
