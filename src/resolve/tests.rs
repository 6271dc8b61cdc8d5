//! Unit tests of how [`resolve`] treats pins: from the recipe, from the lock, or
//! neither, in each [`LockMode`]; what reaches the lock and the source trees.

use super::*;

/// A recipe with two sources in a fresh directory: `app` (a file, pinned in the
/// recipe when `app_pin` is given) and `site` (a directory, never pinned in the
/// recipe).
struct Fixture {
    dir: tempfile::TempDir,
}

const APP: &[u8] = b"#!/bin/sh\necho hello\n";

impl Fixture {
    fn new(app_pin: Option<Sha256Digest>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("site/css")).unwrap();
        std::fs::write(root.join("site/index.html"), b"<html>").unwrap();
        std::fs::write(root.join("site/css/main.css"), b"body{}").unwrap();
        std::fs::write(root.join("hello.sh"), APP).unwrap();
        std::fs::create_dir(root.join("staging")).unwrap();
        let pin = app_pin.map_or(String::new(), |d| format!(", sha256: {}", d.hex()));
        std::fs::write(
            root.join("r.yaml"),
            format!(
                "cairn: 1\nname: r\nepoch: 1700000000\nsources:\n  app: {{ path: hello.sh{pin} }}\n  site: {{ path: site/ }}\nlayers:\n  - name: app\n    contents:\n      - copy: app\n        to: /usr/bin/hello\n      - copy: site\n        to: /var/www\n"
            ),
        )
        .unwrap();
        Fixture { dir }
    }

    fn resolve(&self, lock: &Lockfile, mode: LockMode) -> Result<ResolvedSources, ResolveError> {
        let root = self.dir.path();
        let recipe = crate::recipe::load(&root.join("r.yaml")).unwrap();
        resolve(
            &recipe,
            lock,
            &root.join("r.lock"),
            mode,
            &root.join("staging"),
            None,
            &SourceRoots::default(),
        )
    }

    /// The lock a `PinMissing` build writes now.
    fn pinned_lock(&self) -> Lockfile {
        self.resolve(&Lockfile::default(), LockMode::PinMissing)
            .unwrap()
            .lock
    }
}

fn message(err: ResolveError) -> String {
    match err {
        ResolveError::Source(diagnostic) => diagnostic.message,
        ResolveError::Lock { message, .. } => message,
    }
}

#[test]
fn unpinned_sources_are_pinned_with_a_warning() {
    let f = Fixture::new(None);
    let resolved = f
        .resolve(&Lockfile::default(), LockMode::PinMissing)
        .unwrap();
    assert!(resolved.lock_changed);
    assert_eq!(resolved.warnings.len(), 2, "{:?}", resolved.warnings);
    assert!(resolved.warnings[0].contains("source `app` was not pinned"));
    let app = &resolved.sources["app"];
    assert_eq!(app.digest, Sha256Digest::of(APP));
    assert_eq!(resolved.lock.sources["app"].sha256, app.digest);
    assert_eq!(resolved.lock.sources["app"].kind, LockedKind::File);
    let site = &resolved.sources["site"];
    assert_eq!(resolved.lock.sources["site"].kind, LockedKind::Dir);
    let paths: Vec<&str> = site.tree().entries.iter().map(|e| &*e.rel_path).collect();
    assert_eq!(paths, ["css", "css/main.css", "index.html"]);

    // Resolved again against that lock: nothing changes, nothing to say.
    let again = f.resolve(&resolved.lock, LockMode::Locked).unwrap();
    assert!(!again.lock_changed);
    assert!(again.warnings.is_empty());
    assert_eq!(again.sources["site"].digest, site.digest);
}

#[test]
fn a_locked_build_refuses_an_unpinned_source() {
    let f = Fixture::new(None);
    let err = f
        .resolve(&Lockfile::default(), LockMode::Locked)
        .unwrap_err();
    let message = message(err);
    assert!(message.contains("source `app`"), "{message}");
    assert!(message.contains("is not pinned"), "{message}");
}

#[test]
fn a_source_changed_since_it_was_locked_is_refused_unless_repinned() {
    let f = Fixture::new(None);
    let lock = f.pinned_lock();
    std::fs::write(f.dir.path().join("site/index.html"), b"<html>changed").unwrap();
    for mode in [LockMode::Locked, LockMode::PinMissing] {
        let message = message(f.resolve(&lock, mode).unwrap_err());
        assert!(
            message.contains("source `site` (site/) does not match"),
            "{mode:?}: {message}"
        );
    }
    let repinned = f.resolve(&lock, LockMode::Repin).unwrap();
    assert!(repinned.lock_changed);
    assert_ne!(repinned.lock.sources["site"], lock.sources["site"]);
    assert_eq!(repinned.lock.sources["app"], lock.sources["app"]);
}

