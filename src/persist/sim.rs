//! Simulated media for crash tests: they keep what a program would see (`current`) apart from
//! what has reached durable storage (`durable`), and build the images a crash would leave.
//! On a recording [`Timeline`] they also log every store, size change, flush, fence and sync
//! (a [`Step`]), so that a checker can rebuild every image a power failure could leave, not
//! only the flushed-and-fenced one.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::{Medium, Storage};
use crate::sys::Errno;

/// A clock shared by the media of one test: every mutating call (store, flush, fence, size
/// change, sync) is one tick. At the crash instant every medium's state is photographed: each
/// takes its photo before its first own tick at or after that instant (its state cannot have
/// changed since), or keeps its final state if it never ticks again.
#[derive(Clone, Default, Debug)]
pub struct Timeline {
    tick: Rc<Cell<u64>>,
    crash_at: Rc<Cell<Option<u64>>>,
    /// The steps of every medium on this timeline, in order (recording timelines only).
    trace: Option<Rc<RefCell<Trace>>>,
}

#[derive(Default, Debug)]
struct Trace {
    steps: Vec<Step>,
    /// Media that joined so far (the next one's number).
    media: usize,
}

/// Which kind of simulated medium a recorded one is: they persist differently.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Role {
    /// A log ([`SimMedium`]): durable through flush and fence; growing it is durable at once.
    Log,
    /// A data file ([`SimStorage`]): durable through sync, size changes included.
    Data,
}

/// One call that changed a medium on a recording [`Timeline`]. Media are numbered in the
/// order they joined.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Step {
    /// A medium joined holding `contents`, all durable.
    Joined { medium: usize, role: Role, contents: Vec<u8> },
    /// `bytes` were stored at `offset` (as they read once the store was done).
    Store { medium: usize, offset: u64, bytes: Vec<u8> },
    /// The length became `len`: grown with zeros, or cut.
    Resize { medium: usize, len: u64 },
    /// `[offset, offset + len)` started writing back.
    Flush { medium: usize, offset: u64, len: u64 },
    /// Every range flushed so far on the medium is durable.
    Fence { medium: usize },
    /// The data file's fdatasync: every store and size change so far is durable.
    Sync { medium: usize },
}

impl Timeline {
    pub fn new(crash_at: Option<u64>) -> Self {
        Timeline { tick: Rc::new(Cell::new(0)), crash_at: Rc::new(Cell::new(crash_at)), trace: None }
    }

    /// A timeline (with no crash instant) that records the [`Step`]s of its media.
    pub fn recording() -> Self {
        Timeline { trace: Some(Rc::default()), ..Timeline::new(None) }
    }

    /// How many steps were recorded so far (0 if this timeline does not record).
    pub fn recorded(&self) -> usize {
        self.trace.as_ref().map_or(0, |t| t.borrow().steps.len())
    }

    /// The steps recorded so far, in order.
    pub fn steps(&self) -> Vec<Step> {
        self.trace.as_ref().map_or_else(Vec::new, |t| t.borrow().steps.clone())
    }

    /// Numbers a new medium holding `contents` (None if this timeline does not record).
    fn join(&self, role: Role, contents: &[u8]) -> Option<usize> {
        let mut trace = self.trace.as_ref()?.borrow_mut();
        let medium = trace.media;
        trace.media += 1;
        trace.steps.push(Step::Joined { medium, role, contents: contents.to_vec() });
        Some(medium)
    }

    /// Records the step `make` builds for `medium` (only built when recording: stores copy
    /// their bytes).
    fn record(&self, medium: Option<usize>, make: impl FnOnce(usize) -> Step) {
        if let (Some(trace), Some(medium)) = (&self.trace, medium) {
            trace.borrow_mut().steps.push(make(medium));
        }
    }

    pub fn now(&self) -> u64 {
        self.tick.get()
    }

    /// Advances; true once the crash instant has come.
    fn step(&self) -> bool {
        let t = self.tick.get();
        self.tick.set(t + 1);
        self.crash_at.get().is_some_and(|c| t >= c)
    }
}

/// What a crash keeps of the bytes written but not yet made durable.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Crash {
    /// The process was killed: the kernel keeps every store (page cache, or the mapping).
    ProcessKill,
    /// Power was lost: only what was flushed and fenced survives.
    PowerLoss,
}

/// A memory region whose flushes and fences are tracked. (A clone shares the original's
/// timeline and, when recording, its number: clone only media that no longer change.)
#[derive(Clone, Default, Debug)]
pub struct SimMedium {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Flushed but not yet fenced ranges.
    in_flight: Vec<(u64, u64)>,
    timeline: Timeline,
    /// Its number on a recording timeline.
    id: Option<usize>,
    /// (current, durable) at the crash instant, once reached.
    frozen: Option<(Vec<u8>, Vec<u8>)>,
}

impl SimMedium {
    pub fn new(len: u64) -> Self {
        Self::on(Timeline::default(), len)
    }

    pub fn on(timeline: Timeline, len: u64) -> Self {
        Self::holding(timeline, &vec![0; len as usize])
    }

    /// A medium on `timeline` holding `bytes`, all durable (e.g. a crash image to recover).
    pub fn holding(timeline: Timeline, bytes: &[u8]) -> Self {
        SimMedium {
            id: timeline.join(Role::Log, bytes),
            current: bytes.to_vec(),
            durable: bytes.to_vec(),
            in_flight: Vec::new(),
            timeline,
            frozen: None,
        }
    }

    /// A medium holding `bytes`, all durable (e.g. a crash image), on no timeline.
    pub fn with_contents(bytes: &[u8]) -> Self {
        Self::holding(Timeline::default(), bytes)
    }

