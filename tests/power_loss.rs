//! Power failures at every instant of random operation sequences: the engine runs on media that
//! record their stores, flushes and fences; just before every fence (and at the end) the
//! checker recovers images that keep any subset of what was not yet fenced, in cache lines
//! (persistent memory) or pages (write-back), and each must read as a committed state: what the
//! last sync covered, or a later commit point, never part of a write. Then the same checker
//! must notice when the log loses an ordering point or its data checksums. Redo logging, undo
//! logging (old contents saved durably before each store in place) and the hybrid policy
//! (switching between them at syncs) are checked alike.

mod model;
mod power;

use std::cell::RefCell;

use model::{settings_for, Op};
use nvmmio::engine::{EngineSettings, Logging};
use nvmmio::persist::sim::SimMedium;
use power::images::{Granularity, Sampling, CACHE_LINES, PAGES};
use power::weakened::{Weakened, Weakening};
use power::{check, Budget, Recorded, Tally};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Images per crash point: all of them up to 1024 (ten units that may or may not have
/// arrived), else the two extremes and 64 drawn at random.
const IMAGES: Sampling = Sampling { exhaustive_up_to: 1024, samples: 64 };

/// One power failure per image.
const BUDGET: Budget = Budget { images: IMAGES, crashed_recoveries: 0, recovery_images: IMAGES };

/// Also a second one during recovery, for the first two images of each crash point (the
/// extremes: nothing pending arrived, all of it did), at each of the recovery's own fences.
const BUDGET_WITH_CRASHED_RECOVERIES: Budget =
    Budget { images: IMAGES, crashed_recoveries: 2, recovery_images: Sampling { exhaustive_up_to: 64, samples: 8 } };

/// Random sequences per test (a few seconds each in release mode).
const CASES: u32 = 600;

/// Writes from a few bytes (inside one cache line) to several blocks, anywhere in the first
/// 20 KB: below the committed size they are logged, past it from 8 KiB on they go in place.
fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u64..20_000, 1usize..200, any::<u8>()).prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
        4 => (0u64..20_000, 200usize..9000, any::<u8>()).prop_map(|(offset, len, seed)| Op::Write { offset, len, seed }),
        1 => (0u64..24_000, 1usize..8000).prop_map(|(offset, len)| Op::Read { offset, len }),
        1 => (0u64..24_000).prop_map(Op::Truncate),
        3 => Just(Op::Sync),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::BeginBackground),
        1 => Just(Op::ApplyBackground),
    ]
}

/// Redo logging, the engine's first.
fn redo() -> impl Strategy<Value = EngineSettings> {
    Just(settings_for(Logging::Redo, 40))
}

fn undo() -> impl Strategy<Value = EngineSettings> {
    Just(settings_for(Logging::Undo, 40))
}

/// Hybrid, with thresholds around the write share of random sequences: they switch often.
fn hybrid() -> impl Strategy<Value = EngineSettings> {
    (40u8..=95).prop_map(|share| settings_for(Logging::Hybrid, share))
}

