//! The images a power failure could leave, rebuilt from a recorded trace of simulated media
//! ([`Step`]s). Knows nothing of the engine.
//!
//! Persistence model: media are cut into units (a cache line of 64 B on persistent memory, a
//! page of 4 KiB where the kernel writes back). What a fence made durable stays. A unit stored
//! to since it was last made durable may hold, after the failure, its durable bytes or any
//! version it had since (evicted or written back at any time, in any order with other units);
//! a fence makes durable the version each unit had when it was flushed. A data file's size is
//! one more such unit, made durable only by its sync. Growing a log is durable at once (the
//! simulated log medium does the same).
//!
//! Every image possible at any instant between two fences is also possible just before the
//! second (each unit can still be at any of its versions), so checking just before every
//! fence, and at the end, covers every instant.

use std::collections::BTreeMap;

use nvmmio::persist::sim::{Role, Step};

/// Unit sizes: how much of a medium reaches durability at once.
#[derive(Clone, Copy, Debug)]
pub struct Granularity {
    pub log: u64,
    pub data: u64,
}

/// Persistent memory: cache lines, for the log and the data file (a DAX mapping).
pub const CACHE_LINES: Granularity = Granularity { log: 64, data: 64 };
/// Page cache write-back (msync, fdatasync): pages.
pub const PAGES: Granularity = Granularity { log: 4096, data: 4096 };

/// One medium as the steps so far left it.
struct Region {
    role: Role,
    unit: u64,
    /// What a power failure keeps for sure (its length: the durable size).
    durable: Vec<u8>,
    /// What a reader sees now.
    current: Vec<u8>,
    /// Units stored to since they were last durable, by number: their versions since.
    pending: BTreeMap<u64, Versions>,
    /// Data files: the sizes set since the last sync, oldest first.
    pending_lens: Vec<u64>,
}

#[derive(Default)]
struct Versions {
    /// The unit's bytes after each store that changed it, oldest first, each `unit` long
    /// (zeros past the medium's end at the time).
    list: Vec<Vec<u8>>,
    /// How many of them a flush covered: the next fence makes the last of those durable.
    flushed: usize,
}

impl Region {
    fn unit_bytes(bytes: &[u8], unit: u64, number: u64) -> Vec<u8> {
        let mut out = vec![0u8; unit as usize];
        let start = ((number * unit) as usize).min(bytes.len());
        let end = (((number + 1) * unit) as usize).min(bytes.len());
        out[..end - start].copy_from_slice(&bytes[start..end]);
        out
    }

    /// Notes a new version of every unit overlapping `[from, to)` that changed.
    fn note_versions(&mut self, from: u64, to: u64) {
        if from >= to {
            return;
        }
        for number in from / self.unit..to.div_ceil(self.unit) {
            let now = Self::unit_bytes(&self.current, self.unit, number);
            let versions = self.pending.entry(number).or_default();
            let latest = match versions.list.last() {
                Some(latest) => latest.clone(),
                None => Self::unit_bytes(&self.durable, self.unit, number),
            };
            if now != latest {
                versions.list.push(now);
            } else if versions.list.is_empty() {
                self.pending.remove(&number);
            }
        }
    }

    fn apply(&mut self, step: &Step) {
        match step {
            Step::Store { offset, bytes, .. } => {
                let start = *offset as usize;
                self.current[start..start + bytes.len()].copy_from_slice(bytes);
                self.note_versions(*offset, offset + bytes.len() as u64);
            }
            Step::Resize { len, .. } => {
                let old = self.current.len() as u64;
                self.current.resize(*len as usize, 0);
                match self.role {
                    Role::Log => self.durable.resize(*len as usize, 0),
                    Role::Data => {
                        self.pending_lens.push(*len);
                        // Bytes cut away read as zeros if the file grows again.
                        self.note_versions(old.min(*len), old.max(*len));
                    }
                }
            }
            Step::Flush { offset, len, .. } => {
                if *len > 0 {
                    let (first, end) = (offset / self.unit, (offset + len).div_ceil(self.unit));
                    for versions in self.pending.range_mut(first..end).map(|(_, v)| v) {
                        versions.flushed = versions.list.len();
                    }
                }
            }
            Step::Fence { .. } => {
                let unit = self.unit as usize;
                let durable = &mut self.durable;
                self.pending.retain(|&number, versions| {
                    if versions.flushed > 0 {
                        let start = (number as usize * unit).min(durable.len());
                        let end = (start + unit).min(durable.len());
                        durable[start..end].copy_from_slice(&versions.list[versions.flushed - 1][..end - start]);
                        versions.list.drain(..versions.flushed);
                        versions.flushed = 0;
                    }
                    !versions.list.is_empty()
                });
            }
            Step::Sync { .. } => {
                self.durable = self.current.clone();
                self.pending.clear();
                self.pending_lens.clear();
            }
            Step::Joined { .. } => unreachable!("handled by the replay"),
        }
    }

