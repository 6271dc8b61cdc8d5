//! The ledger's Merkle tree, in the shape of RFC 6962 section 2.1 (Certificate
//! Transparency): leaf hashes `SHA-256(0x00 || entry)`, interior nodes
//! `SHA-256(0x01 || left || right)`, a tree of `n` leaves split at the largest power of
//! two below `n`, the empty tree hashing to `SHA-256("")`.
//!
//! Takes the leaf hashes of the entries, in ledger order. Gives the tree root, inclusion
//! proofs (`PATH`) and consistency proofs (`PROOF`) exactly as RFC 6962 defines them, and
//! verifies proofs with the algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2, so
//! proofs interoperate with other CT-style logs and their tooling.
//!
//! Computing a root is O(n) hashes with no allocation; a proof costs O(n) hashes (the
//! sibling subtrees it names cover each leaf at most once) and O(log n) memory.

use sha2::{Digest, Sha256};

/// A SHA-256 tree hash.
pub type Hash = [u8; 32];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProofError {
    #[error("entry index {index} is out of range for a tree of {size} entries")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error(
        "the older tree has {old_size} entries, more than the newer tree's {new_size}; \
         an append-only ledger never shrinks (are the two checkpoints swapped?)"
    )]
    OldSizeTooLarge { old_size: u64, new_size: u64 },
    #[error(
        "the inclusion proof for entry {index} in a tree of {size} entries has {actual} \
         hashes, but such a proof has exactly {expected}"
    )]
    InclusionProofLength {
        index: u64,
        size: u64,
        expected: usize,
        actual: usize,
    },
    #[error(
        "the consistency proof from {old_size} to {new_size} entries has {actual} hashes, \
         but such a proof has exactly {expected}"
    )]
    ConsistencyProofLength {
        old_size: u64,
        new_size: u64,
        expected: usize,
        actual: usize,
    },
    #[error(
        "the inclusion proof for entry {index} leads to root {}, not to the root {} of the \
         tree of {size} entries: the entry, the proof or the root has been altered",
        hex::encode(computed),
        hex::encode(expected)
    )]
    InclusionRootMismatch {
        index: u64,
        size: u64,
        expected: Hash,
        computed: Hash,
    },
    #[error(
        "the consistency proof leads to root {} for the older tree of {size} entries, but \
         its checkpoint has root {}: the older tree is not a prefix of the newer one, or \
         the proof has been altered",
        hex::encode(computed),
        hex::encode(expected)
    )]
    OldRootMismatch {
        size: u64,
        expected: Hash,
        computed: Hash,
    },
    #[error(
        "the consistency proof leads to root {} for the newer tree of {size} entries, but \
         its checkpoint has root {}: the newer tree does not extend the older one, or the \
         proof has been altered",
        hex::encode(computed),
        hex::encode(expected)
    )]
    NewRootMismatch {
        size: u64,
        expected: Hash,
        computed: Hash,
    },
}

/// `SHA-256(0x00 || data)`: the hash of one entry.
pub fn leaf_hash(data: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(data)
        .finalize()
        .into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous input hashes faster than three updates (about 15% in release).
    let mut input = [0u8; 65];
    input[0] = 0x01;
    input[1..33].copy_from_slice(left);
    input[33..].copy_from_slice(right);
    Sha256::digest(input).into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest(b"").into()
}

/// RFC 6962 `MTH`: the root of the tree over `leaves` (leaf hashes, in order).
pub fn root(leaves: &[Hash]) -> Hash {
    // After i leaves, `stack` holds the roots of the perfect subtrees that the binary
    // digits of i describe, largest first: at most one per bit, so it never grows.
    let mut stack = [[0u8; 32]; usize::BITS as usize];
    let mut depth = 0;
    for (before, leaf) in leaves.iter().enumerate() {
        let mut hash = *leaf;
        // Each trailing one bit of the count before this leaf is a perfect subtree of
        // the same size as the one just completed: merge them.
        let mut count = before;
        while count & 1 == 1 {
            depth -= 1;
            hash = node_hash(&stack[depth], &hash);
            count >>= 1;
        }
        stack[depth] = hash;
        depth += 1;
    }
    let Some((last, rest)) = stack[..depth].split_last() else {
        return empty_root();
    };
    // MTH splits at the largest power of two, so the smaller subtrees on the right join
    // first.
    rest.iter()
        .rev()
        .fold(*last, |right, left| node_hash(left, &right))
}

