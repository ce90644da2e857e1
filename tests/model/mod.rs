//! The engine's operations and a model of what they do to a file, shared by the crash tests:
//! random operations, the model's contents, and the oracle of which states a crash may recover.
#![allow(dead_code)]

use std::ops::RangeInclusive;

use nvmmio::engine::{EngineSettings, Logging, ManagedFile};
use nvmmio::persist::sim::SimStorage;
use nvmmio::persist::Medium;
use proptest::prelude::*;

#[derive(Clone, Debug)]
pub enum Op {
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

pub fn op() -> impl Strategy<Value = Op> {
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

pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i * 7 % 251) as u8)).collect()
}

/// Small limits so that logs fill, grow and get checkpointed within a test (redo logging).
pub fn settings() -> EngineSettings {
    settings_for(Logging::Redo, 40)
}

/// As [`settings`], with the given logging (and hybrid threshold, in percent).
pub fn settings_for(logging: Logging, redo_above_write_share: u8) -> EngineSettings {
    // In-place writes from 8 KiB on: both write paths, and blocks that straddle the boundary;
    // and at any offset after 3 commits (appends of a file that commits often).
    EngineSettings {
        log_max: 64 << 10,
        checkpoint_at: 32 << 10,
        in_place_from: 8 << 10,
        in_place_after_commits: 3,
        logging,
        redo_above_write_share,
        undo_for_epochs_upto: 2,
    }
}

/// Redo, undo, or hybrid with a threshold that makes random sequences switch often (their
/// write share hovers around 70%).
pub fn logging() -> impl Strategy<Value = EngineSettings> {
    prop_oneof![
        Just(settings_for(Logging::Redo, 40)),
        Just(settings_for(Logging::Undo, 40)),
        (40u8..=95).prop_map(|share| settings_for(Logging::Hybrid, share)),
    ]
}

/// A managed file on simulated media (the log media may be wrapped, to weaken them).
pub type File<M> = ManagedFile<M, SimStorage>;

pub fn apply_model(model: &mut Vec<u8>, op: &Op) {
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

/// Runs `op` on `file`; a read must give the `model`'s bytes (the model with `op` applied).
pub fn run<M: Medium>(file: &mut File<M>, op: &Op, model: &[u8]) -> Result<(), TestCaseError> {
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

pub fn contents<M: Medium>(file: &File<M>) -> Vec<u8> {
    let mut buf = vec![0u8; file.size() as usize];
    let n = file.read(0, &mut buf).unwrap();
    assert_eq!(n, buf.len());
    buf
}

/// Runs operations on a file and the model side by side, noting each commit's states: a crash
/// during an operation must recover one of the states of the commits made before it ended,
/// from the last one before it started on (exactly what the last sync covered, or a later
/// commit point; never part of a write).
pub struct Oracle {
    model: Vec<u8>,
    /// Per commit (0: the file as opened), the states it may have made durable.
    committed: Vec<Vec<Vec<u8>>>,
}

impl Oracle {
    pub fn new(initial: &[u8]) -> Self {
        Oracle { model: initial.to_vec(), committed: vec![vec![initial.to_vec()]] }
    }

    /// The file's contents after the operations so far.
    pub fn model(&self) -> &[u8] {
        &self.model
    }

    /// Commits made so far (the file's own count, as the oracle saw it).
    pub fn commits(&self) -> usize {
        self.committed.len() - 1
    }

    /// Runs `op` on `file` and the model; returns the commits a crash during it may recover.
    pub fn run<M: Medium>(&mut self, file: &mut File<M>, op: &Op) -> Result<RangeInclusive<usize>, TestCaseError> {
        let commits_before = file.commits();
        // Commits inside an operation (a sync, or a checkpoint to make room before a write
        // is logged) cover everything before the operation's own effect; a truncate below
        // the committed size also commits itself, whole.
        let before = self.model.clone();
        apply_model(&mut self.model, op);
        run(file, op, &self.model)?;
        for _ in commits_before..file.commits() {
            let mut states = vec![before.clone()];
            if matches!(op, Op::Truncate(_)) {
                states.push(self.model.clone());
            }
            self.committed.push(states);
        }
        Ok(commits_before as usize..=file.commits() as usize)
    }

    /// Whether `found` is a state one of the `commits` may have made durable.
    pub fn accepts(&self, commits: &RangeInclusive<usize>, found: &[u8]) -> bool {
        commits.clone().any(|i| self.committed[i].iter().any(|state| state == found))
    }

    /// The sizes of every commit's states, for failure messages.
    pub fn sizes(&self) -> Vec<Vec<usize>> {
        self.committed.iter().map(|states| states.iter().map(Vec::len).collect()).collect()
    }

    /// Where `found` first differs from the states of `commits` (offset, or the sizes).
    pub fn difference(&self, commits: &RangeInclusive<usize>, found: &[u8]) -> String {
        let mut notes = Vec::new();
        for i in commits.clone() {
            for state in &self.committed[i] {
                let note = match found.iter().zip(state).position(|(a, b)| a != b) {
                    Some(at) => format!("commit {i}: first differs at byte {at} (block {})", at / 4096),
                    None => format!("commit {i}: {} bytes recovered, {} expected", found.len(), state.len()),
                };
                notes.push(note);
            }
        }
        notes.join("; ")
    }
}
