//! Entry points for fuzzing the readers of untrusted input, one per target in `fuzz/`.
//!
//! Each function takes arbitrary bytes, hands them to the same parser cairn uses on
//! real input, and ignores the parser's errors: a target fails only by panicking,
//! hanging or running out of memory, or when a cheap invariant below does not hold
//! (e.g. a ledger entry read back from its own line is the same entry). The cargo-fuzz
//! targets in `fuzz/fuzz_targets/` call them on nightly; `tests/it/fuzz_corpora.rs`
//! replays every checked-in corpus and regression input through them on stable, so a
//! crash once found stays fixed.
//!
//! Where one target covers several readers, the first byte of the input chooses which
//! (its value modulo the number of readers), and the rest is the reader's input.
//! Readers that take a file (archives, `.deb`s) get the bytes written to a temporary
//! directory, removed afterwards.

use crate::attest::dsse::Envelope;
use crate::base::BaseFs;
use crate::debian::index::{parse_index, IndexOrigin};
use crate::digest::Sha256Digest;
use crate::keys::{SigningKey, VerifyingKey};
use crate::ledger::note::{self, Checkpoint};
use crate::ledger::{Entry, Stored};
use crate::oci::compression::Compression;
use crate::registry::api::ManifestDoc;
use crate::registry::auth::{self, Credentials, TokenResponse};
use crate::snapshot::limits::{Budget, Limits};
use std::path::Path;
use std::sync::Arc;

/// The first byte of `data` as a choice among `choices` readers, and the rest.
fn choose(data: &[u8], choices: u8) -> Option<(u8, &[u8])> {
    let (&first, rest) = data.split_first()?;
    Some((first % choices, rest))
}

/// "Now" for InRelease checks: late enough for any seed's signature, so that a valid
/// one reaches the Release parser.
const NOW: u64 = 4_000_000_000;

/// A key no one else holds, for the readers that check signatures: the fuzzer cannot
/// forge one, but every path up to the signature check is exercised.
fn fuzz_key() -> VerifyingKey {
    SigningKey::from_bytes(&[7; 32]).verifying_key()
}

/// `data` written to a file `name` in a new temporary directory, which is passed on
/// and then removed.
fn with_file(data: &[u8], name: &str, read: impl FnOnce(&Path, &Path)) {
    let dir = tempfile::tempdir().expect("a temporary directory for the input");
    let path = dir.path().join(name);
    std::fs::write(&path, data).expect("the input written to a temporary file");
    read(&path, &dir.path().join("staging"));
}

/// The recipe parser and validator, on any bytes (UTF-8 or not).
pub fn recipe(data: &[u8]) {
    let _ = crate::recipe::parse_bytes(Path::new("/nonexistent/fuzz.yaml"), data.to_vec());
}

/// The tar readers: an archive source (plain, gzip, zstd or xz, by magic bytes, as
/// `archive:` sources are read), or a base-image layer compressed with gzip members,
/// zstd or nothing.
pub fn archive(data: &[u8]) {
    let Some((choice, rest)) = choose(data, 4) else {
        return;
    };
    let layer_compression = match choice {
        0 => {
            with_file(rest, "source.tar", |path, staging| {
                let _ = crate::snapshot::archive::unpack(path, staging, Limits::DEFAULT);
            });
            return;
        }
        1 => Compression::Gzip,
        2 => Compression::Zstd,
        _ => Compression::None,
    };
    let Ok(decoded) = layer_compression.decompressing(rest) else {
        return;
    };
    let _ = BaseFs::default().apply_layer(0, decoded, &mut Budget::new(Limits::DEFAULT));
}

/// The `.deb` reader: the `ar` container, the control tarball and the data tarball.
pub fn deb(data: &[u8]) {
    with_file(data, "fuzz.deb", |path, staging| {
        let _ = std::fs::create_dir(staging);
        let _ = crate::debian::deb::read(path, "fuzz", staging, Limits::DEFAULT);
    });
}