    /// The distinct lengths a failure may leave (the durable one first).
    fn lengths(&self) -> Vec<u64> {
        let mut lengths = vec![self.durable.len() as u64];
        for &len in &self.pending_lens {
            if !lengths.contains(&len) {
                lengths.push(len);
            }
        }
        lengths
    }

    /// Per pending unit: its number and its distinct versions other than the durable bytes.
    fn unit_choices(&self) -> Vec<(u64, Vec<&[u8]>)> {
        let mut choices = Vec::new();
        for (&number, versions) in &self.pending {
            let durable = Self::unit_bytes(&self.durable, self.unit, number);
            let mut distinct: Vec<&[u8]> = Vec::new();
            for version in &versions.list {
                if version[..] != durable[..] && !distinct.contains(&&version[..]) {
                    distinct.push(version);
                }
            }
            if !distinct.is_empty() {
                choices.push((number, distinct));
            }
        }
        choices
    }
}

/// Gets each crash image (a medium's contents per medium) and a note of what it kept, made
/// on demand for failure messages.
pub type ImageCheck<'a> = dyn FnMut(&[Image], &dyn Fn() -> String) + 'a;

/// A medium's contents in a crash image.
pub struct Image {
    pub role: Role,
    pub bytes: Vec<u8>,
}

/// Which images [`Replay::images`] tries: the two extremes (nothing pending arrived; the latest
/// of everything did), then every other one if there are at most `exhaustive_up_to` in all,
/// else `samples` drawn at random.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    pub exhaustive_up_to: u64,
    pub samples: usize,
}

/// How many images [`Replay::images`] tried, and whether that was all there are.
pub struct Tried {
    pub images: usize,
    pub every_one: bool,
}

/// One independent choice a failure makes: which length, or which version of a unit.
struct Choice<'a> {
    region: usize,
    role: Role,
    /// `None`: the region's length.
    unit: Option<u64>,
    /// Index 0 is the durable state; `versions[i - 1]` the others.
    versions: Vec<&'a [u8]>,
    lengths: Vec<u64>,
}

impl Choice<'_> {
    fn options(&self) -> usize {
        1 + if self.unit.is_some() { self.versions.len() } else { self.lengths.len() - 1 }
    }
}

/// The media as a prefix of the trace left them.
#[derive(Default)]
pub struct Replay {
    regions: Vec<Region>,
}

impl Replay {
    /// Applies the next step of the trace.
    pub fn apply(&mut self, step: &Step, granularity: Granularity) {
        match step {
            Step::Joined { medium, role, contents } => {
                assert_eq!(*medium, self.regions.len(), "media join in order");
                let unit = match role {
                    Role::Log => granularity.log,
                    Role::Data => granularity.data,
                };
                self.regions.push(Region {
                    role: *role,
                    unit,
                    durable: contents.clone(),
                    current: contents.clone(),
                    pending: BTreeMap::new(),
                    pending_lens: Vec::new(),
                });
            }
            Step::Store { medium, .. }
            | Step::Resize { medium, .. }
            | Step::Flush { medium, .. }
            | Step::Fence { medium }
            | Step::Sync { medium } => self.regions[*medium].apply(step),
        }
    }

