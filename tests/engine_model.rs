//! The engine against a simple in-memory model: random writes, reads, truncates, syncs and
//! checkpoints give the model's contents and sizes; and a crash at any instant (process kill or
//! power loss, chosen on the media's clock) recovers to a committed state: exactly what the last
//! sync covered, or a later commit point (a checkpoint that committed whole writes), never a
//! torn write. Each property runs with redo logging, undo logging, and the hybrid policy
//! (switching between them at syncs).

mod model;

use model::{apply_model, contents, op, run, settings_for, Oracle};
use nvmmio::engine::{EngineSettings, Logging};
use nvmmio::persist::sim::{Crash, SimMedium, SimStorage, Timeline};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

type File = model::File<SimMedium>;

fn open(initial: &[u8], timeline: &Timeline, settings: EngineSettings) -> File {
    let data = SimStorage::on(timeline.clone(), initial);
    let (log, second) = (SimMedium::on(timeline.clone(), 4096), SimMedium::on(timeline.clone(), 4096));
    File::open_pair(data, log, Some(second), settings).unwrap().0
}

/// Reopens (recovers) what `file`'s media would hold after `crash`.
fn recover(file: &File, crash: Crash, settings: EngineSettings) -> File {
    let second = file.other_log_medium().map(|m| m.after(crash));
    File::open_pair(file.data().after(crash), file.log_medium().after(crash), second, settings).unwrap().0
}

fn reads_and_sizes_match(settings: EngineSettings, initial: &[u8], ops: &[model::Op]) -> Result<(), TestCaseError> {
    let mut file = open(initial, &Timeline::default(), settings);
    let mut model = initial.to_vec();
    for op in ops {
        apply_model(&mut model, op);
        run(&mut file, op, &model)?;
        prop_assert_eq!(file.size(), model.len() as u64);
    }
    prop_assert_eq!(contents(&file), model.clone());
    // A clean checkpoint puts exactly the model in the data file.
    file.checkpoint().unwrap();
    prop_assert_eq!(file.data().contents(), &model[..]);
    Ok(())
}

fn crash_recovers_a_committed_state(
    settings: EngineSettings,
    initial: &[u8],
    ops: &[model::Op],
    crash_point: f64,
    power_loss: bool,
) -> Result<(), TestCaseError> {
    // First run: count the media's ticks.
    let timeline = Timeline::new(None);
    let mut file = open(initial, &timeline, settings);
    let start = timeline.now();
    let mut model = initial.to_vec();
    for op in ops {
        apply_model(&mut model, op);
        run(&mut file, op, &model)?;
    }
    let total = timeline.now() - start;
    prop_assume!(total > 0);
    let crash_at = start + ((total as f64 * crash_point) as u64).min(total - 1);

    // Second run, same operations, photographed at the crash instant; the oracle notes the
    // committed states and which of them the crash may land on.
    let timeline = Timeline::new(Some(crash_at));
    let mut file = open(initial, &timeline, settings);
    let mut oracle = Oracle::new(initial);
    let mut acceptable = None;
    for op in ops {
        let tick_before = timeline.now();
        let commits = oracle.run(&mut file, op)?;
        if acceptable.is_none() && (tick_before..timeline.now()).contains(&crash_at) {
            acceptable = Some(commits);
        }
    }
    let acceptable = acceptable.expect("the crash instant falls inside an operation");

    let crash = if power_loss { Crash::PowerLoss } else { Crash::ProcessKill };
    let recovered = recover(&file, crash, settings);
    let found = contents(&recovered);
    prop_assert!(
        oracle.accepts(&acceptable, &found),
        "{:?} at tick {}: recovered {} bytes, acceptable states {:?} of sizes {:?} ({})",
        crash,
        crash_at,
        found.len(),
        acceptable,
        oracle.sizes(),
        oracle.difference(&acceptable, &found)
    );
    // Recovery is idempotent: recovering the recovered image changes nothing.
    let again = recover(&recovered, Crash::PowerLoss, settings);
    prop_assert_eq!(contents(&again), found);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn reads_and_sizes_match_the_model(initial in proptest::collection::vec(any::<u8>(), 0..10_000),
                                       ops in proptest::collection::vec(op(), 1..80)) {
        reads_and_sizes_match(settings_for(Logging::Redo, 40), &initial, &ops)?;
    }

    #[test]
    fn reads_and_sizes_match_the_model_with_undo_logging(initial in proptest::collection::vec(any::<u8>(), 0..10_000),
                                                         ops in proptest::collection::vec(op(), 1..80)) {
        reads_and_sizes_match(settings_for(Logging::Undo, 40), &initial, &ops)?;
    }

    #[test]
    fn reads_and_sizes_match_the_model_with_hybrid_logging(initial in proptest::collection::vec(any::<u8>(), 0..10_000),
                                                           ops in proptest::collection::vec(op(), 1..80),
                                                           share in 40u8..=95) {
        reads_and_sizes_match(settings_for(Logging::Hybrid, share), &initial, &ops)?;
    }

    #[test]
    fn a_crash_anywhere_recovers_a_committed_state(initial in proptest::collection::vec(any::<u8>(), 0..8000),
                                                   ops in proptest::collection::vec(op(), 1..60),
                                                   crash_point in 0.0f64..1.0,
                                                   power_loss in any::<bool>()) {
        crash_recovers_a_committed_state(settings_for(Logging::Redo, 40), &initial, &ops, crash_point, power_loss)?;
    }

    #[test]
    fn a_crash_anywhere_recovers_a_committed_state_with_undo_logging(initial in proptest::collection::vec(any::<u8>(), 0..8000),
                                                                     ops in proptest::collection::vec(op(), 1..60),
                                                                     crash_point in 0.0f64..1.0,
                                                                     power_loss in any::<bool>()) {
        crash_recovers_a_committed_state(settings_for(Logging::Undo, 40), &initial, &ops, crash_point, power_loss)?;
    }

    #[test]
    fn a_crash_anywhere_recovers_a_committed_state_with_hybrid_logging(initial in proptest::collection::vec(any::<u8>(), 0..8000),
                                                                       ops in proptest::collection::vec(op(), 1..60),
                                                                       crash_point in 0.0f64..1.0,
                                                                       power_loss in any::<bool>(),
                                                                       share in 40u8..=95) {
        crash_recovers_a_committed_state(settings_for(Logging::Hybrid, share), &initial, &ops, crash_point, power_loss)?;
    }
}

/// The hybrid runs above do switch: over many random sequences both kinds of logging commit
/// epochs, and files change logging at syncs.
#[test]
fn hybrid_sequences_switch_logging() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = (proptest::collection::vec(op(), 1..80), 40u8..=95);
    let (mut switches, mut undo_commits, mut redo_commits) = (0, 0, 0);
    for _ in 0..300 {
        let (ops, share) = strategy.new_tree(&mut runner).unwrap().current();
        let mut file = open(&model::bytes(6000, 1), &Timeline::default(), settings_for(Logging::Hybrid, share));
        let mut model = model::bytes(6000, 1);
        for op in &ops {
            apply_model(&mut model, op);
            let (mode, commits) = (file.mode(), file.commits());
            run(&mut file, op, &model).unwrap();
            let committed = file.commits() - commits;
            match mode {
                nvmmio::engine::Mode::Undo => undo_commits += committed,
                nvmmio::engine::Mode::Redo => redo_commits += committed,
            }
        }
        switches += file.switches();
    }
    eprintln!("300 hybrid runs: {switches} switches, {redo_commits} redo and {undo_commits} undo commits");
    assert!(switches > 100 && undo_commits > 100 && redo_commits > 100);
}
