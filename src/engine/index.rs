//! The block index: block number -> where the block's latest contents are. A radix tree over
//! the block number, as a page table is over addresses: 6 bits per level, 64-way nodes that
//! store only the children they have (a bit map and a packed vector), so that a dense run of
//! blocks costs about a word per block and a scattered one a small node per block, and the tree
//! grows in height only as far as the largest block needs. Lookups are a few shifts and
//! population counts; iteration is in block order (a checkpoint writes the data file in order
//! without sorting).

/// Bits of the block number taken at each level.
const BITS: u32 = 6;
const MASK: u64 = (1 << BITS) - 1;

/// The children a node has, packed in the order of their digit.
#[derive(Clone, Debug)]
struct Sparse<T> {
    present: u64,
    items: Vec<T>,
}

impl<T> Sparse<T> {
    const fn new() -> Self {
        Sparse { present: 0, items: Vec::new() }
    }

    /// Where the child with `digit` is (or would go) in `items`, and whether it is there.
    fn rank(&self, digit: u64) -> (usize, bool) {
        let below = self.present & ((1u64 << digit) - 1);
        (below.count_ones() as usize, self.present & (1 << digit) != 0)
    }

    fn get(&self, digit: u64) -> Option<&T> {
        let (i, there) = self.rank(digit);
        there.then(|| &self.items[i])
    }

    fn get_mut(&mut self, digit: u64) -> Option<&mut T> {
        let (i, there) = self.rank(digit);
        if there {
            Some(&mut self.items[i])
        } else {
            None
        }
    }

    /// The child with `digit`, made with `make` if it is not there.
    fn get_or_insert_with(&mut self, digit: u64, make: impl FnOnce() -> T) -> &mut T {
        let (i, there) = self.rank(digit);
        if !there {
            self.items.insert(i, make());
            self.present |= 1 << digit;
        }
        &mut self.items[i]
    }

    /// (digit, child) in digit order.
    fn entries(&self) -> impl Iterator<Item = (u64, &T)> {
        let mut bits = self.present;
        self.items.iter().map(move |item| {
            let digit = bits.trailing_zeros() as u64;
            bits &= bits - 1;
            (digit, item)
        })
    }

    fn is_empty(&self) -> bool {
        self.present == 0
    }

    /// Keeps the children for which `keep(digit, child)` is true.
    fn retain(&mut self, mut keep: impl FnMut(u64, &mut T) -> bool) {
        let mut bits = self.present;
        let mut digits = Vec::with_capacity(self.items.len());
        while bits != 0 {
            digits.push(bits.trailing_zeros() as u64);
            bits &= bits - 1;
        }
        let mut i = 0;
        let mut present = 0;
        self.items.retain_mut(|item| {
            let digit = digits[i];
            i += 1;
            let kept = keep(digit, item);
            if kept {
                present |= 1 << digit;
            }
            kept
        });
        self.present = present;
    }
}

#[derive(Clone, Debug)]
enum Node<V> {
    Inner(Sparse<Node<V>>),
    Leaf(Sparse<V>),
}

/// A map from block numbers to `V`, in block order.
#[derive(Clone, Debug)]
pub struct BlockIndex<V> {
    /// Covers block numbers below `1 << (BITS * (height + 1))`.
    root: Node<V>,
    height: u32,
    len: usize,
}

impl<V> Default for BlockIndex<V> {
    fn default() -> Self {
        BlockIndex { root: Node::Leaf(Sparse::new()), height: 0, len: 0 }
    }
}

fn digit(block: u64, level: u32) -> u64 {
    (block >> (BITS * level)) & MASK
}

