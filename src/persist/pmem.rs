//! libpmem, for logs on persistent memory (DAX): non-temporal copies, cache-line flushes and a
//! drain instead of msync. The only code that calls libpmem.
//!
//! # Safety
//! Every function takes a range inside a live `Mapping` (checked by the caller, see
//! `LogFile`), which is all libpmem requires of its arguments.
#![allow(unsafe_code)]

use std::ffi::c_void;

/// Whether libpmem treats `[addr, addr + len)` as persistent memory (a MAP_SYNC mapping of a
/// DAX file, or any range when `PMEM_IS_PMEM_FORCE=1`).
pub fn is_pmem(bytes: &[u8]) -> bool {
    // SAFETY: a readable range we own (module doc).
    unsafe { pmdk_sys::pmem_is_pmem(bytes.as_ptr().cast::<c_void>(), bytes.len()) != 0 }
}

/// Copies `src` into `dst` with non-temporal stores; durable after [`drain`].
pub fn copy_nodrain(dst: &mut [u8], src: &[u8]) {
    debug_assert_eq!(dst.len(), src.len());
    // SAFETY: both ranges are valid for `src.len()` bytes and do not overlap (`&mut`).
    unsafe { pmdk_sys::pmem_memcpy_nodrain(dst.as_mut_ptr().cast(), src.as_ptr().cast(), src.len()) };
}

/// Starts writing back the cache lines of `bytes`; durable after [`drain`].
pub fn flush(bytes: &[u8]) {
    // SAFETY: a range we own (module doc).
    unsafe { pmdk_sys::pmem_flush(bytes.as_ptr().cast::<c_void>(), bytes.len()) };
}

/// Waits until every flush and non-temporal store so far is durable.
pub fn drain() {
    // SAFETY: no arguments; a store fence.
    unsafe { pmdk_sys::pmem_drain() };
}
