//! The settings of the preloaded library, read once from environment variables at start-up.
//! The CLI sets the same variables, so `nvmmio trace` and plain `LD_PRELOAD` use behave alike.

use crate::engine::{EngineSettings, Logging};
use crate::trace::decode::DecodeOptions;
use crate::trace::filter::SyscallSet;

/// `forward` (default) or `trace`.
pub const ENV_MODE: &str = "NVMMIO_MODE";
/// Where trace lines go: a file (appended to), or a prefix when per-process output is on.
/// Unset: the program's standard error, as it was when the program started.
pub const ENV_TRACE_OUTPUT: &str = "NVMMIO_TRACE_OUTPUT";
/// `1`: NVMMIO_TRACE_OUTPUT is a prefix and each process writes `PREFIX.PID` (strace -ff).
pub const ENV_TRACE_PER_PROCESS: &str = "NVMMIO_TRACE_PER_PROCESS";
/// Which calls to trace: classes and names, e.g. `file,data,!close` (default: all).
pub const ENV_TRACE_FILTER: &str = "NVMMIO_TRACE_FILTER";
/// `only`: count calls and print a summary table instead of lines (strace -c); `also`: both (-C).
pub const ENV_TRACE_SUMMARY: &str = "NVMMIO_TRACE_SUMMARY";
/// Directory where each process leaves its counters at exit, for the CLI to sum; unset: each
/// process prints its own table to the trace output when it exits.
pub const ENV_TRACE_SUMMARY_DIR: &str = "NVMMIO_TRACE_SUMMARY_DIR";
/// How many bytes of data buffers to show (default 32).
pub const ENV_TRACE_STRSIZE: &str = "NVMMIO_TRACE_STRSIZE";
/// `0`: leave out the `<seconds>` time of each call.
pub const ENV_TRACE_TIME: &str = "NVMMIO_TRACE_TIME";
/// Managed directories, separated by `:`: regular files opened under them are served by the
/// engine (logs in `DIR/.nvmmio/`).
pub const ENV_DIRS: &str = "NVMMIO_DIRS";
/// Largest size one file's log may grow to before it is checkpointed to make room (bytes;
/// suffixes k, m, g). Default 256m.
pub const ENV_LOG_MAX: &str = "NVMMIO_LOG_MAX";
/// Checkpoint (in the background) once a file's log holds this much (bytes; k, m, g). Default 8m.
pub const ENV_CHECKPOINT_AT: &str = "NVMMIO_CHECKPOINT_AT";
/// Writes past the committed size go straight into the file (no log) from this file offset on
/// (bytes; k, m, g). Default 64k: smaller files are cheaper to log.
pub const ENV_IN_PLACE_FROM: &str = "NVMMIO_IN_PLACE_FROM";
pub const ENV_IN_PLACE_AFTER: &str = "NVMMIO_IN_PLACE_AFTER";
pub const ENV_HYBRID_UNDO_UPTO: &str = "NVMMIO_HYBRID_UNDO_UPTO";
/// How many files whose last descriptor closed stay served, their logs kept (default 8; 0:
/// none): a file closed and then unlinked (SQLite's rollback journal, every transaction) is
/// never checkpointed, and a file closed and opened again is set up once.
pub const ENV_KEEP_CLOSED: &str = "NVMMIO_KEEP_CLOSED";
/// `kernel` (default) or `log`: how a file is served when it is created empty under a name whose
/// files were twice in a row, within a second, written and unlinked before their logs were
/// applied (SQLite's rollback journal, from its third transaction on). `kernel`: the kernel
/// serves it, as without nvmmio (a log for a file that dies within its transaction costs more
/// system calls than it saves); `log`: the engine.
pub const ENV_SHORT_LIVED: &str = "NVMMIO_SHORT_LIVED";
/// `hybrid` (default), `redo` or `undo`: how each file logs its writes. Hybrid picks per epoch
/// (at every fsync) from the calls since the last one: redo logging when writes are more than
/// NVMMIO_HYBRID_REDO_ABOVE percent of them, else undo logging. Files whose logs are on a disk
/// stay on redo unless `undo` is set (an undo image must be synced before each write in place).
pub const ENV_LOGGING: &str = "NVMMIO_LOGGING";
/// Hybrid logging's threshold: percent of writes among the calls of an epoch above which the
/// next epoch uses redo logging. Default 40 (the paper's).
pub const ENV_HYBRID_REDO_ABOVE: &str = "NVMMIO_HYBRID_REDO_ABOVE";
/// `1`: each process prints a summary of what nvmmio served to stderr when it exits.
pub const ENV_STATS: &str = "NVMMIO_STATS";
/// Fault injection for tests: a system call name; nvmmio's dispatch panics on every such call,
/// which must be reported once and the call passed to the kernel.
pub const ENV_TEST_PANIC_IN: &str = "NVMMIO_TEST_PANIC_IN";
/// Used by the CLI only: the library to preload (default: libnvmmio.so next to the binary).
pub const ENV_LIB: &str = "NVMMIO_LIB";