fn random_runs(granularity: Granularity, budget: Budget, label: &str, logging: impl Strategy<Value = EngineSettings>) {
    let total = RefCell::new(Tally::default());
    let mut runner = TestRunner::new(Config { cases: CASES, source_file: Some(file!()), ..Config::default() });
    // The initial contents as (length, seed): failures print short.
    let runs = ((0usize..12_000, any::<u8>()), proptest::collection::vec(op(), 1..60), logging);
    let started = std::time::Instant::now();
    let result = runner.run(&runs, |((len, seed), ops, settings)| {
        let initial = model::bytes(len, seed);
        let recorded = Recorded::run(&initial, &ops, settings, &|timeline| SimMedium::on(timeline.clone(), 4096))?;
        let mut tally = Tally::default();
        check(&recorded, granularity, budget, &mut tally);
        let (violations, examples) = (tally.violations, tally.examples.join("\n"));
        total.borrow_mut().add(tally);
        prop_assert_eq!(violations, 0, "{}", examples);
        Ok(())
    });
    eprintln!("{} in {:.1?}", total.borrow().summary(label), started.elapsed());
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn power_failures_on_cache_lines_recover_committed_states() {
    random_runs(CACHE_LINES, BUDGET, "64 B units", redo());
}

#[test]
fn power_failures_on_pages_recover_committed_states() {
    random_runs(PAGES, BUDGET, "4 KiB units", redo());
}

/// Found the bug of [`a_failure_while_recovery_voids_the_logs_keeps_the_newer_commits`].
#[test]
fn power_failures_during_recovery_recover_committed_states() {
    random_runs(CACHE_LINES, BUDGET_WITH_CRASHED_RECOVERIES, "64 B units, recoveries cut short too", redo());
}

#[test]
fn power_failures_with_undo_logging_on_cache_lines_recover_committed_states() {
    random_runs(CACHE_LINES, BUDGET, "undo logging, 64 B units", undo());
}

#[test]
fn power_failures_with_undo_logging_on_pages_recover_committed_states() {
    random_runs(PAGES, BUDGET, "undo logging, 4 KiB units", undo());
}

/// Writing undo images back must be idempotent: a failure during it, then recovery again.
#[test]
fn power_failures_during_undo_recovery_recover_committed_states() {
    random_runs(CACHE_LINES, BUDGET_WITH_CRASHED_RECOVERIES, "undo logging, recoveries cut short too", undo());
}

#[test]
fn power_failures_with_hybrid_logging_recover_committed_states() {
    random_runs(
        CACHE_LINES,
        BUDGET_WITH_CRASHED_RECOVERIES,
        "hybrid logging, 64 B units, recoveries cut short too",
        hybrid(),
    );
    random_runs(PAGES, BUDGET, "hybrid logging, 4 KiB units", hybrid());
}

/// Regression test (proptest's smallest case of a bug this checker found). A crash while a
/// background checkpoint is under way leaves two logs: the frozen one (older generation) and
/// the current one (newer). Recovery applies both, syncs the data file, then voids them. It
/// used to void the second log it was given before the first: when the second was the newer, a crash between the two voids (a power
/// failure, or a kill: the header store that voids it is complete) leaves only the older log,
/// and the next recovery replays it over the data file: the newer log's acknowledged commit is
/// lost (here the byte at 0 reverts), and blocks only the newer log held would keep their newer
/// contents under the older size.
#[test]
fn a_failure_while_recovery_voids_the_logs_keeps_the_newer_commits() {
    use Op::*;
    let ops = [Write { offset: 0, len: 200, seed: 0 }, BeginBackground, Write { offset: 0, len: 1, seed: 1 }, Sync];
    let recorded =
        Recorded::run(&[], &ops, model::settings(), &|timeline| SimMedium::on(timeline.clone(), 4096)).unwrap();
    let mut tally = Tally::default();
    check(&recorded, CACHE_LINES, BUDGET_WITH_CRASHED_RECOVERIES, &mut tally);
    eprintln!("{}", tally.summary("recoveries cut short"));
    assert_eq!(tally.violations, 0, "{}", tally.examples.join("\n"));
}

/// Fixed sequences that commit logged blocks, bytes written in place, truncates and both kinds
/// of checkpoint: enough for a weakened log to show.
fn scenarios() -> Vec<(Vec<u8>, Vec<Op>)> {
    use Op::*;
    let initial = model::bytes(16 << 10, 3);
    let write = |offset, len, seed| Write { offset, len, seed };
    vec![
        (
            initial.clone(),
            vec![write(100, 5000, 1), Sync, write(9000, 70, 2), Sync, write(20_000, 3000, 3), Sync, Checkpoint],
        ),
        (
            initial.clone(),
            vec![write(0, 4096, 4), write(5000, 9000, 5), BeginBackground, write(1000, 10, 6), Sync, ApplyBackground],
        ),
        (initial, vec![write(4000, 200, 7), Truncate(6000), Sync, write(6000, 30, 8), Sync]),
    ]
}

fn weakened_runs(weakening: Weakening, granularity: Granularity) -> Tally {
    weakened_runs_with(weakening, granularity, model::settings())
}

fn weakened_runs_with(weakening: Weakening, granularity: Granularity, settings: EngineSettings) -> Tally {
    let mut tally = Tally::default();
    for (initial, ops) in scenarios() {
        let recorded = Recorded::run(&initial, &ops, settings, &|timeline| Weakened::on(timeline, weakening)).unwrap();
        check(&recorded, granularity, BUDGET, &mut tally);
    }
    tally
}

/// The shipped ordering passes the scenarios the weakened logs fail, with either logging.
#[test]
fn the_scenarios_pass_with_the_shipped_ordering() {
    for logging in [Logging::Redo, Logging::Undo] {
        for granularity in [CACHE_LINES, PAGES] {
            let tally = weakened_runs_with(Weakening::default(), granularity, settings_for(logging, 40));
            assert_eq!(tally.violations, 0, "{logging:?}: {}", tally.examples.join("\n"));
        }
    }
}

/// Undo logging: a write that stores in place before its undo records are durable. A power
/// failure may then keep the new bytes in the data file (written back early) and lose the old
/// ones from the log: the uncommitted write survives, or part of it.
#[test]
fn undo_records_not_durable_before_the_store_in_place_are_caught() {
    for (granularity, label) in [(CACHE_LINES, "64 B"), (PAGES, "4 KiB")] {
        let weakening = Weakening { undo_unfenced: true, ..Weakening::default() };
        let tally = weakened_runs_with(weakening, granularity, settings_for(Logging::Undo, 40));
        eprintln!("{}", tally.summary(&format!("undo records not fenced, {label} units")));
        eprintln!("first: {}", tally.examples.first().map_or("none", String::as_str));
        assert!(tally.violations > 0, "the checker missed undo records that were not durable before the store");
    }
}

/// A sync that returns before its commit record is durable loses an acknowledged write.
#[test]
fn an_unfenced_commit_record_is_caught() {
    for (granularity, label) in [(CACHE_LINES, "64 B"), (PAGES, "4 KiB")] {
        let tally = weakened_runs(Weakening { commit_unfenced: true, ..Weakening::default() }, granularity);
        eprintln!("{}", tally.summary(&format!("commit record not fenced, {label} units")));
        eprintln!("first: {}", tally.examples.first().map_or("none", String::as_str));
        assert!(tally.violations > 0, "the checker missed a commit record that was never fenced");
    }
}

/// Records that are neither fenced before their commit record nor checked whole by their
/// checksum: a power failure keeps the commit record and part of a record's data, and recovery
/// applies the torn block. Either defence alone suffices (a torn record whose checksum covers
/// its data stops the scan before the commit record; a fenced record is whole): an engine that
/// flushes records and commit record at once relies on the checksums alone, so for it
/// header-only checksums are caught too (the lines printed below show each weakening alone).
/// In pages a tear needs a record whose data fills exactly one page between the pages of its
/// header and of the next record; these scenarios never align so.
#[test]
fn unfenced_records_with_header_only_checksums_are_caught() {
    let both = Weakening { records_unfenced: true, header_only_checksums: true, ..Weakening::default() };
    let tally = weakened_runs(both, CACHE_LINES);
    eprintln!("{}", tally.summary("records not fenced, header-only checksums, 64 B units"));
    eprintln!("first: {}", tally.examples.first().map_or("none", String::as_str));
    assert!(tally.violations > 0, "the checker missed torn records behind a durable commit record");
    // For the record: each weakening alone, and both in pages.
    let alone = [
        (Weakening { records_unfenced: true, ..Weakening::default() }, "records not fenced"),
        (Weakening { header_only_checksums: true, ..Weakening::default() }, "header-only checksums"),
    ];
    for (granularity, label) in [(CACHE_LINES, "64 B"), (PAGES, "4 KiB")] {
        for (weakening, what) in alone {
            let tally = weakened_runs(weakening, granularity);
            eprintln!("{}", tally.summary(&format!("{what} alone, {label} units")));
            // One flush per commit leaves the data checksums as the only defence: they must
            // matter.
            if weakening.header_only_checksums && label == "64 B" {
                assert!(tally.violations > 0, "the checker missed torn records checked by their headers alone");
            }
        }
    }
    eprintln!("{}", weakened_runs(both, PAGES).summary("records not fenced, header-only checksums, 4 KiB units"));
}
