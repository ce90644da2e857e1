//! Undo logging under the preload (`NVMMIO_LOGGING=undo`, and the hybrid policy), on tmpfs and
//! on disk: a program that overwrites a file in place gives byte-identical files and reads with
//! and without nvmmio; killed at random instants, its file recovers (by `nvmmio recover`, or by
//! the next open under nvmmio) to exactly the state after some prefix of its calls that includes
//! every call its last fsync covered: nothing torn, nothing else changed.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::*;

/// tests/programs/overwriter.c's constants.
const FILE_SIZE: usize = 1 << 20;
const MAGIC: u64 = 0xabcd;

fn initial() -> Vec<u8> {
    let bytes = pattern(FILE_SIZE, 77);
    assert!(highest_call(&bytes).is_none(), "the initial pattern must not look like a call's words");
    bytes
}

/// The file as the overwriter's calls leave it (see tests/programs/overwriter.c).
struct Model {
    data: Vec<u8>,
    /// Calls applied so far.
    calls: u64,
}

impl Model {
    fn new() -> Model {
        Model { data: initial(), calls: 0 }
    }

    fn step(&mut self) {
        let c = self.calls;
        if c % 53 == 52 {
            self.data.resize(FILE_SIZE - 8192 * ((c / 53) % 3) as usize, 0);
        } else {
            let words = 125 + c.wrapping_mul(2654435761) % 1900;
            let len = words * 8;
            let off = ((c.wrapping_mul(7919 * 8) % (FILE_SIZE as u64 - len)) & !7) as usize;
            let end = off + len as usize;
            if self.data.len() < end {
                self.data.resize(end, 0);
            }
            for j in 0..words as usize {
                let word = (MAGIC << 48) | ((c & 0xffff_ffff) << 16) | (j as u64 & 0xffff);
                self.data[off + j * 8..off + j * 8 + 8].copy_from_slice(&word.to_le_bytes());
            }
        }
        self.calls += 1;
    }
}

/// The highest call number whose words the file holds.
fn highest_call(data: &[u8]) -> Option<u64> {
    data.chunks_exact(8)
        .map(|w| u64::from_le_bytes(w.try_into().unwrap()))
        .filter(|w| w >> 48 == MAGIC)
        .map(|w| (w >> 16) & 0xffff_ffff)
        .max()
}

/// Checks that `data` is the state after some prefix of calls that includes call `synced`;
/// returns how many calls it holds.
fn check_prefix_state(data: &[u8], synced: Option<u64>, what: &str) -> u64 {
    let mut model = Model::new();
    let from = highest_call(data).map_or(0, |c| c + 1);
    while model.calls < from {
        model.step();
    }
    // The calls after the last one seen may have left nothing (truncates, writes cut away).
    for _ in 0..60 {
        if model.data == data {
            let applied = model.calls;
            assert!(synced.is_none_or(|s| applied > s), "{what}: fsynced call {synced:?} lost ({applied} applied)");
            return applied;
        }
        model.step();
    }
    let mut model = Model::new();
    while model.calls < from {
        model.step();
    }
    let differs = model.data.iter().zip(data).position(|(a, b)| a != b);
    panic!(
        "{what}: not the state after any prefix of calls (highest call seen {}, synced {synced:?}; \
         {} bytes, model {}; first difference at {differs:?})",
        from as i64 - 1,
        data.len(),
        model.data.len()
    );
}

fn overwriter(dir: &Path, exe: &Path, count: u64, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(exe);
    cmd.arg(dir.join("data")).arg(dir.with_extension("side")).arg(count.to_string()).envs(env.iter().cloned());
    cmd
}

