//! Recovery under stress: `nvmmio recover` itself killed at random instants (it must be
//! idempotent), logs damaged after a crash (reported, with the file left as it was, or applied
//! as far as they are whole), and logs lost (the file's mark shows it).

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

/// Runs the crash writer under the library in `dir` for `ms` milliseconds, then kills it;
/// returns the last record its fsyncs covered.
fn crashed_writer(work: &Path, dir: &Path, ms: u64, settings: &[(&str, &str)]) -> Option<u64> {
    let exe = compile_c("crash_writer", work);
    fs::create_dir_all(dir).unwrap();
    let side = dir.with_extension("side");
    let _ = fs::remove_file(&side);
    let mut child = Command::new(&exe)
        .arg(dir.join("data"))
        .arg(&side)
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", dir)
        .envs(settings.iter().copied())
        .spawn()
        .unwrap();
    sleep_after_first_record(&side, ms);
    child.kill().unwrap();
    child.wait().unwrap();
    // Whole lines only: SIGKILL can cut a write that straddles a page of the side file.
    let text = fs::read_to_string(&side).unwrap_or_default();
    text.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')).next_back().map(|l| l.parse().unwrap())
}

fn recover(work: &Path, dir: &Path) -> std::process::Output {
    nvmmio_cmd(work, &["recover", dir.to_str().unwrap()])
}

#[test]
fn recovery_killed_at_random_instants_still_recovers() {
    for base in [shm_dir(), tmp_dir()] {
        let work = base.path();
        let mut seed = 99u64;
        for round in 0..4 {
            let dir = work.join(format!("r{round}"));
            // Every write logged (none in place) and big logs: recovery has a lot to apply.
            let settings = [("NVMMIO_LOG_MAX", "64m"), ("NVMMIO_CHECKPOINT_AT", "64m"), ("NVMMIO_IN_PLACE_FROM", "1g")];
            let synced = crashed_writer(work, &dir, 400, &settings);
            for _ in 0..5 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let mut rec = Command::new(nvmmio())
                    .args(["recover", dir.to_str().unwrap()])
                    .stdout(Stdio::null())
                    .spawn()
                    .unwrap();
                std::thread::sleep(Duration::from_micros((seed >> 33) % 20_000));
                let _ = rec.kill();
                rec.wait().unwrap();
            }
            let out = recover(work, &dir);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
            let data = fs::read(dir.join("data")).unwrap_or_default();
            check_crash_writer_file(&data, synced, &format!("{} round {round}", work.display()));
        }
    }
}

