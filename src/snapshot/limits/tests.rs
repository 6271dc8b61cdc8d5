//! Unit tests of the shared rules; the archive reader's and base reader's tests feed
//! them whole hostile archives.

use super::*;
use std::collections::BTreeMap;

fn path(bytes: &[u8]) -> Result<String, String> {
    match member_name(bytes) {
        Ok(MemberName::Path(p)) => Ok(p),
        Ok(MemberName::Root) => Ok(String::new()),
        Err(NameError::Unsafe(reason)) => Err(reason.to_string()),
        Err(NameError::TooLong(e)) => Err(e.to_string()),
    }
}

#[test]
fn names_normalise_and_unsafe_ones_are_refused() {
    assert_eq!(path(b"./usr/bin/"), Ok("usr/bin".into()));
    assert_eq!(path(b"a//b/./c"), Ok("a/b/c".into()));
    assert_eq!(path(b"./"), Ok(String::new()));
    assert!(path(b"/etc/motd").unwrap_err().contains("absolute"));
    assert!(path(b"usr/../../etc").unwrap_err().contains("`..`"));
    assert!(path(b"a\0b").unwrap_err().contains("NUL"));
    assert!(path(b"\xff").unwrap_err().contains("UTF-8"));
}

#[test]
fn names_no_file_system_holds_are_refused_at_the_first_byte_over() {
    let component = "c".repeat(NAME_MAX);
    assert!(path(component.as_bytes()).is_ok());
    let err = path(format!("{component}c").as_bytes()).unwrap_err();
    assert!(err.contains("component of 256 bytes"), "{err}");

    // 2,048 components of one byte and their slashes: 4,095 bytes.
    let deep = vec!["d"; 2048].join("/");
    assert!(path(deep.as_bytes()).is_ok());
    let err = path(format!("{deep}/d").as_bytes()).unwrap_err();
    assert!(err.contains("path of 4097 bytes"), "{err}");
    // `./` and empty components do not count: the path as it lands does.
    assert!(path(format!("./{deep}//").as_bytes()).is_ok());

    assert!(link_target("l", "t".repeat(LINK_MAX).as_bytes()).is_ok());
    match link_target("l", "t".repeat(LINK_MAX + 1).as_bytes()) {
        Err(NameError::TooLong(e)) => {
            assert!(e.to_string().contains("target of 4097 bytes"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn messages_clip_and_escape_member_names() {
    let long = "x".repeat(80_000);
    let shown = display_member(long.as_bytes());
    assert!(shown.len() < 300, "{shown}");
    assert!(shown.ends_with("(80000 bytes in all)"), "{shown}");
    assert_eq!(display_member(b"a\nb"), "a\\nb");
}

#[test]
fn budgets_count_entries_and_bytes_and_name_the_member() {
    let mut budget = Budget::new(Limits {
        entries: 2,
        bytes: 10,
    });
    budget.add_entries(2, "a").unwrap();
    assert_eq!(
        budget.add_entries(1, "b"),
        Err(LimitError::TooManyEntries {
            member: "b".into(),
            limit: 2
        })
    );
    budget.add_bytes(10, "a").unwrap();
    let err = budget.add_bytes(1, "c").unwrap_err();
    assert!(err.to_string().contains("more than 10 bytes"), "{err}");
    assert!(err.hint().unwrap().contains("limits: { bytes:"));
    assert_eq!(size_text(8 << 30), "8GiB");
    assert_eq!(size_text(1536), "1536 bytes");
}

/// A tree of one stream, as the archive reader keeps it.
#[derive(Default)]
struct Tree(BTreeMap<String, Placed>);

impl TreeSoFar for Tree {
    fn placed(&self, path: &str) -> Option<Placed> {
        self.0.get(path).copied()
    }
    fn member_below(&self, path: &str) -> Option<&str> {
        first_below(&self.0, path)
    }
}

impl Tree {
    fn add(&mut self, path: &str, kind: Placed) -> Result<u64, Blocked> {
        let implied = place(self, path, kind)?;
        self.0.insert(path.to_string(), kind);
        Ok(implied)
    }
}

#[test]
fn members_below_symlinks_or_files_are_refused_in_either_order() {
    let mut tree = Tree::default();
    assert_eq!(tree.add("a/b/c", Placed::Other), Ok(3));
    // `a` and `a/b` are known now: only the member itself is new.
    assert_eq!(tree.add("a/b/d", Placed::Other), Ok(1));
    assert_eq!(tree.add("a/b", Placed::Dir), Ok(0));
    let err = tree.add("a/b", Placed::Symlink).unwrap_err();
    assert_eq!(
        (
            err.member.as_str(),
            err.parent.as_str(),
            err.parent_is_symlink
        ),
        ("a/b/c", "a/b", true)
    );
    tree.add("s", Placed::Symlink).unwrap();
    let err = tree.add("s/x/y", Placed::Dir).unwrap_err();
    assert_eq!((err.parent.as_str(), err.parent_is_symlink), ("s", true));
    tree.add("f", Placed::Other).unwrap();
    let err = tree.add("f/x", Placed::Other).unwrap_err();
    assert_eq!((err.parent.as_str(), err.parent_is_symlink), ("f", false));
}

/// Deep nesting, in the order that made the old check walk every ancestor of every
/// member: each member is placed by looking at its nearest parent only, so each
/// directory is counted exactly once. (The count is what the walk visits beyond the
/// nearest parent, plus the member.)
#[test]
fn deep_nesting_is_walked_once() {
    let mut tree = Tree::default();
    let mut path = String::from("d");
    tree.add(&path, Placed::Dir).unwrap();
    for _ in 0..2000 {
        path.push_str("/d");
        assert_eq!(tree.add(&path, Placed::Dir), Ok(1));
    }
    // The deepest first, then its parents: one walk implies all 2,000 of them.
    let mut tree = Tree::default();
    assert_eq!(tree.add(&path, Placed::Dir), Ok(2001));
    let mut parent = path.as_str();
    while let Some((up, _)) = parent.rsplit_once('/') {
        assert_eq!(tree.add(up, Placed::Dir), Ok(0));
        parent = up;
    }
}