/// RFC 6962 `PATH(index, leaves)`: the inclusion proof of one entry, sibling hashes from
/// the leaf up to the root.
pub fn inclusion_proof(leaves: &[Hash], index: usize) -> Result<Vec<Hash>, ProofError> {
    if index >= leaves.len() {
        return Err(ProofError::IndexOutOfRange {
            index: index as u64,
            size: leaves.len() as u64,
        });
    }
    // Walk down from the root to the leaf, taking the root of the other side at each
    // split; the proof lists them bottom-up.
    let mut proof = Vec::with_capacity(usize::BITS as usize);
    let (mut lo, mut hi) = (0, leaves.len());
    while hi - lo > 1 {
        let k = split(hi - lo);
        if index < lo + k {
            proof.push(root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            proof.push(root(&leaves[lo..lo + k]));
            lo += k;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// RFC 6962 `PROOF(old_size, leaves)`: the consistency proof that the tree of the first
/// `old_size` entries is a prefix of the tree over all of `leaves`. Empty when there is
/// nothing to prove (`old_size` 0 or `leaves.len()`).
pub fn consistency_proof(leaves: &[Hash], old_size: usize) -> Result<Vec<Hash>, ProofError> {
    let new_size = leaves.len();
    if old_size > new_size {
        return Err(ProofError::OldSizeTooLarge {
            old_size: old_size as u64,
            new_size: new_size as u64,
        });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    // RFC 6962 SUBPROOF(m, D[lo:hi], b), unrolled: `old_in_range` is m, the old leaves
    // inside [lo, hi); `old_root_known` is b, true while [lo, hi) starts at 0, so that a
    // subtree holding exactly the old leaves is the old root, which the verifier has.
    let mut proof = Vec::with_capacity(usize::BITS as usize);
    let (mut lo, mut hi, mut old_in_range) = (0, new_size, old_size);
    let mut old_root_known = true;
    loop {
        if old_in_range == hi - lo {
            if !old_root_known {
                proof.push(root(&leaves[lo..hi]));
            }
            break;
        }
        let k = split(hi - lo);
        if old_in_range <= k {
            proof.push(root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            proof.push(root(&leaves[lo..lo + k]));
            lo += k;
            old_in_range -= k;
            old_root_known = false;
        }
    }
    proof.reverse();
    Ok(proof)
}

/// Verifies that `leaf` is entry `index` of the tree of `size` entries with root `root`
/// (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let climb = Climb {
        node: index,
        last: size - 1,
    };
    let expected = climb.clone().count();
    if proof.len() != expected {
        return Err(ProofError::InclusionProofLength {
            index,
            size,
            expected,
            actual: proof.len(),
        });
    }
    let computed = proof
        .iter()
        .zip(climb)
        .fold(*leaf, |hash, (sibling, side)| match side {
            Side::Left => node_hash(sibling, &hash),
            Side::Right => node_hash(&hash, sibling),
        });
    if computed != *root {
        return Err(ProofError::InclusionRootMismatch {
            index,
            size,
            expected: *root,
            computed,
        });
    }
    Ok(())
}

/// Verifies that the tree of `old_size` entries with root `old_root` is a prefix of the
/// tree of `new_size` entries with root `new_root` (RFC 9162 section 2.1.4.2). Equal
/// sizes need equal roots and an empty proof; the empty tree (whose root must be
/// `SHA-256("")`) is a prefix of every tree, with an empty proof.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    let length_error = |expected| ProofError::ConsistencyProofLength {
        old_size,
        new_size,
        expected,
        actual: proof.len(),
    };
    if old_size > new_size {
        return Err(ProofError::OldSizeTooLarge { old_size, new_size });
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Err(length_error(0));
        }
        if old_size == 0 && *old_root != empty_root() {
            return Err(ProofError::OldRootMismatch {
                size: 0,
                expected: *old_root,
                computed: empty_root(),
            });
        }
        if old_size == new_size && old_root != new_root {
            return Err(ProofError::NewRootMismatch {
                size: new_size,
                expected: *new_root,
                computed: *old_root,
            });
        }
        return Ok(());
    }
    // An old tree of a power-of-two size is a complete subtree of the new one: its root
    // is the proof's implicit first hash (RFC 9162 step 2).
    let implicit_old_root = old_size.is_power_of_two();
    let (mut node, mut last) = (old_size - 1, new_size - 1);
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }
    let climb = Climb { node, last };
    let expected = climb.clone().count() + usize::from(!implicit_old_root);
    if proof.len() != expected {
        return Err(length_error(expected));
    }
    let (seed, rest) = if implicit_old_root {
        (old_root, proof)
    } else {
        proof.split_first().ok_or_else(|| length_error(expected))?
    };
    let (mut old_computed, mut new_computed) = (*seed, *seed);
    for (hash, side) in rest.iter().zip(climb) {
        match side {
            Side::Left => {
                old_computed = node_hash(hash, &old_computed);
                new_computed = node_hash(hash, &new_computed);
            }
            Side::Right => new_computed = node_hash(&new_computed, hash),
        }
    }
    if old_computed != *old_root {
        return Err(ProofError::OldRootMismatch {
            size: old_size,
            expected: *old_root,
            computed: old_computed,
        });
    }
    if new_computed != *new_root {
        return Err(ProofError::NewRootMismatch {
            size: new_size,
            expected: *new_root,
            computed: new_computed,
        });
    }
    Ok(())
}