#[test]
fn damaged_log_headers_are_reported_and_the_file_left_alone() {
    let base = shm_dir();
    let work = base.path();
    let dir = work.join("d");
    crashed_writer(work, &dir, 300, &[("NVMMIO_CHECKPOINT_AT", "64m"), ("NVMMIO_IN_PLACE_FROM", "1g")]);
    let logs: Vec<_> = fs::read_dir(dir.join(".nvmmio"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log") && !p.to_string_lossy().contains("pool-"))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let mut log = fs::read(&logs[0]).unwrap();
    log[10] ^= 0xff; // the version field: the header's checksum no longer matches
    fs::write(&logs[0], &log).unwrap();
    let before = fs::read(dir.join("data")).unwrap();
    let out = recover(work, &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("damaged log") && text.contains("left as they are"), "{text}");
    assert_eq!(fs::read(dir.join("data")).unwrap(), before, "the data file must not change");
    assert!(logs[0].exists(), "the damaged log is kept for inspection");
    // A program under nvmmio opening the file: the kernel serves it as it is, the exit summary
    // says why, and the log stays.
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sys; sys.stdout.write(str(len(open('data', 'rb').read())))"])
        .current_dir(&dir)
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", &dir)
        .env("NVMMIO_STATS", "1")
        .output()
        .unwrap();
    assert_eq!(ok(&out), before.len().to_string());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 files left to the kernel with a damaged log"), "{stderr}");
    assert_eq!(fs::read(dir.join("data")).unwrap(), before, "the data file must not change");
    assert!(logs[0].exists(), "the damaged log is kept");
}

#[test]
fn a_log_cut_short_is_applied_as_far_as_it_is_whole() {
    let base = shm_dir();
    let work = base.path();
    for (round, keep) in [(0, 0.3f64), (1, 0.6), (2, 0.9)].into_iter() {
        let dir = work.join(format!("c{round}"));
        crashed_writer(work, &dir, 300, &[("NVMMIO_CHECKPOINT_AT", "64m"), ("NVMMIO_IN_PLACE_FROM", "1g")]);
        let log = fs::read_dir(dir.join(".nvmmio"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "log") && !p.to_string_lossy().contains("pool-"))
            .unwrap();
        let len = fs::metadata(&log).unwrap().len();
        let cut = ((len as f64 * keep) as u64).max(64);
        fs::OpenOptions::new().write(true).open(&log).unwrap().set_len(cut).unwrap();
        let out = recover(work, &dir);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        // Durable records were destroyed on purpose, so fsynced data may be missing; but what
        // is there is whole records, never torn ones.
        let data = fs::read(dir.join("data")).unwrap_or_default();
        check_crash_writer_file(&data, None, &format!("log cut to {cut} of {len} bytes"));
    }
}

/// The log files of the files in `dir` (not pooled ones) with extension `ext`.
fn logs_of(dir: &Path, ext: &str) -> Vec<std::path::PathBuf> {
    fs::read_dir(dir.join(".nvmmio"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext) && !p.to_string_lossy().contains("pool-"))
        .collect()
}

/// A program under nvmmio reading `data` in `dir`: its length, and the exit summary.
fn read_under_nvmmio(dir: &Path) -> (String, String) {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import sys; sys.stdout.write(str(len(open('data', 'rb').read())))"])
        .current_dir(dir)
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", dir)
        .env("NVMMIO_STATS", "1")
        .output()
        .unwrap();
    (ok(&out), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The extended attributes of `path`, as a process without nvmmio sees them.
fn xattrs(path: &Path) -> String {
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import os, sys; print(os.listxattr(sys.argv[1]))"])
        .arg(path)
        .output()
        .unwrap();
    ok(&out)
}

#[test]
fn a_lost_log_is_reported_and_the_file_left_alone() {
    let base = shm_dir();
    let work = base.path();
    let dir = work.join("d");
    crashed_writer(work, &dir, 300, &[("NVMMIO_CHECKPOINT_AT", "64m"), ("NVMMIO_IN_PLACE_FROM", "1g")]);
    let logs = logs_of(&dir, "log");
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert!(xattrs(&dir.join("data")).contains("user.nvmmio.logs"), "the crashed writer's file carries the mark");
    fs::remove_file(&logs[0]).unwrap();
    let before = fs::read(dir.join("data")).unwrap();
    let out = recover(work, &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("is missing") && text.contains("--accept-lost"), "{text}");
    assert_eq!(fs::read(dir.join("data")).unwrap(), before, "the data file must not change");
    // Under nvmmio the kernel serves it as it is, and the exit summary says why.
    let (len, stderr) = read_under_nvmmio(&dir);
    assert_eq!(len, before.len().to_string());
    assert!(stderr.contains("1 files left to the kernel with a lost log"), "{stderr}");
    // Accepted: the mark goes, and nvmmio serves the file again.
    let out = nvmmio_cmd(work, &["recover", "--accept-lost", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!xattrs(&dir.join("data")).contains("nvmmio"));
    assert!(logs_of(&dir, "log").is_empty() && logs_of(&dir, "log2").is_empty(), "its other log went too");
    let (len, stderr) = read_under_nvmmio(&dir);
    assert_eq!(len, before.len().to_string());
    assert!(!stderr.contains("lost log") && !stderr.contains(" 0 calls served"), "{stderr}");
    assert!(recover(work, &dir).status.success());
}

/// A truncating open supersedes a lost log: the file is empty as the program asked, and its
/// mark goes (no lost log reported ever after).
#[test]
fn a_truncating_open_supersedes_a_lost_log() {
    let base = shm_dir();
    let work = base.path();
    let dir = work.join("t");
    crashed_writer(work, &dir, 200, &[("NVMMIO_CHECKPOINT_AT", "64m"), ("NVMMIO_IN_PLACE_FROM", "1g")]);
    for log in logs_of(&dir, "log").into_iter().chain(logs_of(&dir, "log2")) {
        fs::remove_file(log).unwrap();
    }
    let out = Command::new("/usr/bin/python3")
        .args(["-c", "import os; os.close(os.open('data', os.O_WRONLY | os.O_TRUNC))"])
        .current_dir(&dir)
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", &dir)
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(fs::metadata(dir.join("data")).unwrap().len(), 0);
    assert!(!xattrs(&dir.join("data")).contains("nvmmio"));
    let out = recover(work, &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// A file with two logs (a background checkpoint was running) whose second log is lost:
/// replaying the first alone could leave a torn mix; it is reported instead.
#[test]
fn a_lost_second_log_is_reported() {
    let base = shm_dir();
    let work = base.path();
    for round in 0..6 {
        let dir = work.join(format!("s{round}"));
        let settings = [("NVMMIO_CHECKPOINT_AT", "256k"), ("NVMMIO_LOG_MAX", "1m"), ("NVMMIO_IN_PLACE_FROM", "1g")];
        crashed_writer(work, &dir, 300 + round * 50, &settings);
        let seconds = logs_of(&dir, "log2");
        if seconds.is_empty() {
            continue;
        }
        fs::remove_file(&seconds[0]).unwrap();
        let before = fs::read(dir.join("data")).unwrap();
        let out = recover(work, &dir);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(text.contains(".log2 is missing"), "{text}");
        assert_eq!(fs::read(dir.join("data")).unwrap(), before, "the data file must not change");
        assert!(logs_of(&dir, "log").len() == 1, "the first log is kept");
        return;
    }
    panic!("no crash left a second log");
}

/// The mark is nvmmio's: a program under nvmmio never sees it among the file's attributes.
#[test]
fn programs_under_nvmmio_do_not_see_the_mark() {
    let base = shm_dir();
    let dir = base.path().join("d");
    fs::create_dir_all(&dir).unwrap();
    let script = r#"import os
fd = os.open('f', os.O_RDWR | os.O_CREAT)
os.setxattr('f', 'user.mine', b'1')
os.write(fd, b'x' * 5000)
os.fsync(fd)
print(os.listxattr('f'), os.listxattr(fd), os.listxattr('f', follow_symlinks=False))
for name in ['user.nvmmio.logs', 'user.other']:
    try:
        os.getxattr('f', name)
    except OSError as e:
        print(e.errno)
try:
    os.getxattr('missing', 'user.nvmmio.logs')
except OSError as e:
    print(e.errno)
"#;
    let run = |preload: bool| {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.args(["-c", script]).current_dir(&dir);
        if preload {
            cmd.env("LD_PRELOAD", library()).env("NVMMIO_DIRS", &dir);
        }
        let out = ok(&cmd.output().unwrap());
        fs::remove_file(dir.join("f")).unwrap();
        out
    };
    let kernel = run(false);
    assert_eq!(kernel, "['user.mine'] ['user.mine'] ['user.mine']\n61\n61\n2\n");
    assert_eq!(run(true), kernel);
}
