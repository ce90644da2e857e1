//! nvmmio's memory allocator: glibc's malloc, except while one of the program's signal handlers
//! runs on the thread. A handler may interrupt the program inside `malloc` (holding its arena
//! lock) and then call `write` on a managed file, which POSIX allows in a handler; serving it
//! allocates, and glibc's malloc would wait forever for the lock its own thread holds (or, not
//! waiting, corrupt the heap). So in a handler nvmmio allocates from a region of its own,
//! reserved once with `mmap` (async-signal-safe), and frees of glibc memory wait on a list
//! until a thread outside a handler gives them back.
//!
//! The region is a bump allocator with free lists of power-of-two size classes behind a spin
//! lock. It is never held while a handler could run on the same thread: inside nvmmio the
//! program's signals are held back ([`crate::signals`]), and nvmmio's own code never runs in a
//! handler of its own that allocates.
//!
//! A handler left with `siglongjmp` never returns to say so: the trampoline records where its
//! frame is on the stack, and the thread's next entry into nvmmio from a frame above it (the
//! stack grows down) knows the handler was left. A handler on an alternate signal stack above
//! the thread's stack cannot be told apart from one still running: the thread then goes on
//! allocating from the region (correct, only slower) until a handler returns.
//!
//! # Safety
//! Blocks handed out are within the reserved region, aligned to their size class (at least the
//! layout's alignment), and not handed out again before they are freed. Deferred frees store a
//! list pointer in the first 8 bytes of a glibc block, which always has at least 16 usable
//! bytes.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::null_mut;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release,
};

use nvmmio_core::sys::syscall6;

/// Handler frames recorded per thread (deeper ones are counted, not recorded).
const FRAMES: usize = 16;

thread_local! {
    /// How many of the program's handlers are running on this thread.
    static IN_HANDLER: Cell<u32> = const { Cell::new(0) };
    /// Where the trampoline's frame of each is (an address in it): everything the handler runs
    /// is below.
    static FRAME_AT: [Cell<usize>; FRAMES] = const { [const { Cell::new(0) }; FRAMES] };
}

/// Allocations served from the region (for the exit summary).
pub static REGION_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// The trampoline, whose frame holds the address `frame`, is about to call the program's
/// handler.
pub fn enter_handler(frame: usize) {
    let depth = IN_HANDLER.with(Cell::get);
    FRAME_AT.with(|f| {
        if let Some(at) = f.get(depth as usize) {
            at.set(frame);
        }
    });
    IN_HANDLER.with(|n| n.set(depth + 1));
}

/// The program's handler returned.
pub fn leave_handler() {
    IN_HANDLER.with(|n| n.set(n.get().saturating_sub(1)));
}

/// The thread runs code with its stack at `frame` outside any handler it may be in: it entered
/// nvmmio from there, or a signal interrupted it there. Handlers whose trampoline frame lies
/// below it were left (with `siglongjmp`) without returning. Only the innermost is compared at
/// each step: a handler still running has everything it calls below its trampoline's frame.
pub fn note_entry(frame: usize) {
    IN_HANDLER.with(|n| {
        let mut depth = n.get() as usize;
        if depth == 0 {
            return;
        }
        FRAME_AT.with(|f| {
            while depth > 0 && depth <= FRAMES && frame > f[depth - 1].get() {
                depth -= 1;
            }
        });
        n.set(depth as u32);
    });
}

/// Whether one of the program's signal handlers is running on this thread.
pub fn in_handler() -> bool {
    IN_HANDLER.with(Cell::get) != 0
}

/// Virtual size of the region (pages are taken only as they are touched).
const REGION: usize = 1 << 32;
/// Size classes 16 B ..= 2 GiB.
const CLASSES: usize = 28;

struct Region {
    lock: AtomicBool,
    base: AtomicUsize,
    /// Next free byte (offset from `base`).
    next: AtomicUsize,
    /// Heads of the free lists (addresses; 0: empty), one per class.
    free: [AtomicUsize; CLASSES],
}

static REGION_STATE: Region = Region {
    lock: AtomicBool::new(false),
    base: AtomicUsize::new(0),
    next: AtomicUsize::new(0),
    free: [const { AtomicUsize::new(0) }; CLASSES],
};

/// glibc blocks freed in a handler, waiting for a thread outside one.
static DEFERRED: AtomicPtr<usize> = AtomicPtr::new(null_mut());

fn class_of(layout: Layout) -> Option<usize> {
    let size = layout.size().max(layout.align()).max(16).checked_next_power_of_two()?;
    let class = size.trailing_zeros() as usize - 4;
    (class < CLASSES).then_some(class)
}

fn contains(ptr: *mut u8) -> bool {
    let base = REGION_STATE.base.load(Acquire);
    base != 0 && (base..base + REGION).contains(&(ptr as usize))
}

fn lock() {
    while REGION_STATE.lock.compare_exchange_weak(false, true, Acquire, Relaxed).is_err() {
        std::hint::spin_loop();
    }
}

fn unlock() {
    REGION_STATE.lock.store(false, Release);
}

