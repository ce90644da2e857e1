//! Keeping a served file's mark ([`nvmmio_core::persist::mark`]) in step with its logs: set
//! before the engine first changes the file, durable before the first commit on a disk,
//! removed once the logs are applied; checked at open, where a mark whose logs are gone means
//! a lost log.

use std::sync::atomic::Ordering::Relaxed;

use nvmmio_core::persist::mark::{self, Mark, MAIN, SECOND};
use nvmmio_core::sys::{self, Errno};

use super::table::{Engine, Inode};
use crate::usercopy;

/// [`Inode::mark`] flag: the mark (and the logs' names) reached the disk.
const DURABLE: u8 = 0x80;
/// [`Inode::mark`] flag: the file system keeps no extended attributes.
const UNSUPPORTED: u8 = 0x40;
const LOGS: u8 = MAIN | SECOND;

/// Before a call that may change the file: the mark names every log file it has.
pub fn before_change(inode: &Inode, engine: &Engine) {
    // A second log file, once made, stays the file's (spare or frozen) until its last close.
    let want = MAIN | if engine.other_log_medium().is_some() { SECOND } else { 0 };
    let current = inode.mark.load(Relaxed);
    if current & LOGS == want {
        return;
    }
    // A new log name: not durable until the next commit syncs it. Without a mark (no extended
    // attributes here, or it could not be written) a lost log goes unnoticed, as before marks.
    let written =
        current & UNSUPPORTED == 0 && (Mark { key: inode.key, logs: want }).write(engine.data().raw_fd()).is_ok();
    inode.mark.store(want | if written { 0 } else { UNSUPPORTED }, Relaxed);
}

/// Before a commit: on a disk, the mark and the log's name are made durable first (once per
/// log). Syncing the data file commits the journal transaction that holds both.
pub fn before_commit(inode: &Inode, engine: &Engine) -> Result<(), Errno> {
    let current = inode.mark.load(Relaxed);
    if current & DURABLE != 0 || current & LOGS == 0 || engine.log_medium().is_tmpfs() {
        return Ok(());
    }
    sys::fsync(engine.data().raw_fd())?;
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

/// A mark left on file `key` (open as `fd`) by an earlier process: the log bits it names, or
/// `Err(path)` with the first named log that no longer exists.
pub fn check_at_open(fd: i32, key: (u64, u64), dir: &str) -> Result<u8, String> {
    let Ok(Some(mark)) = Mark::read(fd, key) else { return Ok(0) };
    for bit in [MAIN, SECOND] {
        let path = format!("{dir}/.nvmmio/{}", mark::log_file_name(key, bit));
        if mark.logs & bit != 0 && super::cstring(path.clone()).ok().and_then(|p| sys::stat(&p).ok()).is_none() {
            return Err(path);
        }
    }
    Ok(mark.logs & LOGS)
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
