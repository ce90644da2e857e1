//! The program's signal handlers never run while their thread is inside nvmmio. A handler that
//! interrupted a served call would find the file's lock held by the very frame it interrupted
//! (waiting would never end), or the reentrancy guard set (its calls would reach the kernel
//! behind the engine's back: lost writes, stale sizes and offsets). A try-lock does not help:
//! when the interrupted frame holds the lock, only waiting (a deadlock) or the kernel (a wrong
//! result) remain.
//!
//! So each handler the program installs is installed as [`trampoline`], the program's own action
//! kept in [`PROGRAM`] (its `sigaction` calls see only its own); so is each handler found
//! installed when nvmmio starts ([`adopt_installed`]). Outside nvmmio the trampoline
//! calls the program's handler at once, with the kernel's siginfo and context. Inside, it holds
//! the signal back: blocked in the interrupted context and queued again to the thread with the
//! same siginfo; the guard unblocks it as the thread leaves nvmmio, and the kernel delivers it
//! then. To the program the signal arrived just after the call, as if the call were one
//! instruction (in the kernel a regular-file call is not interrupted halfway either). The hot
//! path pays a thread-local read on the way out; a system call only when a signal was held back.
//!
//! Not wrapped: SIG_DFL and SIG_IGN, and the synchronous signals (SIGSEGV, SIGBUS, SIGILL,
//! SIGFPE, SIGTRAP, SIGSYS), raised by a faulting instruction, which cannot wait (SIGSEGV and
//! SIGBUS are [`crate::usercopy`]'s).
//!
//! # Safety
//! The kernel calls the trampoline (installed with SA_SIGINFO) with a valid siginfo and
//! ucontext. The trampoline writes only the interrupted context's signal mask, and calls the
//! program's handler with the three arguments the kernel passes to every handler on x86-64 (a
//! one-argument handler ignores the other two registers). System calls here pass pointers to
//! values of the sizes the kernel expects (an 8-byte signal set, the kernel's sigaction layout).
#![allow(unsafe_code)]

use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};

use nvmmio_core::sys::{self, syscall6, syscall6_cancellable, Errno};

use crate::{guard, usercopy};

/// The kernel's `struct sigaction` on x86-64, as rt_sigaction reads and writes it.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct KernelAction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// The handler and flags the program set for each signal number (meaningful while the kernel
/// has the trampoline for it).
static PROGRAM: [[AtomicUsize; 2]; 65] = [const { [const { AtomicUsize::new(0) }; 2] }; 65];

/// The flags the trampoline's action differs in: it always takes the siginfo, and it resets a
/// one-shot handler itself (the kernel would reset it before a held-back signal's handler ran).
const CHANGED: u64 = (libc::SA_SIGINFO | libc::SA_RESETHAND) as u64;

fn wrapped(sig: i32) -> bool {
    let synchronous = [libc::SIGSEGV, libc::SIGBUS, libc::SIGILL, libc::SIGFPE, libc::SIGTRAP, libc::SIGSYS];
    (1..=64).contains(&sig) && sig != libc::SIGKILL && sig != libc::SIGSTOP && !synchronous.contains(&sig)
}

fn trampoline_addr() -> usize {
    trampoline as *const () as usize
}

fn rt_sigaction(sig: i32, act: Option<&KernelAction>, old: &mut KernelAction) -> isize {
    let act = act.map_or(0, |a| a as *const KernelAction as usize);
    let a = [sig as usize, act, old as *mut KernelAction as usize, 8, 0, 0];
    // SAFETY: pointers to KernelAction values (see the module doc).
    unsafe { syscall6(libc::SYS_rt_sigaction as usize, a) }
}

/// The program's `rt_sigaction(sig, act, oldact, sigsetsize)` for a signal whose handlers run
/// through the trampoline, with the kernel's checks in the kernel's order. `None`: another
/// signal (or an odd set size): the kernel answers.
pub fn program_sigaction(sig: i32, act: usize, oldact: usize, setsize: usize) -> Option<isize> {
    if !wrapped(sig) || setsize != 8 {
        return None;
    }
    let mut new = KernelAction::default();
    if act != 0 {
        let mut raw = [0u8; 32];
        if usercopy::copy_from_user(&mut raw, act).is_err() {
            return Some(Errno(libc::EFAULT).to_raw());
        }
        let word = |i: usize| u64::from_ne_bytes(raw[i * 8..i * 8 + 8].try_into().unwrap());
        new = KernelAction { handler: word(0) as usize, flags: word(1), restorer: word(2) as usize, mask: word(3) };
    }
    let slot = &PROGRAM[sig as usize];
    let before = (slot[0].load(SeqCst), slot[1].load(SeqCst));
    let wrap = act != 0 && new.handler != libc::SIG_DFL && new.handler != libc::SIG_IGN;
    let mut ours = new;
    if wrap {
        // The table first: the kernel may run the trampoline as soon as it has it.
        slot[0].store(new.handler, SeqCst);
        slot[1].store(new.flags as usize, SeqCst);
        ours.handler = trampoline_addr();
        ours.flags = (new.flags | libc::SA_SIGINFO as u64) & !(libc::SA_RESETHAND as u64);
    }
    let mut old = KernelAction::default();
    let result = rt_sigaction(sig, (act != 0).then_some(&ours), &mut old);
    if result < 0 {
        slot[0].store(before.0, SeqCst);
        slot[1].store(before.1, SeqCst);
        return Some(result);
    }
    if old.handler == trampoline_addr() {
        old.handler = before.0;
        old.flags = (old.flags & !CHANGED) | (before.1 as u64 & CHANGED);
    }
    if oldact != 0 {
        let raw: Vec<u8> = [old.handler as u64, old.flags, old.restorer as u64, old.mask]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        if usercopy::copy_to_user(oldact, &raw).is_err() {
            return Some(Errno(libc::EFAULT).to_raw());
        }
    }
    Some(0)
}

