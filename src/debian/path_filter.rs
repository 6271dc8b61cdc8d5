//! `path_filters:`: package files left out of the image, decided exactly as dpkg's
//! `--path-exclude` and `--path-include` decide them (dpkg's `src/filters.c`):
//!
//! - each filter's glob is matched against the file's absolute path as `fnmatch(3)`
//!   without flags does (`*` and `?` also match `/`; `[...]` classes; `\` escapes);
//! - every filter is tried in order, and the last one that matches decides;
//! - a directory or symlink left out is kept after all when its path starts with the
//!   literal part (up to the first wildcard, trailing `/` dropped) of any `include`
//!   glob, so that what an include brings back has its parents.
//!
//! A hard link whose target is left out keeps its content as a regular file: the
//! layer never holds a link to a missing member.

use crate::recipe::PathFilter;
use crate::snapshot::{SourceEntryKind, SourceTree};
use std::collections::BTreeMap;

/// Leaves out of `tree` what `filters` exclude; returns the tree kept and the paths
/// left out (absolute, in tree order).
pub fn apply(filters: &[PathFilter], tree: SourceTree) -> (SourceTree, Vec<String>) {
    if filters.is_empty() {
        return (tree, Vec::new());
    }
    let mut kept = Vec::with_capacity(tree.entries.len());
    let mut left_out = Vec::new();
    let mut left_out_files: BTreeMap<String, SourceEntryKind> = BTreeMap::new();
    for entry in tree.entries {
        let path = format!("/{}", entry.rel_path);
        let keeps_parents = matches!(
            entry.kind,
            SourceEntryKind::Dir | SourceEntryKind::Symlink { .. }
        );
        if should_skip(filters, &path, keeps_parents) {
            left_out.push(path);
            left_out_files.insert(entry.rel_path.to_string(), entry.kind);
        } else {
            kept.push(entry);
        }
    }
    // A hard link names an earlier member of the package by its path in the package.
    for entry in &mut kept {
        if let SourceEntryKind::Hardlink { target } = &entry.kind {
            if let Some(SourceEntryKind::File(content)) = left_out_files.get(target) {
                entry.kind = SourceEntryKind::File(content.clone());
            }
        }
    }
    (SourceTree { entries: kept }, left_out)
}

/// Whether dpkg would skip `path` (absolute); `keeps_parents` for a directory or a
/// symlink.
fn should_skip(filters: &[PathFilter], path: &str, keeps_parents: bool) -> bool {
    let mut skip = false;
    for f in filters {
        if fnmatch(f.glob.as_bytes(), path.as_bytes()) {
            skip = !f.include;
        }
    }
    if skip && keeps_parents {
        for f in filters.iter().filter(|f| f.include) {
            let literal = f
                .glob
                .find(['*', '?', '[', '\\'])
                .map_or(f.glob.as_str(), |i| &f.glob[..i]);
            if path.starts_with(literal.trim_end_matches('/')) {
                return false;
            }
        }
    }
    skip
}

