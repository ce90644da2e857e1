//! Copies to and from the program's buffers that report a bad pointer as EFAULT instead of
//! crashing the program, without a system call: the copy is one `rep movsb` instruction, and a
//! SIGSEGV/SIGBUS handler that sees a fault at exactly that instruction resumes at a fixup that
//! returns how much was left (like the kernel's exception tables). Any other fault is passed to
//! the program's own handler, or to the default action.
//!
//! The handler is installed the first time a managed file is opened. From then on the program's
//! own `sigaction` calls for SIGSEGV and SIGBUS are kept by nvmmio (see [`program_sigaction`])
//! and honoured by chaining.
//!
//! # Safety
//! `nvmmio_copy_user` only reads `[src, src+len)` and writes `[dst, dst+len)`; a fault there is
//! turned into a short count. The signal handler only reads the faulting context and either
//! moves its instruction pointer to the fixup (which follows the copy instruction in the same
//! function, with the same stack frame) or calls the handler the program asked for.
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use nvmmio_core::sys::Errno;

core::arch::global_asm!(
    ".globl nvmmio_copy_user",
    ".hidden nvmmio_copy_user",
    ".globl nvmmio_copy_user_insn",
    ".hidden nvmmio_copy_user_insn",
    ".globl nvmmio_copy_user_fixup",
    ".hidden nvmmio_copy_user_fixup",
    ".type nvmmio_copy_user, @function",
    "nvmmio_copy_user:",
    ".cfi_startproc",
    "mov rcx, rdx",
    "nvmmio_copy_user_insn:",
    "rep movsb",
    "xor eax, eax",
    "ret",
    "nvmmio_copy_user_fixup:",
    "mov rax, rcx",
    "ret",
    ".cfi_endproc",
    ".size nvmmio_copy_user, . - nvmmio_copy_user",
);

extern "C" {
    /// Copies `len` bytes; returns how many were *not* copied (0: all).
    fn nvmmio_copy_user(dst: *mut u8, src: *const u8, len: usize) -> usize;
    static nvmmio_copy_user_insn: u8;
    static nvmmio_copy_user_fixup: u8;
}

static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The program's actions for SIGSEGV (0) and SIGBUS (1), in the kernel's layout:
/// handler, flags, restorer, mask.
static PROGRAM_ACTIONS: [[AtomicUsize; 4]; 2] = [const { [const { AtomicUsize::new(0) }; 4] }; 2];

fn slot(sig: i32) -> Option<usize> {
    match sig {
        libc::SIGSEGV => Some(0),
        libc::SIGBUS => Some(1),
        _ => None,
    }
}

/// Copies from the program's memory at `src` into `dst`; EFAULT if any of it is unreadable
/// (then `dst` may hold part of it).
pub fn copy_from_user(dst: &mut [u8], src: usize) -> Result<(), Errno> {
    ensure_installed();
    // SAFETY: `dst` is ours and writable; the source is checked by the fault fixup.
    let left = unsafe { nvmmio_copy_user(dst.as_mut_ptr(), src as *const u8, dst.len()) };
    if left == 0 {
        Ok(())
    } else {
        Err(Errno(libc::EFAULT))
    }
}

/// Copies as much as it can from the program's memory at `src` into `dst`, in order; returns
/// how many bytes were copied (less than `dst.len()` when it reached an unreadable address).
pub fn copy_from_user_partial(dst: &mut [u8], src: usize) -> usize {
    ensure_installed();
    // SAFETY: `dst` is ours and writable; the source is checked by the fault fixup.
    let left = unsafe { nvmmio_copy_user(dst.as_mut_ptr(), src as *const u8, dst.len()) };
    dst.len() - left
}

/// Copies `src` into the program's memory at `dst`; EFAULT if any of it is not writable.
pub fn copy_to_user(dst: usize, src: &[u8]) -> Result<(), Errno> {
    ensure_installed();
    // SAFETY: `src` is ours; the destination is checked by the fault fixup.
    let left = unsafe { nvmmio_copy_user(dst as *mut u8, src.as_ptr(), src.len()) };
    if left == 0 {
        Ok(())
    } else {
        Err(Errno(libc::EFAULT))
    }
}

/// Copies a NUL-terminated string from the program's memory into `buf`; returns it without
/// the NUL, or EFAULT, or ENAMETOOLONG if it does not fit.
pub fn copy_cstr_from_user(src: usize, buf: &mut [u8]) -> Result<&std::ffi::CStr, Errno> {
    let mut done = 0;
    while done < buf.len() {
        // Never read past the page the string may end on.
        let chunk = (4096 - (src + done) % 4096).min(buf.len() - done);
        copy_from_user(&mut buf[done..done + chunk], src + done)?;
        if let Some(nul) = buf[done..done + chunk].iter().position(|&b| b == 0) {
            return std::ffi::CStr::from_bytes_with_nul(&buf[..done + nul + 1]).map_err(|_| Errno(libc::EINVAL));
        }
        done += chunk;
    }
    Err(Errno(libc::ENAMETOOLONG))
}

/// Fills `len` bytes of the program's memory at `dst` with zeros; EFAULT if not writable.
pub fn zero_user(dst: usize, len: usize) -> Result<(), Errno> {
    const ZEROS: [u8; 4096] = [0; 4096];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZEROS.len());
        copy_to_user(dst + done, &ZEROS[..n])?;
        done += n;
    }
    Ok(())
}

