//! Unit tests of Debian installs without gpg, apt tools or the network: repositories
//! made in memory (`.deb`s built with `ar` and `tar`, InRelease clear-signed
//! in-process with a throwaway OpenPGP key). Locked builds read them from the package
//! cache, offline, with every link of the chain (InRelease -> index -> .deb) checked
//! against the lock and the keyring; resolving reads them from a loopback server.

use super::*;
use crate::recipe::Recipe;
use crate::registry::fake_registry::{answer, FakeRegistry};
use openpgp::cert::prelude::*;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Message, Signer};
use openpgp::serialize::Serialize as _;
use sequoia_openpgp as openpgp;
use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

/// Resolved now, on no base image, with the "not pinned" warning.
const RESOLVE: Pins<'static> = Pins::Resolve {
    warn: true,
    base: None,
};

/// When the key and the signature were made; the build's "now" is later.
const SIGNED_AT: u64 = 1_600_000_000;
const NOW: u64 = 1_700_000_000;
const INDEX: &str = "main/binary-amd64/Packages.xz";
const COPYRIGHT: &[u8] =
    b"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: 2024 Test\nLicense: MIT\n";

fn tar_of(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut tar = ::tar::Builder::new(Vec::new());
    for (path, bytes, mode) in files {
        let mut header = ::tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(SIGNED_AT);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(if path.ends_with('/') {
            ::tar::EntryType::Directory
        } else {
            ::tar::EntryType::Regular
        });
        tar.append_data(&mut header, path, *bytes).unwrap();
    }
    tar.into_inner().unwrap()
}

/// A `.deb` with `control` and the data members `data`.
fn deb(control: &str, data: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let control = tar_of(&[("./control", control.as_bytes(), 0o644)]);
    let data = tar_of(data);
    let mut deb = ar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("debian-binary", &b"2.0\n"[..]),
        ("control.tar", &control),
        ("data.tar", &data),
    ] {
        let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
        deb.append(&header, bytes).unwrap();
    }
    deb.into_inner().unwrap()
}

/// A `.deb` of package `hello` holding `/usr/bin/hello` and a machine-readable
/// copyright file.
fn hello_deb() -> Vec<u8> {
    deb(
        "Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: Test <t@test.invalid>\nDescription: greets\n",
        &[
            ("./usr/", b"", 0o755),
            ("./usr/bin/", b"", 0o755),
            ("./usr/bin/hello", b"#!/bin/sh\necho hello\n", 0o755),
            ("./usr/share/", b"", 0o755),
            ("./usr/share/doc/", b"", 0o755),
            ("./usr/share/doc/hello/", b"", 0o755),
            ("./usr/share/doc/hello/copyright", COPYRIGHT, 0o644),
        ],
    )
}

/// A throwaway signing certificate, and `release` clear-signed with it.
fn signed(release: &str) -> (Cert, Vec<u8>) {
    let at = UNIX_EPOCH + Duration::from_secs(SIGNED_AT);
    let (cert, _) = CertBuilder::new()
        .set_creation_time(at)
        .add_userid("cairn test archive")
        .add_signing_subkey()
        .generate()
        .unwrap();
    let policy = StandardPolicy::new();
    let keypair = cert
        .keys()
        .secret()
        .with_policy(&policy, at)
        .supported()
        .alive()
        .revoked(false)
        .for_signing()
        .next()
        .unwrap()
        .key()
        .clone()
        .into_keypair()
        .unwrap();
    let mut out = Vec::new();
    let mut signer = Signer::new(Message::new(&mut out), keypair)
        .unwrap()
        .cleartext()
        .creation_time(at)
        .build()
        .unwrap();
    signer.write_all(release.as_bytes()).unwrap();
    signer.finalize().unwrap();
    (cert, out)
}

