//! The engine on real files: a memory-mapped log (msync path) and a data file reached through
//! its descriptor, on tmpfs (/dev/shm) and on the disk file system under /tmp, with redo and
//! with undo logging.

mod common;

use std::fs::{self, OpenOptions};
use std::os::fd::IntoRawFd;
use std::path::Path;

use nvmmio::engine::{EngineSettings, Logging, ManagedFile, Recovered};
use nvmmio::persist::{FdStorage, LogFile};

type File = ManagedFile<LogFile, FdStorage>;

fn open(dir: &Path, logging: Logging) -> (File, Recovered) {
    let settings = EngineSettings {
        log_max: 1 << 20,
        checkpoint_at: 512 << 10,
        in_place_from: 16 << 10,
        logging,
        ..EngineSettings::default()
    };
    open_with(dir, settings)
}

fn open_with(dir: &Path, settings: EngineSettings) -> (File, Recovered) {
    let data = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join("data")).unwrap();
    let log =
        OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.join("data.log")).unwrap();
    let log = LogFile::open(log.into_raw_fd(), 4096).unwrap();
    File::open(FdStorage { fd: data.into_raw_fd() }, log, settings).map_err(|e| e.to_string()).unwrap()
}

fn read_all(file: &File) -> Vec<u8> {
    let mut buf = vec![0u8; file.size() as usize];
    assert_eq!(file.read(0, &mut buf).unwrap(), buf.len());
    buf
}

/// Both kinds of logging, each in a directory of its own under `make_dir`'s.
fn exercise_both(make_dir: &dyn Fn() -> tempfile::TempDir, expect_pmem: bool) {
    for logging in [Logging::Redo, Logging::Undo] {
        exercise(make_dir().path(), expect_pmem, logging);
    }
}

fn exercise(dir: &Path, expect_pmem: bool, logging: Logging) {
    fs::write(dir.join("data"), common::pattern(10_000, 1)).unwrap();
    let mut model = common::pattern(10_000, 1);
    let (mut file, recovered) = open(dir, logging);
    assert_eq!(recovered, Recovered::default());
    assert_eq!(file.log_medium().is_pmem(), expect_pmem, "persistence path");
    // Many writes: the log grows, fills and is checkpointed along the way.
    for i in 0..400u64 {
        let data = common::pattern(1000 + (i as usize * 37) % 3000, i);
        let offset = (i * 7919) % 40_000;
        file.write(offset, &data).unwrap();
        let end = offset as usize + data.len();
        if model.len() < end {
            model.resize(end, 0);
        }
        model[offset as usize..end].copy_from_slice(&data);
        if i % 10 == 0 {
            file.sync().unwrap();
        }
    }
    file.truncate(30_000).unwrap();
    model.truncate(30_000);
    file.sync().unwrap();
    assert_eq!(read_all(&file), model);
    // Committed, not yet checkpointed: an overwrite (logged) and an append (in place).
    file.write(100, b"synced").unwrap();
    model[100..106].copy_from_slice(b"synced");
    file.write(30_000, b"appended").unwrap();
    model.extend_from_slice(b"appended");
    file.sync().unwrap();

    // Writes after the last sync are dropped by a crash (here: the file is abandoned without
    // checkpoint, as a killed process would leave it); synced ones are recovered.
    file.write(0, b"never synced").unwrap();
    drop(file);
    let (file, recovered) = open(dir, logging);
    // Redo: the committed records replayed; undo: the unsynced write's old bytes put back.
    assert!(recovered.applied + recovered.rolled_back >= 1, "{recovered:?}");
    assert_eq!(read_all(&file), model);
    assert_eq!(fs::read(dir.join("data")).unwrap(), model, "recovery applied the log to the data file");

    // A checkpoint leaves exactly the contents in the data file and an empty log.
    let (mut file, _) = open(dir, logging);
    file.write(5, b"tail").unwrap();
    model[5..9].copy_from_slice(b"tail");
    file.checkpoint().unwrap();
    assert_eq!(file.log_used(), 0);
    assert_eq!(fs::read(dir.join("data")).unwrap(), model);
}

