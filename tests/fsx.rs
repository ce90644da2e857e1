//! The fsx-style differential tester (scripts/fsx) under the library: random sequences of data
//! calls, truncates, syncs, reopens, dups, O_APPEND, vector calls, fallocate, copy_file_range
//! and mappings on a managed file and on a kernel file side by side, every result compared.
//! Seeds that once failed are kept in tests/fsx-seeds.txt and replayed here.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

fn fsx(base: &Path, args: &[&str]) {
    let (managed, kernel) = (base.join("managed"), base.join("kernel"));
    std::fs::create_dir_all(&managed).unwrap();
    std::fs::create_dir_all(&kernel).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fsx");
    let out = Command::new("timeout")
        .args(["300", script, "--managed", managed.to_str().unwrap(), "--kernel", kernel.to_str().unwrap()])
        .args(args)
        .env("LD_PRELOAD", library())
        .env("NVMMIO_DIRS", &managed)
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
fn fsx_replays_saved_seeds() {
    let saved = include_str!("fsx-seeds.txt");
    let dir = shm_dir();
    for line in saved.lines().filter(|l| !l.trim().is_empty() && !l.starts_with('#')) {
        let mut words = line.split_whitespace();
        let (seed, ops) = (words.next().unwrap(), words.next().unwrap_or("2000"));
        fsx(dir.path(), &["--seed", seed, "--ops", ops]);
    }
}
