//! Files kept served after their last close (`NVMMIO_KEEP_CLOSED`): a reader through the
//! kernel sees a closed file whole; a file closed then unlinked is never checkpointed; kept
//! files are bounded, recovered after a kill, and handed over to another process that opens
//! one. And the rule that makes dropping logs safe: a log under the name of a file without a
//! mark is stale.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

fn python_in(dir: &Path, script: &str, env: &[(&str, &str)]) -> Command {
    let mut cmd = python_under_nvmmio(dir, dir, script);
    cmd.envs(env.iter().copied());
    cmd
}

/// A script under nvmmio stopped after it printed "closed", until [`Paused::resume`].
struct Paused {
    child: std::process::Child,
    out: BufReader<std::process::ChildStdout>,
}

impl Paused {
    fn start(dir: &Path, script: &str) -> Paused {
        Self::start_with(dir, script, &[])
    }

    fn start_with(dir: &Path, script: &str, env: &[(&str, &str)]) -> Paused {
        let mut child = python_in(dir, script, env).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line, "closed\n");
        Paused { child, out }
    }

    /// Lets it go on; its next line.
    fn resume(&mut self) -> String {
        self.child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
        let mut line = String::new();
        self.out.read_line(&mut line).unwrap();
        line
    }
}

/// The logs named after files (not pooled ones) in `dir/.nvmmio`.
fn file_logs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join(".nvmmio"))
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.retain(|n| (n.ends_with(".log") || n.ends_with(".log2")) && !n.starts_with("pool-"));
    names.sort();
    names
}

/// The number before `word` in an exit summary line.
fn summary_number(stderr: &str, word: &str) -> u64 {
    let line = stderr.lines().find(|l| l.starts_with("nvmmio: pid")).unwrap_or_else(|| panic!("no summary: {stderr}"));
    let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let i = words.iter().position(|w| *w == word).unwrap_or_else(|| panic!("{word} in {line}"));
    words[i - 1].parse().unwrap()
}

/// A file written (partly after its last fsync) and closed: a reader through the kernel sees all
/// of it while the writer still runs, its log is kept, the writer reads it back when it opens
/// it again, and a kill then loses nothing the close covered.
#[test]
fn a_closed_file_is_whole_for_the_kernel_kept_and_recovered_after_a_kill() {
    for base in [shm_dir(), tmp_dir()] {
        let dir = base.path();
        let script = r#"
import os, sys
f = os.open("a", os.O_RDWR | os.O_CREAT, 0o644)
os.write(f, b"x" * 10000)
os.fsync(f)
os.pwrite(f, b"y" * 5000, 10000)
os.pwrite(f, b"z" * 100, 20)
os.close(f)
print("closed", flush=True)
sys.stdin.readline()
f = os.open("a", os.O_RDONLY)
data = os.read(f, 100000)
print(len(data), data.count(b"x"), data.count(b"y"), data.count(b"z"), flush=True)
os.kill(os.getpid(), 9)
"#;
        let mut paused = Paused::start(dir, script);
        let mut expected = b"x".repeat(10000);
        expected[20..120].fill(b'z');
        expected.extend(b"y".repeat(5000));
        assert!(fs::read(dir.join("a")).unwrap() == expected, "a reader through the kernel sees the closed file whole");
        assert_eq!(file_logs(dir).len(), 1, "the closed file keeps its log: {:?}", file_logs(dir));
        let line = paused.resume();
        assert_eq!(line, "15000 9900 5000 100\n");
        assert!(!paused.child.wait().unwrap().success(), "the script kills itself");
        let rec = nvmmio_cmd(dir, &["recover", dir.to_str().unwrap()]);
        assert!(rec.status.success(), "{}", String::from_utf8_lossy(&rec.stdout));
        assert!(fs::read(dir.join("a")).unwrap() == expected, "recovered to what the close committed");
        assert!(file_logs(dir).is_empty());
    }
}