/// A certificate file a package ships under `/usr/share/ca-certificates`, through
/// what cairn makes of it in place of `update-ca-certificates` (the PEM reader, the
/// DER walk to the subject, its canonical form and hash). The bundle is the file's
/// bytes, with a newline added if they lack one.
pub fn ca_certificate(data: &[u8]) {
    use crate::debian::ca_certificates::{update, CertFile};
    let file = CertFile {
        path: "/usr/share/ca-certificates/fuzz/x.crt".into(),
        bytes: data.to_vec(),
    };
    let updated = update(&[file], None, &[]);
    let mut expected = data.to_vec();
    if data.last().is_some_and(|&b| b != b'\n') {
        expected.push(b'\n');
    }
    assert_eq!(updated.bundle, expected);
}

/// What cairn makes in place of `ldconfig` from a package's bytes: the first byte
/// chooses whether the rest is a shared object in `/usr/lib` (the ELF reader) or
/// `/etc/ld.so.conf` (the conf reader, its `include` globs and directories). The
/// cache is always made, in the new format, with at most the one library.
pub fn ld_so_cache(data: &[u8]) {
    use crate::debian::ld_so_cache::{generate, FileBytes, LdSoCache, Node, Tree, CONF};
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let mut tree = Tree::default();
    let file = Node::File(FileBytes::Inline(rest.into()));
    tree.insert("lib", Node::Symlink("usr/lib".into()));
    tree.insert(
        "etc/ld.so.conf.d/a.conf",
        Node::File(FileBytes::Inline(b"/usr/lib\n"[..].into())),
    );
    if which % 2 == 0 {
        tree.insert("usr/lib/libfuzz.so.1", file);
    } else {
        tree.insert(CONF, file);
    }
    let config = LdSoCache {
        package: "libc-bin".into(),
        architecture: "amd64".into(),
        generator: "fuzz".into(),
    };
    let cache = generate(&tree, &config).expect("inline bytes are always read");
    assert!(cache.bytes.starts_with(b"glibc-ld.so.cache1.1"));
    let entries = u32::from_le_bytes(cache.bytes[20..24].try_into().unwrap());
    assert!(entries <= 1, "{entries} entries from one library");
    assert!(cache.bytes.ends_with(b"fuzz"));
}

/// A Packages index (with each package's dependency relations) that is also read as
/// a base image's dpkg status (both layouts), a Release text, or an InRelease checked
/// against a keyring. An InRelease input is a little-endian `u16` keyring length, the
/// keyring, then the InRelease bytes.
pub fn debian_index(data: &[u8]) {
    let Some((choice, rest)) = choose(data, 3) else {
        return;
    };
    match choice {
        0 => {
            for per_package in [false, true] {
                let file = crate::debian::status::StatusFile {
                    path: "/var/lib/dpkg/status".into(),
                    text: rest,
                    per_package,
                };
                let _ = crate::debian::status::read(&[file], "amd64");
            }
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let origin = Arc::new(IndexOrigin {
                repository: "fuzz".into(),
                path: "main/binary-amd64/Packages".into(),
                sha256: Sha256Digest::of(rest),
            });
            let Ok(candidates) = parse_index(text, "amd64", &origin) else {
                return;
            };
            for pair in candidates.windows(2) {
                let _ = pair[0].dependencies();
                // Version order must be an order, or the solver's choice is arbitrary.
                assert_eq!(
                    pair[0].version.cmp(&pair[1].version),
                    pair[1].version.cmp(&pair[0].version).reverse(),
                    "versions {} and {} compare inconsistently",
                    pair[0].version,
                    pair[1].version
                );
            }
        }
        1 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = crate::debian::release::parse_release(text, "fuzz".into());
            }
        }
        _ => {
            let Some((len, rest)) = rest.split_first_chunk::<2>() else {
                return;
            };
            let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
            let (keyring, inrelease) = rest.split_at(len);
            let _ = crate::debian::release::verify(inrelease, keyring, "fuzz.gpg", NOW, true);
        }
    }
}

