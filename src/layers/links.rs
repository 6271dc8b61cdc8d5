//! Where a symlink from an archive resolves in the image being built. Each link is
//! followed as the kernel would follow it, through the links of the layer being
//! assembled (at most [`MAX_HOPS`] of them, like Linux's `ELOOP` limit), so that
//! `sub -> .` and `s -> sub/..` cannot together leave the directory an archive is
//! extracted to, although each link text looks harmless.
//!
//! A link must resolve inside that directory without passing outside it on the way
//! (`..` out and back in is refused: what lies outside is not the archive's). Paths
//! outside it are walked down, not looked up: an absolute target reaches the
//! directory through the real directories the archive was written below. A link of
//! an earlier layer inside the directory is not followed, and a link through one is
//! refused: its target is not part of what is being checked. (At the image root,
//! where every target is inside, it is walked through as a directory.)

use std::borrow::Cow;

/// The most symlinks one resolution follows.
pub const MAX_HOPS: usize = 40;

/// What a path is in the image being built, for resolving links.
pub enum Found<'a> {
    /// A symlink of the layer being assembled, with its target.
    Symlink(&'a str),
    /// A symlink of an earlier layer (named).
    EarlierSymlink(Cow<'a, str>),
    /// Anything else, or nothing.
    Other,
}

/// How a link leaves the directory it must stay in; the text follows
/// "symlink LINK -> TARGET".
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Escape {
    #[error("resolves to {resolved}, outside {root}")]
    Outside { resolved: String, root: String },
    #[error("passes through {through}, outside {root}, on its way to {resolved}")]
    Through {
        through: String,
        resolved: String,
        root: String,
    },
    #[error("climbs above the image root")]
    AboveImageRoot,
    #[error("resolves through {link}, a symlink of layer `{layer}`, which cairn does not follow for an archive")]
    EarlierLink { link: String, layer: String },
    #[error("does not resolve: it follows more than {MAX_HOPS} symlinks")]
    TooManyHops,
}

/// Resolves the symlink at key `link` (`opt/x/s`) with `target`, looking paths up
/// with `lookup`, and checks that it stays in the directory with key `root` (`opt/x`;
/// empty for the image root).
pub fn check_resolves_inside<'a>(
    root: &str,
    link: &str,
    target: &'a str,
    lookup: impl Fn(&str) -> Found<'a>,
) -> Result<(), Escape> {
    let inside = |path: &str| {
        root.is_empty()
            || path == root
            || (path.starts_with(root) && path.as_bytes().get(root.len()) == Some(&b'/'))
    };
    let shown = |path: &str| format!("/{path}");
    // The directory the walk is in, as a key ("" is the image root), and the
    // components still to walk, the next one last.
    let mut at = link.rsplit_once('/').map_or("", |(dir, _)| dir).to_string();
    let mut pending: Vec<&'a str> = Vec::new();
    follow(&mut at, &mut pending, target);
    let mut left: Option<String> = None;
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        match component {
            "" | "." => {}
            ".." if at.is_empty() => return Err(Escape::AboveImageRoot),
            ".." => {
                pop(&mut at);
                if !inside(&at) && left.is_none() {
                    left = Some(shown(&at));
                }
            }
            name => {
                if !at.is_empty() {
                    at.push('/');
                }
                at.push_str(name);
                if !inside(&at) {
                    continue;
                }
                match lookup(&at) {
                    Found::Symlink(next) => {
                        hops += 1;
                        if hops > MAX_HOPS {
                            return Err(Escape::TooManyHops);
                        }
                        pop(&mut at);
                        follow(&mut at, &mut pending, next);
                    }
                    // Whatever it points to is in the image.
                    Found::EarlierSymlink(_) if root.is_empty() => {}
                    Found::EarlierSymlink(layer) => {
                        return Err(Escape::EarlierLink {
                            link: shown(&at),
                            layer: layer.to_string(),
                        })
                    }
                    Found::Other => {}
                }
            }
        }
    }
    match left {
        _ if !inside(&at) => Err(Escape::Outside {
            resolved: shown(&at),
            root: shown(root),
        }),
        Some(through) => Err(Escape::Through {
            through,
            resolved: shown(&at),
            root: shown(root),
        }),
        None => Ok(()),
    }
}