impl<V> BlockIndex<V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn covers(&self, block: u64) -> bool {
        let bits = BITS * (self.height + 1);
        bits >= 64 || block >> bits == 0
    }

    pub fn get(&self, block: &u64) -> Option<&V> {
        let block = *block;
        if !self.covers(block) {
            return None;
        }
        let mut node = &self.root;
        let mut level = self.height;
        loop {
            match node {
                Node::Inner(children) => node = children.get(digit(block, level))?,
                Node::Leaf(values) => return values.get(digit(block, 0)),
            }
            level -= 1;
        }
    }

    pub fn get_mut(&mut self, block: &u64) -> Option<&mut V> {
        let block = *block;
        if !self.covers(block) {
            return None;
        }
        let mut node = &mut self.root;
        let mut level = self.height;
        loop {
            match node {
                Node::Inner(children) => node = children.get_mut(digit(block, level))?,
                Node::Leaf(values) => return values.get_mut(digit(block, 0)),
            }
            level -= 1;
        }
    }

    pub fn contains_key(&self, block: &u64) -> bool {
        self.get(block).is_some()
    }

    /// Sets the value of `block`; returns the one it had.
    pub fn insert(&mut self, block: u64, value: V) -> Option<V> {
        while !self.covers(block) {
            let old = std::mem::replace(&mut self.root, Node::Leaf(Sparse::new()));
            let mut children = Sparse::new();
            if !old.is_empty() {
                children.get_or_insert_with(0, || old);
            }
            self.root = Node::Inner(children);
            self.height += 1;
        }
        let mut node = &mut self.root;
        let mut level = self.height;
        let old = loop {
            match node {
                Node::Inner(children) => {
                    let leaf_below = level == 1;
                    node = children.get_or_insert_with(digit(block, level), || {
                        if leaf_below {
                            Node::Leaf(Sparse::new())
                        } else {
                            Node::Inner(Sparse::new())
                        }
                    });
                    level -= 1;
                }
                Node::Leaf(values) => break values.insert(digit(block, 0), value),
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Keeps the entries for which `keep(block, value)` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(u64, &mut V) -> bool) {
        let mut removed = 0;
        retain_in(&mut self.root, 0, &mut keep, &mut removed);
        self.len -= removed;
    }

    pub fn clear(&mut self) {
        *self = BlockIndex::default();
    }

    /// (block, value) in block order.
    pub fn iter(&self) -> Iter<'_, V> {
        let mut iter = Iter { stack: Vec::with_capacity(self.height as usize + 1), leaf: None };
        iter.descend(&self.root, 0);
        iter
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|(block, _)| block)
    }

    /// Every entry, in block order, leaving the index empty.
    pub fn drain(&mut self) -> std::vec::IntoIter<(u64, V)> {
        let root = std::mem::take(self).root;
        let mut out = Vec::new();
        drain_into(root, 0, &mut out);
        out.into_iter()
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        match self {
            Node::Inner(c) => c.is_empty(),
            Node::Leaf(v) => v.is_empty(),
        }
    }
}

fn retain_in<V>(node: &mut Node<V>, prefix: u64, keep: &mut impl FnMut(u64, &mut V) -> bool, removed: &mut usize) {
    match node {
        Node::Inner(children) => children.retain(|d, child| {
            retain_in(child, (prefix << BITS) | d, keep, removed);
            !child.is_empty()
        }),
        Node::Leaf(values) => values.retain(|d, value| {
            let kept = keep((prefix << BITS) | d, value);
            *removed += usize::from(!kept);
            kept
        }),
    }
}

fn drain_into<V>(node: Node<V>, prefix: u64, out: &mut Vec<(u64, V)>) {
    match node {
        Node::Inner(children) => {
            let digits = digits_of(children.present);
            for (d, child) in digits.into_iter().zip(children.items) {
                drain_into(child, (prefix << BITS) | d, out);
            }
        }
        Node::Leaf(values) => {
            let digits = digits_of(values.present);
            out.extend(digits.into_iter().zip(values.items).map(|(d, v)| ((prefix << BITS) | d, v)));
        }
    }
}

fn digits_of(mut bits: u64) -> Vec<u64> {
    let mut digits = Vec::with_capacity(bits.count_ones() as usize);
    while bits != 0 {
        digits.push(bits.trailing_zeros() as u64);
        bits &= bits - 1;
    }
    digits
}

