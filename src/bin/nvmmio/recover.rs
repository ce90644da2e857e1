//! `nvmmio recover DIR`: applies what crashed processes left in a managed directory's logs,
//! as the next open under nvmmio would, and reports what it did.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nvmmio::config::EnvSettings;
use nvmmio::engine::ManagedFile;
use nvmmio::persist::{FdStorage, LogFile};
use nvmmio::sys;

/// Every regular file under `dir` (not in `.nvmmio`), by (device, inode).
fn files_by_inode(dir: &Path, found: &mut HashMap<(u64, u64), PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() && entry.file_name() != ".nvmmio" {
            files_by_inode(&path, found);
        } else if meta.is_file() {
            found.insert((meta.dev(), meta.ino()), path);
        }
    }
}

pub fn run(dir: &Path) -> Result<ExitCode, String> {
    let meta_dir = dir.join(".nvmmio");
    let logs = match fs::read_dir(&meta_dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                // A second log (`.log2`, background checkpoints) is recovered with its first.
                let ext = p.extension().and_then(|e| e.to_str());
                ext == Some("log") || (ext == Some("log2") && !p.with_extension("log").exists())
            })
            .collect::<Vec<_>>(),
        Err(_) => {
            println!("{}: no logs, nothing to recover", dir.display());
            return Ok(ExitCode::SUCCESS);
        }
    };
    let mut files = HashMap::new();
    files_by_inode(dir, &mut files);
    let settings = EnvSettings::engine();
    let mut problems = 0;
    for log_path in logs {
        let name = log_path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string();
        if name.starts_with("pool-") {
            // An emptied log a process kept for reuse: remove it unless that process still runs.
            let in_use = OpenOptions::new()
                .read(true)
                .open(&log_path)
                .map(|f| {
                    let fd = f.into_raw_fd();
                    let busy = sys::flock(fd, libc::LOCK_EX | libc::LOCK_NB).is_err();
                    let _ = sys::close(fd);
                    busy
                })
                .unwrap_or(false);
            if !in_use {
                let _ = fs::remove_file(&log_path);
            }
            continue;
        }
        let key = name.split_once('-').and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)));
        let Some(key) = key else {
            println!("{}: not a log name (DEV-INODE.log), left alone", log_path.display());
            problems += 1;
            continue;
        };
        let Some(data_path) = files.get(&key) else {
            println!("{}: its file no longer exists (removed), log deleted", log_path.display());
            let _ = fs::remove_file(&log_path);
            continue;
        };
        let open = |p: &Path| OpenOptions::new().read(true).write(true).open(p).map(|f| f.into_raw_fd());
        let (data_fd, log_fd) = match (open(data_path), open(&log_path)) {
            (Ok(d), Ok(l)) => (d, l),
            (Err(e), _) | (_, Err(e)) => {
                println!("{}: {e}", data_path.display());
                problems += 1;
                continue;
            }
        };
        if sys::flock(log_fd, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            println!("{}: in use by a running process, left alone", data_path.display());
            continue;
        }
        let log = match LogFile::open(log_fd, 4096) {
            Ok(log) => log,
            Err(e) => {
                println!("{}: cannot map its log: {e}", data_path.display());
                problems += 1;
                continue;
            }
        };
        // Its second log, if the first is a `.log` that has one.
        let second_path = log_path.with_extension("log2");
        let second = if log_path != second_path && second_path.exists() {
            match open(&second_path).map_err(|e| sys::Errno(e.raw_os_error().unwrap_or(libc::EIO))).and_then(|fd| {
                sys::flock(fd, libc::LOCK_EX | libc::LOCK_NB)?;
                LogFile::open(fd, 4096)
            }) {
                Ok(log) => Some(log),
                Err(e) => {
                    println!("{}: cannot open its second log: {e}; left as it was", data_path.display());
                    problems += 1;
                    continue;
                }
            }
        } else {
            None
        };
        match ManagedFile::open_pair(FdStorage { fd: data_fd }, log, second, settings) {
            Ok((_, recovered)) => {
                println!(
                    "{}: {} committed records applied, {} uncommitted dropped",
                    data_path.display(),
                    recovered.applied,
                    recovered.discarded
                );
                let _ = fs::remove_file(&log_path);
                let _ = fs::remove_file(&second_path);
                let _ = fs::remove_file(&second_path);
            }
            Err(e) => {
                println!("{}: {e}; file left as it was, log kept at {}", data_path.display(), log_path.display());
                problems += 1;
            }
        }
        let _ = sys::close(data_fd);
    }
    Ok(if problems == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
