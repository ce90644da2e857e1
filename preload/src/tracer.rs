//! The process's tracer: where lines go, which calls are traced, and the `-c` counters.
//! Everything on the call path writes into stack buffers and issues raw system calls: no
//! allocation and no lock, so it is safe after fork and in signal handlers.

use std::ffi::{CStr, CString};
use std::fmt::Write;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;

use nvmmio_core::config::{Mode, Settings, Summary, TraceSettings};
use nvmmio_core::sys;
use nvmmio_core::trace::decode::{self, Call, Outcome};
use nvmmio_core::trace::line::LineBuf;
use nvmmio_core::trace::summary::Counters;

use crate::{process, reserved_fd};

pub struct Tracer {
    settings: &'static TraceSettings,
    /// Output path or per-process prefix, NUL-free (checked at start-up).
    output: Option<CString>,
}

static TRACER: OnceLock<Tracer> = OnceLock::new();
static COUNTERS: Counters = Counters::new();
/// The process whose output file the reserved descriptor holds (per-process mode): a child that
/// shares our memory (vfork, posix_spawn) or a forked child reopens its own before writing.
static OUTPUT_PID: AtomicI32 = AtomicI32::new(0);
/// Distinguishes several counter dumps of one process (one per exec, one at exit).
static DUMPS: AtomicU64 = AtomicU64::new(0);

/// The tracer, when trace mode is on.
pub fn get() -> Option<&'static Tracer> {
    TRACER.get()
}

/// Opens the trace output; on failure, says so once and leaves tracing off.
pub fn init(settings: &'static Settings) {
    if settings.mode != Mode::Trace {
        return;
    }
    let output = match settings.trace.output.as_deref().map(CString::new) {
        Some(Ok(path)) => Some(path),
        Some(Err(_)) => return complain("trace output path contains a NUL byte"),
        None => None,
    };
    let tracer = Tracer { settings: &settings.trace, output };
    if let Err(e) = tracer.open_output() {
        return complain(&format!("cannot open the trace output: {e}"));
    }
    let _ = TRACER.set(tracer);
}

fn complain(msg: &str) {
    let _ = sys::write_all(2, format!("nvmmio: {msg}; tracing is off\n").as_bytes());
}

/// Builds `prefix.pid` (or the plain path), NUL-terminated, in `buf` without allocating.
fn output_path<'a>(prefix: &CStr, per_process: bool, buf: &'a mut LineBuf) -> Option<&'a CStr> {
    buf.push_bytes(prefix.to_bytes());
    if per_process {
        let _ = write!(buf, ".{}", sys::getpid());
    }
    buf.push(0);
    if buf.is_truncated() {
        return None;
    }
    CStr::from_bytes_with_nul(buf.as_bytes()).ok()
}

impl Tracer {
    fn lines(&self) -> bool {
        self.settings.summary != Summary::Only
    }

    fn counting(&self) -> bool {
        self.settings.summary != Summary::Off
    }

    /// Whether `nr` passes the filter.
    pub fn wants(&self, nr: usize) -> bool {
        self.settings.filter.contains(nr)
    }

    /// Opens (or reopens, after fork) this process's output at the reserved descriptor.
    fn open_output(&self) -> Result<(), sys::Errno> {
        let fd = match &self.output {
            Some(prefix) => {
                let mut buf = LineBuf::new();
                let path =
                    output_path(prefix, self.settings.per_process, &mut buf).ok_or(sys::Errno(libc::ENAMETOOLONG))?;
                let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_APPEND | libc::O_CLOEXEC;
                sys::open(path, flags, 0o644)?
            }
            None => sys::dup_cloexec_at_least(2, 3)?,
        };
        reserved_fd::replace_trace_output(fd)?;
        OUTPUT_PID.store(sys::getpid(), Relaxed);
        Ok(())
    }

    /// A call finished with `raw` after `nanos`.
    pub fn completed(&self, nr: usize, args: [usize; 6], raw: isize, nanos: u64) {
        if !self.wants(nr) {
            return;
        }
        if self.counting() {
            COUNTERS.record(nr, nanos, (-4095..0).contains(&raw));
        }
        if self.lines() {
            self.emit(|line, opts| {
                decode::write_call(line, &Call { nr, args }, Outcome::Returned { raw, nanos }, opts)
            });
        }
    }

