//! A map from image paths to values held as one list sorted byte-wise by path, for
//! the layer trees: a layer of a million files is one allocation of a million
//! entries, where a `BTreeMap` filled in order leaves its nodes half full (about
//! twice the memory). Lookups are binary searches; an edit (tests make
//! them) shifts the list.

use serde::ser::{Serialize, SerializeMap, Serializer};
use std::ops::Index;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedMap<V> {
    /// Sorted by key, each key once.
    items: Vec<(String, V)>,
}

impl<V> Default for SortedMap<V> {
    fn default() -> Self {
        SortedMap { items: Vec::new() }
    }
}

impl<V> SortedMap<V> {
    /// Takes a list already sorted by key with each key once (checked).
    pub fn from_sorted(items: Vec<(String, V)>) -> Self {
        assert!(
            items.windows(2).all(|w| w[0].0 < w[1].0),
            "keys sorted and unique"
        );
        SortedMap { items }
    }

    fn position(&self, key: &str) -> Result<usize, usize> {
        self.items.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The place of `key` in the sorted list.
    pub fn place_of(&self, key: &str) -> Option<usize> {
        self.position(key).ok()
    }

    /// The key and value at `place` in the sorted list.
    pub fn at(&self, place: usize) -> (&String, &V) {
        let (key, value) = &self.items[place];
        (key, value)
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.position(key).ok().map(|i| &self.items[i].1)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.position(key).ok().map(|i| &mut self.items[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.position(key).is_ok()
    }

    /// Sets `key` to `value`, returning the value it replaces.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        match self.position(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.items[i].1, value)),
            Err(i) => {
                self.items.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let i = self.position(key).ok()?;
        Some(self.items.remove(i).1)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&String, &V)> + ExactSizeIterator {
        self.items.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &String> + ExactSizeIterator {
        self.items.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.items.iter().map(|(_, v)| v)
    }
}

/// Like a `BTreeMap` collected from the same pairs: sorted, the last value of a key wins.
impl<V> FromIterator<(String, V)> for SortedMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut items: Vec<(String, V)> = iter.into_iter().collect();
        items.sort_by(|a, b| a.0.cmp(&b.0));
        // Keep the last of each run of equal keys.
        items.reverse();
        items.dedup_by(|later, earlier| later.0 == earlier.0);
        items.reverse();
        SortedMap { items }
    }
}

impl<'a, V> IntoIterator for &'a SortedMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (String, V)>, fn(&'a (String, V)) -> Self::Item>;

    fn into_iter(self) -> Self::IntoIter {
        self.items.iter().map(|(k, v)| (k, v))
    }
}

impl<V> Index<&str> for SortedMap<V> {
    type Output = V;

    fn index(&self, key: &str) -> &V {
        self.get(key).expect("no entry for the key")
    }
}

/// The same JSON as a `BTreeMap` of the same entries (layer cache keys hash it).
impl<V: Serialize> Serialize for SortedMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.items.len()))?;
        for (k, v) in &self.items {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn behaves_and_serialises_like_a_btreemap_of_the_same_pairs() {
        let pairs =
            [("b", 1), ("a/b", 2), ("a", 3), ("a-b", 4), ("b", 5)].map(|(k, v)| (k.to_string(), v));
        let sorted: SortedMap<i32> = pairs.iter().cloned().collect();
        let btree: BTreeMap<String, i32> = pairs.iter().cloned().collect();
        assert_eq!(
            sorted.iter().collect::<Vec<_>>(),
            btree.iter().collect::<Vec<_>>()
        );
        assert_eq!(
            serde_json::to_string(&sorted).unwrap(),
            serde_json::to_string(&btree).unwrap()
        );
        assert_eq!((sorted.get("a/b"), sorted.get("c")), (Some(&2), None));

        let mut edited = sorted.clone();
        assert_eq!(edited.insert("a/a".into(), 6), None);
        assert_eq!(edited.insert("b".into(), 7), Some(5));
        assert_eq!(edited.remove("a"), Some(3));
        assert_eq!(
            edited.keys().map(String::as_str).collect::<Vec<_>>(),
            ["a-b", "a/a", "a/b", "b"]
        );
    }
}