/// Registry JSON: an image manifest, an index, a token response, a
/// `WWW-Authenticate` challenge, or a Docker credentials file.
pub fn registry_json(data: &[u8]) {
    let Some((choice, rest)) = choose(data, 5) else {
        return;
    };
    match choice {
        0 | 1 => {
            let media_type = if choice == 0 {
                crate::oci::media_type::OCI_MANIFEST
            } else {
                crate::oci::media_type::OCI_INDEX
            };
            if let Ok(doc) = ManifestDoc::parse(rest, media_type, "the fuzz input") {
                for blob in doc.blobs() {
                    let _ = crate::registry::oci_sha256(blob);
                }
                let _ = doc.annotations();
                let _ = (doc.subject(), doc.artifact_type(), doc.is_index());
            }
        }
        2 => {
            let _ = serde_json::from_slice::<TokenResponse>(rest);
        }
        3 => {
            if let Ok(header) = std::str::from_utf8(rest) {
                let _ = auth::parse_challenge(header);
            }
        }
        _ => {
            if let Ok(credentials) = Credentials::from_docker_config(rest) {
                let _ = credentials.login_for("registry.example");
            }
        }
    }
}

/// Ledger lines (each must read back from its own canonical line unchanged), a
/// checkpoint body (parsing is strict, so a parsed checkpoint has exactly the text it
/// was read from), or a signed note.
pub fn ledger(data: &[u8]) {
    let Some((choice, rest)) = choose(data, 3) else {
        return;
    };
    let key = fuzz_key();
    match choice {
        0 => {
            let trusted = [(crate::keys::key_id(&key), key)];
            let mut stored = Vec::new();
            for line in rest.split(|&b| b == b'\n') {
                let Ok(entry) = serde_json::from_slice::<Entry>(line) else {
                    continue;
                };
                let canonical = entry.line();
                let again: Entry =
                    serde_json::from_slice(&canonical).expect("an entry's own line reads back");
                assert_eq!(again, entry, "an entry changed on its way through its line");
                assert_eq!(again.line(), canonical, "an entry's line is not canonical");
                let _ = entry.verify(&trusted);
                stored.push(Stored {
                    entry,
                    line: line.to_vec(),
                });
            }
            let _ = crate::ledger::deployments(&stored);
        }
        1 => {
            let Ok(body) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(checkpoint) = Checkpoint::parse(body) {
                assert_eq!(checkpoint.body(), body, "a checkpoint has another text");
            }
        }
        _ => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = note::verify(text, "fuzz.example/ledger", &key);
            }
        }
    }
}

/// DSSE envelopes: parsed, written back (the same envelope must read back), and
/// verified against a key.
pub fn dsse(data: &[u8]) {
    let Ok(envelope) = Envelope::from_json(data) else {
        return;
    };
    let again =
        Envelope::from_json(&envelope.to_json()).expect("an envelope's own JSON reads back");
    assert_eq!(
        again, envelope,
        "an envelope changed on its way through its JSON"
    );
    let _ = envelope.verify(&[fuzz_key()]);
}

/// A unified kernel image from a disk's ESP, through what `cairn verify` makes of its
/// Authenticode signatures: the PE32+ layout and image hash, each `WIN_CERTIFICATE`'s
/// PKCS#7 walk, the signer's certificate, and the digest and RSA checks.
pub fn authenticode(data: &[u8]) {
    use crate::disk::authenticode::check::signatures;
    let Ok(signed) = signatures(data) else {
        return;
    };
    for signature in signed.signatures.iter().flatten() {
        let _ = signature.problems(signed.image_hash);
    }
}

/// A fuzzing entry point: takes any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/fuzz_targets/` and `fuzz/corpus/` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("recipe", recipe),
    ("archive", archive),
    ("deb", deb),
    ("debian_index", debian_index),
    ("registry_json", registry_json),
    ("ledger", ledger),
    ("dsse", dsse),
    ("ca_certificate", ca_certificate),
    ("ld_so_cache", ld_so_cache),
    ("authenticode", authenticode),
];