/// Handlers the program installed before nvmmio started (from its `.preinit_array`, or a
/// library constructed before nvmmio) run through the trampoline too, as if set now: the
/// kernel gets the trampoline with the same mask and restorer and the flags it would get from
/// [`program_sigaction`]; the program's own action is kept (and reported back). Inherited
/// SIG_IGN and SIG_DFL stay as they are.
pub fn adopt_installed() {
    for sig in (1..=64).filter(|&sig| wrapped(sig)) {
        let mut current = KernelAction::default();
        if rt_sigaction(sig, None, &mut current) < 0 {
            continue;
        }
        let handler = current.handler;
        if handler == libc::SIG_DFL || handler == libc::SIG_IGN || handler == trampoline_addr() {
            continue;
        }
        // The table first: the kernel may run the trampoline as soon as it has it.
        let slot = &PROGRAM[sig as usize];
        slot[0].store(handler, SeqCst);
        slot[1].store(current.flags as usize, SeqCst);
        let flags = (current.flags | libc::SA_SIGINFO as u64) & !(libc::SA_RESETHAND as u64);
        let ours = KernelAction { handler: trampoline_addr(), flags, ..current };
        let _ = rt_sigaction(sig, Some(&ours), &mut current);
    }
}

/// Installed for every handler the program sets (see the module doc).
extern "C-unwind" fn trampoline(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    if guard::holds_signals() {
        hold_back(sig, info, ctx);
        return;
    }
    // The code the signal interrupted is no handler left with siglongjmp (which never said so).
    // SAFETY: the kernel's ucontext for this delivery (see the module doc).
    let interrupted_sp = unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs[libc::REG_RSP as usize] };
    crate::handler_alloc::note_entry(interrupted_sp as usize);
    let Some(slot) = PROGRAM.get(sig as usize) else { return };
    let handler = slot[0].load(SeqCst);
    let flags = slot[1].load(SeqCst) as u64;
    if flags & libc::SA_RESETHAND as u64 != 0 {
        reset_to_default(sig, flags);
    }
    if handler == libc::SIG_DFL || handler == libc::SIG_IGN {
        return;
    }
    type Handler = unsafe extern "C-unwind" fn(c_int, *mut libc::siginfo_t, *mut c_void);
    // SAFETY: the program installed this function as a handler for `sig` (see the module doc
    // for the arguments). It may unwind (thread cancellation) or jump out: no value with a
    // destructor is alive here.
    unsafe {
        let program_handler = std::mem::transmute::<usize, Handler>(handler);
        // nvmmio's allocations while it runs must not need glibc's malloc, which the code it
        // interrupted may be inside (see `handler_alloc`). The handler's frames are all below
        // this local (it may never return: see `handler_alloc::note_entry`).
        let frame = 0u8;
        crate::handler_alloc::enter_handler(std::hint::black_box(&frame) as *const u8 as usize);
        program_handler(sig, info, ctx);
        crate::handler_alloc::leave_handler();
    }
}

/// SA_RESETHAND: the action goes back to SIG_DFL as the handler is entered (the other fields
/// stay, as the kernel leaves them).
fn reset_to_default(sig: i32, program_flags: u64) {
    let mut current = KernelAction::default();
    if rt_sigaction(sig, None, &mut current) < 0 || current.handler != trampoline_addr() {
        return;
    }
    let flags = (current.flags & !CHANGED) | (program_flags & CHANGED);
    let reset = KernelAction { handler: libc::SIG_DFL, flags, ..current };
    let _ = rt_sigaction(sig, Some(&reset), &mut current);
}

/// The signal arrived inside nvmmio: blocked when the interrupted code resumes, and pending
/// again with the same siginfo, until the guard lets it through ([`release`]).
fn hold_back(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let bit = 1u64 << (sig - 1);
    let uc = ctx.cast::<libc::ucontext_t>();
    // SAFETY: the kernel's ucontext for this delivery; sigreturn restores the mask from it (the
    // first 8 bytes are the kernel's signal set).
    unsafe { *(&raw mut (*uc).uc_sigmask).cast::<u64>() |= bit };
    // Blocked now as well (with SA_NODEFER it is open while the trampoline runs), then queued.
    let block = [libc::SIG_BLOCK as usize, &bit as *const u64 as usize, 0, 8, 0, 0];
    let queue = [sys::getpid() as usize, sys::gettid() as usize, sig as usize, info as usize, 0, 0];
    // SAFETY: an 8-byte signal set; the kernel's siginfo for this delivery (it copies it).
    unsafe {
        syscall6(libc::SYS_rt_sigprocmask as usize, block);
        syscall6(libc::SYS_rt_tgsigqueueinfo as usize, queue);
    }
    guard::defer(sig);
}

/// Unblocks the signals held back (bit `n - 1` for signal `n`): the kernel delivers them now.
pub fn release(signals: u64) {
    let a = [libc::SIG_UNBLOCK as usize, &signals as *const u64 as usize, 0, 8, 0, 0];
    // SAFETY: an 8-byte signal set. The handlers run as the call returns and may unwind out of
    // it (asynchronous cancellation): the instruction has unwind information.
    unsafe { syscall6_cancellable(libc::SYS_rt_sigprocmask as usize, a) };
}