/// In-order iterator over a [`BlockIndex`].
pub struct Iter<'a, V> {
    /// Inner nodes being walked: (children, next item, the node's block prefix).
    stack: Vec<(&'a Sparse<Node<V>>, usize, u64)>,
    /// The leaf being walked: (values, next item, remaining digit bits, prefix).
    leaf: Option<(&'a Sparse<V>, usize, u64, u64)>,
}

impl<'a, V> Iter<'a, V> {
    fn descend(&mut self, node: &'a Node<V>, prefix: u64) {
        match node {
            Node::Inner(children) => self.stack.push((children, 0, prefix)),
            Node::Leaf(values) => self.leaf = Some((values, 0, values.present, prefix)),
        }
    }
}

impl<'a, V> Iterator for Iter<'a, V> {
    type Item = (u64, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((values, i, bits, prefix)) = &mut self.leaf {
                if *bits != 0 {
                    let d = bits.trailing_zeros() as u64;
                    *bits &= *bits - 1;
                    let item = &values.items[*i];
                    *i += 1;
                    return Some(((*prefix << BITS) | d, item));
                }
                self.leaf = None;
            }
            let (children, i, prefix) = self.stack.last_mut()?;
            let Some((d, child)) = children.entries().nth(*i) else {
                self.stack.pop();
                continue;
            };
            *i += 1;
            let child_prefix = (*prefix << BITS) | d;
            self.descend(child, child_prefix);
        }
    }
}

impl<T> Sparse<T> {
    /// Sets the child with `digit`; returns the one it replaced.
    fn insert(&mut self, digit: u64, value: T) -> Option<T> {
        let (i, there) = self.rank(digit);
        if there {
            return Some(std::mem::replace(&mut self.items[i], value));
        }
        self.items.insert(i, value);
        self.present |= 1 << digit;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u64, u32),
        Get(u64),
        Update(u64, u32),
        RetainBelow(u64),
        RetainOdd,
        Clear,
        Drain,
    }

    fn block() -> impl Strategy<Value = u64> {
        prop_oneof![0..200u64, 0..70_000u64, any::<u64>().prop_map(|b| b >> 12), Just(u64::MAX >> 12)]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (block(), any::<u32>()).prop_map(|(b, v)| Op::Insert(b, v)),
            3 => block().prop_map(Op::Get),
            2 => (block(), any::<u32>()).prop_map(|(b, v)| Op::Update(b, v)),
            1 => block().prop_map(Op::RetainBelow),
            1 => Just(Op::RetainOdd),
            1 => Just(Op::Clear),
            1 => Just(Op::Drain),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]
        /// The index behaves as a sorted map under every operation the engine uses.
        #[test]
        fn matches_a_sorted_map(ops in proptest::collection::vec(op(), 1..120)) {
            let mut index = BlockIndex::default();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(b, v) => prop_assert_eq!(index.insert(b, v), model.insert(b, v)),
                    Op::Get(b) => {
                        prop_assert_eq!(index.get(&b), model.get(&b));
                        prop_assert_eq!(index.contains_key(&b), model.contains_key(&b));
                    }
                    Op::Update(b, v) => {
                        if let Some(x) = index.get_mut(&b) { *x = v; }
                        if let Some(x) = model.get_mut(&b) { *x = v; }
                    }
                    Op::RetainBelow(limit) => {
                        index.retain(|b, _| b < limit);
                        model.retain(|&b, _| b < limit);
                    }
                    Op::RetainOdd => {
                        index.retain(|_, v| { *v = v.wrapping_add(1); *v % 2 == 1 });
                        model.retain(|_, v| { *v = v.wrapping_add(1); *v % 2 == 1 });
                    }
                    Op::Clear => { index.clear(); model.clear(); }
                    Op::Drain => {
                        let got: Vec<(u64, u32)> = index.drain().collect();
                        let want: Vec<(u64, u32)> = std::mem::take(&mut model).into_iter().collect();
                        prop_assert_eq!(got, want);
                    }
                }
                prop_assert_eq!(index.len(), model.len());
                let got: Vec<(u64, u32)> = index.iter().map(|(b, &v)| (b, v)).collect();
                let want: Vec<(u64, u32)> = model.iter().map(|(&b, &v)| (b, v)).collect();
                prop_assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn dense_and_far_blocks() {
        let mut index = BlockIndex::default();
        for b in 0..5000u64 {
            index.insert(b, b * 2);
        }
        index.insert(1 << 40, 7);
        assert_eq!(index.get(&4999), Some(&9998));
        assert_eq!(index.get(&(1 << 40)), Some(&7));
        assert_eq!(index.get(&5000), None);
        assert_eq!(index.keys().take(3).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert_eq!(index.keys().last(), Some(1 << 40));
        index.retain(|b, _| b >= 4000);
        assert_eq!(index.len(), 1001);
        assert_eq!(index.iter().next(), Some((4000, &8000)));
    }
}
