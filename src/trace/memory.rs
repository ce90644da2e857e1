//! Reading the traced program's memory (paths, buffers, iovecs) to print it.
//!
//! # Safety
//! Memory the kernel has just read or written for a successful call is known to be mapped and
//! readable, and is copied directly. Anything else (a failed call, a call not yet made) is copied
//! through `process_vm_readv`, which reports a bad address as `EFAULT` instead of faulting, so a
//! bad pointer in the program never crashes the tracer.
#![allow(unsafe_code)]

use crate::sys;

/// Reads memory of this process on behalf of the decoder.
#[derive(Clone, Copy)]
pub struct UserMemory {
    /// The kernel accessed the call's pointers successfully: direct reads are safe.
    pub trusted: bool,
}

impl UserMemory {
    /// Copies up to `dst.len()` bytes from `addr`; returns how many could be read.
    pub fn read(&self, addr: usize, dst: &mut [u8]) -> usize {
        if addr == 0 || dst.is_empty() {
            return 0;
        }
        if self.trusted {
            // SAFETY: `trusted` is set only after the kernel accessed this range for the call
            // being decoded, so it is mapped and readable; `dst` is a distinct local buffer.
            unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, dst.as_mut_ptr(), dst.len()) };
            return dst.len();
        }
        match sys::read_own_memory(addr, dst) {
            Ok(n) => n,
            // A range that ends in an unmapped page: retry the part on the first page.
            Err(_) => {
                let first_page = 4096 - addr % 4096;
                if first_page < dst.len() {
                    sys::read_own_memory(addr, &mut dst[..first_page]).unwrap_or(0)
                } else {
                    0
                }
            }
        }
    }

    /// Reads a NUL-terminated string into `dst`; returns its length (without NUL) and whether
    /// the terminator was found within `dst`, or `None` when nothing could be read.
    pub fn read_cstr(&self, addr: usize, dst: &mut [u8]) -> Option<(usize, bool)> {
        if addr == 0 {
            return None;
        }
        if self.trusted {
            for (i, slot) in dst.iter_mut().enumerate() {
                // SAFETY: the kernel read this string up to its NUL for the call being decoded,
                // so every byte before the terminator is readable; we stop at the terminator.
                let b = unsafe { *((addr + i) as *const u8) };
                if b == 0 {
                    return Some((i, true));
                }
                *slot = b;
            }
            return Some((dst.len(), false));
        }
        // Copy page by page so that a string ending just before an unmapped page still reads.
        let mut done = 0;
        while done < dst.len() {
            let page_left = 4096 - (addr + done) % 4096;
            let chunk = page_left.min(dst.len() - done);
            let n = sys::read_own_memory(addr + done, &mut dst[done..done + chunk]).unwrap_or(0);
            if let Some(nul) = dst[done..done + n].iter().position(|&b| b == 0) {
                return Some((done + nul, true));
            }
            if n < chunk {
                return if done + n == 0 { None } else { Some((done + n, false)) };
            }
            done += n;
        }
        Some((dst.len(), false))
    }

    /// Reads one machine word (an iovec field, an argv pointer, an offset).
    pub fn read_word(&self, addr: usize) -> Option<u64> {
        let mut b = [0u8; 8];
        (self.read(addr, &mut b) == 8).then(|| u64::from_ne_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn untrusted_reads_of_bad_pointers_fail_cleanly() {
        let mem = UserMemory { trusted: false };
        let mut buf = [0u8; 16];
        assert_eq!(mem.read(8, &mut buf), 0);
        assert_eq!(mem.read_cstr(8, &mut buf), None);
    }

    #[test]
    fn strings_are_read_both_ways() {
        let s = b"hello\0world";
        for trusted in [true, false] {
            let mem = UserMemory { trusted };
            let mut buf = [0u8; 32];
            assert_eq!(mem.read_cstr(s.as_ptr() as usize, &mut buf), Some((5, true)));
            assert_eq!(&buf[..5], b"hello");
            let mut small = [0u8; 3];
            assert_eq!(mem.read_cstr(s.as_ptr() as usize, &mut small), Some((3, false)));
        }
    }
}
