//! A set of byte ranges kept sorted, disjoint and merged: what a data file is known to have
//! allocated (see `MappedStorage::reserve_holes`), so that a write into blocks seen once asks
//! the kernel nothing again.

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(u64, u64)>);

impl Ranges {
    /// Whether `start..end` lies wholly in the set (an empty range does).
    pub fn covers(&self, start: u64, end: u64) -> bool {
        if start >= end {
            return true;
        }
        // The one range that may hold `start`: the last that begins at or before it.
        let i = self.0.partition_point(|&(s, _)| s <= start);
        i > 0 && self.0[i - 1].1 >= end
    }

    /// Adds `start..end`, merged with the ranges it touches.
    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        // Ranges ending before `start` stay; those from `first` to `last` join it.
        let first = self.0.partition_point(|&(_, e)| e < start);
        let last = self.0.partition_point(|&(s, _)| s <= end);
        let (mut start, mut end) = (start, end);
        if first < last {
            start = start.min(self.0[first].0);
            end = end.max(self.0[last - 1].1);
        }
        self.0.splice(first..last, [(start, end)]);
    }

    /// The parts of `start..end` not in the set, in order.
    pub fn missing(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = start;
        let first = self.0.partition_point(|&(_, e)| e <= start);
        for &(s, e) in &self.0[first..] {
            if s >= end || at >= end {
                break;
            }
            if s > at {
                out.push((at, s));
            }
            at = at.max(e);
        }
        if at < end {
            out.push((at, end));
        }
        out
    }

    /// Forgets everything at or past `len`.
    pub fn cut(&mut self, len: u64) {
        self.0.retain_mut(|r| {
            r.1 = r.1.min(len);
            r.0 < r.1
        });
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserted_ranges_merge_and_cover() {
        let mut r = Ranges::default();
        r.insert(10, 20);
        r.insert(30, 40);
        assert!(r.covers(12, 20) && r.covers(30, 31) && !r.covers(15, 25) && !r.covers(5, 12));
        assert_eq!(r.missing(0, 50), vec![(0, 10), (20, 30), (40, 50)]);
        assert_eq!(r.missing(12, 35), vec![(20, 30)]);
        r.insert(20, 30);
        assert_eq!(r, Ranges(vec![(10, 40)]));
        r.insert(0, 5);
        r.insert(45, 50);
        r.insert(3, 46);
        assert_eq!(r, Ranges(vec![(0, 50)]));
        r.cut(25);
        assert_eq!(r, Ranges(vec![(0, 25)]));
        assert!(r.missing(0, 25).is_empty());
        r.cut(0);
        assert_eq!(r, Ranges::default());
    }
}
