//! The index: which byte ranges of a file have newer data in the log, and where it is.
//! A range map from file offsets to log positions; a newer write replaces whatever it covers.

use std::collections::BTreeMap;
use std::ops::Range;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Extent {
    end: u64,
    /// Log position of the byte at the extent's start.
    log_pos: u64,
}

#[derive(Clone, Default, Debug)]
pub struct ExtentMap {
    map: BTreeMap<u64, Extent>,
}

impl ExtentMap {
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    /// Records that `range` now lives in the log from `log_pos` on.
    pub fn insert(&mut self, range: Range<u64>, log_pos: u64) {
        if range.is_empty() {
            return;
        }
        self.cut(range.clone());
        self.map.insert(
            range.start,
            Extent {
                end: range.end,
                log_pos,
            },
        );
    }

    /// Drops everything at or beyond `size` (a truncate).
    pub fn truncate(&mut self, size: u64) {
        self.cut(size..u64::MAX);
    }

    /// Removes `range` from every extent, keeping the parts outside it.
    fn cut(&mut self, range: Range<u64>) {
        // The extent starting before `range` may reach into it.
        let first = self
            .map
            .range(..range.start)
            .next_back()
            .map(|(&s, &e)| (s, e));
        let overlapping: Vec<(u64, Extent)> = first
            .filter(|(_, e)| e.end > range.start)
            .into_iter()
            .chain(
                self.map
                    .range(range.start..range.end)
                    .map(|(&s, &e)| (s, e)),
            )
            .collect();
        for (start, ext) in overlapping {
            self.map.remove(&start);
            if start < range.start {
                self.map.insert(
                    start,
                    Extent {
                        end: range.start,
                        log_pos: ext.log_pos,
                    },
                );
            }
            if ext.end > range.end {
                let shift = range.end - start;
                self.map.insert(
                    range.end,
                    Extent {
                        end: ext.end,
                        log_pos: ext.log_pos + shift,
                    },
                );
            }
        }
    }

    /// The logged pieces of `range`, in order: (file range, log position of its first byte).
    pub fn overlay(&self, range: Range<u64>) -> impl Iterator<Item = (Range<u64>, u64)> + '_ {
        let before = self
            .map
            .range(..range.start)
            .next_back()
            .filter(|(_, e)| e.end > range.start);
        before
            .into_iter()
            .chain(self.map.range(range.clone()))
            .filter_map(move |(&s, e)| {
                let start = s.max(range.start);
                let end = e.end.min(range.end);
                (start < end).then(|| (start..end, e.log_pos + (start - s)))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The model: the log position of every byte (None: not logged).
    fn apply_model(model: &mut Vec<Option<u64>>, op: &Op) {
        match *op {
            Op::Insert(start, len, pos) => {
                for i in 0..len {
                    let b = (start + i) as usize;
                    if model.len() <= b {
                        model.resize(b + 1, None);
                    }
                    model[b] = Some(pos + i);
                }
            }
            Op::Truncate(size) => model.truncate(size as usize),
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u64, u64),
        Truncate(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..300, 1u64..80, 0u64..10_000).prop_map(|(s, l, p)| Op::Insert(s, l, p)),
            1 => (0u64..400).prop_map(Op::Truncate),
        ]
    }

    proptest! {
        #[test]
        fn matches_a_byte_model(ops in proptest::collection::vec(op(), 1..60)) {
            let mut map = ExtentMap::default();
            let mut model = Vec::new();
            for op in &ops {
                match *op {
                    Op::Insert(s, l, p) => map.insert(s..s + l, p),
                    Op::Truncate(size) => map.truncate(size),
                }
                apply_model(&mut model, op);
            }
            let mut seen = vec![None; 400];
            for (range, pos) in map.overlay(0..400) {
                for (i, b) in range.enumerate() {
                    prop_assert!(seen[b as usize].is_none(), "overlapping extents");
                    seen[b as usize] = Some(pos + i as u64);
                }
            }
            model.resize(400, None);
            prop_assert_eq!(seen, model);
        }
    }

    #[test]
    fn partial_overlay_starts_inside_an_extent() {
        let mut map = ExtentMap::default();
        map.insert(10..20, 1000);
        let pieces: Vec<_> = map.overlay(15..30).collect();
        assert_eq!(pieces, vec![(15..20, 1005)]);
        map.insert(12..14, 2000);
        assert_eq!(map.len(), 3);
    }
}