#[test]
fn engine_on_tmpfs() {
    if std::env::var_os("PMEM_IS_PMEM_FORCE").is_none() {
        exercise_both(&common::shm_dir, false);
    }
}

#[test]
fn engine_on_disk() {
    if std::env::var_os("PMEM_IS_PMEM_FORCE").is_none() {
        exercise_both(&common::tmp_dir, false);
    }
}

/// libpmem reads PMEM_IS_PMEM_FORCE when it starts, so the pmem path runs in a fresh copy of
/// this test binary with the variable set.
#[test]
fn engine_on_the_pmem_path() {
    if std::env::var_os("PMEM_IS_PMEM_FORCE").is_some() {
        return exercise_both(&common::shm_dir, true);
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "engine_on_the_pmem_path", "--nocapture"])
        .env("PMEM_IS_PMEM_FORCE", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("1 passed"), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
}

// ---- Records sized to the write ----

fn open_redo(dir: &Path) -> File {
    open(dir, Logging::Redo).0
}

#[test]
fn a_large_write_is_one_record() {
    let dir = common::shm_dir();
    fs::write(dir.path().join("data"), common::pattern(8 << 20, 1)).unwrap();
    let mut file = open_redo(dir.path());
    // 384 KiB: one record (below the test's checkpoint size, so the log keeps it).
    let data = common::pattern(3 << 17, 2);
    file.write(4096, &data).unwrap();
    file.sync().unwrap();
    // Data, one record header and a commit record (with 96 records of a block each, the
    // headers alone would take 3 KiB).
    let used = file.log_used();
    assert!(((3 << 17)..(3 << 17) + 1024).contains(&used), "log holds {used} bytes");
    let mut model = common::pattern(8 << 20, 1);
    model[4096..4096 + data.len()].copy_from_slice(&data);
    drop(file);
    let (file, recovered) = open(dir.path(), Logging::Redo);
    assert_eq!(recovered.applied, 2, "one block record and a commit: {recovered:?}");
    assert_eq!(read_all(&file), model);
}

#[test]
fn a_write_cut_short_by_a_bad_buffer_keeps_only_what_arrived() {
    for make_dir in [common::shm_dir as fn() -> tempfile::TempDir, common::tmp_dir] {
        let dir = make_dir();
        let mut model = common::pattern(64 << 10, 1);
        fs::write(dir.path().join("data"), &model).unwrap();
        let mut file = open_redo(dir.path());
        // Eight blocks from 1000 on; the program's buffer ends 2.5 blocks in (the copy stops
        // there, as a fault would stop it).
        let arrived = 10_240;
        let mut left = arrived;
        let written = file
            .write_with(1000, 8 * 4096, &mut |dst| {
                let n = dst.len().min(left);
                dst[..n].fill(0xAB);
                left -= n;
                n
            })
            .unwrap();
        assert_eq!(written, arrived);
        model[1000..1000 + arrived].fill(0xAB);
        assert_eq!(read_all(&file), model);
        // The blocks the write did not reach are not replayed with old contents over later
        // writes: one of them written now, committed, then recovered.
        file.write(6 * 4096, b"later").unwrap();
        model[6 * 4096..6 * 4096 + 5].copy_from_slice(b"later");
        file.sync().unwrap();
        drop(file);
        let (file, _) = open(dir.path(), Logging::Redo);
        assert_eq!(read_all(&file), model);
    }
}

#[test]
fn truncating_inside_a_large_write_keeps_the_blocks_below_the_cut() {
    for make_dir in [common::shm_dir as fn() -> tempfile::TempDir, common::tmp_dir] {
        let dir = make_dir();
        fs::write(dir.path().join("data"), b"").unwrap();
        let mut file = open_redo(dir.path());
        // Ten blocks logged (a small file: below the in-place threshold), one record.
        let mut model = common::pattern(40_960, 3);
        file.write(0, &model).unwrap();
        file.truncate(10_000).unwrap();
        model.truncate(10_000);
        assert_eq!(read_all(&file), model);
        // Extended again: the cut blocks read as zeros, in the file and after recovery.
        file.write(30_000, b"end").unwrap();
        model.resize(30_000, 0);
        model.extend_from_slice(b"end");
        assert_eq!(read_all(&file), model);
        file.sync().unwrap();
        drop(file);
        let (file, _) = open(dir.path(), Logging::Redo);
        assert_eq!(read_all(&file), model);
    }
}

