//! `nvmmio recover DIR`: applies what crashed processes left in a managed directory's logs,
//! as the next open under nvmmio would, and reports what it did.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::os::fd::IntoRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use nvmmio::config::EnvSettings;
use nvmmio::engine::log::{Log, OpenError};
use nvmmio::engine::{EngineSettings, ManagedFile};
use nvmmio::persist::mark::{self, Mark, Marks};
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

/// What one run found, for the exit status.
#[derive(Default)]
struct Outcome {
    /// Logs that could not be applied now (no room, say): kept, applied by a later run.
    unfinished: usize,
    /// Damaged or lost logs: data may be missing; the files are left as they are.
    damaged: usize,
}

impl Outcome {
    /// 0: everything recovered; 1: some logs could not be applied yet (run again later);
    /// 2: a log is damaged or lost.
    fn exit_code(&self) -> ExitCode {
        match (self.damaged, self.unfinished) {
            (0, 0) => ExitCode::SUCCESS,
            (0, _) => ExitCode::from(1),
            _ => ExitCode::from(2),
        }
    }
}

fn open_rw(path: &Path) -> std::io::Result<i32> {
    OpenOptions::new().read(true).write(true).open(path).map(|f| f.into_raw_fd())
}

/// The files whose mark names a log that is gone (path of the first such log, by file).
fn lost_logs(dir: &Path, files: &HashMap<(u64, u64), PathBuf>) -> HashMap<(u64, u64), PathBuf> {
    let mut lost = HashMap::new();
    for (&key, path) in files {
        let Ok(fd) = OpenOptions::new().read(true).open(path).map(|f| f.into_raw_fd()) else { continue };
        if let Ok(Some(m)) = Mark::read(fd, key) {
            for bit in [mark::MAIN, mark::SECOND] {
                let log = dir.join(".nvmmio").join(mark::log_file_name(key, bit));
                if m.logs & bit != 0 && !log.exists() {
                    lost.insert(key, log);
                    break;
                }
            }
        }
        let _ = sys::close(fd);
    }
    lost
}

/// Cuts the log at `path` after its last commit record, or after the undo records that follow
/// it (to a whole page): on a full file system the room its unused tail held lets the replay
/// allocate the data file's blocks. Nothing past those is ever used.
fn trim_unused_tail(path: &Path, settings: EngineSettings) {
    let Ok(fd) = open_rw(path) else { return };
    let end = LogFile::open(fd, 4096)
        .ok()
        .and_then(|medium| Log::open(medium, settings.log_max).ok())
        .map(|opened| opened.log.needed_end().next_multiple_of(4096));
    if let (Some(end), Ok(meta)) = (end, fs::metadata(path)) {
        if meta.len() > end {
            if let Ok(f) = OpenOptions::new().write(true).open(path) {
                let _ = f.set_len(end);
            }
        }
    }
}

