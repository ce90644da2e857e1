//! Writes with the file shared (`ManagedFile::write_shared`, the path threads take at once) on
//! real media (a mapped log and a mapped data file on tmpfs, as the preload has them), mixed
//! with writes that hold the file, reads, truncates, syncs and checkpoints in the foreground
//! and background, against the in-memory model, in redo, undo and hybrid logging; some writes
//! are cut short, as by a bad buffer. Each case ends with a crash (the file left as a killed
//! process leaves it), after a sync or not, and recovery to what the last commit covered.
//! Threads writing at once on a real file are tests/threads.rs.

mod common;
mod model;

use std::fs::OpenOptions;
use std::os::fd::IntoRawFd;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use model::{apply_model, bytes, op, settings_for, Op};
use nvmmio::engine::{Logging, ManagedFile, Mode};
use nvmmio::persist::{LogFile, MappedStorage};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

type File = ManagedFile<LogFile, MappedStorage>;

static SHARED: AtomicU64 = AtomicU64::new(0);
static SHARED_UNDO: AtomicU64 = AtomicU64::new(0);
static CUT_SHORT: AtomicU64 = AtomicU64::new(0);

fn log(dir: &std::path::Path, name: &str) -> LogFile {
    let f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join(name)).unwrap();
    LogFile::open(f.into_raw_fd(), 4096).unwrap()
}

/// Writes `len` bytes of `seed`'s pattern at `offset`, shared if the engine takes it so;
/// `short`: the source gives out after `short` bytes. Returns the count written.
fn write(file: &mut File, offset: u64, len: usize, seed: u8, short: Option<usize>) -> usize {
    let data = bytes(len, seed);
    let limit = short.unwrap_or(len);
    let mut at = 0;
    let mut fill = |dst: &mut [u8]| {
        let n = dst.len().min(limit - at);
        dst[..n].copy_from_slice(&data[at..at + n]);
        at += n;
        n
    };
    let undo = file.mode() == Mode::Undo;
    let shared = file.write_shared(offset, len, &mut fill);
    if shared.is_some() {
        SHARED.fetch_add(1, Relaxed);
        if undo {
            SHARED_UNDO.fetch_add(1, Relaxed);
        }
    }
    let written = match shared {
        Some(r) => r.unwrap(),
        None => file.write_with(offset, len, &mut fill).unwrap(),
    };
    assert_eq!(written, limit, "a write gives what its source had");
    written
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i))
}

/// Runs `ops` against the model; `synced_at_end`: the last act before the crash is a sync.
fn matches_model(
    logging: Logging,
    initial: &[u8],
    ops: &[(Op, bool)],
    synced_at_end: bool,
) -> Result<(), TestCaseError> {
    let dir = common::shm_dir();
    std::fs::write(dir.path().join("data"), initial).unwrap();
    let data = OpenOptions::new().read(true).write(true).open(dir.path().join("data")).unwrap();
    let storage = MappedStorage::new(data.into_raw_fd()).unwrap();
    let (mut file, _) = File::open(storage, log(dir.path(), "log"), settings_for(logging, 40)).unwrap();
    file.set_spare(log(dir.path(), "spare"));
    let mut model = initial.to_vec();
    // What the last commit covered: all a crash may leave after recovery.
    let (mut committed, mut commits) = (model.clone(), file.commits());
    for (op, cut) in ops {
        // A write that makes room in a full log commits what came before it, not itself.
        let before = matches!(op, Op::Write { .. }).then(|| model.clone());
        match *op {
            Op::Write { offset, len, seed } => {
                let short = cut.then_some(len / 2);
                let written = write(&mut file, offset, len, seed, short);
                if short.is_some() {
                    CUT_SHORT.fetch_add(1, Relaxed);
                }
                apply_model(&mut model, &Op::Write { offset, len: written, seed });
            }
            Op::Read { offset, len } => {
                let mut buf = vec![0xEEu8; len];
                let n = file.read(offset, &mut buf).unwrap();
                let (start, end) = ((offset as usize).min(model.len()), (offset as usize + len).min(model.len()));
                prop_assert!(
                    buf[..n] == model[start..end],
                    "read at {offset}: {:?}",
                    first_difference(&buf[..n], &model[start..end])
                );
            }
            Op::Truncate(size) => {
                file.truncate(size).unwrap();
                apply_model(&mut model, op);
            }
            Op::Sync => file.sync().unwrap(),
            Op::Checkpoint => file.checkpoint().unwrap(),
            Op::BeginBackground => drop(file.begin_background_checkpoint().unwrap()),
            Op::ApplyBackground => file.apply_frozen_here().unwrap(),
        }
        prop_assert_eq!(file.size(), model.len() as u64);
        if file.commits() != commits {
            (committed, commits) = (before.unwrap_or_else(|| model.clone()), file.commits());
        }
    }
    let mut all = vec![0u8; model.len()];
    prop_assert_eq!(file.read(0, &mut all).unwrap(), model.len());
    prop_assert!(all == model, "contents differ from byte {:?}", first_difference(&all, &model));
    // Left as a killed process leaves it, the file recovers to what the last commit covered:
    // the log's records (the room a short copy left unused among them included) scan to the
    // last commit, and undo records (unsealed ones of shared writers walked past) put back the
    // blocks an undo epoch changed.
    if synced_at_end {
        file.sync().unwrap();
        committed = model.clone();
    }
    let (data, log, spare) = file.discard().unwrap();
    let (mut file, _) = File::open(data, log, settings_for(logging, 40)).unwrap();
    drop(spare);
    let mut all = vec![0u8; committed.len()];
    prop_assert_eq!(file.size(), committed.len() as u64);
    prop_assert_eq!(file.read(0, &mut all).unwrap(), committed.len());
    prop_assert!(all == committed, "recovered contents differ from byte {:?}", first_difference(&all, &committed));
    // Checkpointed, the data file holds exactly that.
    file.checkpoint().unwrap();
    drop(file);
    let data = std::fs::read(dir.path().join("data")).unwrap();
    prop_assert!(data == committed, "the data file differs from byte {:?}", first_difference(&data, &committed));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn shared_and_held_writes_match_the_model(
        initial in proptest::collection::vec(any::<u8>(), 0..24_000),
        ops in proptest::collection::vec((op(), proptest::bool::weighted(0.1)), 1..80),
        logging in prop_oneof![Just(Logging::Redo), Just(Logging::Hybrid), Just(Logging::Undo)],
        synced_at_end in any::<bool>(),
    ) {
        matches_model(logging, &initial, &ops, synced_at_end)?;
    }
}

/// The property above must have gone through the shared path, short copies included (run
/// after it in the same process; on its own it runs a short version of it first).
#[test]
fn the_shared_path_is_exercised() {
    let initial = common::pattern(20_000, 3);
    let mut ops = Vec::new();
    for i in 0..200u64 {
        ops.push((
            Op::Write { offset: i * 997 % 16_000, len: 1 + (i as usize * 131) % 5000, seed: i as u8 },
            i % 9 == 0,
        ));
        if i % 10 == 9 {
            ops.push((Op::Sync, false));
        }
    }
    matches_model(Logging::Redo, &initial, &ops, true).unwrap();
    matches_model(Logging::Undo, &initial, &ops, false).unwrap();
    assert!(SHARED.load(Relaxed) > 50, "only {} writes were shared", SHARED.load(Relaxed));
    assert!(SHARED_UNDO.load(Relaxed) > 50, "only {} undo writes were shared", SHARED_UNDO.load(Relaxed));
    assert!(CUT_SHORT.load(Relaxed) > 0);
}