#[test]
fn a_write_larger_than_the_log_limit_is_logged_whole_and_the_room_given_back() {
    use nvmmio::persist::Medium;
    for make_dir in [common::shm_dir as fn() -> tempfile::TempDir, common::tmp_dir] {
        let dir = make_dir();
        let mut model = common::pattern(4 << 20, 1);
        fs::write(dir.path().join("data"), &model).unwrap();
        let mut file = open_redo(dir.path());
        // 3 MiB in one write; the test's log limit is 1 MiB.
        let data = common::pattern(3 << 20, 5);
        file.write(777, &data).unwrap();
        model[777..777 + data.len()].copy_from_slice(&data);
        assert_eq!(read_all(&file), model);
        file.sync().unwrap();
        drop(file);
        let (mut file, _) = open(dir.path(), Logging::Redo);
        assert_eq!(read_all(&file), model);
        file.checkpoint().unwrap();
        assert!(file.log_medium().len() <= 1 << 20, "the log keeps {} bytes", file.log_medium().len());
    }
}

#[test]
fn appends_go_in_place_below_the_threshold_once_a_file_commits_often() {
    let dir = common::shm_dir();
    fs::write(dir.path().join("data"), b"").unwrap();
    let settings = EngineSettings { in_place_from: 1 << 20, logging: Logging::Redo, ..EngineSettings::default() };
    let mut file = open_with(dir.path(), settings).0;
    let mut model = Vec::new();
    for i in 0..10u8 {
        // A block each: a block with a slot in the log stays logged.
        let record = [b'a' + i; 4096];
        let at = model.len();
        file.write(at as u64, &record).unwrap();
        model.extend_from_slice(&record);
        // Below NVMMIO_IN_PLACE_FROM (1 MiB here) appends are logged until the file has made
        // 8 commits (the default); from then on they go straight into the data file.
        let data = fs::read(dir.path().join("data")).unwrap();
        let in_data_file = data.get(at..at + 4096) == Some(&record[..]);
        assert_eq!(in_data_file, i >= 8, "append {i}");
        file.sync().unwrap();
    }
    assert_eq!(read_all(&file), model);
    file.write(model.len() as u64, b"unsynced").unwrap();
    drop(file);
    let (file, _) = open_with(dir.path(), settings);
    assert_eq!(read_all(&file), model, "an append in place after the last commit is cut away by recovery");
}

/// An fsync copies what it committed into the data file so that readers through the kernel see
/// it: blocks that follow each other in the file but were logged by separate writes (in another
/// order in the log) go in one write of several pieces, each from its own log slot.
#[test]
fn an_fsync_publishes_blocks_logged_apart_in_file_order() {
    use nvmmio::persist::MappedStorage;
    let dir = common::shm_dir();
    let data = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.path().join("data"));
    let log = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.path().join("data.log"));
    let log = LogFile::open(log.unwrap().into_raw_fd(), 4096).unwrap();
    let storage = MappedStorage::new(data.unwrap().into_raw_fd()).unwrap();
    let settings = EngineSettings { logging: Logging::Redo, ..EngineSettings::default() };
    let (mut file, _) = ManagedFile::open(storage, log, settings).map_err(|e| e.to_string()).unwrap();
    // Block 1, then block 0, then blocks 2 and a part of 3: three records.
    let block = |seed: u8| -> Vec<u8> { (0..4096u32).map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed)).collect() };
    file.write(4096, &block(1)).unwrap();
    file.write(0, &block(0)).unwrap();
    let mut tail = block(2);
    tail.extend_from_slice(&block(3)[..1000]);
    file.write(8192, &tail).unwrap();
    file.sync().unwrap();
    let mut expected = block(0);
    expected.extend(block(1));
    expected.extend(tail);
    let through_kernel = fs::read(dir.path().join("data")).unwrap();
    assert_eq!(through_kernel.len(), expected.len());
    assert!(through_kernel == expected, "the data file differs from what the fsync covered");
}
