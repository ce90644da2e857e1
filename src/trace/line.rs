//! A fixed-size line buffer: one trace line is built here and written with a single `write`, so
//! lines from many threads and processes never interleave, and nothing is allocated in the hook.

use core::fmt;

/// Lines stay under PIPE_BUF (4096), so one `write` to a pipe or an O_APPEND file stays whole;
/// 2 KiB keeps the hook's stack use small enough for signal stacks.
pub const LINE_MAX: usize = 2048;
const TAIL: &[u8] = b"...\n";

pub struct LineBuf {
    buf: [u8; LINE_MAX],
    len: usize,
    truncated: bool,
}

impl Default for LineBuf {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuf {
    pub const fn new() -> Self {
        LineBuf { buf: [0; LINE_MAX], len: 0, truncated: false }
    }

    pub fn push_bytes(&mut self, bytes: &[u8]) {
        // Keep room for the "...\n" that marks a cut line.
        let room = LINE_MAX - TAIL.len() - self.len;
        let n = bytes.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&bytes[..n]);
        self.len += n;
        if n < bytes.len() {
            self.truncated = true;
        }
    }

    pub fn push(&mut self, byte: u8) {
        self.push_bytes(&[byte]);
    }

    /// The finished line, newline included.
    pub fn finish(&mut self) -> &[u8] {
        let end: &[u8] = if self.truncated { TAIL } else { b"\n" };
        self.buf[self.len..self.len + end.len()].copy_from_slice(end);
        &self.buf[..self.len + end.len()]
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Whether some bytes did not fit.
    pub fn is_truncated(&self) -> bool {
        self.truncated
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.truncated = false;
    }
}

impl fmt::Write for LineBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.push_bytes(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write;

    #[test]
    fn long_lines_are_cut_and_marked() {
        let mut l = LineBuf::new();
        for _ in 0..LINE_MAX {
            l.write_str("ab").unwrap();
        }
        let out = l.finish();
        assert_eq!(out.len(), LINE_MAX);
        assert!(out.ends_with(b"...\n"));
    }

    #[test]
    fn short_lines_end_with_newline() {
        let mut l = LineBuf::new();
        write!(l, "read({}) = {}", 3, 5).unwrap();
        assert_eq!(l.finish(), b"read(3) = 5\n");
    }
}