#[test]
fn the_recipe_pin_is_checked_in_every_mode_and_need_not_be_locked() {
    let f = Fixture::new(Some(Sha256Digest::of(b"something else")));
    for mode in [LockMode::Locked, LockMode::PinMissing, LockMode::Repin] {
        let message = message(f.resolve(&Lockfile::default(), mode).unwrap_err());
        assert!(
            message.contains("does not match its pin"),
            "{mode:?}: {message}"
        );
    }

    let f = Fixture::new(Some(Sha256Digest::of(APP)));
    let mut lock = Fixture::new(None).pinned_lock();
    lock.sources.remove("app");
    let resolved = f.resolve(&lock, LockMode::Locked).unwrap();
    assert_eq!(resolved.sources["app"].digest, Sha256Digest::of(APP));
}

#[test]
fn a_lock_pinning_a_source_the_recipe_lacks_is_stale_when_locked() {
    let f = Fixture::new(None);
    let mut lock = f.pinned_lock();
    lock.sources.insert(
        "gone".into(),
        LockedSource {
            kind: LockedKind::File,
            sha256: Sha256Digest::of(b"gone"),
        },
    );
    let err = f.resolve(&lock, LockMode::Locked).unwrap_err();
    assert!(matches!(&err, ResolveError::Lock { .. }), "{err:?}");
    assert!(message(err).contains("pins source `gone`"));
    // A normal build drops it from the lock instead.
    let resolved = f.resolve(&lock, LockMode::PinMissing).unwrap();
    assert!(resolved.lock_changed);
    assert!(!resolved.lock.sources.contains_key("gone"));
}

/// A recipe in `top/recipe/` whose one source is `path`, written as given, of `kind`
/// (`path` or `archive`); resolved with `roots`.
fn resolve_one(
    top: &std::path::Path,
    kind: &str,
    path: &str,
    roots: &SourceRoots,
) -> Result<ResolvedSources, ResolveError> {
    let dir = top.join("recipe");
    std::fs::create_dir_all(dir.join("staging")).unwrap();
    let op = if kind == "archive" { "extract" } else { "copy" };
    std::fs::write(
        dir.join("r.yaml"),
        format!("cairn: 1\nname: r\nsources:\n  it: {{ {kind}: {path} }}\nlayers:\n  - name: l\n    contents:\n      - {op}: it\n        to: /it\n"),
    )
    .unwrap();
    let recipe = crate::recipe::load(&dir.join("r.yaml")).unwrap();
    resolve(
        &recipe,
        &Lockfile::default(),
        &dir.join("r.lock"),
        LockMode::PinMissing,
        &dir.join("staging"),
        None,
        roots,
    )
}

#[test]
fn sources_that_resolve_outside_the_recipe_directory_are_refused_unless_allowed() {
    let top = tempfile::tempdir().unwrap();
    let outside = top.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret"), b"not for the image").unwrap();
    let tar = outside.join("secret.tar");
    let status = std::process::Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&outside)
        .arg("secret")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir_all(top.path().join("recipe")).unwrap();
    std::os::unix::fs::symlink(&outside, top.path().join("recipe/linked")).unwrap();

    let none = SourceRoots::default();
    for (kind, path) in [
        ("path", "../outside/secret"),
        ("path", "linked/secret"),
        ("path", "linked"),
        ("archive", "../outside/secret.tar"),
    ] {
        let err = resolve_one(top.path(), kind, path, &none).unwrap_err();
        let hint = err.hint().unwrap().into_owned();
        let message = message(err);
        assert!(
            message.contains("source `it`") && message.contains(&format!("`{path}`")),
            "{message}"
        );
        assert!(message.contains("resolves to /"), "{message}");
        assert!(hint.contains("--allow-source-root"), "{hint}");
    }

    let allowed = SourceRoots::new(std::slice::from_ref(&outside)).unwrap();
    let resolved = resolve_one(top.path(), "path", "linked/secret", &allowed).unwrap();
    assert_eq!(
        resolved.sources["it"].digest,
        Sha256Digest::of(b"not for the image")
    );
    assert!(resolve_one(top.path(), "archive", "../outside/secret.tar", &allowed).is_ok());
}
