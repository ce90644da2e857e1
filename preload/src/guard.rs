//! The reentrancy guard: while a thread is inside nvmmio, its system calls (allocation, set-up)
//! go straight to the kernel, and the program's signal handlers wait (see [`crate::signals`]):
//! the signals that arrive meanwhile are noted here and let through as the thread leaves.
//!
//! Thread-local cells with const initializers and no destructors: reading them neither allocates
//! nor locks, in any thread the program creates and in signal handlers.

use std::cell::Cell;
use std::sync::atomic::{compiler_fence, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
    /// Set while nvmmio keeps locks across code that is not its own (see [`hold_signals`]).
    static HELD: Cell<bool> = const { Cell::new(false) };
    /// Signals held back (bit `n - 1` for signal `n`), blocked and pending. Atomic because a
    /// handler may run between any two instructions of [`leave`]: its swap is one instruction.
    static DEFERRED: AtomicU64 = const { AtomicU64::new(0) };
}

/// Marks the thread as inside nvmmio until dropped.
pub struct Guard(());

/// Enters nvmmio, or returns `None` if this thread is already inside (a nested call).
pub fn enter() -> Option<Guard> {
    let nested = INSIDE.with(|inside| inside.replace(true));
    // Nothing done inside may be moved before the flag is set (a compiler barrier only).
    compiler_fence(SeqCst);
    if nested {
        None
    } else {
        Some(Guard(()))
    }
}

/// Whether a signal arriving now must be held back: the thread is inside nvmmio, or leaving it
/// with signals still held (a handler running there would see them let through under it, in
/// the middle of its own calls, although its mask blocks them).
pub fn holds_signals() -> bool {
    INSIDE.with(Cell::get) || HELD.with(Cell::get) || DEFERRED.with(|d| d.load(Relaxed)) != 0
}

/// Holds the program's signals back until dropped, inside nvmmio or not: for locks nvmmio keeps
/// while the program's code runs (glibc's fork, between its atfork handlers).
pub struct SignalsHeld(());

pub fn hold_signals() -> SignalsHeld {
    HELD.with(|held| held.set(true));
    compiler_fence(SeqCst);
    SignalsHeld(())
}

impl Drop for SignalsHeld {
    fn drop(&mut self) {
        HELD.with(|held| held.set(false));
        compiler_fence(SeqCst);
        if !INSIDE.with(Cell::get) {
            release_deferred();
        }
    }
}

/// Signal `sig` is held back (blocked and pending) until the thread leaves nvmmio.
pub fn defer(sig: i32) {
    DEFERRED.with(|d| d.fetch_or(1 << (sig - 1), Relaxed));
}

/// Leaves nvmmio; the signals held back meanwhile are delivered now. A handler runs here (it
/// may unwind or jump out of this frame: the thread is already outside).
fn leave() {
    INSIDE.with(|inside| inside.set(false));
    compiler_fence(SeqCst);
    if !HELD.with(Cell::get) {
        release_deferred();
    }
}

/// Lets the signals held back through (the thread is neither inside nor holding them).
fn release_deferred() {
    // Until this swap, signals are still held back (see `holds_signals`); once DEFERRED is 0
    // nothing sets it at this level (a plain load first: a swap is a locked instruction).
    let deferred = DEFERRED.with(|d| if d.load(Relaxed) == 0 { 0 } else { d.swap(0, Relaxed) });
    if deferred != 0 {
        crate::signals::release(deferred);
    }
}

/// Runs `f` (a call that may block, or not return, like execve) with the guard lowered: signals
/// held back are delivered first, and handlers run during `f` as they would without nvmmio. A
/// vfork child shares the parent's thread-locals: if it exec'd while marked inside, the parent
/// would resume marked inside and never be seen again.
pub fn lowered<R>(_guard_held: &Guard, f: impl FnOnce() -> R) -> R {
    leave();
    let result = f();
    compiler_fence(SeqCst);
    INSIDE.with(|inside| inside.set(true));
    result
}

impl Drop for Guard {
    fn drop(&mut self) {
        leave();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_entry_is_refused_until_exit() {
        let outer = enter().expect("first entry");
        assert!(enter().is_none());
        assert!(lowered(&outer, || enter().is_some()));
        assert!(enter().is_none());
        drop(outer);
        assert!(enter().is_some());
        std::thread::spawn(|| assert!(enter().is_some())).join().unwrap();
    }
}