/// A recipe installing `hello` from repository `test`, a cache holding what a locked
/// build needs, and the lock.
struct Fixture {
    dir: tempfile::TempDir,
    recipe: Recipe,
    lock: PackagesLock,
    deb: Vec<u8>,
    inrelease: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let deb = hello_deb();
        let index_sha256 = Sha256Digest::of(b"the Packages index");
        let release = format!(
            "Origin: Test\nSuite: stable\nSHA256:\n {} 18 {INDEX}\n",
            index_sha256.hex()
        );
        let (cert, inrelease) = signed(&release);
        let mut keyring = Vec::new();
        cert.serialize(&mut keyring).unwrap();
        std::fs::write(dir.path().join("keyring.gpg"), keyring).unwrap();
        // Never reached: every test here is offline.
        let recipe = write_recipe(dir.path(), "http://127.0.0.1:9/debian");
        let lock = PackagesLock {
            architecture: "amd64".into(),
            requested: vec!["hello".into()],
            repositories: BTreeMap::from([(
                "test".to_string(),
                LockedRepository {
                    suite: "stable".into(),
                    components: vec!["main".into()],
                    inrelease_sha256: Sha256Digest::of(&inrelease),
                    signed_by: cert.fingerprint().to_hex(),
                },
            )]),
            packages: BTreeMap::from([(
                "hello".to_string(),
                LockedPackage {
                    version: "1.0-1".into(),
                    architecture: "amd64".into(),
                    repository: "test".into(),
                    filename: "pool/main/h/hello/hello_1.0-1_amd64.deb".into(),
                    sha256: Sha256Digest::of(&deb),
                    size: deb.len() as u64,
                    index: INDEX.into(),
                    index_sha256,
                },
            )]),
            base: None,
            from_base: BTreeMap::new(),
        };
        let fixture = Fixture {
            dir,
            recipe,
            lock,
            deb,
            inrelease,
        };
        fixture.cache(&fixture.deb);
        fixture.cache(&fixture.inrelease);
        fixture
    }

    /// Puts `bytes` in the package cache under their digest.
    fn cache(&self, bytes: &[u8]) {
        let debs = self.dir.path().join("cache/debs");
        std::fs::create_dir_all(&debs).unwrap();
        std::fs::write(debs.join(Sha256Digest::of(bytes).hex()), bytes).unwrap();
    }

    fn install(&self, lock: &PackagesLock) -> Result<InstalledPackages, DebianError> {
        install_in(self.dir.path(), &self.recipe, Pins::Locked(lock), true)
    }
}

/// A recipe in `dir` installing `hello` from repository `test` at `mirror`, checked
/// with `dir/keyring.gpg`.
fn write_recipe(dir: &Path, mirror: &str) -> Recipe {
    let path = dir.join("pkgs.yaml");
    std::fs::write(
        &path,
        format!("cairn: 1\nname: pkgs\nepoch: 1700000000\nrepositories:\n  test:\n    mirror: {mirror}\n    suite: stable\n    components: [main]\n    keyring: keyring.gpg\npackages: [hello]\nlayers:\n  - name: base\n    contents:\n      - dir: /tmp\n        mode: 0o1777\n"),
    )
    .unwrap();
    crate::recipe::load(&path).unwrap()
}

/// [`install`] with the package cache and staging below `dir`.
fn install_in(
    dir: &Path,
    recipe: &Recipe,
    pins: Pins,
    offline: bool,
) -> Result<InstalledPackages, DebianError> {
    let opts = PackageOptions {
        cache_dir: dir.join("cache"),
        now: NOW,
        host_sources: Vec::new(),
        host_valid_until_off: None,
        offline,
    };
    install(
        recipe,
        recipe.packages.as_ref().unwrap(),
        pins,
        &opts,
        &dir.join("staging"),
        &NoProgress,
        &mut FetchedReleases::default(),
    )
}

struct NoProgress;
impl DownloadProgress for NoProgress {}

/// The innermost error of one that names its repository.
fn inner(err: DebianError) -> DebianError {
    match err {
        DebianError::InRepository { source, .. } => *source,
        other => other,
    }
}

#[test]
fn a_locked_install_checks_the_chain_and_unpacks_the_packages_offline() {
    let f = Fixture::new();
    let installed = f.install(&f.lock).unwrap();
    assert_eq!(installed.lock, f.lock);
    assert!(installed.warnings.is_empty(), "{:?}", installed.warnings);
    let [hello] = installed.packages.as_slice() else {
        panic!("{:?}", installed.packages);
    };
    assert_eq!(hello.name, "hello");
    assert_eq!(hello.suite, "stable");
    assert_eq!(hello.signed_by, f.lock.repositories["test"].signed_by);
    assert_eq!(hello.inrelease_sha256, Sha256Digest::of(&f.inrelease));
    assert!(hello
        .control
        .starts_with("Package: hello\nVersion: 1.0-1\n"));
    assert_eq!(hello.license.as_deref(), Some("MIT"));
    let bin = hello
        .tree
        .entries
        .iter()
        .find(|e| &*e.rel_path == "usr/bin/hello")
        .unwrap();
    let SourceEntryKind::File(content) = &bin.kind else {
        panic!("{bin:?}");
    };
    assert_eq!(content.sha256, Sha256Digest::of(b"#!/bin/sh\necho hello\n"));
    assert_eq!(bin.mode, 0o755);
}