    /// A call that does not return (exit, exit_group, rt_sigreturn): `= ?`.
    pub fn no_return(&self, nr: usize, args: [usize; 6]) {
        if !self.wants(nr) {
            return;
        }
        if self.counting() {
            COUNTERS.record(nr, 0, false);
        }
        if self.lines() {
            self.emit(|line, opts| decode::write_call(line, &Call { nr, args }, Outcome::Pending, opts));
        }
    }

    /// Before exec: the line is written now (a successful exec never returns), marked
    /// unfinished as strace does, and this image's counts are saved.
    pub fn before_exec(&self, nr: usize, args: [usize; 6]) {
        if self.wants(nr) {
            if self.counting() {
                COUNTERS.record(nr, 0, false);
            }
            if self.lines() {
                self.emit(|line, opts| {
                    let mut call = LineBuf::new();
                    decode::write_call(&mut call, &Call { nr, args }, Outcome::Pending, opts);
                    // Replace the trailing " = ?" with strace's marker.
                    let text = call.as_bytes();
                    line.push_bytes(&text[..text.len().saturating_sub(4)]);
                    line.push_bytes(b" <unfinished ...>");
                });
            }
        }
        if self.settings.summary_dir.is_some() {
            self.dump_counters();
            COUNTERS.reset();
        }
    }

    /// The exec failed and returned `raw`.
    pub fn exec_failed(&self, nr: usize, raw: isize) {
        if !self.wants(nr) {
            return;
        }
        if self.counting() {
            // The call itself was counted before it ran.
            COUNTERS.record_error(nr);
        }
        if self.lines() {
            self.emit(|line, _| {
                line.push_bytes(b"<... ");
                decode::write_name(line, nr);
                let e = (-raw) as i32;
                let _ = write!(
                    line,
                    " resumed>) = -1 {} ({})",
                    nvmmio_core::trace::errno_name(e),
                    nvmmio_core::trace::errno_text(e)
                );
            });
        }
    }

    /// The process is about to end: leave the counts for the CLI, or print this process's table.
    pub fn at_exit(&self) {
        if !self.counting() {
            return;
        }
        if self.settings.summary_dir.is_some() {
            self.dump_counters();
        } else {
            let mut w = sys::FdWriter::new(reserved_fd::trace_fd());
            let _ = COUNTERS.write_table(&mut w);
            let _ = w.flush();
        }
    }

    /// In a new child process (with its own memory): its own counts.
    pub fn after_fork(&self) {
        COUNTERS.reset();
    }

    fn emit(&self, body: impl FnOnce(&mut LineBuf, &decode::DecodeOptions)) {
        let mut line = LineBuf::new();
        let (pid, tid) = process::ids();
        if self.settings.per_process && self.output.is_some() && OUTPUT_PID.load(Relaxed) != pid {
            let _ = self.open_output();
        }
        let _ = write!(line, "{pid}/{tid} ");
        body(&mut line, &self.settings.decode);
        let _ = sys::write_all(reserved_fd::trace_fd(), line.finish());
    }

    /// Writes `DIR/PID-TIME-N`: one `name calls errors nanos` line per call. The time keeps the
    /// names of successive images of one process (exec) apart.
    fn dump_counters(&self) {
        let Some(dir) = &self.settings.summary_dir else {
            return;
        };
        let mut path = LineBuf::new();
        let (pid, seq) = (sys::getpid(), DUMPS.fetch_add(1, Relaxed));
        let _ = write!(path, "{dir}/{pid}-{}-{seq}\0", sys::monotonic_ns());
        let Ok(path) = CStr::from_bytes_with_nul(path.as_bytes()) else {
            return;
        };
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC;
        if let Ok(fd) = sys::open(path, flags, 0o644) {
            let mut w = sys::FdWriter::new(fd);
            let _ = COUNTERS.write_dump(&mut w);
            let _ = w.flush();
            let _ = sys::close(fd);
        }
    }
}
