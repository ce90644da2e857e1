//! Threads writing one managed file at once (tests/programs/lanes.c): lanes of shared blocks
//! and whole blocks of their own, each write read back at once, fsyncs in between. The writes
//! below the committed size that find the file busy share it (the index's shard locks); the
//! file must end as the threads' records say, inside the program and through the kernel after.
//! And the same threads killed while they write (tests/programs/lanes_crash.c): after recovery
//! no write is torn and none an fsync covered is lost.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn lanes(dir: &Path, exe: &Path, preload: bool, env: &[(&str, &str)]) -> String {
    let (file, expected) = (dir.join("managed/lanes.dat"), dir.join("expected.dat"));
    std::fs::create_dir_all(dir.join("managed")).unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["300"]).arg(exe).arg(&file).arg(&expected).arg("20000").env("NVMMIO_STATS", "1");
    if preload {
        cmd.env("LD_PRELOAD", library()).env("NVMMIO_DIRS", dir.join("managed")).envs(env.iter().copied());
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success() && out.stdout == b"ok\n", "lanes (preload {preload}, {env:?}): {stderr}");
    let (got, want) = (std::fs::read(&file).unwrap(), std::fs::read(&expected).unwrap());
    assert!(got == want, "lanes (preload {preload}, {env:?}): the file through the kernel differs");
    stderr
}

/// The number in "(N writes sharing the file ...)" of the exit summary.
fn shared_writes(summary: &str) -> u64 {
    let at = summary.find(" writes sharing the file").unwrap_or_else(|| panic!("no summary: {summary}"));
    let digits: String = summary[..at].chars().rev().take_while(char::is_ascii_digit).collect();
    digits.chars().rev().collect::<String>().parse().unwrap()
}

#[test]
fn threads_writing_lanes_of_shared_blocks_and_blocks_of_their_own() {
    let build = tmp_dir();
    let exe = compile_c("lanes", build.path());
    // The program's own check, through the kernel.
    lanes(tmp_dir().path(), &exe, false, &[]);
    for (dir, on_tmpfs) in [(shm_dir(), true), (tmp_dir(), false)] {
        // Undo epochs share the file on tmpfs only (stores in place need no writing back).
        let undo = [("NVMMIO_LOGGING", "undo")];
        let envs = [&[][..], &[("NVMMIO_CHECKPOINT_AT", "64k")][..], &undo[..]];
        for env in envs.into_iter().take(if on_tmpfs { 3 } else { 2 }) {
            let summary = lanes(dir.path(), &exe, true, env);
            // A write that finds the file busy shares it (most of the 160,000 overwrite committed
            // blocks, and 8 threads on 2 cores find it busy about one time in 8: 18,000-29,000).
            let shared = shared_writes(&summary);
            assert!(shared > 1_000, "{env:?}: only {shared} writes shared the file: {summary}");
            std::fs::remove_dir_all(dir.path().join("managed")).unwrap();
        }
    }
}

/// Runs lanes_crash under the library in `dir` until it has written for `ms` milliseconds, kills
/// it, recovers the directory with `nvmmio recover`, and checks the file through the kernel.
fn kill_recover_check(exe: &Path, dir: &Path, ms: u64, env: &[(&str, &str)]) -> String {
    let (managed, side) = (dir.join("managed"), dir.join("side"));
    for d in [&managed, &side] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).unwrap();
    }
    let file = managed.join("lanes.dat");
    let mut child = Command::new(exe)
        .arg("run")
        .arg(&file)
        .arg(&side)
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", &managed)
        .envs(env.iter().copied())
        .spawn()
        .unwrap();
    // From the end of the set-up on (bounded: a set-up that hangs fails the check below).
    let start = Instant::now();
    while !side.join("ready").exists() && start.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(ms));
    child.kill().unwrap();
    child.wait().unwrap();
    let out = nvmmio_cmd(dir, &["recover", managed.to_str().unwrap()]);
    assert!(out.status.success(), "recover: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(exe).arg("check").arg(&file).arg(&side).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.starts_with("ok 1152"), "killed after {ms} ms ({env:?}): {text}");
    text
}

