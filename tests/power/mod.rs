//! The power-loss checker: runs operations on a file over recording media, then, just before
//! every fence of the run and at its end, recovers each image a power failure could leave there
//! ([`images`]) and compares what it reads with the model's oracle ([`crate::model::Oracle`]).
//! Some of those recoveries run on recording media in turn and are themselves cut short by a
//! power failure at each of their fences: recovering again must still give an acceptable state.
#![allow(dead_code)]

pub mod images;
pub mod weakened;

use std::ops::{Range, RangeInclusive};
use std::panic::{catch_unwind, AssertUnwindSafe};

use images::{Granularity, Image, Replay, Sampling};
use nvmmio::persist::sim::{Role, SimMedium, SimStorage, Step, Timeline};
use nvmmio::persist::Medium;
use proptest::test_runner::TestCaseError;

use nvmmio::engine::EngineSettings;

use crate::model::{contents, settings, File, Op, Oracle};

/// How many images to recover.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// At each crash point of a run.
    pub images: Sampling,
    /// At each crash point, how many of its images (in the order tried: the two extremes
    /// first) get their recovery cut short in turn.
    pub crashed_recoveries: usize,
    /// At each crash point of such a recovery.
    pub recovery_images: Sampling,
}

/// A run of operations with its trace.
pub struct Recorded {
    ops: Vec<Op>,
    steps: Vec<Step>,
    /// Per operation: the steps it took.
    spans: Vec<Range<usize>>,
    /// Per operation: the commits a crash during it may recover.
    commits: Vec<RangeInclusive<usize>>,
    oracle: Oracle,
}

impl Recorded {
    /// Runs `ops` on a file holding `initial` with `settings` (redo, undo or hybrid logging),
    /// over media that record their steps; the file's two log media are made by `make_log`
    /// (plain or weakened).
    pub fn run<M: Medium>(
        initial: &[u8],
        ops: &[Op],
        settings: EngineSettings,
        make_log: &dyn Fn(&Timeline) -> M,
    ) -> Result<Recorded, TestCaseError> {
        let timeline = Timeline::recording();
        let data = SimStorage::on(timeline.clone(), initial);
        let (mut file, _) = File::open_pair(data, make_log(&timeline), Some(make_log(&timeline)), settings).unwrap();
        let mut oracle = Oracle::new(initial);
        let (mut spans, mut commits) = (Vec::new(), Vec::new());
        for op in ops {
            let start = timeline.recorded();
            commits.push(oracle.run(&mut file, op)?);
            spans.push(start..timeline.recorded());
        }
        Ok(Recorded { ops: ops.to_vec(), steps: timeline.steps(), spans, commits, oracle })
    }

    /// The operation under way at `step` (None: before the first, or after the last).
    fn operation_at(&self, step: usize) -> Option<usize> {
        self.spans.iter().position(|span| span.contains(&step))
    }

    /// The commits a crash just before `step` may recover.
    fn acceptable_at(&self, step: usize) -> RangeInclusive<usize> {
        match self.operation_at(step) {
            Some(op) => self.commits[op].clone(),
            None if self.spans.first().is_none_or(|first| step < first.start) => 0..=0,
            None => self.oracle.commits()..=self.oracle.commits(),
        }
    }

    fn describe_instant(&self, at: usize) -> String {
        let during = match self.operation_at(at) {
            Some(op) => format!("during operation {op} ({:?})", self.ops[op]),
            None if at == self.steps.len() => "at the end".to_string(),
            None => "while opening".to_string(),
        };
        format!("crash before step {at} ({}) {during}", describe_step(&self.steps, at))
    }
}

fn describe_step(steps: &[Step], at: usize) -> String {
    steps.get(at).map_or("the end".to_string(), |s| format!("{s:?}"))
}

/// What the checker did and found, over any number of runs.
#[derive(Default, Debug)]
pub struct Tally {
    pub runs: u64,
    /// Instants checked: just before each fence or sync, and each run's end.
    pub crash_points: u64,
    /// Crash points with few enough images to try them all.
    pub exhaustive_points: u64,
    pub images: u64,
    /// Recoveries cut short, at their own crash points, and the images recovered again.
    pub recovery_crash_points: u64,
    pub recovery_images: u64,
    pub violations: u64,
    /// The first few violations, described.
    pub examples: Vec<String>,
}

const EXAMPLES: usize = 3;

impl Tally {
    /// Adds another tally's counts (and examples, up to a few).
    pub fn add(&mut self, other: Tally) {
        self.runs += other.runs;
        self.crash_points += other.crash_points;
        self.exhaustive_points += other.exhaustive_points;
        self.images += other.images;
        self.recovery_crash_points += other.recovery_crash_points;
        self.recovery_images += other.recovery_images;
        self.violations += other.violations;
        let room = EXAMPLES.saturating_sub(self.examples.len());
        self.examples.extend(other.examples.into_iter().take(room));
    }

