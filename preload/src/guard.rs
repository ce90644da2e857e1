//! The reentrancy guard: while a thread is inside nvmmio, its system calls (allocation, set-up,
//! a signal handler interrupting us) go straight to the kernel.
//!
//! A thread-local flag with a const initializer and no destructor: reading it neither allocates
//! nor locks, in any thread the program creates and in signal handlers.

use std::cell::Cell;

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Marks the thread as inside nvmmio until dropped.
pub struct Guard(());

/// Enters nvmmio, or returns `None` if this thread is already inside (a nested call).
pub fn enter() -> Option<Guard> {
    INSIDE.with(|inside| if inside.replace(true) { None } else { Some(Guard(())) })
}

/// Runs `f` (a call that may not return, like execve) with the guard lowered. A vfork child
/// shares the parent's thread-locals: if it exec'd while marked inside, the parent would resume
/// marked inside and never be seen again.
pub fn lowered<R>(_guard_held: &Guard, f: impl FnOnce() -> R) -> R {
    INSIDE.with(|inside| inside.set(false));
    let result = f();
    INSIDE.with(|inside| inside.set(true));
    result
}

impl Drop for Guard {
    fn drop(&mut self) {
        INSIDE.with(|inside| inside.set(false));
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
