//! Unit tests of a locked, offline install: a repository made in memory (a `.deb`
//! built with `ar` and `tar`, an InRelease clear-signed in-process with a throwaway
//! OpenPGP key), its files put in the package cache, then [`install`] checks every
//! link of the chain (InRelease -> index -> .deb) against the lock and the keyring,
//! with no network, gpg or apt tool.

use super::*;
use crate::recipe::Recipe;
use openpgp::cert::prelude::*;
use openpgp::policy::StandardPolicy;
use openpgp::serialize::stream::{Message, Signer};
use openpgp::serialize::Serialize as _;
use sequoia_openpgp as openpgp;
use std::io::Write as _;
use std::time::{Duration, UNIX_EPOCH};

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

/// A `.deb` of package `hello` holding `/usr/bin/hello` and a machine-readable
/// copyright file.
fn hello_deb() -> Vec<u8> {
    let control = tar_of(&[(
        "./control",
        b"Package: hello\nVersion: 1.0-1\nArchitecture: amd64\nMaintainer: Test <t@test.invalid>\nDescription: greets\n",
        0o644,
    )]);
    let data = tar_of(&[
        ("./usr/", b"", 0o755),
        ("./usr/bin/", b"", 0o755),
        ("./usr/bin/hello", b"#!/bin/sh\necho hello\n", 0o755),
        ("./usr/share/", b"", 0o755),
        ("./usr/share/doc/", b"", 0o755),
        ("./usr/share/doc/hello/", b"", 0o755),
        ("./usr/share/doc/hello/copyright", COPYRIGHT, 0o644),
    ]);
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
        let recipe_path = dir.path().join("pkgs.yaml");
        std::fs::write(
            &recipe_path,
            "cairn: 1\nname: pkgs\nepoch: 1700000000\nrepositories:\n  test:\n    mirror: http://127.0.0.1:9/debian\n    suite: stable\n    components: [main]\n    keyring: keyring.gpg\npackages: [hello]\nlayers:\n  - name: base\n    contents:\n      - dir: /tmp\n        mode: 0o1777\n",
        )
        .unwrap();
        let recipe = crate::recipe::load(&recipe_path).unwrap();
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

    fn spec(&self) -> &PackagesSpec {
        self.recipe.packages.as_ref().unwrap()
    }

    fn install(&self, lock: Option<&PackagesLock>) -> Result<InstalledPackages, DebianError> {
        let opts = PackageOptions {
            cache_dir: self.dir.path().join("cache"),
            now: NOW,
            host_sources: Vec::new(),
            offline: true,
        };
        install(
            &self.recipe,
            self.spec(),
            lock,
            LockMode::Locked,
            &opts,
            &self.dir.path().join("staging"),
            &NoProgress,
        )
    }
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
    let installed = f.install(Some(&f.lock)).unwrap();
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
fn a_lock_for_another_request_or_none_is_stale_in_a_locked_build() {
    let f = Fixture::new();
    let err = f.install(None).unwrap_err();
    assert!(matches!(err, DebianError::StaleLock { .. }), "{err:?}");

    let mut other = f.lock.clone();
    other.requested = vec!["hello".into(), "extra".into()];
    let err = f.install(Some(&other)).unwrap_err();
    assert!(matches!(err, DebianError::StaleLock { .. }), "{err:?}");

    let mut other_arch = f.lock.clone();
    other_arch.architecture = "arm64".into();
    let err = f.install(Some(&other_arch)).unwrap_err();
    assert!(matches!(err, DebianError::StaleLock { .. }), "{err:?}");
}

#[test]
fn a_package_from_a_repository_the_lock_does_not_list_is_refused() {
    let f = Fixture::new();
    let mut lock = f.lock.clone();
    lock.packages.get_mut("hello").unwrap().repository = "elsewhere".into();
    let err = f.install(Some(&lock)).unwrap_err();
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
    let err = inner(f.install(Some(&lock)).unwrap_err());
    assert!(matches!(err, DebianError::LockMismatch { .. }), "{err:?}");
}

#[test]
fn an_inrelease_signed_by_a_key_outside_the_keyring_is_refused() {
    let f = Fixture::new();
    let (stranger, _) = signed("Origin: other\n");
    let mut keyring = Vec::new();
    stranger.serialize(&mut keyring).unwrap();
    std::fs::write(f.dir.path().join("keyring.gpg"), keyring).unwrap();
    let err = inner(f.install(Some(&f.lock)).unwrap_err());
    assert!(matches!(err, DebianError::Signature { .. }), "{err:?}");
}

#[test]
fn an_unsigned_release_is_refused() {
    let f = Fixture::new();
    let unsigned = b"Origin: Test\nSuite: stable\nSHA256:\n".to_vec();
    f.cache(&unsigned);
    let mut lock = f.lock.clone();
    lock.repositories.get_mut("test").unwrap().inrelease_sha256 = Sha256Digest::of(&unsigned);
    let err = inner(f.install(Some(&lock)).unwrap_err());
    assert!(matches!(err, DebianError::Signature { .. }), "{err:?}");
}

#[test]
fn an_index_the_signed_inrelease_gives_another_digest_is_refused() {
    let f = Fixture::new();
    let mut lock = f.lock.clone();
    lock.packages.get_mut("hello").unwrap().index_sha256 = Sha256Digest::of(b"other index");
    let err = inner(f.install(Some(&lock)).unwrap_err());
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
    let err = f.install(Some(&f.lock)).unwrap_err();
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