/// Every variable with a one-line description, for `nvmmio --help`.
pub const VARIABLES: &[(&str, &str)] = &[
    (ENV_MODE, "forward (default): pass every call to the kernel; trace: also log each call"),
    (ENV_TRACE_OUTPUT, "trace output file, or prefix with NVMMIO_TRACE_PER_PROCESS=1 (default: stderr)"),
    (ENV_TRACE_PER_PROCESS, "1: one output file per process, PREFIX.PID (like strace -ff)"),
    (
        ENV_TRACE_FILTER,
        "calls to trace: classes file,data,network,process,memory,signal,desc and names; leading ! negates",
    ),
    (ENV_TRACE_SUMMARY, "only: print a per-syscall summary table instead of lines (-c); also: both (-C)"),
    (ENV_TRACE_SUMMARY_DIR, "directory where each process leaves its counts at exit (set by `nvmmio trace -c`)"),
    (ENV_TRACE_STRSIZE, "bytes of each data buffer shown in trace lines (default 32)"),
    (ENV_TRACE_TIME, "0: do not show the time spent in each call"),
    (ENV_DIRS, "managed directories (colon-separated): their regular files are served in user space"),
    (ENV_LOG_MAX, "largest log per file before a checkpoint makes room (default 256m)"),
    (ENV_CHECKPOINT_AT, "checkpoint (in the background) once a log holds this much (default 8m)"),
    (
        ENV_IN_PLACE_FROM,
        "writes past the committed size skip the log from this offset on (default 64k; on disks only when set)",
    ),
    (
        ENV_IN_PLACE_AFTER,
        "after this many commits a file's appends skip the log at any offset (default 8; 0: never; as IN_PLACE_FROM on disks)",
    ),
    (ENV_KEEP_CLOSED, "files kept served after their last close, logs kept, until unlinked or evicted (default 8)"),
    (
        ENV_SHORT_LIVED,
        "kernel (default): files created empty under a name whose files twice died young (written, unlinked before their logs were applied) go to the kernel; log: the engine serves them",
    ),
    (
        ENV_LOGGING,
        "hybrid (default): redo or undo logging per file and epoch from its write share; redo; undo (forced)",
    ),
    (ENV_HYBRID_REDO_ABOVE, "hybrid logging: percent of writes above which an epoch uses redo logging (default 40)"),
    (
        ENV_HYBRID_UNDO_UPTO,
        "hybrid logging: 4 epochs in a row of at most this many writes make the next use undo logging (default 8; 0: off)",
    ),
    (ENV_STATS, "1: each process prints what nvmmio served (calls, bytes logged, commits, checkpoints) at exit"),
    (ENV_TEST_PANIC_IN, "for tests: make nvmmio panic on this syscall (reported once, call forwarded)"),
    (ENV_LIB, "path of libnvmmio.so for `nvmmio run`/`trace` (default: next to the nvmmio binary)"),
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Forward,
    Trace,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Summary {
    Off,
    Only,
    Also,
}

#[derive(Clone, Debug)]
pub struct TraceSettings {
    pub output: Option<String>,
    pub per_process: bool,
    pub filter: SyscallSet,
    pub summary: Summary,
    pub summary_dir: Option<String>,
    pub decode: DecodeOptions,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub mode: Mode,
    pub trace: TraceSettings,
    /// [`ENV_TEST_PANIC_IN`] resolved to a call number.
    pub test_panic_in: Option<usize>,
    /// Managed directories (absolute, as given).
    pub dirs: Vec<String>,
    /// Print the exit summary.
    pub stats: bool,
    pub engine: EngineSettings,
    /// [`ENV_IN_PLACE_FROM`] was given: writes go in place on disks too. By default they do
    /// only where syncing the data file is free or cheap (tmpfs, persistent memory): on a disk a
    /// commit would flush the data file as well as the log.
    pub in_place_on_disks: bool,
    /// [`ENV_KEEP_CLOSED`].
    pub keep_closed: usize,
    /// [`ENV_SHORT_LIVED`] is `kernel`.
    pub short_lived_to_kernel: bool,
}

/// Settings read straight from the environment, for the CLI.
pub struct EnvSettings;

impl EnvSettings {
    /// The engine settings in the environment, or the defaults.
    pub fn engine() -> EngineSettings {
        Settings::from_env().map(|s| s.engine).unwrap_or_default()
    }
}

/// `123`, `64k`, `256m`, `1g`.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (&t[..], 1),
    };
    num.parse::<u64>().ok()?.checked_mul(mult)
}

