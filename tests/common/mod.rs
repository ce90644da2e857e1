//! Shared helpers for whole-program tests: run real programs with and without libnvmmio.so.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `nvmmio` binary under test.
pub fn nvmmio() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_nvmmio"))
}

/// libnvmmio.so next to the binary (scripts/test builds it first).
pub fn library() -> PathBuf {
    let lib = nvmmio().with_file_name("libnvmmio.so");
    assert!(
        lib.exists(),
        "{} is missing: run `cargo build --release --workspace` first (scripts/test does)",
        lib.display()
    );
    lib
}

/// A scratch directory on /dev/shm (tmpfs), removed when dropped.
pub fn shm_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("nvmmio-test-").tempdir_in("/dev/shm").expect("tempdir in /dev/shm")
}

/// A scratch directory under /tmp (a disk file system here), removed when dropped.
pub fn tmp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("nvmmio-test-").tempdir_in("/tmp").expect("tempdir in /tmp")
}

/// Debian's Python (its packages, such as plyvel, load only there).
pub const SYSTEM_PYTHON: &str = "/usr/bin/python3";

/// `python3 -c script` in `cwd` under nvmmio, `managed` its managed directory, with the exit
/// summary (`NVMMIO_STATS=1`) on stderr.
pub fn python_under_nvmmio(cwd: &Path, managed: &Path, script: &str) -> Command {
    let mut cmd = Command::new(SYSTEM_PYTHON);
    cmd.args(["-c", script])
        .current_dir(cwd)
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", managed)
        .env("NVMMIO_STATS", "1");
    cmd
}

/// How to run a program.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Under {
    Kernel,
    /// LD_PRELOAD=libnvmmio.so, default (forward) mode.
    Forward,
    /// LD_PRELOAD=libnvmmio.so in trace mode, lines to /dev/null.
    Trace,
}

/// Every way of running a program that must give the kernel's results.
pub const ALL_WAYS: [Under; 3] = [Under::Kernel, Under::Forward, Under::Trace];

/// What tests/programs/cancel.c prints when every cancellation point it tries acted.
pub const CANCELLED_EVERYWHERE: &str = "pipe reader cancelled=1 cleaned=1\nfile reader cancelled=1 cleaned=1\n\
    file closer cancelled=1 cleaned=1 still_open=1\nlock waiter cancelled=1 cleaned=1\n";

/// Runs `program args` in `cwd`, directly or with the library preloaded; always with LC_ALL=C.
pub fn run_under(under: Under, cwd: &Path, program: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd).env("LC_ALL", "C").env_remove("LD_PRELOAD");
    for var in ["NVMMIO_MODE", "NVMMIO_TRACE_OUTPUT", "NVMMIO_TRACE_FILTER", "NVMMIO_TRACE_SUMMARY"] {
        cmd.env_remove(var);
    }
    if under != Under::Kernel {
        cmd.env("LD_PRELOAD", library());
    }
    if under == Under::Trace {
        cmd.env("NVMMIO_MODE", "trace").env("NVMMIO_TRACE_OUTPUT", "/dev/null");
    }
    cmd.output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

/// Runs a shell command line.
pub fn sh(under: Under, cwd: &Path, script: &str) -> Output {
    run_under(under, cwd, "/bin/sh", &["-c", script])
}

/// Asserts success and returns stdout as text.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The counts an exit summary (`NVMMIO_STATS=1`) gives before `label` on each of its lines
/// (one line per process), e.g. `summary_counts(stderr, " in the background")` for
/// "... 129 checkpoints (127 in the background) ...".
pub fn summary_counts(stderr: &str, label: &str) -> Vec<u64> {
    stderr
        .lines()
        .filter(|line| line.starts_with("nvmmio: pid "))
        .filter_map(|line| line.split_once(label)?.0.rsplit([' ', '(']).next()?.parse().ok())
        .collect()
}

/// Deterministic pseudo-random bytes (xorshift), so files differ from block to block.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs `nvmmio ARGS` and returns its output.
pub fn nvmmio_cmd(cwd: &Path, args: &[&str]) -> Output {
    library();
    Command::new(nvmmio())
        .args(args)
        .current_dir(cwd)
        .env("LC_ALL", "C")
        .env_remove("LD_PRELOAD")
        .output()
        .expect("run nvmmio")
}

/// Compiles `tests/programs/NAME.c` into `dir` and returns the executable's path.
pub fn compile_c(name: &str, dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs").join(format!("{name}.c"));
    let exe = dir.join(name);
    let out = Command::new("cc").args(["-O2", "-pthread", "-o"]).arg(&exe).arg(&src).output().expect("run cc");
    assert!(out.status.success(), "cc {}: {}", src.display(), String::from_utf8_lossy(&out.stderr));
    exe
}

/// What tests/programs/crash_writer leaves must hold after recovery: whole 4 KiB records, each
/// the right pattern (none torn), and at least every record its last fsync covered (`synced`,
/// the last line of its side file), unless `synced` is None.
pub fn check_crash_writer_file(data: &[u8], synced: Option<u64>, what: &str) {
    assert_eq!(data.len() % 4096, 0, "{what}: torn size {}", data.len());
    let records = data.len() / 4096;
    if let Some(s) = synced {
        assert!(records as u64 > s, "{what}: fsynced record {s} lost ({records} records)");
    }
    for (i, rec) in data.chunks(4096).enumerate() {
        let mut expect = [0u8; 4096];
        let mut sum = 0u32;
        for (k, byte) in expect.iter_mut().take(4092).enumerate() {
            *byte = (i as u32).wrapping_mul(131).wrapping_add(k as u32 * 7) as u8;
            sum = sum.wrapping_mul(31).wrapping_add(*byte as u32);
        }
        expect[4092..].copy_from_slice(&sum.to_ne_bytes());
        assert!(rec == expect, "{what}: record {i} of {records} torn or wrong (synced {synced:?})");
    }
}

/// Waits until a program just started has written something to its side file `path` (at most
/// 20 s), then `ms` more milliseconds: kill times count from the program's first record. On a
/// loaded machine start-up alone can take longer than the kill time, and a program killed
/// before it starts leaves nothing to check.
pub fn sleep_after_first_record(path: &Path, ms: u64) {
    let started = std::time::Instant::now();
    while std::fs::metadata(path).map_or(true, |m| m.len() == 0) && started.elapsed().as_secs() < 20 {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    std::thread::sleep(std::time::Duration::from_millis(ms));
}
