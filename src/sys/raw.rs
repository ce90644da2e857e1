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

// The same instruction in a function of its own with unwind information (.cfi), for calls that
// a signal handler may unwind out of: the unwinder can step from the interrupted instruction to
// the caller, and the call is a call site that may unwind.
core::arch::global_asm!(
    ".globl nvmmio_syscall_cancellable",
    ".hidden nvmmio_syscall_cancellable",
    ".type nvmmio_syscall_cancellable, @function",
    "nvmmio_syscall_cancellable:",
    ".cfi_startproc",
    "mov rax, rdi",
    "mov rdi, rsi",
    "mov rsi, rdx",
    "mov rdx, rcx",
    "mov r10, r8",
    "mov r8, r9",
    "mov r9, [rsp + 8]",
    "syscall",
    "ret",
    ".cfi_endproc",
    ".size nvmmio_syscall_cancellable, . - nvmmio_syscall_cancellable",
);

extern "C-unwind" {
    fn nvmmio_syscall_cancellable(nr: usize, a0: usize, a1: usize, a2: usize, a3: usize, a4: usize, a5: usize)
        -> isize;
}

/// [`syscall6`] for the program's own calls, which may be interrupted by a signal whose handler
/// unwinds the thread (glibc's asynchronous `pthread_cancel` during a blocking call).
///
/// # Safety
/// As for [`syscall6`].
#[inline(always)]
pub unsafe fn syscall6_cancellable(nr: usize, a: [usize; 6]) -> isize {
    // SAFETY: as in `syscall6`; the function above only moves registers and issues the call.
    unsafe { nvmmio_syscall_cancellable(nr, a[0], a[1], a[2], a[3], a[4], a[5]) }
}
