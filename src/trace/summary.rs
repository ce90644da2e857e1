//! Per-syscall counters for `-c`, their on-disk form (one file per process), and the strace-style
//! table that sums them.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::names::{NAMES, SYSCALL_COUNT};

struct Counter {
    calls: AtomicU64,
    errors: AtomicU64,
    nanos: AtomicU64,
}

/// Lock-free counters, one set per system call number, shared by all threads of a process.
pub struct Counters([Counter; SYSCALL_COUNT]);

impl Default for Counters {
    fn default() -> Self {
        Self::new()
    }
}

impl Counters {
    pub const fn new() -> Self {
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: Counter = Counter { calls: AtomicU64::new(0), errors: AtomicU64::new(0), nanos: AtomicU64::new(0) };
        Counters([ZERO; SYSCALL_COUNT])
    }

    pub fn record(&self, nr: usize, nanos: u64, failed: bool) {
        if let Some(c) = self.0.get(nr) {
            c.calls.fetch_add(1, Relaxed);
            c.nanos.fetch_add(nanos, Relaxed);
            if failed {
                c.errors.fetch_add(1, Relaxed);
            }
        }
    }

    /// Counts one more failure of a call already recorded.
    pub fn record_error(&self, nr: usize) {
        if let Some(c) = self.0.get(nr) {
            c.errors.fetch_add(1, Relaxed);
        }
    }

    /// Zeroes everything (a forked child starts its own count).
    pub fn reset(&self) {
        for c in &self.0 {
            c.calls.store(0, Relaxed);
            c.errors.store(0, Relaxed);
            c.nanos.store(0, Relaxed);
        }
    }

    /// Visits the non-zero rows as `Row`s.
    pub fn for_each_row(&self, mut f: impl FnMut(Row)) {
        for (nr, c) in self.0.iter().enumerate() {
            let calls = c.calls.load(Relaxed);
            if calls > 0 {
                f(Row { name: NAMES[nr], calls, errors: c.errors.load(Relaxed), nanos: c.nanos.load(Relaxed) });
            }
        }
    }

    /// Writes the rows in the dump format: `name calls errors nanos` per line.
    pub fn write_dump<W: Write>(&self, w: &mut W) -> fmt::Result {
        let mut result = Ok(());
        self.for_each_row(|r| {
            if result.is_ok() {
                result = writeln!(w, "{} {} {} {}", r.name, r.calls, r.errors, r.nanos);
            }
        });
        result
    }

    /// Writes the summary table of this process alone, without allocating (used at exit).
    pub fn write_table<W: Write>(&self, w: &mut W) -> fmt::Result {
        const EMPTY: Row = Row { name: "", calls: 0, errors: 0, nanos: 0 };
        let mut rows = [EMPTY; SYSCALL_COUNT];
        let mut n = 0;
        self.for_each_row(|r| {
            rows[n] = r;
            n += 1;
        });
        write_table(w, &mut rows[..n])
    }
}

/// One line of the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub name: &'static str,
    pub calls: u64,
    pub errors: u64,
    pub nanos: u64,
}

/// Parses dump files' text into `(name, calls, errors, nanos)`, skipping malformed lines.
pub fn parse_dump(text: &str) -> impl Iterator<Item = (&str, u64, u64, u64)> {
    text.lines().filter_map(|line| {
        let mut f = line.split_ascii_whitespace();
        let name = f.next()?;
        let calls = f.next()?.parse().ok()?;
        let errors = f.next()?.parse().ok()?;
        let nanos = f.next()?.parse().ok()?;
        Some((name, calls, errors, nanos))
    })
}

/// Interns a parsed name into the static table (names from dumps are always known syscalls).
pub fn static_name(name: &str) -> &'static str {
    NAMES.iter().find(|&&n| n == name).copied().unwrap_or("unknown")
}

const RULE: &str = "------ ----------- ----------- --------- --------- ----------------";

/// The `strace -c` table: sorted by time, then calls, then name; a total line at the end.
pub fn write_table<W: Write>(w: &mut W, rows: &mut [Row]) -> fmt::Result {
    rows.sort_unstable_by(|a, b| b.nanos.cmp(&a.nanos).then(b.calls.cmp(&a.calls)).then(a.name.cmp(b.name)));
    let total_nanos: u64 = rows.iter().map(|r| r.nanos).sum();
    let total_calls: u64 = rows.iter().map(|r| r.calls).sum();
    let total_errors: u64 = rows.iter().map(|r| r.errors).sum();
    writeln!(w, "% time     seconds  usecs/call     calls    errors syscall")?;
    writeln!(w, "{RULE}")?;
    for r in rows.iter() {
        let share = if total_nanos == 0 { 0.0 } else { r.nanos as f64 * 100.0 / total_nanos as f64 };
        write!(w, "{share:6.2} {:11.6} {:11} {:9} ", r.nanos as f64 / 1e9, r.nanos / 1000 / r.calls.max(1), r.calls)?;
        if r.errors > 0 {
            write!(w, "{:9}", r.errors)?;
        } else {
            write!(w, "{:9}", "")?;
        }
        writeln!(w, " {}", r.name)?;
    }
    writeln!(w, "{RULE}")?;
    let total_share = if total_calls == 0 { 0.0 } else { 100.0 };
    write!(
        w,
        "{total_share:6.2} {:11.6} {:11} {:9} ",
        total_nanos as f64 / 1e9,
        total_nanos / 1000 / total_calls.max(1),
        total_calls
    )?;
    if total_errors > 0 {
        write!(w, "{total_errors:9}")?;
    } else {
        write!(w, "{:9}", "")?;
    }
    writeln!(w, " total")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dump_round_trips_and_table_totals() {
        let c = Counters::new();
        c.record(libc::SYS_read as usize, 3000, false);
        c.record(libc::SYS_read as usize, 1000, true);
        c.record(libc::SYS_openat as usize, 5000, false);
        let mut dump = String::new();
        c.write_dump(&mut dump).unwrap();
        let rows: Vec<_> = parse_dump(&dump).collect();
        assert_eq!(rows, vec![("read", 2, 1, 4000), ("openat", 1, 0, 5000)]);

        let mut table = String::new();
        c.write_table(&mut table).unwrap();
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[2].ends_with(" openat"), "{table}");
        assert!(lines[3].contains("         2         1 read"), "{table}");
        assert!(lines[5].contains("         3         1 total"), "{table}");
        c.reset();
        let mut none = String::new();
        c.write_dump(&mut none).unwrap();
        assert!(none.is_empty());
    }
}
