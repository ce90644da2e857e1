//! The `syscall` instruction itself, issued from nvmmio's own code.
//!
//! # Safety
//! syscall_intercept patches only the `syscall` instructions inside libc, so an instruction
//! emitted here reaches the kernel directly: the library's own calls can never re-enter the hook.
//! Callers of [`syscall6`] promise that the arguments are valid for the call they name.
#![allow(unsafe_code)]

use core::arch::asm;

/// Issues system call `nr` with up to six arguments and returns the kernel's raw result
/// (a negative errno on failure).
///
/// # Safety
/// The arguments must be valid for system call `nr`: pointers must point to memory of the size and
/// mutability the kernel expects, and the call must not break invariants Rust relies on
/// (unmapping live memory, closing descriptors owned elsewhere).
#[inline(always)]
pub unsafe fn syscall6(nr: usize, a: [usize; 6]) -> isize {
    let ret: isize;
    // SAFETY: the caller guarantees the arguments suit the call; rcx and r11 are clobbered by the
    // instruction itself, and the kernel preserves every other register.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") nr as isize => ret,
            in("rdi") a[0],
            in("rsi") a[1],
            in("rdx") a[2],
            in("r10") a[3],
            in("r8") a[4],
            in("r9") a[5],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}
