//! Which system calls to trace: a bit set parsed from `-e` specs such as `file,data,!close`.

use super::names::{NAMES, SYSCALL_COUNT};
use super::signature::{in_class, Class};

const WORDS: usize = SYSCALL_COUNT.div_ceil(64);

/// A set of system call numbers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SyscallSet([u64; WORDS]);

impl SyscallSet {
    pub const fn empty() -> Self {
        SyscallSet([0; WORDS])
    }

    pub fn all() -> Self {
        let mut s = Self::empty();
        (0..SYSCALL_COUNT).for_each(|nr| s.insert(nr));
        s
    }

    pub fn insert(&mut self, nr: usize) {
        if nr < SYSCALL_COUNT {
            self.0[nr / 64] |= 1 << (nr % 64);
        }
    }

    pub fn remove(&mut self, nr: usize) {
        if nr < SYSCALL_COUNT {
            self.0[nr / 64] &= !(1 << (nr % 64));
        }
    }

    /// Numbers past the table (new kernels) are traced only when the set holds everything.
    pub fn contains(&self, nr: usize) -> bool {
        if nr < SYSCALL_COUNT {
            self.0[nr / 64] & (1 << (nr % 64)) != 0
        } else {
            *self == Self::all()
        }
    }

    /// Parses a comma-separated list of classes (`file`, `data`, `network`, `process`, `memory`,
    /// `signal`, `desc`, also written `%file`), syscall names and `all`. A leading `trace=` is
    /// accepted as in strace; a leading `!` selects everything except the list.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let spec = spec.strip_prefix("trace=").unwrap_or(spec);
        let (negate, list) = match spec.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, spec),
        };
        let mut set = Self::empty();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "all" {
                set = Self::all();
            } else if let Some(class) = Class::from_name(item) {
                (0..SYSCALL_COUNT).filter(|&nr| in_class(nr, class)).for_each(|nr| set.insert(nr));
            } else if let Some(nr) = NAMES.iter().position(|&n| n == item && !n.is_empty()) {
                set.insert(nr);
            } else {
                return Err(format!(
                    "unknown system call or class '{item}' (classes: file, data, network, process, memory, signal, desc)"
                ));
            }
        }
        if negate {
            let all = Self::all();
            for (w, a) in set.0.iter_mut().zip(all.0) {
                *w = !*w & a;
            }
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_classes_combine() {
        let s = SyscallSet::parse("trace=data,openat").unwrap();
        assert!(s.contains(libc::SYS_pread64 as usize));
        assert!(s.contains(libc::SYS_openat as usize));
        assert!(!s.contains(libc::SYS_mmap as usize));
    }

    #[test]
    fn negation_and_all() {
        let s = SyscallSet::parse("!memory").unwrap();
        assert!(!s.contains(libc::SYS_mmap as usize));
        assert!(s.contains(libc::SYS_read as usize));
        assert!(SyscallSet::parse("all").unwrap().contains(99_999));
        assert!(!SyscallSet::parse("read").unwrap().contains(99_999));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(SyscallSet::parse("file,frobnicate").is_err());
    }
}
