//! The mark a data file carries while logs of its own exist: an extended attribute naming the
//! file (device, inode) and which of its log files (`.log`, `.log2`) hold state recovery needs.
//!
//! A log lives in `DIR/.nvmmio`, apart from its file. Without the mark, a log lost with its
//! directory entry (deleted, or its name not yet durable when power failed) would look like "no
//! log": recovery would serve a file that lacks acknowledged writes, or holds a torn one, as if
//! it were whole. With it, a missing log is reported and the file left as it is.
//!
//! Ordering: the mark is set when the engine first changes the file, before the first commit
//! relies on the log. On a disk the first commit syncs the data file first (`fsync`), which on a
//! journaling file system also makes the log's name durable (metadata operations reach the
//! journal in order). The mark is removed only after the logs were applied and voided, before
//! their files are renamed away; a crash between leaves voided logs, which recover to nothing.

use std::ffi::CStr;

use crate::sys::{self, Errno};

/// The attribute's name (`getfattr -n user.nvmmio.logs FILE` shows it).
pub const NAME: &CStr = c"user.nvmmio.logs";
/// The file's first log, `DEV-INODE.log`.
pub const MAIN: u8 = 1;
/// Its second log, `DEV-INODE.log2` (background checkpoints).
pub const SECOND: u8 = 2;

/// The name of file `key`'s log `bit` ([`MAIN`] or [`SECOND`]) in its directory's `.nvmmio`:
/// `DEV-INODE.log` or `DEV-INODE.log2`.
pub fn log_file_name(key: (u64, u64), bit: u8) -> String {
    let ext = if bit == SECOND { "log2" } else { "log" };
    format!("{}-{}.{ext}", key.0, key.1)
}

/// What a file's mark says.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Mark {
    /// The file the mark was written for: a copy of the attribute on another file (`cp -a`)
    /// names a different inode and means nothing there.
    pub key: (u64, u64),
    /// Which log files exist ([`MAIN`], [`SECOND`]).
    pub logs: u8,
}

/// What a file's extended attributes say about its logs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Marks {
    /// Its logs, as its mark names them.
    Named(Mark),
    /// No mark (or one copied from another file), where marks are kept: no log of this file
    /// holds a commit. A mark is durable before a log's first commit and removed only once
    /// the logs are applied and voided, so a log found under this file's name is stale: left
    /// by a file that had the same inode number (removed since), or voided already.
    Unmarked,
    /// The file system keeps no extended attributes: nothing is known.
    NotKept,
}

impl Mark {
    fn encode(self) -> ([u8; 64], usize) {
        let mut buf = crate::trace::line::LineBuf::new();
        let _ = std::fmt::Write::write_fmt(&mut buf, format_args!("v1 {} {} {}", self.key.0, self.key.1, self.logs));
        let mut out = [0u8; 64];
        let bytes = buf.as_bytes();
        let n = bytes.len().min(out.len());
        out[..n].copy_from_slice(&bytes[..n]);
        (out, n)
    }

    fn decode(text: &[u8]) -> Option<Mark> {
        let text = std::str::from_utf8(text).ok()?;
        let mut words = text.split(' ');
        if words.next()? != "v1" {
            return None;
        }
        let mut number = || words.next()?.parse::<u64>().ok();
        let (dev, ino, logs) = (number()?, number()?, number()?);
        Some(Mark { key: (dev, ino), logs: u8::try_from(logs).ok()? })
    }

    /// The mark of file `key` if `fd` carries one written for it. A file system without
    /// extended attributes has none.
    pub fn read(fd: i32, key: (u64, u64)) -> Result<Option<Mark>, Errno> {
        Ok(match Mark::look(fd, key)? {
            Marks::Named(mark) => Some(mark),
            Marks::Unmarked | Marks::NotKept => None,
        })
    }

    /// What file `key`, open as `fd`, says about its logs.
    pub fn look(fd: i32, key: (u64, u64)) -> Result<Marks, Errno> {
        let mut buf = [0u8; 64];
        match sys::fgetxattr(fd, NAME, &mut buf) {
            Ok(n) => Ok(Mark::decode(&buf[..n]).filter(|m| m.key == key).map_or(Marks::Unmarked, Marks::Named)),
            Err(Errno(libc::ENODATA)) => Ok(Marks::Unmarked),
            Err(Errno(libc::EOPNOTSUPP)) => Ok(Marks::NotKept),
            Err(e) => Err(e),
        }
    }

    /// Marks the file open as `fd`.
    pub fn write(self, fd: i32) -> Result<(), Errno> {
        let (bytes, n) = self.encode();
        sys::fsetxattr(fd, NAME, &bytes[..n])
    }

    /// Removes the mark from the file open as `fd` (none there is fine).
    pub fn remove(fd: i32) -> Result<(), Errno> {
        match sys::fremovexattr(fd, NAME) {
            Ok(()) | Err(Errno(libc::ENODATA | libc::EOPNOTSUPP)) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip() {
        let m = Mark { key: (66306, 1 << 40), logs: MAIN | SECOND };
        let (bytes, n) = m.encode();
        assert_eq!(Mark::decode(&bytes[..n]), Some(m));
        assert_eq!(Mark::decode(b"v2 1 2 3"), None);
        assert_eq!(Mark::decode(b"v1 1 2"), None);
    }

    #[test]
    fn marks_live_on_files_of_tmpfs() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
        let key = (1, 2);
        assert_eq!(Mark::read(fd, key), Ok(None));
        Mark { key, logs: MAIN }.write(fd).unwrap();
        assert_eq!(Mark::read(fd, key), Ok(Some(Mark { key, logs: MAIN })));
        assert_eq!(Mark::read(fd, (1, 3)), Ok(None), "a mark copied from another file means nothing");
        Mark::remove(fd).unwrap();
        Mark::remove(fd).unwrap();
        assert_eq!(Mark::read(fd, key), Ok(None));
    }
}