impl Settings {
    /// Reads the settings through `get` (the environment, or a map in tests).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let mode = match get(ENV_MODE).as_deref().map(str::trim) {
            None | Some("") | Some("forward") => Mode::Forward,
            Some("trace") => Mode::Trace,
            Some(other) => return Err(format!("{ENV_MODE}={other}: expected forward or trace")),
        };
        let flag = |name: &str| matches!(get(name).as_deref(), Some("1") | Some("yes") | Some("true"));
        let filter = match get(ENV_TRACE_FILTER) {
            Some(spec) if !spec.trim().is_empty() => SyscallSet::parse(&spec)?,
            _ => SyscallSet::all(),
        };
        let summary = match get(ENV_TRACE_SUMMARY).as_deref() {
            None | Some("") | Some("0") | Some("off") => Summary::Off,
            Some("only") | Some("1") => Summary::Only,
            Some("also") => Summary::Also,
            Some(other) => return Err(format!("{ENV_TRACE_SUMMARY}={other}: expected only or also")),
        };
        let string_limit = match get(ENV_TRACE_STRSIZE) {
            Some(s) => s.trim().parse().map_err(|_| format!("{ENV_TRACE_STRSIZE}={s}: expected a number"))?,
            None => DecodeOptions::default().string_limit,
        };
        let show_time = get(ENV_TRACE_TIME).as_deref() != Some("0");
        let nonempty = |name: &str| get(name).filter(|s| !s.is_empty());
        let test_panic_in = match nonempty(ENV_TEST_PANIC_IN) {
            Some(name) => Some(
                crate::trace::names::NAMES
                    .iter()
                    .position(|n| *n == name)
                    .ok_or_else(|| format!("{ENV_TEST_PANIC_IN}={name}: unknown system call"))?,
            ),
            None => None,
        };
        let size_var = |name: &str, default: u64| match nonempty(name) {
            Some(v) => parse_size(&v).ok_or_else(|| format!("{name}={v}: expected a size like 64m")),
            None => Ok(default),
        };
        let count_var = |name: &str, default: u64, what: &str| match nonempty(name) {
            Some(v) => v.trim().parse::<u64>().map_err(|_| format!("{name}={v}: expected a number of {what}")),
            None => Ok(default),
        };
        let defaults = EngineSettings::default();
        let engine = EngineSettings {
            log_max: size_var(ENV_LOG_MAX, defaults.log_max)?,
            checkpoint_at: size_var(ENV_CHECKPOINT_AT, defaults.checkpoint_at)?,
            in_place_from: size_var(ENV_IN_PLACE_FROM, defaults.in_place_from)?,
            logging: match nonempty(ENV_LOGGING) {
                Some(v) => {
                    Logging::parse(&v).ok_or_else(|| format!("{ENV_LOGGING}={v}: expected hybrid, redo or undo"))?
                }
                None => defaults.logging,
            },
            in_place_after_commits: count_var(ENV_IN_PLACE_AFTER, defaults.in_place_after_commits, "commits")?,
            undo_for_epochs_upto: count_var(ENV_HYBRID_UNDO_UPTO, defaults.undo_for_epochs_upto, "writes")?,
            redo_above_write_share: match nonempty(ENV_HYBRID_REDO_ABOVE) {
                Some(v) => v
                    .trim()
                    .parse::<u8>()
                    .ok()
                    .filter(|&p| p <= 100)
                    .ok_or_else(|| format!("{ENV_HYBRID_REDO_ABOVE}={v}: expected a percentage, 0 to 100"))?,
                None => defaults.redo_above_write_share,
            },
        };
        let dirs = nonempty(ENV_DIRS)
            .map(|v| v.split(':').filter(|d| !d.is_empty()).map(|d| d.trim_end_matches('/').to_string()).collect())
            .unwrap_or_default();
        Ok(Settings {
            mode,
            test_panic_in,
            dirs,
            stats: flag(ENV_STATS),
            engine,
            in_place_on_disks: nonempty(ENV_IN_PLACE_FROM).is_some(),
            keep_closed: match nonempty(ENV_KEEP_CLOSED) {
                Some(v) => v.trim().parse().map_err(|_| format!("{ENV_KEEP_CLOSED}={v}: expected a number"))?,
                None => 8,
            },
            short_lived_to_kernel: match nonempty(ENV_SHORT_LIVED).as_deref().map(str::trim) {
                None | Some("kernel") => true,
                Some("log") => false,
                Some(v) => return Err(format!("{ENV_SHORT_LIVED}={v}: expected kernel or log")),
            },
            trace: TraceSettings {
                output: nonempty(ENV_TRACE_OUTPUT),
                per_process: flag(ENV_TRACE_PER_PROCESS),
                filter,
                summary,
                summary_dir: nonempty(ENV_TRACE_SUMMARY_DIR),
                decode: DecodeOptions { string_limit, show_time },
            },
        })
    }

    pub fn from_env() -> Result<Settings, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, String> {
        Settings::from_vars(|n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn defaults_forward_everything() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.mode, Mode::Forward);
        assert_eq!(s.trace.summary, Summary::Off);
        assert_eq!(s.trace.filter, SyscallSet::all());
    }

    #[test]
    fn trace_settings_parse() {
        let s = settings(&[
            (ENV_MODE, "trace"),
            (ENV_TRACE_FILTER, "file,read"),
            (ENV_TRACE_SUMMARY, "also"),
            (ENV_TRACE_STRSIZE, "64"),
        ])
        .unwrap();
        assert_eq!(s.mode, Mode::Trace);
        assert_eq!(s.trace.summary, Summary::Also);
        assert_eq!(s.trace.decode.string_limit, 64);
        assert!(s.trace.filter.contains(libc::SYS_read as usize));
        assert!(!s.trace.filter.contains(libc::SYS_write as usize));
    }

    #[test]
    fn engine_settings_parse() {
        let s =
            settings(&[(ENV_DIRS, "/dev/shm/a:/tmp/b/"), (ENV_LOG_MAX, "16m"), (ENV_CHECKPOINT_AT, "4096")]).unwrap();
        assert_eq!(s.dirs, vec!["/dev/shm/a".to_string(), "/tmp/b".to_string()]);
        assert_eq!(s.engine.log_max, 16 << 20);
        assert_eq!(s.engine.checkpoint_at, 4096);
        assert!(settings(&[(ENV_LOG_MAX, "lots")]).is_err());
        let counts = settings(&[(ENV_IN_PLACE_AFTER, "3"), (ENV_HYBRID_UNDO_UPTO, "0")]).unwrap();
        assert_eq!((counts.engine.in_place_after_commits, counts.engine.undo_for_epochs_upto), (3, 0));
        assert!(settings(&[(ENV_HYBRID_UNDO_UPTO, "few")]).is_err());
        assert_eq!(s.engine.logging, Logging::Hybrid);
        assert_eq!(s.engine.redo_above_write_share, 40);
        let s = settings(&[(ENV_LOGGING, "undo"), (ENV_HYBRID_REDO_ABOVE, "75")]).unwrap();
        assert_eq!(s.engine.logging, Logging::Undo);
        assert_eq!(s.engine.redo_above_write_share, 75);
        assert!(settings(&[(ENV_LOGGING, "both")]).is_err());
        assert!(settings(&[(ENV_HYBRID_REDO_ABOVE, "101")]).is_err());
        assert_eq!(parse_size("2g"), Some(2 << 30));
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(settings(&[(ENV_MODE, "fast")]).is_err());
        assert!(settings(&[(ENV_TRACE_FILTER, "bogus")]).is_err());
        assert!(settings(&[(ENV_TRACE_STRSIZE, "x")]).is_err());
    }
}
