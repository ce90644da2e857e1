//! The fsx-style differential tester (scripts/fsx) under the library: random sequences of data
//! calls, truncates, syncs, reopens, dups, O_APPEND, vector calls, fallocate, copy_file_range
//! and mappings on a managed file and on a kernel file side by side, every result compared;
//! also with the calls issued from several threads, and concurrent phases (threads at once on
//! regions of their own, opening and closing the file). Seeds that once failed are kept in
//! tests/fsx-seeds.txt and replayed here; races it found that a seed does not replay reliably
//! have a program of their own (tests/programs/handover_races.py).

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn fsx(base: &Path, args: &[&str]) {
    fsx_with(base, args, &[]);
}

fn fsx_with(base: &Path, args: &[&str], env: &[(&str, &str)]) {
    let (managed, kernel) = (base.join("managed"), base.join("kernel"));
    std::fs::create_dir_all(&managed).unwrap();
    std::fs::create_dir_all(&kernel).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fsx");
    let out = Command::new("timeout")
        .args(["300", script, "--managed", managed.to_str().unwrap(), "--kernel", kernel.to_str().unwrap()])
        .args(args)
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", &managed)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("seeds passed"), "fsx {args:?}:\n{text}");
    assert!(!text.contains("MISMATCH"), "{text}");
}

#[test]
fn fsx_on_tmpfs() {
    fsx(shm_dir().path(), &["--seeds", "1-16", "--ops", "2000"]);
}

#[test]
fn fsx_on_disk() {
    fsx(tmp_dir().path(), &["--seeds", "1-4", "--ops", "2000"]);
}

#[test]
fn fsx_with_threads_on_tmpfs() {
    fsx(shm_dir().path(), &["--seeds", "1-6", "--ops", "2000", "--threads", "4"]);
}

#[test]
fn fsx_with_threads_on_disk() {
    fsx(tmp_dir().path(), &["--seeds", "1-2", "--ops", "2000", "--threads", "4"]);
}

/// Checkpoints in the background all along (from 16 KiB of log): the checkpoint thread's
/// stores through its own mapping, logs taken back by the writer, writers waiting for the
/// thread, against truncates, mappings and handovers from several threads.
#[test]
fn fsx_with_background_checkpoints_on_tmpfs() {
    let env = [("NVMMIO_CHECKPOINT_AT", "16k")];
    fsx_with(shm_dir().path(), &["--seeds", "101-106", "--ops", "2000"], &env);
    fsx_with(shm_dir().path(), &["--seeds", "101-104", "--ops", "2000", "--threads", "4"], &env);
}

#[test]
fn fsx_replays_saved_seeds() {
    let saved = include_str!("fsx-seeds.txt");
    let dir = shm_dir();
    for line in saved.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let (seed, ops) = (words.next().unwrap(), words.next().unwrap_or("2000"));
        // Any further words are options (--threads N --concurrent K).
        let rest: Vec<&str> = words.collect();
        fsx(dir.path(), &[&["--seed", seed, "--ops", ops], &rest[..]].concat());
    }
}

/// tests/programs/handover_races.py for `seconds` under the library in `dir`.
fn handover_races(dir: &Path, seconds: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/handover_races.py");
    let out = Command::new("timeout")
        .args(["120", script, dir.to_str().unwrap(), seconds])
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", dir)
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.trim() == "ok", "handover_races.py in {}:\n{text}", dir.display());
}

/// Found by the threads of fsx, with a file going from the engine to the kernel in one thread:
/// - its last descriptor closing while another thread opened it: the opener was served by the
///   kernel alone (the closing engine still held the log) and the closing checkpoint wrote
///   stale blocks over its writes, or its engine started at the data file's size with the
///   room kept for appends past the end; a stat meanwhile showed that size too;
/// - mapped while another thread read through its offset: the read moved an offset already
///   handed to the kernel.
#[test]
fn handover_races_with_open_stat_and_read() {
    handover_races(shm_dir().path(), "4");
    handover_races(tmp_dir().path(), "3");
}
