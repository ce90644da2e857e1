//! Real programs under the preload (forward mode, and trace mode with its output discarded) give
//! the same outputs, files and exit codes as without it.

mod common;

use std::fs;
use std::process::Command;

use common::*;

/// Runs the same shell script both ways in fresh directories seeded with `input`; returns the
/// two (stdout, files) results after checking the exit codes agree.
/// A run's stdout and the (name, bytes) of every file it left, sorted by name.
type RunResult = (String, Vec<(String, Vec<u8>)>);

fn all_ways(script: &str, input: &[u8]) -> [RunResult; 3] {
    ALL_WAYS.map(|under| {
        let dir = shm_dir();
        fs::write(dir.path().join("input"), input).unwrap();
        let out = sh(under, dir.path(), script);
        let stdout = ok(&out);
        let mut files: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_type().unwrap().is_file())
            .map(|e| (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap()))
            .collect();
        files.sort();
        (stdout, files)
    })
}

#[test]
fn coreutils_copy_the_same_bytes() {
    let input = pattern(3 << 20, 7);
    // cat to a pipe (read/write), cat to a file (copy_file_range), cp, dd with odd block sizes.
    let script = "cat input | cat > piped && cat input > copied && cp input cp_copy && \
                  dd if=input of=dd_copy bs=4000 skip=3 count=200 conv=fsync 2>/dev/null && \
                  dd if=input bs=1M count=1 2>/dev/null | sha256sum && wc -c < copied";
    let [kernel, forward, traced] = all_ways(script, &input);
    assert_eq!(kernel, forward);
    assert_eq!(kernel, traced);
    let files: std::collections::HashMap<_, _> = forward.1.into_iter().collect();
    assert_eq!(files["copied"], input);
    assert_eq!(files["piped"], input);
    assert_eq!(files["cp_copy"], input);
    assert_eq!(files["dd_copy"], input[3 * 4000..203 * 4000]);
}

#[test]
fn exit_codes_and_errors_pass_through() {
    for (script, code) in [("exit 3", 3), ("cat /nonexistent/file", 1), ("kill -TERM $$", 143)] {
        let dir = shm_dir();
        let kernel = sh(Under::Kernel, dir.path(), script);
        let forward = sh(Under::Forward, dir.path(), script);
        use std::os::unix::process::ExitStatusExt;
        let status = |o: &std::process::Output| o.status.code().unwrap_or(128 + o.status.signal().unwrap_or(0));
        assert_eq!(status(&kernel), code, "{script}");
        assert_eq!(status(&forward), code, "{script}");
        assert_eq!(kernel.stderr, forward.stderr, "{script}");
    }
}