#[test]
fn a_lock_for_another_request_or_architecture_does_not_match_the_recipe() {
    let f = Fixture::new();
    let spec = f.recipe.packages.as_ref().unwrap();
    let matches_on = |lock: &PackagesLock, base| {
        matching_lock(&f.recipe, spec, Some(lock), base)
            .unwrap()
            .is_some()
    };
    let matches = |lock: &PackagesLock| matches_on(lock, None);
    assert!(matches(&f.lock));

    let mut other = f.lock.clone();
    other.requested = vec!["hello".into(), "extra".into()];
    assert!(!matches(&other));

    let mut other_arch = f.lock.clone();
    other_arch.architecture = "arm64".into();
    assert!(!matches(&other_arch));

    // Resolved on a base image: matches only on that base.
    let (base, other_base) = (Sha256Digest::of(b"base"), Sha256Digest::of(b"other"));
    assert!(!matches_on(&f.lock, Some(base)));
    let mut on_base = f.lock.clone();
    on_base.base = Some(base);
    assert!(matches_on(&on_base, Some(base)));
    assert!(!matches_on(&on_base, Some(other_base)));
    assert!(!matches(&on_base));
}

#[test]
fn a_package_is_held_to_the_recipes_limits_as_archive_sources_are() {
    let mut f = Fixture::new();
    f.recipe.limits.entries = 3;
    let err = f.install(&f.lock).unwrap_err().to_string();
    assert!(
        err.contains("hello") && err.contains("data.tar") && err.contains("3 entries"),
        "{err}"
    );
    f.recipe.limits.entries = 7;
    f.install(&f.lock).unwrap();
}

#[test]
fn a_package_from_a_repository_the_lock_does_not_list_is_refused() {
    let f = Fixture::new();
    let mut lock = f.lock.clone();
    lock.packages.get_mut("hello").unwrap().repository = "elsewhere".into();
    let err = f.install(&lock).unwrap_err();
    assert!(
        err.to_string().contains("which the lock does not list"),
        "{err}"
    );
}

#[test]
fn an_inrelease_signed_by_another_key_than_locked_is_refused() {
    let f = Fixture::new();
    let mut lock = f.lock.clone();
    lock.repositories.get_mut("test").unwrap().signed_by = "0".repeat(40);
    let err = inner(f.install(&lock).unwrap_err());
    assert!(matches!(err, DebianError::LockMismatch { .. }), "{err:?}");
}

#[test]
fn an_inrelease_signed_by_a_key_outside_the_keyring_is_refused() {
    let f = Fixture::new();
    let (stranger, _) = signed("Origin: other\n");
    let mut keyring = Vec::new();
    stranger.serialize(&mut keyring).unwrap();
    std::fs::write(f.dir.path().join("keyring.gpg"), keyring).unwrap();
    let err = inner(f.install(&f.lock).unwrap_err());
    assert!(matches!(err, DebianError::Signature { .. }), "{err:?}");
}

#[test]
fn an_unsigned_release_is_refused() {
    let f = Fixture::new();
    let unsigned = b"Origin: Test\nSuite: stable\nSHA256:\n".to_vec();
    f.cache(&unsigned);
    let mut lock = f.lock.clone();
    lock.repositories.get_mut("test").unwrap().inrelease_sha256 = Sha256Digest::of(&unsigned);
    let err = inner(f.install(&lock).unwrap_err());
    assert!(matches!(err, DebianError::Signature { .. }), "{err:?}");
}

#[test]
fn an_index_the_signed_inrelease_gives_another_digest_is_refused() {
    let f = Fixture::new();
    let mut lock = f.lock.clone();
    lock.packages.get_mut("hello").unwrap().index_sha256 = Sha256Digest::of(b"other index");
    let err = inner(f.install(&lock).unwrap_err());
    assert!(
        matches!(&err, DebianError::LockMismatch { detail, .. } if detail.contains("gives that index as")),
        "{err:?}"
    );
}

#[test]
fn a_damaged_cached_package_is_dropped_not_installed() {
    let f = Fixture::new();
    let cached = f
        .dir
        .path()
        .join("cache/debs")
        .join(Sha256Digest::of(&f.deb).hex());
    std::fs::write(&cached, b"rotten").unwrap();
    let err = f.install(&f.lock).unwrap_err();
    assert!(
        matches!(&err, DebianError::Offline { what } if what.contains("package `hello` 1.0-1")),
        "{err:?}"
    );
    assert!(!cached.exists(), "a damaged cache entry is removed");
}

#[test]
fn platforms_map_to_debian_architectures() {
    let arch = |architecture: &str, variant: Option<&str>| {
        debian_arch(&Platform {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        })
    };
    assert_eq!(arch("amd64", None).unwrap(), "amd64");
    assert_eq!(arch("arm64", Some("v8")).unwrap(), "arm64");
    assert_eq!(arch("arm", Some("v7")).unwrap(), "armhf");
    assert_eq!(arch("arm", Some("v5")).unwrap(), "armel");
    assert_eq!(arch("386", None).unwrap(), "i386");
    assert_eq!(arch("ppc64le", None).unwrap(), "ppc64el");
    assert!(matches!(
        arch("mips64le", None),
        Err(DebianError::Architecture(a)) if a == "mips64le"
    ));
    // 32-bit Arm without a variant has no one Debian architecture.
    assert!(arch("arm", None).is_err());
}