/// Installs the fault handler once, remembering what the program had.
pub fn ensure_installed() {
    if INSTALLED.load(SeqCst) || INSTALLED.swap(true, SeqCst) {
        return;
    }
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        let mut ours: libc::sigaction = unsafe_zeroed_sigaction();
        ours.sa_sigaction = on_fault as *const () as usize;
        ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        let mut old: libc::sigaction = unsafe_zeroed_sigaction();
        // SAFETY: valid sigaction structures; the handler is an `extern "C"` function with the
        // SA_SIGINFO signature.
        unsafe { libc::sigaction(sig, &ours, &mut old) };
        let s = slot(sig).unwrap_or(0);
        PROGRAM_ACTIONS[s][0].store(old.sa_sigaction, SeqCst);
        PROGRAM_ACTIONS[s][1].store(old.sa_flags as usize, SeqCst);
        PROGRAM_ACTIONS[s][2].store(old.sa_restorer.map_or(0, |f| f as usize), SeqCst);
        // SAFETY: sigset_t is at least 8 bytes; the kernel's mask is its first word.
        let mask = unsafe { *(&old.sa_mask as *const libc::sigset_t as *const usize) };
        PROGRAM_ACTIONS[s][3].store(mask, SeqCst);
    }
}

fn unsafe_zeroed_sigaction() -> libc::sigaction {
    // SAFETY: all-zero is a valid sigaction (SIG_DFL, no flags, empty mask).
    unsafe { std::mem::zeroed() }
}

/// The program's `rt_sigaction(sig, act, oldact, size)` for SIGSEGV or SIGBUS once our handler
/// is in place: answered from and stored into the program's saved action. `None`: not ours to
/// answer (other signals, or the handler is not installed).
pub fn program_sigaction(sig: i32, act: usize, oldact: usize) -> Option<isize> {
    let s = slot(sig)?;
    if !INSTALLED.load(SeqCst) {
        return None;
    }
    let mut old = [0usize; 4];
    for (i, w) in old.iter_mut().enumerate() {
        *w = PROGRAM_ACTIONS[s][i].load(SeqCst);
    }
    let mut new = [0usize; 4];
    if act != 0 {
        let mut raw = [0u8; 32];
        if copy_from_user(&mut raw, act).is_err() {
            return Some(Errno(libc::EFAULT).to_raw());
        }
        for (i, w) in new.iter_mut().enumerate() {
            *w = usize::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        }
    }
    if oldact != 0 {
        let raw: Vec<u8> = old.iter().flat_map(|w| w.to_ne_bytes()).collect();
        if copy_to_user(oldact, &raw).is_err() {
            return Some(Errno(libc::EFAULT).to_raw());
        }
    }
    if act != 0 {
        for (i, w) in new.iter().enumerate() {
            PROGRAM_ACTIONS[s][i].store(*w, SeqCst);
        }
    }
    Some(0)
}

extern "C" fn on_fault(sig: i32, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let uc = ctx as *mut libc::ucontext_t;
    // SAFETY: the kernel passes a valid ucontext for SA_SIGINFO handlers.
    let rip = unsafe { &mut (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] };
    let insn = &raw const nvmmio_copy_user_insn as usize;
    if *rip as usize == insn {
        *rip = &raw const nvmmio_copy_user_fixup as i64;
        return;
    }
    let Some(s) = slot(sig) else { return };
    let handler = PROGRAM_ACTIONS[s][0].load(SeqCst);
    let flags = PROGRAM_ACTIONS[s][1].load(SeqCst) as i32;
    match handler {
        h if h == libc::SIG_DFL || h == libc::SIG_IGN => {
            // Put the default action back; returning re-runs the faulting instruction, which
            // now ends the program as it would have without nvmmio.
            let mut dfl = unsafe_zeroed_sigaction();
            dfl.sa_sigaction = libc::SIG_DFL;
            // SAFETY: a valid sigaction; sigaction is async-signal-safe.
            unsafe { libc::sigaction(sig, &dfl, std::ptr::null_mut()) };
        }
        h => {
            if flags & libc::SA_RESETHAND != 0 {
                PROGRAM_ACTIONS[s][0].store(libc::SIG_DFL, SeqCst);
            }
            if flags & libc::SA_SIGINFO != 0 {
                // SAFETY: the program registered this function with the SA_SIGINFO signature.
                let f: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) = unsafe { std::mem::transmute(h) };
                f(sig, info, ctx);
            } else {
                // SAFETY: the program registered this function with the plain signature.
                let f: extern "C" fn(i32) = unsafe { std::mem::transmute(h) };
                f(sig);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_pointers_give_efault_and_good_ones_copy() {
        let mut buf = [0u8; 8];
        assert_eq!(copy_from_user(&mut buf, 8), Err(Errno(libc::EFAULT)));
        assert_eq!(copy_to_user(16, b"abc"), Err(Errno(libc::EFAULT)));
        let src = *b"12345678";
        copy_from_user(&mut buf, src.as_ptr() as usize).unwrap();
        assert_eq!(&buf, b"12345678");
        let mut dst = [1u8; 5];
        zero_user(dst.as_mut_ptr() as usize, 5).unwrap();
        assert_eq!(dst, [0; 5]);
    }
}