/// The environment of a program under nvmmio with `dir` managed and `logging`.
fn managed_env(dir: &Path, logging: &str) -> Vec<(String, String)> {
    [
        ("LD_PRELOAD", library().display().to_string()),
        ("NVMMIO_DIRS", dir.display().to_string()),
        ("NVMMIO_LOGGING", logging.to_string()),
        ("NVMMIO_STATS", "1".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Byte-identical files and reads, with and without nvmmio, forced undo and hybrid.
#[test]
fn overwrites_give_identical_files_and_reads() {
    for base in [shm_dir(), tmp_dir()] {
        let exe = compile_c("overwriter", base.path());
        // On a disk forced undo logging syncs the log before every write (milliseconds each).
        let count = if base.path().starts_with("/dev/shm") { 20_000 } else { 3_000 };
        let kernel_dir = base.path().join("kernel");
        fs::create_dir_all(&kernel_dir).unwrap();
        fs::write(kernel_dir.join("data"), initial()).unwrap();
        let kernel = ok(&overwriter(&kernel_dir, &exe, count, &[]).output().unwrap());
        let kernel_file = fs::read(kernel_dir.join("data")).unwrap();
        let mut model = Model::new();
        for _ in 0..count {
            model.step();
        }
        assert!(model.data == kernel_file, "the model is the kernel's file");
        for logging in ["undo", "hybrid"] {
            let dir = base.path().join(logging);
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("data"), initial()).unwrap();
            let mut env = managed_env(&dir, logging);
            // Epochs of 7 writes and 1 or 2 reads (88% or 78% writes): hybrid logging switches
            // between redo and undo.
            env.push(("NVMMIO_HYBRID_REDO_ABOVE".to_string(), "85".to_string()));
            let out = overwriter(&dir, &exe, count, &env).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert_eq!(ok(&out), kernel, "{logging}: reads differ ({stderr})");
            assert!(fs::read(dir.join("data")).unwrap() == kernel_file, "{logging}: files differ ({stderr})");
            // The engine served the calls with the logging asked for (on a disk, hybrid stays
            // on redo).
            let on_disk = !base.path().starts_with("/dev/shm");
            if logging == "undo" || !on_disk {
                assert!(!stderr.contains(" 0 blocks saved for undo"), "{logging}: no undo logging? {stderr}");
            }
            if logging == "hybrid" {
                assert_eq!(stderr.contains(" 0 logging switches"), on_disk, "{stderr}");
            }
            assert_eq!(fs::read_dir(dir.join(".nvmmio")).unwrap().count(), 0, "{logging}: logs left behind");
        }
    }
}

/// Killed at random instants, the overwriter's file recovers to a prefix of its calls.
#[test]
fn killed_overwriters_recover_to_their_last_fsync() {
    let mut seed = 4242u64;
    for base in [shm_dir(), tmp_dir()] {
        let work = base.path();
        let exe = compile_c("overwriter", work);
        for round in 0..8 {
            let dir = work.join(format!("r{round}"));
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("data"), initial()).unwrap();
            let side = dir.with_extension("side");
            let mut env = managed_env(&dir, "undo");
            // Half the rounds with small logs: full ones commit mid-run (whole writes). With
            // the default size the file recovers exactly to a commit point (see below).
            let small_logs = round % 4 < 2;
            if small_logs {
                env.push(("NVMMIO_LOG_MAX".to_string(), "256k".to_string()));
            }
            let mut child = overwriter(&dir, &exe, 0, &env).spawn().unwrap();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            sleep_after_first_record(&side, 20 + (seed >> 33) % 250);
            child.kill().unwrap();
            child.wait().unwrap();
            // Recovery by the CLI, or by the next open under nvmmio.
            if round % 2 == 0 {
                let out = nvmmio_cmd(work, &["recover", dir.to_str().unwrap()]);
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
            } else {
                let out = Command::new("/usr/bin/python3")
                    .args(["-c", "open('data', 'rb').read()"])
                    .current_dir(&dir)
                    .envs(managed_env(&dir, "undo"))
                    .output()
                    .unwrap();
                ok(&out);
            }
            let text = fs::read_to_string(&side).unwrap_or_default();
            let synced = text.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')).next_back();
            let data = fs::read(dir.join("data")).unwrap();
            let synced: Option<u64> = synced.map(|l| l.parse().unwrap());
            let what = format!("{} round {round}", work.display());
            let applied = check_prefix_state(&data, synced, &what);
            if !small_logs {
                // Undo logging rolls back to the last commit: after an fsync (calls 6, 13...),
                // or around a truncate below the committed size (it commits what precedes it,
                // then itself); no later write survives, whole or not.
                let commit_point = |k: u64| k == 0 || (k - 1) % 7 == 6 || k % 53 == 52 || (k - 1) % 53 == 52;
                let next_fsync = synced.map_or(7, |s| s + 8);
                assert!(
                    commit_point(applied) && applied <= next_fsync,
                    "{what}: {applied} calls applied, not the last commit (synced {synced:?})"
                );
            }
            // Recovering again changes nothing.
            let out = nvmmio_cmd(work, &["recover", dir.to_str().unwrap()]);
            assert!(out.status.success());
            assert!(fs::read(dir.join("data")).unwrap() == data, "round {round}: a second recovery changed the file");
        }
    }
}

/// Appends under forced undo logging (in place past the committed size: recovery cuts them):
/// the crash writer's file recovers to its last fsync with no torn record.
#[test]
fn killed_appenders_with_undo_logging_recover_to_their_last_fsync() {
    let mut seed = 99u64;
    for base in [shm_dir(), tmp_dir()] {
        let work = base.path();
        let exe = compile_c("crash_writer", work);
        for round in 0..4 {
            let dir = work.join(format!("a{round}"));
            fs::create_dir_all(&dir).unwrap();
            let side = dir.with_extension("side");
            let mut child = Command::new(&exe)
                .arg(dir.join("data"))
                .arg(&side)
                .envs(managed_env(&dir, "undo"))
                .env("NVMMIO_IN_PLACE_FROM", "0")
                .spawn()
                .unwrap();
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            sleep_after_first_record(&side, 20 + (seed >> 33) % 200);
            child.kill().unwrap();
            child.wait().unwrap();
            let out = nvmmio_cmd(work, &["recover", dir.to_str().unwrap()]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
            let text = fs::read_to_string(&side).unwrap_or_default();
            let synced = text.split_inclusive('\n').filter_map(|l| l.strip_suffix('\n')).next_back();
            let data = fs::read(dir.join("data")).unwrap_or_default();
            check_crash_writer_file(&data, synced.map(|l| l.parse().unwrap()), &format!("round {round}"));
        }
    }
}
