//! The engine against a simple in-memory model: random writes, reads, truncates, syncs and
//! checkpoints give the model's contents and sizes; and a crash at any instant (process kill or
//! power loss, chosen on the media's clock) recovers to a committed state: exactly what the last
//! sync covered, or a later commit point (a checkpoint that committed whole writes), never a
//! torn write.

mod model;

use model::{apply_model, contents, op, run, settings, Oracle};
use nvmmio::persist::sim::{Crash, SimMedium, SimStorage, Timeline};
use proptest::prelude::*;

type File = model::File<SimMedium>;

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
        let mut oracle = Oracle::new(&initial);
        let mut acceptable = None;
        for op in &ops {
            let tick_before = timeline.now();
            let commits = oracle.run(&mut file, op)?;
            if acceptable.is_none() && (tick_before..timeline.now()).contains(&crash_at) {
                acceptable = Some(commits);
            }
        }
        let acceptable = acceptable.expect("the crash instant falls inside an operation");

        let crash = if power_loss { Crash::PowerLoss } else { Crash::ProcessKill };
        let (recovered, _) = File::open_pair(file.data().after(crash), file.log_medium().after(crash), file.other_log_medium().map(|m| m.after(crash)), settings()).unwrap();
        let found = contents(&recovered);
        prop_assert!(
            oracle.accepts(&acceptable, &found),
            "{:?} at tick {}: recovered {} bytes, acceptable states {:?} of sizes {:?}",
            crash, crash_at, found.len(), acceptable, oracle.sizes()
        );
        // Recovery is idempotent: recovering the recovered image changes nothing.
        let (again, _) = File::open_pair(recovered.data().after(Crash::PowerLoss), recovered.log_medium().after(Crash::PowerLoss), recovered.other_log_medium().map(|m| m.after(Crash::PowerLoss)), settings()).unwrap();
        prop_assert_eq!(contents(&again), found);
    }
}