/// SQLite's rollback journal, every transaction: create, write, fsync, close, unlink. The logs
/// of such files are dropped unapplied: no checkpoint at all, and no log left at exit. (With
/// NVMMIO_SHORT_LIVED=log: by default such names go to the kernel after their first file, see
/// the next test.)
#[test]
fn files_closed_then_unlinked_are_never_checkpointed() {
    for base in [shm_dir(), tmp_dir()] {
        let dir = base.path();
        let script = r#"
import os
for i in range(40):
    f = os.open("journal", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(f, bytes([i]) * 512)
    os.pwrite(f, bytes([i]) * 8192, 512)
    os.fsync(f)
    os.pwrite(f, b"n" * 4, 8)
    os.fsync(f)
    os.close(f)
    os.unlink("journal")
    # A file unlinked while open: dropped at its close.
    g = os.open("tmp", os.O_RDWR | os.O_CREAT, 0o644)
    os.unlink("tmp")
    os.write(g, b"t" * 5000)
    os.fsync(g)
    assert os.pread(g, 5000, 0) == b"t" * 5000
    os.close(g)
print("ok")
"#;
        let out = python_in(dir, script, &[("NVMMIO_SHORT_LIVED", "log")]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{stderr}");
        assert!(summary_number(&stderr, "commits") >= 120, "{stderr}");
        assert_eq!(summary_number(&stderr, "short-lived"), 0, "{stderr}");
        assert_eq!(summary_number(&stderr, "checkpoints"), 0, "{stderr}");
        assert!(!dir.join("journal").exists() && !dir.join("tmp").exists());
        let left = fs::read_dir(dir.join(".nvmmio")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "logs left behind in {}", dir.display());
    }
}

/// A file created empty under a name whose files died twice in a row, with data, before their
/// logs were applied goes to the kernel: from the third journal of a loop on, no log, no commit,
/// the same bytes and sizes. One death is not enough (a database destroyed and created again),
/// nor deaths of empty files. A file that outlives its open makes the name ordinary again, and a
/// file found non-empty under such a name (a journal a crash left) is served by the engine.
#[test]
fn names_whose_files_die_young_go_to_the_kernel() {
    for base in [shm_dir(), tmp_dir()] {
        let dir = base.path();
        let script = r#"
import os, sys
def cycle(i, name="db-journal", unlink=True):
    f = os.open(name, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    os.pwrite(f, bytes([i]) * 512, 0)
    os.pwrite(f, bytes([i + 1]) * 4100, 512)
    os.fsync(f)
    os.pwrite(f, b"n" * 12, 0)
    os.fdatasync(f)
    assert os.fstat(f).st_size == 4612, os.fstat(f).st_size
    assert os.pread(f, 5000, 0) == b"n" * 12 + bytes([i]) * 500 + bytes([i + 1]) * 4100
    os.close(f)
    if unlink:
        os.unlink(name)
for i in range(30):
    cycle(i)
# A temporary file unlinked while open, three times.
for i in range(3):
    g = os.open("tmp", os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.unlink("tmp")
    os.write(g, b"t" * 5000)
    assert os.pread(g, 5000, 0) == b"t" * 5000 and os.fstat(g).st_size == 5000
    os.close(g)
# Empty files that die young, and a file that dies once and then lives: all by the engine.
for i in range(4):
    os.close(os.open("empty", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644))
    os.unlink("empty")
cycle(50, name="once")
cycle(51, name="once", unlink=False)
# This one lives on: left to the kernel (its name is known), then found non-empty.
cycle(40, unlink=False)
# Found non-empty: the engine serves it. The next two are created empty again, by the engine,
# and die young: the one after goes to the kernel.
cycle(41)
cycle(42)
cycle(43)
cycle(44)
print("ok")
"#;
        let out = python_in(dir, script, &[]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{stderr}");
        // 28 journals after the first two, the third temporary file, the survivor (created
        // empty under a known name), and journal 44.
        assert_eq!(summary_number(&stderr, "short-lived"), 28 + 1 + 1 + 1, "{stderr}");
        // The engine served journals 0, 1, 41, 42 and 43, and both "once" files (two commits
        // each), and the first two temporary files and the empty ones (none).
        let commits = summary_number(&stderr, "commits");
        assert!((14..=16).contains(&commits), "{stderr}");
        assert!(!dir.join("db-journal").exists() && !dir.join("tmp").exists());
        assert_eq!(fs::read(dir.join("once")).unwrap().len(), 4612);
        fs::remove_file(dir.join("once")).unwrap();
        let left = fs::read_dir(dir.join(".nvmmio")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "logs left behind in {}", dir.display());

        // The setting that keeps logging them.
        let out = python_in(dir, script, &[("NVMMIO_SHORT_LIVED", "log")]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{stderr}");
        assert_eq!(summary_number(&stderr, "short-lived"), 0, "{stderr}");
        assert!(summary_number(&stderr, "commits") >= 2 * 36, "{stderr}");
    }
}

/// At most NVMMIO_KEEP_CLOSED files keep their logs; the others are finished as they close,
/// and every file is whole at exit. With 0, none is kept.
#[test]
fn kept_files_are_bounded() {
    for (keep, logs) in [("2", 2), ("0", 0)] {
        let base = shm_dir();
        let dir = base.path();
        let script = r#"
import os
for i in range(6):
    f = os.open(f"f{i}", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(f, bytes([65 + i]) * (3000 + i))
    os.close(f)
print(len([n for n in os.listdir(".nvmmio") if n.endswith(".log") and not n.startswith("pool-")]))
"#;
        let out = python_in(dir, script, &[("NVMMIO_KEEP_CLOSED", keep)]).output().unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{logs}\n"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for i in 0..6u8 {
            assert_eq!(fs::read(dir.join(format!("f{i}"))).unwrap(), vec![65 + i; 3000 + i as usize]);
        }
        assert!(file_logs(dir).is_empty());
    }
}

/// Another process under nvmmio opens a file this one keeps: it is handed over (to the kernel,
/// for both), and each sees the other's writes.
#[test]
fn another_process_opening_a_kept_file_gets_it() {
    for base in [shm_dir(), tmp_dir()] {
        let dir = base.path();
        let script = r#"
import os, sys
f = os.open("shared", os.O_RDWR | os.O_CREAT, 0o644)
os.write(f, b"first " * 1000)
os.close(f)
print("closed", flush=True)
sys.stdin.readline()
f = os.open("shared", os.O_RDWR)
data = os.read(f, 100000)
os.write(f, b"third")
os.close(f)
print(len(data), data[-6:].decode(), flush=True)
"#;
        let mut paused = Paused::start(dir, script);
        let other = r#"
import os
f = os.open("shared", os.O_RDWR | os.O_APPEND)
assert os.fstat(f).st_size == 6000, os.fstat(f).st_size
os.write(f, b"second")
os.close(f)
"#;
        let second = python_in(dir, other, &[]).output().unwrap();
        assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
        let line = paused.resume();
        assert_eq!(line, "6006 second\n");
        assert!(paused.child.wait().unwrap().success());
        let mut expected = b"first ".repeat(1000);
        expected.extend(b"secondthird");
        assert!(fs::read(dir.join("shared")).unwrap() == expected);
        assert!(file_logs(dir).is_empty());
    }
}

/// A log found under the name of a file that has no mark is not that file's (the inode number
/// of a removed file, reused): an open drops it and `nvmmio recover` deletes it. Simulated by
/// removing the mark of a killed writer's file and changing the file through the kernel.
#[test]
fn a_log_under_the_name_of_an_unmarked_file_is_stale() {
    for base in [shm_dir(), tmp_dir()] {
        for by_recover in [false, true] {
            let dir = base.path();
            let script = r#"
import os
f = os.open("f", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(f, b"old " * 4096)
os.fsync(f)
os.pwrite(f, b"logged " * 100, 100)
os.fsync(f)
os.kill(os.getpid(), 9)
"#;
            let out = python_in(dir, script, &[]).output().unwrap();
            assert!(!out.status.success());
            assert_eq!(file_logs(dir).len(), 1);
            let path = dir.join("f");
            // The file as a new one with the same number would be: other bytes, no mark.
            let remove = Command::new(SYSTEM_PYTHON)
                .args(["-c", "import os, sys; os.removexattr(sys.argv[1], 'user.nvmmio.logs')", path.to_str().unwrap()])
                .env_remove("LD_PRELOAD")
                .output()
                .unwrap();
            assert!(remove.status.success(), "{}", String::from_utf8_lossy(&remove.stderr));
            fs::write(&path, b"new file").unwrap();
            if by_recover {
                let rec = nvmmio_cmd(dir, &["recover", dir.to_str().unwrap()]);
                let text = String::from_utf8_lossy(&rec.stdout);
                assert!(rec.status.success() && text.contains("stale log"), "{text}");
                assert!(file_logs(dir).is_empty());
            }
            let read = python_in(dir, "import os; print(open('f', 'rb').read().decode())", &[]).output().unwrap();
            assert_eq!(
                String::from_utf8_lossy(&read.stdout),
                "new file\n",
                "{}",
                String::from_utf8_lossy(&read.stderr)
            );
            assert_eq!(fs::read(&path).unwrap(), b"new file");
            assert!(file_logs(dir).is_empty());
        }
    }
}

/// A process without nvmmio changes a kept file (through the kernel): the program that kept it
/// reads the new bytes when it opens it again, and they survive its exit.
#[test]
fn a_kept_file_changed_through_the_kernel_is_read_anew() {
    for base in [shm_dir(), tmp_dir()] {
        let dir = base.path();
        let script = r#"
import os, sys
f = os.open("k", os.O_RDWR | os.O_CREAT, 0o644)
os.write(f, b"ours " * 2000)
os.fsync(f)
os.pwrite(f, b"OURS", 0)
os.close(f)
print("closed", flush=True)
sys.stdin.readline()
f = os.open("k", os.O_RDWR)
data = os.read(f, 100000)
os.close(f)
print(len(data), data[:12].decode(), flush=True)
"#;
        let mut paused = Paused::start(dir, script);
        let mut theirs = fs::read(dir.join("k")).unwrap();
        assert_eq!(&theirs[..10], b"OURS ours ");
        theirs[..12].copy_from_slice(b"THEIRS theirs"[..12].as_ref());
        fs::write(dir.join("k"), &theirs).unwrap();
        let line = paused.resume();
        assert_eq!(line, "10000 THEIRS their\n");
        assert!(paused.child.wait().unwrap().success());
        assert!(fs::read(dir.join("k")).unwrap() == theirs);
        assert!(file_logs(dir).is_empty());
    }
}

/// The logs a process keeps for reuse (its pool) outlive it if it is killed; the next process
/// that needs a log in the directory removes them (a live process's pool is left alone).
#[test]
fn pooled_logs_of_killed_processes_are_removed_by_the_next_one() {
    for dir in [shm_dir(), tmp_dir()] {
        let dir = dir.path();
        let pools = || -> Vec<String> {
            let mut names: Vec<String> = fs::read_dir(dir.join(".nvmmio"))
                .map(|e| e.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            names.retain(|n| n.starts_with("pool-"));
            names.sort();
            names
        };
        // Files finished at their close: their emptied logs go to the pool; then a SIGKILL.
        let killed = r#"
import os, signal
for name in ("a", "b", "c"):
    fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"x" * 10000)
    os.fsync(fd)
    os.close(fd)
os.kill(os.getpid(), signal.SIGKILL)
"#;
        let out = python_in(dir, killed, &[("NVMMIO_KEEP_CLOSED", "0")]).output().unwrap();
        assert!(!out.status.success());
        let left = pools();
        assert!(!left.is_empty(), "the killed process pooled no log");
        // A live process with a pool of its own, paused, while another starts.
        let mut live = Paused::start_with(
            dir,
            r#"
import os, sys
fd = os.open("d", os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"y" * 10000)
os.close(fd)
fd = os.open("e", os.O_RDWR | os.O_CREAT, 0o644)
os.close(fd)
print("closed", flush=True)
sys.stdin.readline()
print("done", flush=True)
"#,
            &[("NVMMIO_KEEP_CLOSED", "0")],
        );
        let live_pool: Vec<String> = pools().into_iter().filter(|p| !left.contains(p)).collect();
        assert!(!live_pool.is_empty(), "the live process pooled no log");
        let next = r#"
fd = __import__("os").open("f", __import__("os").O_RDWR | __import__("os").O_CREAT, 0o644)
__import__("os").write(fd, b"z" * 10000)
"#;
        let out = python_in(dir, next, &[]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let now = pools();
        assert!(left.iter().all(|p| !now.contains(p)), "left by the killed process: {left:?}, now {now:?}");
        assert!(live_pool.iter().all(|p| now.contains(p)), "the live process's pool {live_pool:?}, now {now:?}");
        assert_eq!(live.resume(), "done\n");
        assert_eq!(fs::read(dir.join("a")).unwrap(), vec![b'x'; 10000]);
    }
}
