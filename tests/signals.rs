//! Signals arriving in the middle of served calls (tests/programs/signals_served.c): an interval
//! timer and another thread's pthread_kill interrupt data calls on a file in a managed directory,
//! and the handler itself writes and reads managed files; also while the program forks, and
//! with SA_RESETHAND (sigaction must report the program's own actions: nvmmio installs a
//! trampoline). The program must print what it prints without nvmmio (no EINTR, full counts,
//! every byte as the model says), leave the same files, and never hang. pthread_cancel still
//! unwinds a thread from glibc's handler.

mod common;

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

/// The handlers' records fill the first 64 KiB of main.dat; how many signals arrived (so what
/// they hold) differs from run to run, and the program checks them itself.
const HANDLER_AREA: usize = 64 << 10;

/// Runs the program on `dir` (managed or not) under `timeout`: a hang is a failure, not a stuck
/// test.
fn run(exe: &Path, dir: &Path, managed: bool, phases: &[&str]) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "20"]).arg(exe).arg(dir).args(phases).env("LC_ALL", "C").env_remove("LD_PRELOAD");
    if managed {
        cmd.env("LD_PRELOAD", library()).env("NVMMIO_DIRS", dir);
    }
    let out = cmd.output().expect("run timeout");
    assert!(out.status.code() != Some(124) && out.status.code().is_some(), "{phases:?}: hung ({:?})", out.status);
    out
}

/// Runs `phases` without nvmmio, then `rounds` times with the directory managed, on /dev/shm and
/// on /tmp; every run must print the same and leave the same main region.
fn same_with_and_without(phases: &[&str], rounds: usize) {
    for base in [shm_dir(), tmp_dir()] {
        let exe = compile_c("signals_served", base.path());
        let kernel_dir = base.path().join("kernel");
        fs::create_dir(&kernel_dir).unwrap();
        let expected = ok(&run(&exe, &kernel_dir, false, phases));
        // Phase lines: every count 0 (EINTR, short counts, wrong bytes), every check 1.
        let checks = ["handled_some", "reported", "ran_once", "reset", "old_reported", "jumped"];
        for line in expected.lines().take(phases.len()) {
            for field in line.split(' ').skip(1) {
                let want = if checks.contains(&field.split('=').next().unwrap()) { "1" } else { "0" };
                assert_eq!(field.split('=').nth(1), Some(want), "without nvmmio: {line}");
            }
        }
        assert!(expected.contains("size_ok=1 main_ok=1") && expected.ends_with("records_ok=1 other_ok=1\n"));
        let kernel_main = fs::read(kernel_dir.join("main.dat")).unwrap();
        for round in 0..rounds {
            let dir = base.path().join(format!("managed{round}"));
            fs::create_dir(&dir).unwrap();
            let got = ok(&run(&exe, &dir, true, phases));
            assert_eq!(got, expected, "{phases:?} round {round} in {}", base.path().display());
            let main = fs::read(dir.join("main.dat")).unwrap();
            assert_eq!(main.len(), kernel_main.len(), "round {round}");
            assert!(main[HANDLER_AREA..] == kernel_main[HANDLER_AREA..], "round {round}: main.dat differs");
            let logs = dir.join(".nvmmio");
            if logs.exists() {
                assert_eq!(fs::read_dir(&logs).unwrap().count(), 0, "round {round}: logs left behind");
            }
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn served_calls_and_handlers_doing_io_get_the_kernels_results() {
    same_with_and_without(&["actions", "restart", "norestart"], 3);
}

/// glibc's atfork handlers: nvmmio holds its tables' locks until the fork returns.
#[test]
fn forks_while_handlers_do_io_never_hang() {
    same_with_and_without(&["fork"], 3);
}

/// glibc's cancellation handler (SIGCANCEL) unwinds the thread from the trampoline.
#[test]
fn pthread_cancel_unwinds_through_the_trampoline() {
    let dir = shm_dir();
    let exe = compile_c("cancel", dir.path());
    fs::write(dir.path().join("file"), b"some bytes").unwrap();
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "20"]).arg(&exe).arg("file").current_dir(dir.path());
    cmd.env("LD_PRELOAD", library()).env("NVMMIO_DIRS", dir.path());
    let out = ok(&cmd.output().unwrap());
    assert_eq!(out, CANCELLED_EVERYWHERE);
}

/// A handler's served call allocates: with glibc's malloc (not async-signal-safe), a signal that
/// interrupted the program inside malloc left the thread waiting for the arena lock it holds
/// itself. nvmmio allocates from its own region in handlers (`handler_alloc`).
#[test]
fn handlers_doing_io_while_the_program_is_in_malloc_never_hang() {
    same_with_and_without(&["malloc"], 3);
}

/// Handlers installed before nvmmio's constructor ran (here from the program's .preinit_array;
/// a library constructed earlier does the same) run through the trampoline too, and sigaction
/// reports them as the program set them.
#[test]
fn handlers_installed_before_nvmmio_started_never_run_inside_it() {
    same_with_and_without(&["early"], 3);
}

/// A handler left with siglongjmp, 1000 times: the calls after it (which allocate) must be
/// right, and nvmmio must know the thread is outside a handler again (allocating from glibc,
/// not from its finite region for handlers: the exit summary counts those allocations).
#[test]
fn a_handler_left_with_siglongjmp_is_over() {
    same_with_and_without(&["longjmp"], 1);
    let dir = shm_dir();
    let exe = compile_c("signals_served", dir.path());
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", "20"]).arg(&exe).arg(dir.path()).arg("longjmp").env("LC_ALL", "C");
    cmd.env("LD_PRELOAD", library()).env("NVMMIO_DIRS", dir.path()).env("NVMMIO_STATS", "1");
    let out = cmd.output().unwrap();
    let stdout = ok(&out);
    assert!(stdout.starts_with("longjmp: jumped=1 failed=0\n"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("calls served") && !stderr.contains("allocations in signal handlers"), "{stderr}");
}