#[test]
fn the_library_prints_nothing_by_itself() {
    let dir = shm_dir();
    let out = run_under(Under::Forward, dir.path(), "true", &[]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{out:?}");
}

#[test]
fn sqlite_builds_and_checks_a_database() {
    let script = "sqlite3 db 'CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, n REAL); \
        CREATE INDEX t_name ON t(name); \
        WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM c WHERE i < 4000) \
        INSERT INTO t SELECT i, printf(\"row-%05d\", (i * 7919) % 4000), i / 3.0 FROM c; \
        DELETE FROM t WHERE id % 10 = 0; \
        PRAGMA integrity_check; SELECT count(*), sum(id), min(name), max(name) FROM t;' && \
        sqlite3 db .dump | sha256sum";
    let [kernel, forward, traced] = all_ways(script, b"");
    assert_eq!(kernel.0, forward.0);
    assert_eq!(kernel.0, traced.0);
    assert!(forward.0.starts_with("ok\n3600|7200000|row-00001|row-03999\n"), "{}", forward.0);
}

#[test]
fn db_bench_fills_and_reads_the_same_database() {
    let script = "db_bench --benchmarks=fillrandom,readrandom --num=20000 --value_size=100 --seed=42 \
        --threads=1 --db=$PWD/rocks --compression_type=none >bench.out 2>&1 && \
        grep -o '([0-9]* of [0-9]* found)' bench.out && \
        ldb --db=$PWD/rocks scan --hex | sha256sum";
    let [kernel, forward, traced] = all_ways(script, b"");
    assert_eq!(kernel.0, forward.0);
    assert_eq!(kernel.0, traced.0);
    assert!(forward.0.starts_with("(20000 of 20000 found)") || forward.0.contains("of 20000 found"), "{}", forward.0);
}

#[test]
fn fio_verifies_its_own_writes() {
    let dir = shm_dir();
    for under in ALL_WAYS {
        let out = run_under(
            under,
            dir.path(),
            "fio",
            &[
                "--name=verify",
                "--directory=.",
                "--size=16M",
                "--bs=4k",
                "--rw=randwrite",
                "--ioengine=psync",
                "--verify=crc32c",
                "--do_verify=1",
                "--numjobs=2",
                "--output-format=json",
            ],
        );
        let json = ok(&out);
        assert!(json.contains("\"error\" : 0"), "{under:?}: {json}");
        assert!(!json.contains("verify: bad"), "{under:?}");
    }
}

#[test]
fn threaded_python_writes_and_reads_back() {
    let script = r#"
import hashlib, os, threading, subprocess, sys
def work(i):
    data = bytes((i * 31 + j) % 251 for j in range(200_000))
    with open(f"t{i}.bin", "wb") as f:
        for k in range(0, len(data), 4096):
            f.write(data[k:k + 4096])
        f.flush(); os.fsync(f.fileno())
    with open(f"t{i}.bin", "rb") as f:
        assert f.read() == data
threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
for t in threads: t.start()
for t in threads: t.join()
out = subprocess.run(["sha256sum"] + sorted(f"t{i}.bin" for i in range(8)), capture_output=True, text=True)
print(out.stdout, end="")
pid = os.fork()
if pid == 0:
    os._exit(7)
print("child", os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
"#;
    let dir = shm_dir();
    fs::write(dir.path().join("t.py"), script).unwrap();
    let kernel = ok(&run_under(Under::Kernel, dir.path(), "/usr/bin/python3", &["t.py"]));
    let forward = ok(&run_under(Under::Forward, dir.path(), "/usr/bin/python3", &["t.py"]));
    assert_eq!(kernel, forward);
    assert_eq!(kernel.lines().count(), 9, "{kernel}");
    assert!(kernel.ends_with("child 7\n"));
}

#[test]
fn vfork_spawn_and_exec_chains_work() {
    // posix_spawn (python subprocess), vfork+exec (sh pipelines), exec of another preloaded
    // program, and many short processes.
    let script = "for i in 1 2 3 4 5 6 7 8 9 10; do /bin/echo $i; done | sort -n | tail -n 3 && \
        /usr/bin/python3 -c 'import subprocess; print(subprocess.run([\"/bin/sh\", \"-c\", \"exec /bin/echo spawned\"], capture_output=True, text=True).stdout, end=\"\")' && \
        /usr/bin/env sh -c 'exec ls input'";
    let [kernel, forward, traced] = all_ways(script, b"x");
    assert_eq!(kernel, forward);
    assert_eq!(kernel, traced);
    assert_eq!(forward.0, "8\n9\n10\nspawned\ninput\n");
}

#[test]
fn nvmmio_run_passes_status_through() {
    let dir = shm_dir();
    let out = nvmmio_cmd(dir.path(), &["run", "--", "sh", "-c", "echo hi; exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(out.stdout, b"hi\n");
    let out = nvmmio_cmd(dir.path(), &["run", "--", "sh", "-c", "echo $LD_PRELOAD"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("libnvmmio.so"));
}

#[test]
fn pthread_cancel_reaches_threads_in_data_calls() {
    let dir = shm_dir();
    let exe = compile_c("cancel", dir.path());
    fs::write(dir.path().join("file"), b"some bytes").unwrap();
    for under in ALL_WAYS {
        // A call that is not cancellable would wait for ever: killed, it fails the test.
        let out = run_under(under, dir.path(), "timeout", &["-s", "KILL", "30", exe.to_str().unwrap(), "file"]);
        assert_eq!(ok(&out), CANCELLED_EVERYWHERE, "{under:?}");
    }
}

#[test]
fn bad_arguments_get_the_kernels_errors() {
    let dir = shm_dir();
    let exe = compile_c("badargs", dir.path());
    let outputs = ALL_WAYS.map(|under| ok(&run_under(under, dir.path(), exe.to_str().unwrap(), &["f"])));
    assert!(outputs[0].contains("write-unmapped -1 EFAULT"), "{}", outputs[0]);
    assert!(outputs[0].contains("lseek-pipe -1 ESPIPE"), "{}", outputs[0]);
    assert!(outputs[0].contains("fcntl-setlk-unmapped -1 EFAULT"), "{}", outputs[0]);
    assert!(outputs[0].contains("fcntl-getown-is-group 1 -"), "{}", outputs[0]);
    for line in [
        "stat-missing -1 ENOENT",
        "stat-through-file -1 ENOTDIR",
        "stat-size 10 -",
        "lstat-link 1 -",
        "lstat-unmapped -1 EFAULT",
        "fstatat-badfd -1 EBADF",
        "fstatat-badflags -1 EINVAL",
        "unlink-dir -1 EISDIR",
        "unlink-unmapped -1 EFAULT",
        "unlinkat-badflags -1 EINVAL",
        "lstat-after-unlink -1 ENOENT",
        "close-badfd -1 EBADF",
        "close-dup-again -1 EBADF",
        "fstat-closed -1 EBADF",
    ] {
        assert!(outputs[0].contains(&format!("{line}\n")), "{line}: {}", outputs[0]);
    }
    assert!(outputs[0].ends_with("content 0123456789\n"), "{}", outputs[0]);
    assert_eq!(outputs[0], outputs[1], "forward");
    assert_eq!(outputs[0], outputs[2], "trace");
    // The same calls on a file nvmmio serves (the directory managed): the same results.
    fs::remove_file(dir.path().join("f")).unwrap();
    let exe = exe.to_str().unwrap();
    let managed = nvmmio_cmd(dir.path(), &["run", "--dir", dir.path().to_str().unwrap(), "--", exe, "f"]);
    assert_eq!(ok(&managed), outputs[0], "managed");
}

#[test]
fn signal_handlers_and_interrupted_calls() {
    let dir = shm_dir();
    let exe = compile_c("signals", dir.path());
    for under in ALL_WAYS {
        let out = ok(&run_under(under, dir.path(), exe.to_str().unwrap(), &["f"]));
        assert_eq!(out, "bad=0 pipe_reads=50 handled_some=1 eintr=1\n", "{under:?}");
    }
}

#[test]
fn an_internal_panic_is_reported_once_and_the_call_still_runs() {
    let dir = shm_dir();
    fs::write(dir.path().join("input"), pattern(100_000, 9)).unwrap();
    for mode in ["forward", "trace"] {
        let out = Command::new("sh")
            .args(["-c", "cat input | sha256sum; cat input > copy; cmp input copy && echo same"])
            .current_dir(dir.path())
            .env("LD_PRELOAD", library())
            .env("NVMMIO_MODE", mode)
            .env("NVMMIO_TRACE_OUTPUT", "/dev/null")
            .env("NVMMIO_TEST_PANIC_IN", "openat")
            .output()
            .unwrap();
        let expected = sh(Under::Kernel, dir.path(), "sha256sum < input | sed 's/-$/-/'");
        let stdout = ok(&out);
        assert!(stdout.starts_with(&String::from_utf8_lossy(&expected.stdout).into_owned()), "{mode}: {stdout}");
        assert!(stdout.ends_with("same\n"), "{mode}: {stdout}");
        // Once per process (sh, cat, sha256sum, cat, cmp), never more.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let reports = stderr.matches("nvmmio: internal error").count();
        assert!((1..=5).contains(&reports), "{mode}: {stderr}");
        assert_eq!(stderr.lines().count(), reports, "{mode}: {stderr}");
        assert!(stderr.contains("injected failure in openat"), "{stderr}");
    }
}

#[test]
fn the_library_has_a_non_executable_stack() {
    let out = Command::new("readelf").arg("-lW").arg(library()).output().expect("readelf");
    let text = String::from_utf8_lossy(&out.stdout);
    let stack = text.lines().find(|l| l.contains("GNU_STACK")).expect("a GNU_STACK header");
    let flags: Vec<&str> = stack.split_whitespace().collect();
    assert_eq!(flags[flags.len() - 2], "RW", "{stack}");
}
