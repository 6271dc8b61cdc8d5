//! OCI whiteouts and the file-system bookkeeping every reader of layers needs:
//! applying a layer removes what its whiteouts name, and a non-directory replaces a
//! whole subtree. One implementation, shared by the layer assembler, the base image's
//! file system, the SBOM's view of the image, the disk and the layout readers
//! (`inspect`, `verify`, `trace`, `diff`).

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::ops::Bound;

/// What a whiteout entry deletes from the layers below it.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout {
    /// `dir/.wh.name`: the path `dir/name` and everything below it.
    Path(String),
    /// `dir/.wh..wh..opq`: everything below `dir` (empty for the root).
    Opaque(String),
}

/// Interprets a layer entry's path (relative, no trailing `/`) as a whiteout.
pub fn whiteout(key: &str) -> Option<Whiteout> {
    let (dir, name) = key.rsplit_once('/').unwrap_or(("", key));
    let removed = name.strip_prefix(".wh.")?;
    if removed == ".wh..opq" {
        return Some(Whiteout::Opaque(dir.to_string()));
    }
    Some(Whiteout::Path(if dir.is_empty() {
        removed.to_string()
    } else {
        format!("{dir}/{removed}")
    }))
}

/// Removes everything strictly below `dir` (everything, for the root `""`). Keys are
/// paths, owned or borrowed.
pub fn remove_children<K: Borrow<str> + Ord + Clone, V>(map: &mut BTreeMap<K, V>, dir: &str) {
    if dir.is_empty() {
        map.clear();
        return;
    }
    let prefix = format!("{dir}/");
    let doomed: Vec<K> = map
        .range::<str, _>((Bound::Included(prefix.as_str()), Bound::Unbounded))
        .take_while(|(k, _)| (*k).borrow().starts_with(&prefix))
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        map.remove(k.borrow());
    }
}

/// Removes `key` and everything below it.
pub fn remove_subtree<K: Borrow<str> + Ord + Clone, V>(map: &mut BTreeMap<K, V>, key: &str) {
    remove_children(map, key);
    map.remove(key);
}

/// Applies a whiteout to a view of the lower layers.
pub fn apply<K: Borrow<str> + Ord + Clone, V>(map: &mut BTreeMap<K, V>, whiteout: &Whiteout) {
    match whiteout {
        Whiteout::Path(path) => remove_subtree(map, path),
        Whiteout::Opaque(dir) => remove_children(map, dir),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whiteout_names_map_back_to_what_they_remove() {
        assert_eq!(
            whiteout("etc/.wh.motd"),
            Some(Whiteout::Path("etc/motd".into()))
        );
        assert_eq!(whiteout(".wh.tmp"), Some(Whiteout::Path("tmp".into())));
        assert_eq!(
            whiteout("etc/.wh..wh..opq"),
            Some(Whiteout::Opaque("etc".into()))
        );
        assert_eq!(whiteout("etc/motd"), None);
    }

    #[test]
    fn removal_takes_the_subtree_and_nothing_that_merely_shares_a_prefix() {
        let mut map: BTreeMap<String, ()> = ["a", "a/b", "a/b/c", "a-b", "ab"]
            .into_iter()
            .map(|k| (k.to_string(), ()))
            .collect();
        apply(&mut map, &Whiteout::Opaque("a".into()));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a", "a-b", "ab"]);
        apply(&mut map, &Whiteout::Path("a".into()));
        assert_eq!(map.keys().collect::<Vec<_>>(), ["a-b", "ab"]);

        // The same with keys borrowed from layer trees (the SBOM's view of the image).
        let mut borrowed: BTreeMap<&str, ()> = ["a", "a/b", "a-b"].map(|k| (k, ())).into();
        apply(&mut borrowed, &Whiteout::Path("a".into()));
        assert_eq!(borrowed.keys().copied().collect::<Vec<_>>(), ["a-b"]);
    }
}