/// Runs lanes_crash for `seconds` under nvmmio with `env`: its main thread exits while the
/// writers write. Checks the file as the exit left it (no recovery) and returns the summary.
fn run_until_exit(exe: &Path, seconds: &str, env: &[(&str, &str)]) -> String {
    let dir = shm_dir();
    let (managed, side) = (dir.path().join("managed"), dir.path().join("side"));
    std::fs::create_dir_all(&managed).unwrap();
    std::fs::create_dir_all(&side).unwrap();
    let file = managed.join("lanes.dat");
    let out = Command::new(exe)
        .arg("run")
        .arg(&file)
        .arg(&side)
        .arg(seconds)
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", &managed)
        .env("NVMMIO_STATS", "1")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let summary = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{env:?}: {summary}");
    let check = Command::new(exe).arg("check").arg(&file).arg(&side).output().unwrap();
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("ok 1152"), "{env:?}: {check:?}");
    summary
}

/// The exit of a process whose threads are writing: every write an fsync covered is in the
/// file. (The exit used to forget descriptors before the engine let go of their files, so a
/// write the kernel then served could be overwritten by the engine's last checkpoint: about
/// one run in fourteen lost one.)
#[test]
fn an_exit_while_threads_write_keeps_every_synced_write() {
    let build = tmp_dir();
    let exe = compile_c("lanes_crash", build.path());
    for _ in 0..30 {
        run_until_exit(&exe, "0.3", &[]);
    }
}

#[test]
fn threads_killed_while_writing_leave_no_torn_or_lost_write() {
    let build = tmp_dir();
    let exe = compile_c("lanes_crash", build.path());
    let undo = [("NVMMIO_LOGGING", "undo")];
    // Runs that end by themselves first: their summaries show that these writes share the file,
    // in redo and in undo epochs.
    for env in [&[][..], &undo[..]] {
        let summary = run_until_exit(&exe, "1", env);
        assert!(shared_writes(&summary) > 1_000, "{env:?}: {summary}");
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for (dir, rounds) in [(shm_dir(), 9), (tmp_dir(), 3)] {
        for round in 0..rounds {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let ms = 50 + seed % 400;
            // Rounds with small logs (kills land in background checkpoints too), and on tmpfs
            // rounds in undo epochs (kills land between one writer's placed undo record and
            // another's store in place).
            let env: &[(&str, &str)] = match round % 3 {
                1 => &[("NVMMIO_CHECKPOINT_AT", "64k")],
                2 => &undo,
                _ => &[],
            };
            kill_recover_check(&exe, dir.path(), ms, env);
        }
    }
}

/// A thread keeps writing through one descriptor number while another thread closes it and
/// opens another file under the same number, or `dup2`s a third file onto it: every write goes
/// to the file the number names when it is made (a thread's remembered lookup of the number
/// must not outlive the change).
#[test]
fn a_reused_descriptor_number_names_the_new_file_in_every_thread() {
    for base in [shm_dir(), tmp_dir()] {
        let dir = base.path();
        let script = r#"
import os, queue, threading
jobs, done = queue.Queue(), queue.Queue()
def worker():
    while True:
        job = jobs.get()
        if job is None:
            return
        fd, byte = job
        try:
            for i in range(40):
                os.pwrite(fd, byte * 100, i * 100)
            assert os.pread(fd, 4000, 0) == byte * 4000, "read back"
            done.put(os.fstat(fd).st_size)
        except Exception as e:
            done.put(repr(e))
t = threading.Thread(target=worker, daemon=True)
t.start()
n = os.open("one", os.O_RDWR | os.O_CREAT, 0o644)
def result():
    return done.get(timeout=60)
jobs.put((n, b"A")); r = result(); assert r == 4000, r
os.close(n)
m = os.open("two", os.O_RDWR | os.O_CREAT, 0o644)
assert m == n
jobs.put((n, b"B")); r = result(); assert r == 4000, r
three = os.open("three", os.O_RDWR | os.O_CREAT, 0o644)
os.write(three, b"z" * 5000)
os.dup2(three, n)
jobs.put((n, b"C")); r = result(); assert r == 5000, r
jobs.put(None)
t.join()
os.close(n); os.close(three)
print("ok")
"#;
        let out = python_under_nvmmio(dir, dir, script).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ok\n", "{stderr}");
        assert!(!stderr.contains(" 0 calls served"), "{stderr}");
        assert_eq!(std::fs::read(dir.join("one")).unwrap(), b"A".repeat(4000));
        assert_eq!(std::fs::read(dir.join("two")).unwrap(), b"B".repeat(4000));
        let mut three = b"C".repeat(4000);
        three.extend(b"z".repeat(1000));
        assert_eq!(std::fs::read(dir.join("three")).unwrap(), three);
    }
}