    fn tick(&mut self) {
        if self.timeline.step() && self.frozen.is_none() {
            self.frozen = Some((self.current.clone(), self.durable.clone()));
        }
    }

    /// The medium as it would be found after `crash` (at the timeline's crash instant if it
    /// was reached, else now).
    pub fn after(&self, crash: Crash) -> SimMedium {
        let (current, durable) = self.frozen.as_ref().map_or((&self.current, &self.durable), |(c, d)| (c, d));
        let image = match crash {
            Crash::ProcessKill => current.clone(),
            Crash::PowerLoss => durable.clone(),
        };
        SimMedium::with_contents(&image)
    }
}

impl Medium for SimMedium {
    fn len(&self) -> u64 {
        self.current.len() as u64
    }

    fn grow(&mut self, len: u64) -> Result<(), Errno> {
        self.tick();
        if len > self.len() {
            self.current.resize(len as usize, 0);
            self.durable.resize(len as usize, 0);
            self.timeline.record(self.id, |medium| Step::Resize { medium, len });
        }
        Ok(())
    }

    fn bytes(&self, offset: u64, len: usize) -> &[u8] {
        &self.current[offset as usize..offset as usize + len]
    }

    fn write_with(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> Result<(), Errno>,
    ) -> Result<(), Errno> {
        self.tick();
        let range = offset as usize..offset as usize + len;
        // Recorded even when `fill` fails: it may have stored part of the range.
        let filled = fill(&mut self.current[range.clone()]);
        self.timeline.record(self.id, |medium| Step::Store { medium, offset, bytes: self.current[range].to_vec() });
        filled
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.tick();
        let o = offset as usize;
        self.current[o..o + data.len()].copy_from_slice(data);
        self.timeline.record(self.id, |medium| Step::Store { medium, offset, bytes: data.to_vec() });
    }

    fn flush(&mut self, offset: u64, len: u64) -> Result<(), Errno> {
        self.tick();
        self.in_flight.push((offset, len));
        self.timeline.record(self.id, |medium| Step::Flush { medium, offset, len });
        Ok(())
    }

    fn fence(&mut self) -> Result<(), Errno> {
        self.tick();
        for (o, l) in self.in_flight.drain(..) {
            let (o, l) = (o as usize, l as usize);
            self.durable[o..o + l].copy_from_slice(&self.current[o..o + l]);
        }
        self.timeline.record(self.id, |medium| Step::Fence { medium });
        Ok(())
    }
}

/// A data file whose `sync` marks what survives a power loss. (Clones: as [`SimMedium`].)
#[derive(Clone, Default, Debug)]
pub struct SimStorage {
    current: Vec<u8>,
    durable: Vec<u8>,
    timeline: Timeline,
    /// Its number on a recording timeline.
    id: Option<usize>,
    frozen: Option<(Vec<u8>, Vec<u8>)>,
}

impl SimStorage {
    pub fn with_contents(bytes: &[u8]) -> Self {
        Self::on(Timeline::default(), bytes)
    }

    pub fn on(timeline: Timeline, bytes: &[u8]) -> Self {
        SimStorage {
            current: bytes.to_vec(),
            durable: bytes.to_vec(),
            id: timeline.join(Role::Data, bytes),
            timeline,
            frozen: None,
        }
    }

    pub fn contents(&self) -> &[u8] {
        &self.current
    }

    fn tick(&mut self) {
        if self.timeline.step() && self.frozen.is_none() {
            self.frozen = Some((self.current.clone(), self.durable.clone()));
        }
    }

    /// Sets the size (part of a tick).
    fn resize(&mut self, len: usize) {
        self.current.resize(len, 0);
        self.timeline.record(self.id, |medium| Step::Resize { medium, len: len as u64 });
    }

    /// The file as it would be found after `crash` (at the crash instant if reached).
    pub fn after(&self, crash: Crash) -> SimStorage {
        let (current, durable) = self.frozen.as_ref().map_or((&self.current, &self.durable), |(c, d)| (c, d));
        let image = match crash {
            Crash::ProcessKill => current.clone(),
            Crash::PowerLoss => durable.clone(),
        };
        SimStorage::with_contents(&image)
    }
}

impl Storage for SimStorage {
    fn size(&self) -> Result<u64, Errno> {
        Ok(self.current.len() as u64)
    }

    fn with_bytes(
        &self,
        offset: u64,
        len: usize,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), Errno>,
    ) -> Result<usize, Errno> {
        let start = (offset as usize).min(self.current.len());
        let n = len.min(self.current.len() - start);
        sink(&self.current[start..start + n])?;
        Ok(n)
    }

    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<(), Errno> {
        self.tick();
        let end = offset as usize + data.len();
        if end > self.current.len() {
            self.resize(end);
        }
        self.current[offset as usize..end].copy_from_slice(data);
        self.timeline.record(self.id, |medium| Step::Store { medium, offset, bytes: data.to_vec() });
        Ok(())
    }

    fn write_in_place(
        &mut self,
        offset: u64,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]) -> usize,
    ) -> Result<usize, Errno> {
        self.tick();
        let end = offset as usize + len;
        if end > self.current.len() {
            // Grown in steps, as the real storage does, so that tests see a file longer than
            // its logical size.
            self.resize(end.next_multiple_of(1024));
        }
        let range = offset as usize..end;
        let stored = fill(&mut self.current[range.clone()]);
        self.timeline.record(self.id, |medium| Step::Store { medium, offset, bytes: self.current[range].to_vec() });
        Ok(stored)
    }

    fn set_len(&mut self, len: u64) -> Result<(), Errno> {
        self.tick();
        self.resize(len as usize);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Errno> {
        self.tick();
        self.durable = self.current.clone();
        self.timeline.record(self.id, |medium| Step::Sync { medium });
        Ok(())
    }
}
