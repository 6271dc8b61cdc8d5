//! The right edge of a Merkle tree grown one leaf at a time: the roots of its perfect
//! subtrees, one per one bit of the leaf count (a "compact range" from the start).
//!
//! Takes leaf hashes in ledger order. Gives the RFC 6962 root of every prefix, equal to
//! [`merkle::root`] over the same leaves, holding O(log n) hashes instead of the
//! leaves: what lets a ledger of any size be verified as a stream.

use super::merkle::{self, Hash};

/// The perfect subtrees covering the leaves pushed so far.
#[derive(Debug, Clone, Default)]
pub struct Frontier {
    size: u64,
    /// Roots of the perfect subtrees the binary digits of `size` describe, largest
    /// (leftmost) first.
    subtrees: Vec<Hash>,
}

impl Frontier {
    /// The frontier after `size` leaves (a power of two) whose tree has root `root`.
    pub fn with_perfect_subtree(size: u64, root: Hash) -> Frontier {
        assert!(
            size.is_power_of_two(),
            "{size} leaves are not one perfect subtree"
        );
        Frontier {
            size,
            subtrees: vec![root],
        }
    }

    /// Adds the next leaf (its leaf hash).
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        // Each trailing one bit of the count before this leaf is a perfect subtree of
        // the same size as the one just completed: merge them.
        let mut count = self.size;
        while count & 1 == 1 {
            let left = self
                .subtrees
                .pop()
                .expect("one subtree per one bit of the size");
            hash = merkle::node_hash(&left, &hash);
            count >>= 1;
        }
        self.subtrees.push(hash);
        self.size += 1;
    }

    /// The number of leaves pushed.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// RFC 6962 `MTH` of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let Some((last, rest)) = self.subtrees.split_last() else {
            return merkle::empty_root();
        };
        // MTH splits at the largest power of two, so the smaller subtrees on the right
        // join first.
        rest.iter()
            .rev()
            .fold(*last, |right, left| merkle::node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| merkle::leaf_hash(&i.to_be_bytes()))
            .collect()
    }

    #[test]
    fn every_prefix_root_up_to_300_leaves_is_the_tree_root() {
        let leaves = leaves(300);
        let mut frontier = Frontier::default();
        assert_eq!(frontier.root(), merkle::root(&[]));
        for (i, leaf) in leaves.iter().enumerate() {
            frontier.push(*leaf);
            assert_eq!(frontier.size(), i as u64 + 1);
            assert_eq!(
                frontier.root(),
                merkle::root(&leaves[..=i]),
                "{} leaves",
                i + 1
            );
        }
    }

    #[test]
    fn large_trees_around_powers_of_two_have_the_tree_root() {
        let all = leaves(65_537);
        for n in [1023, 1024, 1025, 4097, 50_000, 65_536, 65_537] {
            let mut frontier = Frontier::default();
            all[..n].iter().for_each(|leaf| frontier.push(*leaf));
            assert_eq!(frontier.root(), merkle::root(&all[..n]), "{n} leaves");
            // At most one subtree per bit of the size.
            assert_eq!(frontier.subtrees.len(), n.count_ones() as usize);
        }
    }
}