    /// The images a power failure now could leave, as many as `sampling` says, drawn with
    /// `seed`. `check` gets each image and a note of what it kept (for failure messages).
    pub fn images(&self, sampling: Sampling, seed: u64, check: &mut ImageCheck) -> Tried {
        let Sampling { exhaustive_up_to, samples } = sampling;
        let choices = self.choices();
        let combinations =
            choices.iter().try_fold(1u64, |product, choice| product.checked_mul(choice.options() as u64));
        let mut count = 0;
        let every_one = combinations.is_some_and(|n| n <= exhaustive_up_to);
        let mut emit = |picks: &[usize]| {
            let images = self.image(&choices, picks);
            check(&images, &|| describe(&choices, picks));
            count += 1;
        };
        // The extremes first: nothing pending arrived; the latest of everything did (what a
        // killed process leaves).
        let mut picks = vec![0usize; choices.len()];
        let latest: Vec<usize> = choices.iter().map(|c| c.options() - 1).collect();
        emit(&picks);
        if !choices.is_empty() {
            emit(&latest);
        }
        match combinations {
            Some(n) if every_one => {
                // Every other combination, counting in mixed radix.
                for _ in 0..n {
                    if picks.iter().any(|&p| p != 0) && picks != latest {
                        emit(&picks);
                    }
                    for (pick, choice) in picks.iter_mut().zip(&choices) {
                        *pick += 1;
                        if *pick < choice.options() {
                            break;
                        }
                        *pick = 0;
                    }
                }
            }
            _ => {
                let mut rng = SplitMix(seed);
                for _ in 0..samples {
                    // A share drawn per image: images that kept almost nothing or almost
                    // everything are as likely as even mixes.
                    let per_mille = rng.below(1001);
                    for (pick, choice) in picks.iter_mut().zip(&choices) {
                        let arrived = rng.below(1000) < per_mille;
                        *pick = if arrived { 1 + rng.below(choice.options() as u64 - 1) as usize } else { 0 };
                    }
                    emit(&picks);
                }
            }
        }
        Tried { images: count, every_one }
    }

    fn choices(&self) -> Vec<Choice<'_>> {
        let mut choices = Vec::new();
        for (index, region) in self.regions.iter().enumerate() {
            let lengths = region.lengths();
            if lengths.len() > 1 {
                choices.push(Choice { region: index, role: region.role, unit: None, versions: Vec::new(), lengths });
            }
            for (number, versions) in region.unit_choices() {
                let unit = Some(number);
                choices.push(Choice { region: index, role: region.role, unit, versions, lengths: Vec::new() });
            }
        }
        choices
    }

    fn image(&self, choices: &[Choice], picks: &[usize]) -> Vec<Image> {
        let mut images: Vec<Image> =
            self.regions.iter().map(|r| Image { role: r.role, bytes: r.durable.clone() }).collect();
        // Lengths first: versions of units are then cut to the chosen length.
        for (choice, &pick) in choices.iter().zip(picks) {
            if choice.unit.is_none() {
                images[choice.region].bytes.resize(choice.lengths[pick] as usize, 0);
            }
        }
        for (choice, &pick) in choices.iter().zip(picks) {
            if let (Some(number), true) = (choice.unit, pick > 0) {
                let bytes = &mut images[choice.region].bytes;
                let unit = self.regions[choice.region].unit as usize;
                let start = (number as usize * unit).min(bytes.len());
                let end = (start + unit).min(bytes.len());
                bytes[start..end].copy_from_slice(&choice.versions[pick - 1][..end - start]);
            }
        }
        images
    }
}

/// Which units and lengths an image took from after the last fence, per medium: how many
/// pending units arrived (their latest version unless noted), and the exceptions.
fn describe(choices: &[Choice], picks: &[usize]) -> String {
    let mut notes = Vec::new();
    let mut from = 0;
    while from < choices.len() {
        let region = choices[from].region;
        let to = from + choices[from..].iter().take_while(|c| c.region == region).count();
        let mut note = format!("medium {region} ({:?})", choices[from].role);
        let (mut arrived, mut stayed, mut older) = (Vec::new(), Vec::new(), Vec::new());
        for (choice, &pick) in choices[from..to].iter().zip(&picks[from..to]) {
            match choice.unit {
                None => note += &format!(" length {} of {:?}", choice.lengths[pick], choice.lengths),
                Some(number) if pick == 0 => stayed.push(number),
                Some(number) => {
                    arrived.push(number);
                    if pick < choice.versions.len() {
                        older.push(format!("{number} at version {pick} of {}", choice.versions.len()));
                    }
                }
            }
        }
        let total = arrived.len() + stayed.len();
        if total > 0 {
            // The shorter list says it all.
            let (which, list) =
                if arrived.len() <= stayed.len() { ("arrived", &arrived) } else { ("did not", &stayed) };
            let shown: Vec<String> = list.iter().take(16).map(u64::to_string).collect();
            let more = if list.len() > 16 { ", ..." } else { "" };
            note +=
                &format!(": {} of {total} pending units arrived; {which}: [{}{more}]", arrived.len(), shown.join(", "));
        }
        if !older.is_empty() {
            note += &format!("; older versions: {}", older.join(", "));
        }
        notes.push(note);
        from = to;
    }
    if notes.is_empty() {
        "nothing pending".to_string()
    } else {
        notes.join("; ")
    }
}

/// A small seeded generator (splitmix64): samples repeat from run to run.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the bias is negligible for the small n used here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