    pub fn summary(&self, label: &str) -> String {
        format!(
            "{label}: {} runs, {} crash points ({} enumerated whole), {} images recovered; \
             {} crash points inside recoveries, {} images recovered again; {} violations",
            self.runs,
            self.crash_points,
            self.exhaustive_points,
            self.images,
            self.recovery_crash_points,
            self.recovery_images,
            self.violations
        )
    }

    fn violation(&mut self, describe: impl FnOnce() -> String) {
        self.violations += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(describe());
        }
    }
}

/// Checks every crash point of `recorded` with units of `granularity`, adding to `tally`;
/// returns the violations found.
pub fn check(recorded: &Recorded, granularity: Granularity, budget: Budget, tally: &mut Tally) -> u64 {
    let before = tally.violations;
    tally.runs += 1;
    crash_points(&recorded.steps, granularity, &mut |at, replay| {
        let acceptable = recorded.acceptable_at(at);
        let mut crashed_recoveries = 0;
        // Seeded by the crash point: a failing run shows the same images again.
        let tried = replay.images(budget.images, 0x5eed_0000 ^ at as u64, &mut |images, kept| {
            let mut problem = judge(recover(images, &Timeline::default()), recorded, &acceptable);
            if problem.is_none() && crashed_recoveries < budget.crashed_recoveries {
                crashed_recoveries += 1;
                problem = crash_recovery(images, recorded, &acceptable, granularity, budget.recovery_images, tally);
            }
            if let Some(problem) = problem {
                tally.violation(|| {
                    format!(
                        "{}: {problem}\n  image kept: {}\n  operations: {:?}",
                        recorded.describe_instant(at),
                        kept(),
                        recorded.ops
                    )
                });
            }
        });
        tally.crash_points += 1;
        tally.images += tried.images as u64;
        tally.exhaustive_points += tried.every_one as u64;
    });
    tally.violations - before
}

/// Calls `visit` just before every fence or sync of `steps`, and at their end, with the media
/// as the steps before left them.
fn crash_points(steps: &[Step], granularity: Granularity, visit: &mut dyn FnMut(usize, &Replay)) {
    let mut replay = Replay::default();
    for (at, step) in steps.iter().enumerate() {
        if matches!(step, Step::Fence { .. } | Step::Sync { .. }) {
            visit(at, &replay);
        }
        replay.apply(step, granularity);
    }
    visit(steps.len(), &replay);
}

/// Recovers `images` on recording media, then every image a power failure during that
/// recovery could leave: each must recover a state of `acceptable` too (the program never saw
/// the first recovery's result). Returns the first problem.
fn crash_recovery(
    images: &[Image],
    recorded: &Recorded,
    acceptable: &RangeInclusive<usize>,
    granularity: Granularity,
    sampling: Sampling,
    tally: &mut Tally,
) -> Option<String> {
    let timeline = Timeline::recording();
    recover(images, &timeline).ok()?;
    let steps = timeline.steps();
    let mut problem = None;
    crash_points(&steps, granularity, &mut |at, replay| {
        let tried = replay.images(sampling, 0x7ec0_0000 ^ at as u64, &mut |images, kept| {
            if problem.is_none() {
                problem = judge(recover(images, &Timeline::default()), recorded, acceptable).map(|p| {
                    format!(
                        "recovery cut short before its step {at} ({}), then recovered again: {p}\n  \
                         that image kept: {}",
                        describe_step(&steps, at),
                        kept()
                    )
                });
            }
        });
        tally.recovery_crash_points += 1;
        tally.recovery_images += tried.images as u64;
    });
    problem
}

/// Opens the file on a crash image (recovery) and reads it whole; on a recording `timeline`
/// the media record what recovery does.
fn recover(images: &[Image], timeline: &Timeline) -> Result<Vec<u8>, String> {
    let data = images.iter().find(|i| i.role == Role::Data).expect("a data file");
    let mut logs =
        images.iter().filter(|i| i.role == Role::Log).map(|i| SimMedium::holding(timeline.clone(), &i.bytes));
    let (first, second) = (logs.next().expect("a log"), logs.next());
    let data = SimStorage::on(timeline.clone(), &data.bytes);
    let opened = catch_unwind(AssertUnwindSafe(|| {
        File::open_pair(data, first, second, settings()).map(|(file, _)| contents(&file)).map_err(|e| e.to_string())
    }));
    opened.unwrap_or_else(|_| Err("recovery panicked".to_string()))
}

/// What is wrong with a recovery's outcome, if anything, by the oracle.
fn judge(outcome: Result<Vec<u8>, String>, recorded: &Recorded, acceptable: &RangeInclusive<usize>) -> Option<String> {
    match outcome {
        Ok(found) if recorded.oracle.accepts(acceptable, &found) => None,
        Ok(found) => Some(format!(
            "recovered {} bytes, not a state of commits {acceptable:?} ({})",
            found.len(),
            recorded.oracle.difference(acceptable, &found)
        )),
        Err(why) => Some(format!("recovery failed: {why}")),
    }
}
