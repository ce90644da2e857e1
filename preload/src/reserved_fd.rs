//! nvmmio's own descriptors (the trace output; each managed file's data and log descriptors)
//! sit at high numbers and are hidden from the program: closing one reports EBADF as if it
//! were not open, close_range skips them, and dup2/dup3 onto the trace descriptor first move it
//! elsewhere (onto an engine descriptor they fail with EBUSY, which the program never expects
//! to hit since it never sees those numbers).

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};

use nvmmio_core::sys::{self, Errno};

use crate::dispatch::run;

/// The trace output descriptor, or -1.
static TRACE: AtomicI32 = AtomicI32::new(-1);
/// Every reserved descriptor below 65536 (the trace one included).
static RESERVED: [AtomicU64; 1024] = [const { AtomicU64::new(0) }; 1024];

fn set_bit(fd: i32, on: bool) {
    if let Some(word) = usize::try_from(fd).ok().and_then(|f| RESERVED.get(f / 64)) {
        let bit = 1u64 << (fd % 64);
        if on {
            word.fetch_or(bit, Relaxed);
        } else {
            word.fetch_and(!bit, Relaxed);
        }
    }
}

fn is_reserved(fd: i32) -> bool {
    usize::try_from(fd).ok().and_then(|f| RESERVED.get(f / 64)).is_some_and(|w| w.load(Relaxed) & (1 << (fd % 64)) != 0)
}

/// The trace output descriptor, or -1.
pub fn trace_fd() -> i32 {
    TRACE.load(Relaxed)
}

/// Moves `fd` to a high close-on-exec number and reserves it; returns the new number.
pub fn reserve(fd: i32) -> Result<i32, Errno> {
    let high = reserve_copy(fd);
    let _ = sys::close(fd);
    high
}

/// Reserves a high close-on-exec copy of `fd` (which stays open); returns its number.
pub fn reserve_copy(fd: i32) -> Result<i32, Errno> {
    let high = sys::dup_cloexec_at_least(fd, lowest_reserved_number())?;
    set_bit(high, true);
    Ok(high)
}

/// Stops guarding `fd` (its owner is about to close it).
pub fn unreserve(fd: i32) {
    set_bit(fd, false);
}

/// Closes a descriptor reserved with [`reserve`].
pub fn release_and_close(fd: i32) {
    set_bit(fd, false);
    let _ = sys::close(fd);
}

/// Makes `fd` the trace output, at the same number as before if there was one (so other
/// threads never write to a closed number), then closes `fd`.
pub fn replace_trace_output(fd: i32) -> Result<(), Errno> {
    let current = trace_fd();
    if current < 0 {
        let high = reserve(fd)?;
        TRACE.store(high, Relaxed);
        return Ok(());
    }
    let a = [fd as usize, current as usize, libc::O_CLOEXEC as usize, 0, 0, 0];
    let result = Errno::result(run(libc::SYS_dup3 as usize, a)).map(drop);
    let _ = sys::close(fd);
    result
}

/// Just below the soft descriptor limit, where programs rarely look (computed once).
fn lowest_reserved_number() -> i32 {
    static LOWEST: AtomicI32 = AtomicI32::new(0);
    match LOWEST.load(Relaxed) {
        0 => {
            let n = compute_lowest_reserved_number();
            LOWEST.store(n, Relaxed);
            n
        }
        n => n,
    }
}

fn compute_lowest_reserved_number() -> i32 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    let a = [0, libc::RLIMIT_NOFILE as usize, 0, &mut limit as *mut libc::rlimit as usize, 0, 0];
    match Errno::result(run(libc::SYS_prlimit64 as usize, a)) {
        Ok(_) => limit.rlim_cur.clamp(256, 1 << 16) as i32 - 128,
        Err(_) => 896,
    }
}

/// Applies the call if it touches a reserved descriptor; `None` when it does not.
pub fn protect(nr: usize, args: [usize; 6]) -> Option<isize> {
    match nr as i64 {
        libc::SYS_close if is_reserved(args[0] as i32) => Some(Errno(libc::EBADF).to_raw()),
        libc::SYS_close_range => {
            let (first, last) = (args[0] as u32, args[1] as u32);
            if first > last {
                return None;
            }
            let reserved: Vec<u32> = (first..=last.min(65535)).filter(|&fd| is_reserved(fd as i32)).collect();
            if reserved.is_empty() {
                return None;
            }
            // Close the runs between reserved numbers.
            let mut start = first as u64;
            for r in reserved {
                if r as u64 > start {
                    let result = run(nr, [start as usize, r as usize - 1, args[2], 0, 0, 0]);
                    if result != 0 {
                        return Some(result);
                    }
                }
                start = r as u64 + 1;
            }
            if start <= last as u64 {
                return Some(run(nr, [start as usize, last as usize, args[2], 0, 0, 0]));
            }
            Some(0)
        }
        libc::SYS_dup2 | libc::SYS_dup3 if is_reserved(args[1] as i32) => {
            let target = args[1] as i32;
            if target != trace_fd() {
                return Some(Errno(libc::EBUSY).to_raw());
            }
            // Make room: nvmmio's copy moves to a new high number, the program gets this one.
            if let Ok(moved) = sys::dup_cloexec_at_least(target, target + 1) {
                set_bit(moved, true);
                set_bit(target, false);
                TRACE.store(moved, Relaxed);
            }
            None
        }
        _ => None,
    }
}