/// The largest power of two strictly below `n` (n >= 2): where MTH splits `n` leaves.
fn split(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Which side of the running hash a proof hash goes on.
#[derive(Debug, Clone, Copy)]
enum Side {
    Left,
    Right,
}

/// The walk of RFC 9162's verification loops from a node up to the root: `node` and
/// `last` are the RFC's `fn` and `sn`, the index of the current node and of the last
/// node on its level. Yields one side per proof hash; its length is the proof length.
#[derive(Debug, Clone)]
struct Climb {
    node: u64,
    last: u64,
}

impl Iterator for Climb {
    type Item = Side;

    fn next(&mut self) -> Option<Side> {
        if self.last == 0 {
            return None;
        }
        let side = if self.node & 1 == 1 || self.node == self.last {
            // The last node of a level with no right sibling moves up unchanged until
            // it becomes a right child (or the root of the left part).
            while self.node & 1 == 0 && self.node != 0 {
                self.node >>= 1;
                self.last >>= 1;
            }
            Side::Left
        } else {
            Side::Right
        };
        self.node >>= 1;
        self.last >>= 1;
        Some(side)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use proptest::prelude::*;

    fn h(hex: &str) -> Hash {
        hex::decode(hex).unwrap().try_into().unwrap()
    }

    fn b64(text: &str) -> Hash {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap()
            .try_into()
            .unwrap()
    }

    /// The CT test tree: these 8 leaves and the roots of each prefix, as used by the
    /// Certificate Transparency implementations (transparency-dev/merkle
    /// proof/verify_test.go, the same vectors as certificate-transparency-go).
    const CT_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn ct_leaves() -> Vec<Hash> {
        CT_LEAVES
            .iter()
            .map(|d| leaf_hash(&hex::decode(d).unwrap()))
            .collect()
    }

    #[test]
    fn ct_tree_roots_match_for_every_prefix() {
        let leaves = ct_leaves();
        assert_eq!(
            hex::encode(root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        for (n, want) in CT_ROOTS.iter().enumerate() {
            assert_eq!(hex::encode(root(&leaves[..=n])), *want, "size {}", n + 1);
        }
    }

    #[test]
    fn ct_inclusion_proofs_are_generated_and_verified() {
        // (index, size, proof), from transparency-dev/merkle proof/verify_test.go
        // (which numbers leaves from 1; these are 0-based).
        let vectors: [(usize, usize, &[&str]); 5] = [
            (0, 1, &[]),
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        let leaves = ct_leaves();
        for (index, size, want) in vectors {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            let tree = &leaves[..size];
            assert_eq!(
                inclusion_proof(tree, index).unwrap(),
                want,
                "{index}/{size}"
            );
            let root = h(CT_ROOTS[size - 1]);
            verify_inclusion(&leaves[index], index as u64, size as u64, &want, &root).unwrap();
        }
    }

    #[test]
    fn ct_consistency_proofs_are_generated_and_verified() {
        // (old size, new size, proof), from transparency-dev/merkle proof/verify_test.go.
        let vectors: [(usize, usize, &[&str]); 5] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
            (
                6,
                7,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
        ];
        let leaves = ct_leaves();
        for (old, new, want) in vectors {
            let want: Vec<Hash> = want.iter().map(|x| h(x)).collect();
            assert_eq!(consistency_proof(&leaves[..new], old).unwrap(), want);
            let (old_root, new_root) = (h(CT_ROOTS[old - 1]), h(CT_ROOTS[new - 1]));
            verify_consistency(old as u64, new as u64, &old_root, &new_root, &want).unwrap();
        }
    }

    /// A real proof from a real log: entry 43930254 (github.com/transparency-dev/tessera
    /// v1.0.0) of the Go checksum database at tree size 58253265, from
    /// transparency-dev/incubator cmd/tlog-verify/testdata (a c2sp.org/tlog-proof file).
    /// `note.rs` verifies the checkpoint's signature with sum.golang.org's key.
    #[test]
    fn go_checksum_database_inclusion_proof_verifies() {
        let entry = "github.com/transparency-dev/tessera v1.0.0 h1:4OT1V9xJLa5NnYlFWWlCdZkCm18/o12rdd+bCTje7XE=\n\
                     github.com/transparency-dev/tessera v1.0.0/go.mod h1:TLvfjlkbmsmKVEJUtzO2eb9Q2IBnK3EJ0dI4G0oxEOU=\n";
        let leaf = leaf_hash(entry.as_bytes());
        assert_eq!(
            hex::encode(leaf),
            "0fa57c511c3b2ffcc0a05ad63172568d265aaf9844e9b636a0978795396f2ab1"
        );
        let proof: Vec<Hash> = SUMDB_PROOF.iter().map(|x| b64(x)).collect();
        let root = b64("lIyLAEe4zJUQAda6pFFg3yPOf7j1SgfMEDrpgoX39JU=");
        verify_inclusion(&leaf, 43930254, 58253265, &proof, &root).unwrap();
        assert!(matches!(
            verify_inclusion(&leaf, 43930255, 58253265, &proof, &root),
            Err(ProofError::InclusionRootMismatch { .. })
        ));
        assert!(matches!(
            verify_inclusion(&leaf, 43930254, 58253265, &proof[1..], &root),
            Err(ProofError::InclusionProofLength {
                expected: 26,
                actual: 25,
                ..
            })
        ));
    }

    const SUMDB_PROOF: [&str; 26] = [
        "Q2cuq1e21q4UC1RQ6wtmXmCxk2q3Wqz/yFvD12P2KSM=",
        "VdgHwjNYSv9fZVxvYzn8kySGvrjqeCnzdJqJILieWf4=",
        "ARfBpZjsj3LSP42V4xBVdCKbHVa4WXSbuFAa0rUSCVQ=",
        "0VYgz0Vmgz6jOM8H6edZBWHtO6+R7tPvN4EOwwRRSws=",
        "vq+ifloynXE+ORFC1wymQT0cpNIJA1tqg2mQpA55+kc=",
        "SCRewH6vHE1/Vwkt5yEW8xT7il0WbWltXjFIVqlGtQQ=",
        "p//fIG8jgZie4MMwjHF7quCIJ4hErr7U4at0HV34MZQ=",
        "D3K5YdBlxQcklrgF8vSbDyT05J5/mA9lzuhhp72uSOk=",
        "jeYlYyH9FhYGwu+ZJmfPr8GvSNdgrydwqmJgHsygoR0=",
        "p6RFgfGhu8Uuy0LyyZdI4MrSPOZkMe+ycwWJFfr8zTI=",
        "AMZsxrVKBPSe8nSNVVCTyTxWns0CiNbChG/FoiSJWuM=",
        "e+rtSmK5Pd1K5LgFwj7VSo5XJXOcq7OOcqPVZn1hqeM=",
        "expmv1e6XiGr5NMUjMRkSZijlcBx+fZcpqQmUnawhOY=",
        "+Wuic0YARH84k80/Q+KJIbhRCldxG8npjLFiHMLtEpo=",
        "NOMeJqlyUxFXUKYRI/1YqAF4WJBfXJr8UM/SlWGqxgY=",
        "Lm6+TAlLb2lvUs/3unZ2t6RSmJw8RO+WuEuUbAw3QEc=",
        "Jhh2EDG15gDBoLmLiF88lVTgd+uvx3L0xczb8Y3kSq8=",
        "taenaiKqtYMXS3gDzIF3q8VZzqAXqftHqL9BC39njaw=",
        "kZNKypGwEANnt1+msLINnqrIrwX+0MGZUTTKXTfbloI=",
        "A4NJSymjVJ5dvGPaGC3Gj04x8qVRKYfh0pP24mwd6Yk=",
        "KQq808D9W4NUgr4ip+rF/RCyAUERYKKCwKiiAJfaFOc=",
        "I3EVN3zM2rDjs5Q06Zr5gxhg+ksnX2h77E75uL+h3aI=",
        "7iNSYSDhMeRkeV7r9krKbKelNPiqDCJU1i6xAn/Fbuw=",
        "MYqdo6zSjxaAn+29EEjNRbPYm0myB3bheu+HTZIAbVY=",
        "S7olT9TPLXk+bbawbV3sAzWMmhcpWrtjbw++9ZTiyn8=",
        "xJ20xXM4QItt5vxFOtolZ5l18p7ej1+RimNkgWmoRFM=",
    ];

    #[test]
    fn trivial_consistency_cases_follow_the_rfc() {
        let leaves = ct_leaves();
        let (r1, r2, empty) = (h(CT_ROOTS[0]), h(CT_ROOTS[1]), empty_root());
        // Nothing to prove: the empty tree is a prefix of everything, a tree of itself.
        verify_consistency(0, 0, &empty, &empty, &[]).unwrap();
        verify_consistency(0, 2, &empty, &r2, &[]).unwrap();
        verify_consistency(1, 1, &r1, &r1, &[]).unwrap();
        assert_eq!(
            consistency_proof(&leaves[..2], 0).unwrap(),
            Vec::<Hash>::new()
        );
        assert_eq!(
            consistency_proof(&leaves[..2], 2).unwrap(),
            Vec::<Hash>::new()
        );
        // Same size, different roots: a fork.
        assert!(matches!(
            verify_consistency(1, 1, &r1, &r2, &[]),
            Err(ProofError::NewRootMismatch { size: 1, .. })
        ));
        // A tree of size 0 has exactly one root.
        assert!(matches!(
            verify_consistency(0, 2, &r1, &r2, &[]),
            Err(ProofError::OldRootMismatch { size: 0, .. })
        ));
        // Hashes where none are needed.
        assert!(matches!(
            verify_consistency(1, 1, &r1, &r1, &[r1]),
            Err(ProofError::ConsistencyProofLength {
                expected: 0,
                actual: 1,
                ..
            })
        ));
        // No hashes where some are needed.
        assert!(matches!(
            verify_consistency(1, 2, &r1, &r2, &[]),
            Err(ProofError::ConsistencyProofLength {
                expected: 1,
                actual: 0,
                ..
            })
        ));
        // Time travel.
        assert_eq!(
            verify_consistency(2, 1, &r2, &r1, &[]),
            Err(ProofError::OldSizeTooLarge {
                old_size: 2,
                new_size: 1
            })
        );
        assert!(matches!(
            consistency_proof(&leaves[..1], 2),
            Err(ProofError::OldSizeTooLarge { .. })
        ));
        assert_eq!(
            inclusion_proof(&leaves[..3], 3),
            Err(ProofError::IndexOutOfRange { index: 3, size: 3 })
        );
        assert_eq!(
            verify_inclusion(&leaves[0], 0, 0, &[], &empty),
            Err(ProofError::IndexOutOfRange { index: 0, size: 0 })
        );
    }

    /// RFC 6962 section 2.1 as written: MTH, PATH and SUBPROOF, recursive, with SHA-256
    /// spelled out, to check the iterative versions against.
    mod reference {
        use super::Hash;
        use sha2::{Digest, Sha256};

        fn node(left: &Hash, right: &Hash) -> Hash {
            let mut input = vec![1u8];
            input.extend_from_slice(left);
            input.extend_from_slice(right);
            Sha256::digest(&input).into()
        }

        fn split(n: usize) -> usize {
            let mut k = 1;
            while k * 2 < n {
                k *= 2;
            }
            k
        }

        pub fn mth(d: &[Hash]) -> Hash {
            match d.len() {
                0 => Sha256::digest(b"").into(),
                1 => d[0],
                n => {
                    let k = split(n);
                    node(&mth(&d[..k]), &mth(&d[k..]))
                }
            }
        }

        pub fn path(m: usize, d: &[Hash]) -> Vec<Hash> {
            let n = d.len();
            if n == 1 {
                return vec![];
            }
            let k = split(n);
            if m < k {
                let mut p = path(m, &d[..k]);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = path(m - k, &d[k..]);
                p.push(mth(&d[..k]));
                p
            }
        }

        pub fn proof(m: usize, d: &[Hash]) -> Vec<Hash> {
            subproof(m, d, true)
        }

        fn subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
            let n = d.len();
            if m == n {
                return if b { vec![] } else { vec![mth(d)] };
            }
            let k = split(n);
            if m <= k {
                let mut p = subproof(m, &d[..k], b);
                p.push(mth(&d[k..]));
                p
            } else {
                let mut p = subproof(m - k, &d[k..], false);
                p.push(mth(&d[..k]));
                p
            }
        }
    }

    /// `2 * size + 2` distinct leaf hashes, so that trees larger than `size` exist to
    /// replay proofs against.
    fn leaves_for(size: usize, seed: u64) -> Vec<Hash> {
        (0..2 * size as u64 + 2)
            .map(|i| leaf_hash(&[seed.to_le_bytes(), i.to_le_bytes()].concat()))
            .collect()
    }

    fn flipped(proof: &[Hash], at: usize, byte: usize) -> Vec<Hash> {
        let mut proof = proof.to_vec();
        proof[at][byte] ^= 0x01;
        proof
    }

    proptest! {
        // Each case checks every index or old size of a tree of up to 300 leaves, O(n²)
        // hashes in a debug build: 16 random trees keep this to seconds.
        #![proptest_config(ProptestConfig::with_cases(16))]

        #[test]
        fn roots_match_the_reference(size in 0usize..300, seed: u64) {
            let leaves = leaves_for(size, seed);
            prop_assert_eq!(root(&leaves[..size]), reference::mth(&leaves[..size]));
        }

        #[test]
        fn inclusion_proofs_match_the_reference_and_resist_tampering(
            size in 1usize..300,
            seed: u64,
            byte in 0usize..32,
        ) {
            let all = leaves_for(size, seed);
            let leaves = &all[..size];
            let roots: Vec<Hash> = (0..all.len()).map(|n| root(&all[..n])).collect();
            let (n, tree_root) = (size as u64, roots[size]);
            for index in 0..size {
                let proof = inclusion_proof(leaves, index).unwrap();
                prop_assert_eq!(&proof, &reference::path(index, leaves));
                let i = index as u64;
                let leaf = &leaves[index];
                prop_assert_eq!(verify_inclusion(leaf, i, n, &proof, &tree_root), Ok(()));

                for at in 0..proof.len() {
                    let bad = flipped(&proof, at, byte);
                    prop_assert!(verify_inclusion(leaf, i, n, &bad, &tree_root).is_err());
                }
                let mut bad_leaf = *leaf;
                bad_leaf[byte] ^= 0x80;
                prop_assert!(verify_inclusion(&bad_leaf, i, n, &proof, &tree_root).is_err());
                let mut bad_root = tree_root;
                bad_root[byte] ^= 0x80;
                prop_assert!(verify_inclusion(leaf, i, n, &proof, &bad_root).is_err());
                // The proof names this position: no other index accepts it, neither with
                // this leaf nor with the leaf that is really there.
                let nearby = index.saturating_sub(2)..size.min(index + 3);
                for (other, other_leaf) in leaves.iter().enumerate().take(nearby.end).skip(nearby.start) {
                    if other != index {
                        let o = other as u64;
                        prop_assert!(verify_inclusion(leaf, o, n, &proof, &tree_root).is_err());
                        prop_assert!(
                            verify_inclusion(other_leaf, o, n, &proof, &tree_root).is_err()
                        );
                    }
                }
                // Nor does it prove anything about a tree of another size.
                for other in [size - 1, size + 1, size * 2] {
                    if other > index {
                        let o = other as u64;
                        prop_assert!(
                            verify_inclusion(leaf, i, o, &proof, &roots[other]).is_err()
                        );
                    }
                }
                if let Some((_, shorter)) = proof.split_last() {
                    let result = verify_inclusion(leaf, i, n, shorter, &tree_root);
                    prop_assert!(
                        matches!(result, Err(ProofError::InclusionProofLength { .. })),
                        "{:?}",
                        result
                    );
                }
                let mut longer = proof.clone();
                longer.push(tree_root);
                let result = verify_inclusion(leaf, i, n, &longer, &tree_root);
                prop_assert!(
                    matches!(result, Err(ProofError::InclusionProofLength { .. })),
                    "{:?}",
                    result
                );
            }
        }

        #[test]
        fn consistency_proofs_match_the_reference_and_resist_tampering(
            size in 1usize..300,
            seed: u64,
            byte in 0usize..32,
        ) {
            let all = leaves_for(size, seed);
            let leaves = &all[..size];
            let roots: Vec<Hash> = (0..all.len()).map(|n| root(&all[..n])).collect();
            let n = size as u64;
            for old in 0..=size {
                let proof = consistency_proof(leaves, old).unwrap();
                if 0 < old && old < size {
                    prop_assert_eq!(&proof, &reference::proof(old, leaves));
                } else {
                    prop_assert!(proof.is_empty());
                }
                let m = old as u64;
                let (old_root, new_root) = (roots[old], roots[size]);
                prop_assert_eq!(verify_consistency(m, n, &old_root, &new_root, &proof), Ok(()));
                if proof.is_empty() {
                    continue;
                }

                for at in 0..proof.len() {
                    let bad = flipped(&proof, at, byte);
                    prop_assert!(verify_consistency(m, n, &old_root, &new_root, &bad).is_err());
                }
                prop_assert!(verify_consistency(m, n, &new_root, &old_root, &proof).is_err());
                let mut forked = new_root;
                forked[byte] ^= 0x80;
                prop_assert!(verify_consistency(m, n, &old_root, &forked, &proof).is_err());
                // Other sizes, each with its true root: the proof is for this pair only.
                for other in [old - 1, old + 1] {
                    if other < size {
                        let o = other as u64;
                        prop_assert!(
                            verify_consistency(o, n, &roots[other], &new_root, &proof).is_err()
                        );
                    }
                }
                for other in [size + 1, size * 2] {
                    let o = other as u64;
                    prop_assert!(
                        verify_consistency(m, o, &old_root, &roots[other], &proof).is_err()
                    );
                }
                let (_, shorter) = proof.split_last().unwrap();
                let result = verify_consistency(m, n, &old_root, &new_root, shorter);
                prop_assert!(
                    matches!(result, Err(ProofError::ConsistencyProofLength { .. })),
                    "{:?}",
                    result
                );
                let mut longer = proof.clone();
                longer.insert(0, old_root);
                let result = verify_consistency(m, n, &old_root, &new_root, &longer);
                prop_assert!(
                    matches!(result, Err(ProofError::ConsistencyProofLength { .. })),
                    "{:?}",
                    result
                );
            }
        }
    }
}