/// A served, signed repository: each package (name, version, architecture, Depends)
/// in one `main/binary-amd64/Packages` index; the keyring is written to `dir`.
fn serve_repository(dir: &Path, packages: &[(&str, &str, &str, &str)]) -> FakeRegistry {
    let mut files = BTreeMap::new();
    let mut index = String::new();
    for (name, version, arch, depends) in packages {
        let mut control = format!("Package: {name}\nVersion: {version}\nArchitecture: {arch}\n");
        if !depends.is_empty() {
            control.push_str(&format!("Depends: {depends}\n"));
        }
        let doc = format!("./usr/share/doc/{name}/");
        let readme = format!("{doc}README");
        let text = format!("{name} {version} {arch}\n");
        let bytes = deb(
            &control,
            &[
                ("./usr/", b"", 0o755),
                ("./usr/share/", b"", 0o755),
                ("./usr/share/doc/", b"", 0o755),
                (&doc, b"", 0o755),
                (&readme, text.as_bytes(), 0o644),
            ],
        );
        let filename = format!("pool/main/{name}_{version}_{arch}.deb");
        index.push_str(&format!(
            "{control}Filename: {filename}\nSize: {}\nSHA256: {}\n\n",
            bytes.len(),
            Sha256Digest::of(&bytes).hex()
        ));
        files.insert(format!("/debian/{filename}"), bytes);
    }
    let release = format!(
        "Origin: Test\nSuite: stable\nSHA256:\n {} {} main/binary-amd64/Packages\n",
        Sha256Digest::of(index.as_bytes()).hex(),
        index.len()
    );
    let (cert, inrelease) = signed(&release);
    let mut keyring = Vec::new();
    cert.serialize(&mut keyring).unwrap();
    std::fs::write(dir.join("keyring.gpg"), keyring).unwrap();
    files.insert(
        "/debian/dists/stable/main/binary-amd64/Packages".into(),
        index.into_bytes(),
    );
    files.insert("/debian/dists/stable/InRelease".into(), inrelease);
    FakeRegistry::start(move |r| match files.get(&r.target) {
        Some(bytes) => answer(200).body(bytes),
        None => answer(404),
    })
}

#[test]
fn resolving_picks_the_newest_version_for_the_architecture_with_its_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_repository(
        dir.path(),
        &[
            ("hello", "0.9-1", "amd64", ""),
            ("hello", "1.0-1", "amd64", "libgreet (>= 2)"),
            ("libgreet", "1.5-1", "amd64", ""),
            ("libgreet", "2.1-1", "amd64", ""),
            // Newer, but for another architecture.
            ("libgreet", "3.0-1", "arm64", ""),
            ("unrelated", "1.0-1", "all", ""),
        ],
    );
    let recipe = write_recipe(dir.path(), &format!("http://{}/debian", server.host));
    let resolved = install_in(dir.path(), &recipe, RESOLVE, false).unwrap();
    let pinned: Vec<(&str, &str, &str)> = resolved
        .lock
        .packages
        .iter()
        .map(|(name, p)| (name.as_str(), p.version.as_str(), p.architecture.as_str()))
        .collect();
    assert_eq!(
        pinned,
        [("hello", "1.0-1", "amd64"), ("libgreet", "2.1-1", "amd64")]
    );
    assert_eq!(resolved.lock.requested, ["hello"]);
    assert_eq!(
        resolved.lock.packages["hello"].index,
        "main/binary-amd64/Packages"
    );
    assert!(
        resolved.warnings[0].contains("resolved 2 packages and pinned them"),
        "{:?}",
        resolved.warnings
    );
    let names: Vec<&str> = resolved.packages.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["hello", "libgreet"]);

    // The lock rebuilds offline from the cache, asking the mirror nothing.
    let asked = server.requests().len();
    let locked = install_in(dir.path(), &recipe, Pins::Locked(&resolved.lock), true).unwrap();
    assert_eq!(locked.lock, resolved.lock);
    assert!(locked.warnings.is_empty());
    assert_eq!(server.requests().len(), asked);
}

#[test]
fn a_package_nobody_has_is_unsatisfiable() {
    let dir = tempfile::tempdir().unwrap();
    let server = serve_repository(dir.path(), &[("hello", "1.0-1", "amd64", "libmissing")]);
    let recipe = write_recipe(dir.path(), &format!("http://{}/debian", server.host));
    let err = install_in(dir.path(), &recipe, RESOLVE, false).unwrap_err();
    assert!(
        matches!(&err, DebianError::Unsatisfiable { chain, .. } if chain.contains("hello")),
        "{err:?}"
    );
}