fn region_alloc(layout: Layout) -> *mut u8 {
    let Some(class) = class_of(layout) else { return null_mut() };
    let size = 16usize << class;
    lock();
    let mut base = REGION_STATE.base.load(Relaxed);
    if base == 0 {
        let a = [
            0,
            REGION,
            (libc::PROT_READ | libc::PROT_WRITE) as usize,
            (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE) as usize,
            usize::MAX,
            0,
        ];
        // SAFETY: an anonymous mapping at an address the kernel picks.
        let mapped = unsafe { syscall6(libc::SYS_mmap as usize, a) };
        if mapped < 0 {
            unlock();
            return null_mut();
        }
        base = mapped as usize;
        REGION_STATE.base.store(base, Release);
    }
    let head = REGION_STATE.free[class].load(Relaxed);
    let block = if head != 0 {
        // SAFETY: a freed block of this class: its first word links the list.
        REGION_STATE.free[class].store(unsafe { *(head as *const usize) }, Relaxed);
        head
    } else {
        let at = REGION_STATE.next.load(Relaxed).next_multiple_of(size.min(4096));
        if at + size > REGION {
            unlock();
            return null_mut();
        }
        REGION_STATE.next.store(at + size, Relaxed);
        base + at
    };
    unlock();
    REGION_ALLOCATIONS.fetch_add(1, Relaxed);
    block as *mut u8
}

fn region_free(ptr: *mut u8, layout: Layout) {
    let Some(class) = class_of(layout) else { return };
    lock();
    // SAFETY: a block of this class from the region, no longer in use: its first word links it.
    unsafe { *(ptr as *mut usize) = REGION_STATE.free[class].load(Relaxed) };
    REGION_STATE.free[class].store(ptr as usize, Relaxed);
    unlock();
}

/// A glibc block freed in a handler: kept for later.
fn defer_free(ptr: *mut u8) {
    let node = ptr as *mut usize;
    let mut head = DEFERRED.load(Relaxed);
    loop {
        // SAFETY: the block is ours to reuse (see the module doc).
        unsafe { *node = head as usize };
        match DEFERRED.compare_exchange_weak(head, node, Release, Relaxed) {
            Ok(_) => return,
            Err(now) => head = now,
        }
    }
}

/// Gives the deferred glibc blocks back (outside a handler).
fn drain_deferred() {
    if DEFERRED.load(Relaxed).is_null() {
        return;
    }
    let mut node = DEFERRED.swap(null_mut(), Acquire);
    while !node.is_null() {
        // SAFETY: a block queued by `defer_free`, its first word the next one.
        let next = unsafe { *node } as *mut usize;
        // SAFETY: a glibc block nobody uses any more.
        unsafe { libc::free(node.cast()) };
        node = next;
    }
}

pub struct HandlerSafe;

// SAFETY: see the module doc; outside handlers every call is glibc's (through `System`).
unsafe impl GlobalAlloc for HandlerSafe {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if in_handler() {
            return region_alloc(layout);
        }
        drain_deferred();
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if in_handler() {
            let p = region_alloc(layout);
            if !p.is_null() {
                // SAFETY: a fresh block of at least `layout.size()` bytes (reused ones hold old data).
                unsafe { p.write_bytes(0, layout.size()) };
            }
            return p;
        }
        // SAFETY: the caller's layout, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if contains(ptr) {
            region_free(ptr, layout);
        } else if in_handler() {
            defer_free(ptr);
        } else {
            // SAFETY: a glibc block of this layout.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !contains(ptr) && !in_handler() {
            // SAFETY: a glibc block of this layout, passed on.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else { return null_mut() };
        // SAFETY: the contract of `realloc`, met with alloc + copy + dealloc.
        unsafe {
            let new = self.alloc(new_layout);
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_from_the_region_are_aligned_reused_and_recognised() {
        let layout = Layout::from_size_align(100, 8).unwrap();
        let a = region_alloc(layout);
        let b = region_alloc(layout);
        assert!(contains(a) && contains(b) && a != b);
        assert!((a as usize).is_multiple_of(128));
        region_free(a, layout);
        assert_eq!(region_alloc(layout), a, "a freed block of the class is reused");
        let big = Layout::from_size_align(3 << 20, 4096).unwrap();
        let c = region_alloc(big);
        assert!(contains(c) && (c as usize).is_multiple_of(4096));
        assert!(!contains(Box::into_raw(Box::new(1u64)).cast()));
    }

    #[test]
    fn allocations_in_a_handler_come_from_the_region_and_frees_wait() {
        let outside = Box::new([7u8; 64]);
        enter_handler(usize::MAX);
        let inside = Box::new([9u8; 64]);
        let inside_ptr: *const u8 = inside.as_ptr();
        let mut grown = vec![1u8; 10];
        grown.extend_from_slice(&[2u8; 1000]);
        drop(outside);
        leave_handler();
        assert!(contains(inside_ptr as *mut u8));
        assert!(contains(grown.as_mut_ptr()));
        assert_eq!(grown.len(), 1010);
        drop(inside);
        drop(grown);
        drain_deferred();
        assert!(DEFERRED.load(Relaxed).is_null());
    }

    #[test]
    fn a_handler_left_without_returning_is_forgotten_at_the_next_entry_above_it() {
        enter_handler(1000);
        enter_handler(500);
        note_entry(400);
        assert!(in_handler(), "called from the inner handler");
        note_entry(700);
        assert!(in_handler(), "the inner one was left, not the outer");
        assert_eq!(IN_HANDLER.with(Cell::get), 1);
        note_entry(2000);
        assert!(!in_handler());
        leave_handler();
        assert!(!in_handler());
    }
}
