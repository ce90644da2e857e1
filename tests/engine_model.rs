//! The engine against a simple in-memory model: random writes, reads, truncates, syncs and
//! checkpoints give the model's contents and sizes; and a crash at any instant (process kill or
//! power loss, chosen on the media's clock) recovers to a committed state: exactly what the last
//! sync covered, or a later commit point (a checkpoint that committed whole writes), never a
//! torn write.

use nvmmio::engine::{EngineSettings, ManagedFile};
use nvmmio::persist::sim::{Crash, SimMedium, SimStorage, Timeline};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Write {
        offset: u64,
        len: usize,
        seed: u8,
    },
    Read {
        offset: u64,
        len: usize,
    },
    Truncate(u64),
    Sync,
    Checkpoint,
    /// Freeze the log for a background checkpoint (the file goes on with its second log).
    BeginBackground,
    /// Apply the frozen log, as the background worker does, and take it back.
    ApplyBackground,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u64..20_000, 1usize..6000, any::<u8>()).prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
        3 => (0u64..24_000, 1usize..8000).prop_map(|(offset, len)| Op::Read { offset, len }),
        1 => (0u64..24_000).prop_map(Op::Truncate),
        3 => Just(Op::Sync),
        1 => Just(Op::Checkpoint),
        2 => Just(Op::BeginBackground),
        2 => Just(Op::ApplyBackground),
    ]
}

fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i * 7 % 251) as u8)).collect()
}

/// Small limits so that logs fill, grow and get checkpointed within a test.
fn settings() -> EngineSettings {
    // In-place writes from 8 KiB on: both write paths, and blocks that straddle the boundary.
    EngineSettings { log_max: 64 << 10, checkpoint_at: 32 << 10, in_place_from: 8 << 10 }
}

type File = ManagedFile<SimMedium, SimStorage>;

fn apply_model(model: &mut Vec<u8>, op: &Op) {
    match *op {
        Op::Write { offset, len, seed } => {
            let end = offset as usize + len;
            if model.len() < end {
                model.resize(end, 0);
            }
            model[offset as usize..end].copy_from_slice(&bytes(len, seed));
        }
        Op::Truncate(size) => model.resize(size as usize, 0),
        _ => {}
    }
}

fn run(file: &mut File, op: &Op, model: &[u8]) -> Result<(), TestCaseError> {
    match *op {
        Op::Write { offset, len, seed } => file.write(offset, &bytes(len, seed)).unwrap(),
        Op::Read { offset, len } => {
            let mut buf = vec![0xEEu8; len];
            let n = file.read(offset, &mut buf).unwrap();
            let start = (offset as usize).min(model.len());
            let end = (offset as usize + len).min(model.len());
            prop_assert_eq!(&buf[..n], &model[start..end]);
        }
        Op::Truncate(size) => file.truncate(size).unwrap(),
        Op::Sync => file.sync().unwrap(),
        Op::Checkpoint => file.checkpoint().unwrap(),
        Op::BeginBackground => drop(file.begin_background_checkpoint().unwrap()),
        Op::ApplyBackground => file.apply_frozen_here().unwrap(),
    }
    Ok(())
}

fn contents(file: &File) -> Vec<u8> {
    let mut buf = vec![0u8; file.size() as usize];
    let n = file.read(0, &mut buf).unwrap();
    assert_eq!(n, buf.len());
    buf
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn reads_and_sizes_match_the_model(initial in proptest::collection::vec(any::<u8>(), 0..10_000),
                                       ops in proptest::collection::vec(op(), 1..80)) {
        let (mut file, _) = File::open_pair(SimStorage::with_contents(&initial), SimMedium::new(4096), Some(SimMedium::new(4096)), settings()).unwrap();
        let mut model = initial.clone();
        for op in &ops {
            apply_model(&mut model, op);
            run(&mut file, op, &model)?;
            prop_assert_eq!(file.size(), model.len() as u64);
        }
        prop_assert_eq!(contents(&file), model.clone());
        // A clean checkpoint puts exactly the model in the data file.
        file.checkpoint().unwrap();
        prop_assert_eq!(file.data().contents(), &model[..]);
    }

    #[test]
    fn a_crash_anywhere_recovers_a_committed_state(initial in proptest::collection::vec(any::<u8>(), 0..8000),
                                                   ops in proptest::collection::vec(op(), 1..60),
                                                   crash_point in 0.0f64..1.0,
                                                   power_loss in any::<bool>()) {
        // First run: count the media's ticks.
        let timeline = Timeline::new(None);
        let (mut file, _) = File::open_pair(SimStorage::on(timeline.clone(), &initial), SimMedium::on(timeline.clone(), 4096), Some(SimMedium::on(timeline.clone(), 4096)), settings()).unwrap();
        let start = timeline.now();
        let mut model = initial.clone();
        for op in &ops {
            apply_model(&mut model, op);
            run(&mut file, op, &model)?;
        }
        let total = timeline.now() - start;
        prop_assume!(total > 0);
        let crash_at = start + ((total as f64 * crash_point) as u64).min(total - 1);

        // Second run, same operations, photographed at the crash instant; the oracle notes the
        // committed states and which of them the crash may land on.
        let timeline = Timeline::new(Some(crash_at));
        let (mut file, _) = File::open_pair(SimStorage::on(timeline.clone(), &initial), SimMedium::on(timeline.clone(), 4096), Some(SimMedium::on(timeline.clone(), 4096)), settings()).unwrap();
        let mut model = initial.clone();
        // Per commit, the states it may have made durable.
        let mut committed = vec![vec![initial.clone()]];
        let mut acceptable = None;
        for op in &ops {
            let (tick_before, commits_before) = (timeline.now(), file.commits());
            // Commits inside an operation (a sync, or a checkpoint to make room before a write
            // is logged) cover everything before the operation's own effect; a truncate below
            // the committed size also commits itself, whole.
            let before = model.clone();
            apply_model(&mut model, op);
            run(&mut file, op, &model)?;
            for _ in commits_before..file.commits() {
                let mut states = vec![before.clone()];
                if matches!(op, Op::Truncate(_)) {
                    states.push(model.clone());
                }
                committed.push(states);
            }
            if acceptable.is_none() && (tick_before..timeline.now()).contains(&crash_at) {
                acceptable = Some(commits_before as usize..=file.commits() as usize);
            }
        }
        let acceptable = acceptable.expect("the crash instant falls inside an operation");

        let crash = if power_loss { Crash::PowerLoss } else { Crash::ProcessKill };
        let (recovered, _) = File::open_pair(file.data().after(crash), file.log_medium().after(crash), file.other_log_medium().map(|m| m.after(crash)), settings()).unwrap();
        let found = contents(&recovered);
        prop_assert!(
            acceptable.clone().any(|i| committed[i].contains(&found)),
            "{:?} at tick {}: recovered {} bytes, acceptable states {:?} of sizes {:?}",
            crash, crash_at, found.len(), acceptable,
            committed.iter().map(|states| states.iter().map(Vec::len).collect::<Vec<_>>()).collect::<Vec<_>>()
        );
        // Recovery is idempotent: recovering the recovered image changes nothing.
        let (again, _) = File::open_pair(recovered.data().after(Crash::PowerLoss), recovered.log_medium().after(Crash::PowerLoss), recovered.other_log_medium().map(|m| m.after(Crash::PowerLoss)), settings()).unwrap();
        prop_assert_eq!(contents(&again), found);
    }
}