/// Continues the walk with a link's `target`: from the image root if it is absolute.
fn follow<'a>(at: &mut String, pending: &mut Vec<&'a str>, target: &'a str) {
    if target.starts_with('/') {
        at.clear();
    }
    pending.extend(target.split('/').rev());
}

/// Moves `at` to its parent directory.
fn pop(at: &mut String) {
    let parent = at.rfind('/').unwrap_or(0);
    at.truncate(parent);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Checks `link -> target` in `root` among `links` of the same layer.
    fn check(root: &str, links: &[(&str, &str)], link: &str) -> Result<(), Escape> {
        let links: BTreeMap<&str, &str> = links.iter().copied().collect();
        let target = links[link];
        check_resolves_inside(root, link, target, |key| match links.get(key) {
            Some(target) => Found::Symlink(target),
            None if key == "opt/x/old" => Found::EarlierSymlink("base:0".into()),
            None => Found::Other,
        })
    }

    #[test]
    fn a_chain_of_harmless_looking_links_that_leaves_its_root_is_refused() {
        let links = [("opt/x/sub", "."), ("opt/x/s", "sub/..")];
        assert_eq!(check("opt/x", &links, "opt/x/sub"), Ok(()));
        assert_eq!(
            check("opt/x", &links, "opt/x/s"),
            Err(Escape::Outside {
                resolved: "/opt".into(),
                root: "/opt/x".into()
            })
        );
        // At the image root the same chain climbs above it, which is refused as a
        // `..` too many in a link's text is.
        let at_root = [("sub", "."), ("s", "sub/..")];
        assert_eq!(check("", &at_root, "s"), Err(Escape::AboveImageRoot));
    }

    #[test]
    fn links_that_stay_inside_resolve() {
        let links = [
            ("opt/x/bin/tool", "../lib/tool"),
            ("opt/x/lib", "versions/2"),
            ("opt/x/abs", "/opt/x/lib/y"),
            ("opt/x/dangling", "missing/file"),
            ("usr/bin/sh", "busybox"),
        ];
        for link in ["opt/x/bin/tool", "opt/x/lib", "opt/x/abs", "opt/x/dangling"] {
            assert_eq!(check("opt/x", &links, link), Ok(()), "{link}");
        }
        assert_eq!(check("", &links, "usr/bin/sh"), Ok(()));
        // At the root, an earlier layer's link is no way out.
        let at_root = [("opt/x/via", "old/y")];
        assert_eq!(check("", &at_root, "opt/x/via"), Ok(()));
    }

    #[test]
    fn links_out_and_back_in_through_earlier_links_or_in_loops_are_refused() {
        let links = [
            ("opt/x/a", "../x/b"),
            ("opt/x/out", "/etc/passwd"),
            ("opt/x/via", "old/y"),
            ("opt/x/loop1", "loop2"),
            ("opt/x/loop2", "loop1"),
        ];
        assert_eq!(
            check("opt/x", &links, "opt/x/a"),
            Err(Escape::Through {
                through: "/opt".into(),
                resolved: "/opt/x/b".into(),
                root: "/opt/x".into()
            })
        );
        assert!(matches!(
            check("opt/x", &links, "opt/x/out"),
            Err(Escape::Outside { resolved, .. }) if resolved == "/etc/passwd"
        ));
        assert!(matches!(
            check("opt/x", &links, "opt/x/via"),
            Err(Escape::EarlierLink { link, layer }) if link == "/opt/x/old" && layer == "base:0"
        ));
        assert_eq!(
            check("opt/x", &links, "opt/x/loop1"),
            Err(Escape::TooManyHops)
        );
    }
}
