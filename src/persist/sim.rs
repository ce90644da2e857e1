//! Simulated media for crash tests: they keep what a program would see (`current`) apart from
//! what has reached durable storage (`durable`), and build the images a crash would leave.

use std::cell::Cell;
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
}

impl Timeline {
    pub fn new(crash_at: Option<u64>) -> Self {
        Timeline { tick: Rc::new(Cell::new(0)), crash_at: Rc::new(Cell::new(crash_at)) }
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

/// A memory region whose flushes and fences are recorded.
#[derive(Clone, Default, Debug)]
pub struct SimMedium {
    current: Vec<u8>,
    durable: Vec<u8>,
    /// Flushed but not yet fenced ranges.
    in_flight: Vec<(u64, u64)>,
    timeline: Timeline,
    /// (current, durable) at the crash instant, once reached.
    frozen: Option<(Vec<u8>, Vec<u8>)>,
}

impl SimMedium {
    pub fn new(len: u64) -> Self {
        Self::on(Timeline::default(), len)
    }

    pub fn on(timeline: Timeline, len: u64) -> Self {
        SimMedium {
            current: vec![0; len as usize],
            durable: vec![0; len as usize],
            in_flight: Vec::new(),
            timeline,
            frozen: None,
        }
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
        SimMedium { current: image.clone(), durable: image, ..Default::default() }
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
        fill(&mut self.current[offset as usize..offset as usize + len])
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        self.tick();
        let o = offset as usize;
        self.current[o..o + data.len()].copy_from_slice(data);
    }

    fn flush(&mut self, offset: u64, len: u64) -> Result<(), Errno> {
        self.tick();
        self.in_flight.push((offset, len));
        Ok(())
    }

    fn fence(&mut self) -> Result<(), Errno> {
        self.tick();
        for (o, l) in self.in_flight.drain(..) {
            let (o, l) = (o as usize, l as usize);
            self.durable[o..o + l].copy_from_slice(&self.current[o..o + l]);
        }
        Ok(())
    }
}

/// A data file whose `sync` marks what survives a power loss.
#[derive(Clone, Default, Debug)]
pub struct SimStorage {
    current: Vec<u8>,
    durable: Vec<u8>,
    timeline: Timeline,
    frozen: Option<(Vec<u8>, Vec<u8>)>,
}

impl SimStorage {
    pub fn with_contents(bytes: &[u8]) -> Self {
        Self::on(Timeline::default(), bytes)
    }

    pub fn on(timeline: Timeline, bytes: &[u8]) -> Self {
        SimStorage { current: bytes.to_vec(), durable: bytes.to_vec(), timeline, frozen: None }
    }

    pub fn contents(&self) -> &[u8] {
        &self.current
    }

    fn tick(&mut self) {
        if self.timeline.step() && self.frozen.is_none() {
            self.frozen = Some((self.current.clone(), self.durable.clone()));
        }
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
            self.current.resize(end, 0);
        }
        self.current[offset as usize..end].copy_from_slice(data);
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
            self.current.resize(end.next_multiple_of(1024), 0);
        }
        Ok(fill(&mut self.current[offset as usize..end]))
    }

    fn set_len(&mut self, len: u64) -> Result<(), Errno> {
        self.tick();
        self.current.resize(len as usize, 0);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), Errno> {
        self.tick();
        self.durable = self.current.clone();
        Ok(())
    }
}