/// `fnmatch(pattern, text, 0)`: `*` any run of bytes, `?` any byte, `[...]` a class
/// (`!` or `^` negates, `a-z` ranges, `]` first is literal), `\x` the byte `x`.
/// Backtracks to the last `*` only, so time is linear in pattern times text.
pub fn fnmatch(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // Where to resume after the last `*`: pattern after it, and the text position.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        let step = match pattern.get(p) {
            Some(b'*') => {
                star = Some((p + 1, t));
                p += 1;
                continue;
            }
            Some(b'?') => Some(p + 1),
            Some(b'[') => match class(&pattern[p..], text[t]) {
                Some((true, len)) => Some(p + len),
                Some((false, _)) => None,
                // An unclosed `[` is a literal `[`.
                None => (text[t] == b'[').then_some(p + 1),
            },
            Some(b'\\') if p + 1 < pattern.len() => (pattern[p + 1] == text[t]).then_some(p + 2),
            Some(&c) => (c == text[t]).then_some(p + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                p = next;
                t += 1;
            }
            (None, Some((after_star, from))) => {
                p = after_star;
                t = from + 1;
                star = Some((after_star, from + 1));
            }
            (None, None) => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches `byte` against the class at the start of `pattern` (`[...]`): whether it
/// matched and the class's length, or `None` if the class is not closed.
fn class(pattern: &[u8], byte: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let c = *pattern.get(i)?;
        if c == b']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        let (low, next) = match c {
            b'\\' => (*pattern.get(i + 1)?, i + 2),
            _ => (c, i + 1),
        };
        if pattern.get(next) == Some(&b'-') && pattern.get(next + 1).is_some_and(|&h| h != b']') {
            let high = pattern[next + 1];
            matched |= (low..=high).contains(&byte);
            i = next + 2;
        } else {
            matched |= low == byte;
            i = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipe::Span;
    use crate::snapshot::{Content, Location, SourceEntry};

    fn filters(list: &[(&str, bool)]) -> Vec<PathFilter> {
        list.iter()
            .map(|&(glob, include)| PathFilter {
                include,
                glob: glob.into(),
                span: Span::default(),
            })
            .collect()
    }

    #[test]
    fn globs_match_as_fnmatch_without_flags() {
        let yes = [
            ("/usr/share/doc/*", "/usr/share/doc/a/b/changelog.gz"),
            (
                "/usr/share/doc/*/copyright",
                "/usr/share/doc/libc6/copyright",
            ),
            ("/usr/share/locale/*", "/usr/share/locale/.hidden"),
            ("*.mo", "/usr/share/locale/de/LC_MESSAGES/x.mo"),
            ("/usr/lib/?", "/usr/lib/x"),
            ("/[a-c]x", "/bx"),
            ("/[!a-c]x", "/dx"),
            ("/[]]x", "/]x"),
            ("/a\\*", "/a*"),
            ("/a[", "/a["),
        ];
        for (glob, path) in yes {
            assert!(fnmatch(glob.as_bytes(), path.as_bytes()), "{glob} {path}");
        }
        let no = [
            ("/usr/share/doc/*", "/usr/share/doc"),
            (
                "/usr/share/doc/*/copyright",
                "/usr/share/doc/libc6/changelog",
            ),
            ("/[a-c]x", "/dx"),
            ("/[!a-c]x", "/ax"),
            ("/a\\*", "/ab"),
            ("/usr/lib/?", "/usr/lib/xy"),
        ];
        for (glob, path) in no {
            assert!(!fnmatch(glob.as_bytes(), path.as_bytes()), "{glob} {path}");
        }
    }

    #[test]
    fn the_last_matching_filter_decides_and_an_include_keeps_its_parent_directories() {
        let f = filters(&[
            ("/usr/share/doc/*", false),
            ("/usr/share/doc/*/copyright", true),
            ("/usr/share/man/*", false),
        ]);
        assert!(should_skip(&f, "/usr/share/doc/x/changelog.gz", false));
        assert!(!should_skip(&f, "/usr/share/doc/x/copyright", false));
        // The directory the include needs is kept; one it does not is not.
        assert!(!should_skip(&f, "/usr/share/doc/x", true));
        assert!(should_skip(&f, "/usr/share/man/man1", true));
        assert!(!should_skip(&f, "/usr/bin/x", false));
        // Order matters: an include before the exclude is overridden.
        let f = filters(&[
            ("/usr/share/doc/*/copyright", true),
            ("/usr/share/doc/*", false),
        ]);
        assert!(should_skip(&f, "/usr/share/doc/x/copyright", false));
    }

    #[test]
    fn a_hard_link_to_a_file_left_out_keeps_its_content() {
        let content = Content {
            location: Location::Path(std::sync::Arc::new("/dev/null".into())),
            size: 0,
            sha256: crate::digest::Sha256Digest::of(b""),
        };
        let entry = |path: &str, kind| SourceEntry {
            rel_path: path.into(),
            kind,
            mode: 0o644,
            owner: None,
        };
        let tree = SourceTree {
            entries: vec![
                entry("usr/bin/a", SourceEntryKind::File(content.clone())),
                entry(
                    "usr/bin/b",
                    SourceEntryKind::Hardlink {
                        target: "usr/bin/a".into(),
                    },
                ),
            ],
        };
        let (kept, left_out) = apply(&filters(&[("/usr/bin/a", false)]), tree);
        assert_eq!(left_out, ["/usr/bin/a"]);
        assert_eq!(kept.entries.len(), 1);
        assert_eq!(kept.entries[0].kind, SourceEntryKind::File(content));
    }
}