pub fn run(dir: &Path, accept_lost: bool) -> Result<ExitCode, String> {
    let meta_dir = dir.join(".nvmmio");
    let mut files = HashMap::new();
    files_by_inode(dir, &mut files);
    let lost = lost_logs(dir, &files);
    let mut outcome = Outcome::default();
    for (key, log) in &lost {
        let file = &files[key];
        if accept_lost {
            let removed = open_rw(file).map_err(|e| e.to_string()).and_then(|fd| {
                let r = Mark::remove(fd).map_err(|e| e.to_string());
                let _ = sys::close(fd);
                r
            });
            // The file's other log goes too: replayed alone later, it would change the file
            // accepted as it is into a mix.
            for bit in [mark::MAIN, mark::SECOND] {
                let _ = fs::remove_file(dir.join(".nvmmio").join(mark::log_file_name(*key, bit)));
            }
            match removed {
                Ok(()) => println!("{}: its log {} was lost; accepted as it is", file.display(), log.display()),
                Err(e) => {
                    println!("{}: cannot remove its mark: {e}", file.display());
                    outcome.damaged += 1;
                }
            }
            continue;
        }
        println!(
            "{}: its log {} is missing (deleted, or lost in a crash): the file may lack writes an fsync \
             acknowledged, or hold part of a write. Left as it is, and served through the kernel until accepted \
             with `nvmmio recover --accept-lost`",
            file.display(),
            log.display(),
        );
        outcome.damaged += 1;
    }
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
            return Ok(outcome.exit_code());
        }
    };
    let settings = EnvSettings::engine();
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
            outcome.damaged += 1;
            continue;
        };
        if lost.contains_key(&key) {
            continue;
        }
        let Some(data_path) = files.get(&key) else {
            println!("{}: its file no longer exists (removed), log deleted", log_path.display());
            let _ = fs::remove_file(&log_path);
            continue;
        };
        let (data_fd, log_fd) = match (open_rw(data_path), open_rw(&log_path)) {
            (Ok(d), Ok(l)) => (d, l),
            (Err(e), _) | (_, Err(e)) => {
                println!("{}: {e}", data_path.display());
                outcome.unfinished += 1;
                continue;
            }
        };
        if sys::flock(log_fd, libc::LOCK_EX | libc::LOCK_NB).is_err() {
            println!("{}: in use by a running process, left alone", data_path.display());
            let _ = sys::close(data_fd);
            let _ = sys::close(log_fd);
            continue;
        }
        if Mark::look(data_fd, key) == Ok(Marks::Unmarked) {
            // See `Marks::Unmarked`: the log is not this file's (the inode number was reused).
            println!("{}: stale log (its file has no mark), deleted", log_path.display());
            let _ = fs::remove_file(&log_path);
            let _ = fs::remove_file(log_path.with_extension("log2"));
            let _ = sys::close(data_fd);
            let _ = sys::close(log_fd);
            continue;
        }
        let second_path = log_path.with_extension("log2");
        let has_second = log_path != second_path && second_path.exists();
        trim_unused_tail(&log_path, settings);
        if has_second {
            trim_unused_tail(&second_path, settings);
        }
        let log = match LogFile::open(log_fd, 4096) {
            Ok(log) => log,
            Err(e) => {
                println!("{}: cannot map its log: {e}; file and log left as they are", data_path.display());
                outcome.unfinished += 1;
                let _ = sys::close(data_fd);
                continue;
            }
        };
        // Its second log, if the first is a `.log` that has one.
        let second = if has_second {
            match open_rw(&second_path).map_err(|e| sys::Errno(e.raw_os_error().unwrap_or(libc::EIO))).and_then(|fd| {
                sys::flock(fd, libc::LOCK_EX | libc::LOCK_NB)?;
                LogFile::open(fd, 4096)
            }) {
                Ok(log) => Some(log),
                Err(e) => {
                    println!("{}: cannot open its second log: {e}; left as it was", data_path.display());
                    outcome.unfinished += 1;
                    let _ = sys::close(data_fd);
                    continue;
                }
            }
        } else {
            None
        };
        match ManagedFile::open_pair(FdStorage { fd: data_fd }, log, second, settings) {
            Ok((_, recovered)) => {
                println!(
                    "{}: {} committed records applied, {} uncommitted dropped ({} undo images written back)",
                    data_path.display(),
                    recovered.applied,
                    recovered.discarded,
                    recovered.rolled_back
                );
                // The mark goes first: a crash before the logs are removed leaves voided logs.
                let _ = Mark::remove(data_fd);
                let _ = fs::remove_file(&log_path);
                let _ = fs::remove_file(&second_path);
            }
            Err(OpenError::Damaged(why)) => {
                println!(
                    "{}: damaged log ({why}): nothing applied, file and log left as they are at {}",
                    data_path.display(),
                    log_path.display()
                );
                outcome.damaged += 1;
            }
            Err(OpenError::Io(e)) => {
                println!(
                    "{}: its log could not be applied: {e}. The log is kept at {}; a later `nvmmio recover`, or \
                     open under nvmmio, applies it whole (opens under nvmmio fail until then). Room for the replay \
                     is reserved before it writes: without room the file is left as it was",
                    data_path.display(),
                    log_path.display()
                );
                outcome.unfinished += 1;
            }
        }
        let _ = sys::close(data_fd);
    }
    Ok(outcome.exit_code())
}
