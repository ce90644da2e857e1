//! nvmmio's own descriptor (the trace output) sits at a high number and is hidden from the
//! program: closing it reports EBADF as if it were not open, close_range skips it, and dup2/dup3
//! onto it first move nvmmio's copy elsewhere.

use std::sync::atomic::{AtomicI32, Ordering::Relaxed};

use nvmmio_core::sys::{self, Errno};

use crate::dispatch::run;

/// The reserved descriptor, or -1.
static RESERVED: AtomicI32 = AtomicI32::new(-1);

pub fn get() -> i32 {
    RESERVED.load(Relaxed)
}

/// Moves `fd` to a high close-on-exec number and reserves it. Returns the new number.
pub fn adopt(fd: i32) -> Result<i32, Errno> {
    let high = sys::dup_cloexec_at_least(fd, lowest_reserved_number())?;
    let _ = sys::close(fd);
    let old = RESERVED.swap(high, Relaxed);
    if old >= 0 && old != high {
        let _ = sys::close(old);
    }
    Ok(high)
}

/// Replaces the reserved descriptor's file with `fd` (same number, so other threads never see a
/// closed number), then closes `fd`.
pub fn replace_with(fd: i32) -> Result<(), Errno> {
    let reserved = get();
    if reserved < 0 {
        return adopt(fd).map(drop);
    }
    let a = [
        fd as usize,
        reserved as usize,
        libc::O_CLOEXEC as usize,
        0,
        0,
        0,
    ];
    let result = Errno::result(run(libc::SYS_dup3 as usize, a)).map(drop);
    let _ = sys::close(fd);
    result
}

/// Just below the soft descriptor limit, where programs rarely look.
fn lowest_reserved_number() -> i32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let a = [
        0,
        libc::RLIMIT_NOFILE as usize,
        0,
        &mut limit as *mut libc::rlimit as usize,
        0,
        0,
    ];
    match Errno::result(run(libc::SYS_prlimit64 as usize, a)) {
        Ok(_) => limit.rlim_cur.clamp(64, 1 << 20) as i32 - 32,
        Err(_) => 992,
    }
}

/// Applies the call if it touches the reserved descriptor; `None` when it does not.
pub fn protect(nr: usize, args: [usize; 6]) -> Option<isize> {
    let reserved = get();
    if reserved < 0 {
        return None;
    }
    match nr as i64 {
        libc::SYS_close if args[0] as i32 == reserved => Some(Errno(libc::EBADF).to_raw()),
        libc::SYS_close_range => {
            let (first, last) = (args[0] as u32, args[1] as u32);
            let r = reserved as u32;
            if first > r || last < r {
                return None;
            }
            let mut result = 0;
            if first < r {
                result = run(nr, [first as usize, (r - 1) as usize, args[2], 0, 0, 0]);
            }
            if result == 0 && last > r {
                result = run(nr, [(r + 1) as usize, last as usize, args[2], 0, 0, 0]);
            }
            Some(result)
        }
        libc::SYS_dup2 | libc::SYS_dup3 if args[1] as i32 == reserved => {
            // Make room: nvmmio's copy moves to a new high number, the program gets this one.
            if let Ok(moved) = sys::dup_cloexec_at_least(reserved, reserved + 1) {
                RESERVED.store(moved, Relaxed);
            }
            None
        }
        _ => None,
    }
}
