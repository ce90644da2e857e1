//! Threads writing one managed file at once (tests/programs/lanes.c): lanes of shared blocks
//! and whole blocks of their own, each write read back at once, fsyncs in between. The writes
//! below the committed size that find the file busy share it (the index's shard locks); the
//! file must end as the threads' records say, inside the program and through the kernel after.

mod common;

use std::path::Path;
use std::process::Command;

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
    for dir in [shm_dir(), tmp_dir()] {
        for env in [&[][..], &[("NVMMIO_CHECKPOINT_AT", "64k")][..]] {
            let summary = lanes(dir.path(), &exe, true, env);
            // A write that finds the file busy shares it (most of the 160,000 overwrite committed
            // blocks, and 8 threads on 2 cores find it busy about one time in 8: 18,000-29,000).
            let shared = shared_writes(&summary);
            assert!(shared > 1_000, "{env:?}: only {shared} writes shared the file: {summary}");
            std::fs::remove_dir_all(dir.path().join("managed")).unwrap();
        }
    }
}
