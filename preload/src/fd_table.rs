//! What nvmmio knows about each descriptor number of the process. For now: whether it is a
//! regular file or block device (whose reads and writes never block indefinitely), learned with
//! one fstat on first use and forgotten before any call that can give the number a new meaning
//! (close, close_range, dup2, dup3 onto it). A new process image starts with an empty table.
//!
//! A number is only ever marked after checking it in this process, and every close we see clears
//! it first, so a number reused by open/socket/pipe always starts unknown.

use std::sync::atomic::{AtomicU8, Ordering::Relaxed};

use nvmmio_core::sys;

/// Descriptors at or above this are not tracked (treated as unknown).
const TRACKED: usize = 1 << 16;

const UNKNOWN: u8 = 0;
const NEVER_BLOCKS: u8 = 1;
const OTHER: u8 = 2;

static KIND: [AtomicU8; TRACKED] = [const { AtomicU8::new(UNKNOWN) }; TRACKED];

fn slot(fd: i32) -> Option<&'static AtomicU8> {
    usize::try_from(fd).ok().and_then(|i| KIND.get(i))
}

/// Whether `fd` is a regular file or block device; asks the kernel once per descriptor.
pub fn never_blocks(fd: i32) -> bool {
    let Some(slot) = slot(fd) else { return false };
    match slot.load(Relaxed) {
        NEVER_BLOCKS => true,
        OTHER => false,
        _ => {
            let kind = match sys::file_type(fd) {
                Ok(libc::S_IFREG | libc::S_IFBLK) => NEVER_BLOCKS,
                Ok(_) => OTHER,
                Err(_) => return false,
            };
            slot.store(kind, Relaxed);
            kind == NEVER_BLOCKS
        }
    }
}

/// Whether `fd` is already known to be a regular file or block device, without asking the
/// kernel (unknown: false).
pub fn known_to_never_block(fd: i32) -> bool {
    slot(fd).is_some_and(|slot| slot.load(Relaxed) == NEVER_BLOCKS)
}

/// The program just opened `fd`, whose type (`st_mode`) an fstat made for it showed: its first
/// cancellation point need not ask again.
pub fn learn(fd: i32, st_mode: u32) {
    if let Some(slot) = slot(fd) {
        let kind = match st_mode & libc::S_IFMT {
            libc::S_IFREG | libc::S_IFBLK => NEVER_BLOCKS,
            _ => OTHER,
        };
        slot.store(kind, Relaxed);
    }
}

/// The number is about to be closed or replaced.
pub fn forget(fd: i32) {
    if let Some(slot) = slot(fd) {
        slot.store(UNKNOWN, Relaxed);
    }
}

/// `close_range(first, last)` is about to run.
pub fn forget_range(first: u32, last: u32) {
    let end = (last as usize).min(TRACKED - 1);
    for slot in KIND.iter().take(end + 1).skip(first as usize) {
        slot.store(UNKNOWN, Relaxed);
    }
}

/// Clears what a call is about to invalidate; called before the call runs.
pub fn before_call(nr: usize, args: [usize; 6]) {
    match nr as i64 {
        libc::SYS_close => forget(args[0] as i32),
        libc::SYS_dup2 | libc::SYS_dup3 => forget(args[1] as i32),
        libc::SYS_close_range => forget_range(args[0] as u32, args[1] as u32),
        _ => {}
    }
}

/// The calls `before_call` must see.
pub const INVALIDATING: [i64; 4] = [libc::SYS_close, libc::SYS_close_range, libc::SYS_dup2, libc::SYS_dup3];

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn regular_files_are_learned_and_forgotten() {
        let file = tempfile_in_tmp();
        let fd = file.as_raw_fd();
        assert!(never_blocks(fd));
        assert_eq!(KIND[fd as usize].load(Relaxed), NEVER_BLOCKS);
        before_call(libc::SYS_close as usize, [fd as usize, 0, 0, 0, 0, 0]);
        assert_eq!(KIND[fd as usize].load(Relaxed), UNKNOWN);
        let (r, _w) = std::io::pipe().unwrap();
        assert!(!never_blocks(r.as_raw_fd()));
        // What an open's own fstat showed stands (the kernel is not asked again).
        learn(fd, libc::S_IFREG | 0o644);
        assert_eq!(KIND[fd as usize].load(Relaxed), NEVER_BLOCKS);
        learn(r.as_raw_fd(), libc::S_IFIFO);
        assert_eq!(KIND[r.as_raw_fd() as usize].load(Relaxed), OTHER);
        assert!(!never_blocks(-1));
        assert!(!never_blocks(1 << 20));
    }

    fn tempfile_in_tmp() -> std::fs::File {
        let path = std::env::temp_dir().join(format!("nvmmio-fdtable-{}", std::process::id()));
        let f = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }
}
