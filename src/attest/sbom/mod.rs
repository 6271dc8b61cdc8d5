//! SBOMs of the image: SPDX 2.3 JSON ([`spdx_json`]) and CycloneDX 1.6 JSON
//! ([`cyclonedx_json`]).
//!
//! Takes [`ImageContents`] (the regular files as the layers actually wrote them, each
//! traced to its source) plus the SHA-1 of each file's content, which SPDX 2.3 requires
//! on every file (clause 8.4). Guarantees: one package/component per source, one per
//! regular file, each file linked to what supplied it; the bytes depend only on the
//! input (time is the build epoch; document ids are derived from a digest over the
//! input; everything sorted; JSON keys sorted); no host path appears, only paths as
//! written in the recipe and paths inside the image.

mod cyclonedx;
mod spdx;

pub use cyclonedx::{cyclonedx_json, write_cyclonedx_json};
pub use spdx::{image_verification_code, spdx_json, write_spdx_json};

use crate::attest::contents::{
    BaseInfo, FileOrigin, ImageContents, ImageFile, Sha1Lookup, SourceInfo,
};
use crate::digest::Sha256Digest;
use crate::resolve::LockedKind;
use serde::Serialize;
use sha1::{Digest as _, Sha1};

pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";

#[derive(Debug, Serialize)]
pub struct SbomInput<'a> {
    pub image_name: &'a str,
    pub epoch: u64,
    /// `linux/amd64`.
    pub platform: &'a str,
    /// The recipe's file name (`hello.yaml`), never a host path.
    pub recipe_file_name: &'a str,
    pub contents: &'a ImageContents<'a>,
    pub cairn_version: &'a str,
    /// Must give every regular file's SHA-1; a function of `contents`, so it does not
    /// take part in the document digest.
    #[serde(skip)]
    pub sha1: &'a dyn Sha1Lookup,
    /// The image's package verification code ([`image_verification_code`] of the
    /// files of `contents`), computed before `contents` is; a function of `contents`
    /// and `sha1`, so it does not take part in the document digest either.
    #[serde(skip)]
    pub image_verification_code: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SbomError {
    #[error("no SHA-1 for {path} ({sha256}), which SPDX 2.3 requires on every file")]
    MissingSha1 { path: String, sha256: Sha256Digest },
    #[error("writing the SBOM: {0}")]
    Write(#[source] std::io::Error),
}

/// SHA-256 over everything the documents say (format tag included), so that two
/// different documents never share a namespace or serial number, and one input always
/// gets the same.
fn document_digest(input: &SbomInput) -> Sha256Digest {
    #[derive(Serialize)]
    struct Identity<'a> {
        format: &'static str,
        input: &'a SbomInput<'a>,
    }
    // Streamed into the hash: the input lists every file of the image. Field order
    // is fixed and every map is sorted, so the bytes are stable.
    let mut hashing = crate::digest::HashingWriter::new(std::io::sink());
    serde_json::to_writer(
        &mut hashing,
        &Identity {
            format: "cairn-sbom-1",
            input,
        },
    )
    .expect("SBOM input serialises");
    hashing.finish().0
}

/// What supplied a file: one SPDX package / CycloneDX component each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Supplier<'a> {
    Source(&'a str),
    /// Made by cairn in place of a script of this source (a Debian package): the
    /// source's SBOM entry, but not among the files the package contains.
    Generated(&'a str),
    /// Inline `file:` content of the recipe.
    Recipe,
    /// `/etc/passwd` and `/etc/group` generated from `accounts:`.
    Accounts,
    /// A layer of the base image.
    Base,
}

impl<'a> Supplier<'a> {
    fn of(file: &ImageFile<'a>) -> Self {
        match file.origin() {
            FileOrigin::Source { name, .. } => Supplier::Source(name),
            FileOrigin::Generated { by, .. } => Supplier::Generated(by),
            FileOrigin::Recipe { .. } => Supplier::Recipe,
            FileOrigin::Accounts => Supplier::Accounts,
            FileOrigin::Base => Supplier::Base,
        }
    }
}

/// Whether any file came from the recipe itself / from `accounts:`: their pseudo
/// sources are listed only then.
fn pseudo_suppliers(contents: &ImageContents) -> (bool, bool) {
    let has = |s: Supplier| contents.files.iter().any(|f| Supplier::of(&f) == s);
    (has(Supplier::Recipe), has(Supplier::Accounts))
}

/// A file's trace in one fixed, parseable form, shared by both formats:
/// `layer=<layer> origin=source source=<name> recipe-line=<n> member=<path in source>`,
/// `layer=<layer> origin=recipe recipe-line=<n>`, `layer=<layer> origin=accounts` or
/// `layer=<layer> origin=generated source=<name> recipe-line=<n> inputs=<count>` (the
/// inputs themselves: [`generated_from`]).
/// `member` comes last and runs to the end (member paths may contain spaces); it is
/// left out for a single-file source, which has no members.
fn trace(file: &ImageFile) -> String {
    let layer = file.layer();
    match file.origin() {
        FileOrigin::Source {
            name,
            rel_path: "",
            line,
        } => {
            format!("layer={layer} origin=source source={name} recipe-line={line}")
        }
        FileOrigin::Source {
            name,
            rel_path,
            line,
        } => format!(
            "layer={layer} origin=source source={name} recipe-line={line} member={rel_path}"
        ),
        FileOrigin::Recipe { line } => format!("layer={layer} origin=recipe recipe-line={line}"),
        FileOrigin::Generated { by, line, inputs } => format!(
            "layer={layer} origin=generated source={by} recipe-line={line} inputs={}",
            inputs.len()
        ),
        FileOrigin::Accounts => format!("layer={layer} origin=accounts"),
        FileOrigin::Base => format!("layer={layer} origin=base"),
    }
}

/// The files a generated file was made from, one `generated-from=sha256:<hex> <path>`
/// line each (the path last: it may hold spaces), in the order cairn read them.
fn generated_from(file: &ImageFile) -> Vec<String> {
    match file.origin() {
        FileOrigin::Generated { inputs, .. } => inputs
            .iter()
            .map(|(path, sha256)| format!("generated-from={sha256} {path}"))
            .collect(),
        _ => Vec::new(),
    }
}

/// The purl of the base image (purl type `oci`): the repository's last component as
/// the name, the manifest digest as the version, and for a registry image the
/// `repository_url` qualifier.
fn base_purl(base: &BaseInfo) -> String {
    let (location, name) = match base.reference.strip_prefix("layout:") {
        Some(path) => (
            None,
            path.trim_end_matches('/')
                .rsplit('/')
                .next()
                .unwrap_or(path),
        ),
        None => {
            let without_tag = match base.reference.rsplit_once(':') {
                Some((head, tag)) if !tag.contains('/') => head,
                _ => base.reference.as_str(),
            };
            (
                Some(without_tag),
                without_tag.rsplit('/').next().unwrap_or(without_tag),
            )
        }
    };
    let mut purl = format!(
        "pkg:oci/{}@sha256%3A{}",
        percent_encode(&name.to_ascii_lowercase()),
        base.manifest_digest.hex()
    );
    if let Some(url) = location {
        purl.push_str(&format!("?repository_url={}", percent_encode_url(url)));
    }
    purl
}

/// Percent-encodes a qualifier value, keeping `/` and `:` readable.
fn percent_encode_url(s: &str) -> String {
    s.split('/')
        .map(|part| {
            part.split(':')
                .map(percent_encode)
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `pkg:generic/<name>?checksum=sha256:<hex>` for a source whose digest is the SHA-256
/// of one file (a file or an archive). A directory's digest is cairn's own tree digest,
/// which the purl `checksum` qualifier (a checksum of the package file) cannot carry.
/// A Debian package: `pkg:deb/debian/<name>@<version>?arch=<arch>` (the purl `deb`
/// type; scanners match vulnerabilities by it).
pub(crate) fn purl(source: &SourceInfo) -> Option<String> {
    if let Some(p) = &source.package {
        return Some(format!(
            "pkg:deb/debian/{}@{}?arch={}",
            percent_encode(&p.name),
            percent_encode(&p.version),
            percent_encode(&p.architecture)
        ));
    }
    match source.kind {
        LockedKind::File | LockedKind::Archive => Some(format!(
            "pkg:generic/{}?checksum=sha256:{}",
            percent_encode(&source.name),
            source.sha256.hex()
        )),
        LockedKind::Dir | LockedKind::Deb => None,
    }
}

/// The `key=value` words a Debian package's SBOM entry adds to its trace (each value
/// free of spaces), for `cairn trace`.
fn package_trace(source: &SourceInfo) -> String {
    match &source.package {
        Some(p) => format!(
            " source={} version={} arch={} repository={} suite={} index={} index-digest={} inrelease-digest={}",
            source.name, p.version, p.architecture, p.repository, p.suite, p.index, p.index_sha256, p.inrelease_sha256
        ),
        None => String::new(),
    }
}

/// Percent-encodes all but the purl spec's unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A name-based (SHA-1, version 5) UUID as RFC 4122 / RFC 9562 define it.
fn uuid_v5(namespace: &[u8; 16], name: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(namespace);
    hasher.update(name.as_bytes());
    let hash = hasher.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&hash[..16]);
    b[6] = (b[6] & 0x0f) | 0x50;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// Octal mode with at least four digits (`0755`, `1777`).
fn octal_mode(mode: u32) -> String {
    format!("{mode:04o}")
}

/// Writes the SBOM JSON bytes: compact, with a final newline. Serialised straight from the
/// typed documents, whose field order is fixed and whose maps are sorted, so the bytes
/// are stable without building a `serde_json::Value` of a document that lists every
/// file of the image.
fn write_json<T: Serialize>(value: &T, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(std::io::Error::from)?;
    out.write_all(b"\n")
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::attest::contents::{image_files, SourceInfo};
    use crate::digest::Sha1Index;
    use crate::layers::{FileData, LayerTree, Origin, TreeEntry, TreeEntryKind};
    use crate::recipe::Owner;

    /// A file of the test image: a layer of its own (named as the layer that wrote it)
    /// holding its entry at its path relative to the image root (change them to change
    /// the image).
    pub struct TestFile {
        pub layer: LayerTree,
    }

    impl TestFile {
        pub fn entry_mut(&mut self) -> &mut TreeEntry {
            let key = self.layer.entries.keys().next().expect("one entry").clone();
            self.layer.entries.get_mut(&key).expect("its own key")
        }
    }

    pub fn file(
        key: &'static str,
        content: &[u8],
        layer: &'static str,
        origin: Origin,
    ) -> TestFile {
        let entry = TreeEntry {
            kind: TreeEntryKind::File(FileData::Inline(content.into())),
            mode: 0o755,
            owner: Owner::ROOT,
            origin,
        };
        TestFile {
            layer: LayerTree {
                name: layer.to_string(),
                entries: [(key.to_string(), entry)].into_iter().collect(),
            },
        }
    }

    pub fn from_source(name: &str, rel_path: &str, line: u32) -> Origin {
        Origin::Source {
            name: std::sync::Arc::new(name.to_string()),
            rel_path: rel_path.into(),
            line,
        }
    }

    /// An image with files from an archive (with a member path containing a space), a
    /// single-file source, a directory source, inline recipe content and accounts,
    /// sorted by path.
    pub fn files() -> Vec<TestFile> {
        vec![
            file("etc/group", b"app:x:65532:\n", "accounts", Origin::Accounts),
            file("etc/motd", b"hi\n", "base", Origin::Recipe { line: 21 }),
            file(
                "opt/tools/read me",
                b"docs",
                "base",
                from_source("tools", "read me", 17),
            ),
            file(
                "opt/tools/tool",
                b"#!/bin/sh\n",
                "base",
                from_source("tools", "bin/tool", 17),
            ),
            file("usr/bin/hello", b"hello", "app", from_source("app", "", 25)),
            file(
                "var/www/index.html",
                b"<html>",
                "app",
                from_source("site_files", "index.html", 28),
            ),
        ]
    }

    /// The image of `files`, with its three sources.
    pub fn contents(files: &[TestFile]) -> ImageContents<'_> {
        let sources = vec![
            SourceInfo {
                name: "app".to_string(),
                kind: LockedKind::File,
                path: "app/hello.sh".to_string(),
                sha256: Sha256Digest::of(b"hello"),
                signer: Some("ab".repeat(32)),
                license: Some("MIT".to_string()),
                package: None,
            },
            SourceInfo {
                name: "site_files".to_string(),
                kind: LockedKind::Dir,
                path: "site/".to_string(),
                sha256: Sha256Digest::of(b"site tree"),
                signer: None,
                license: Some("LicenseRef-site AND CC-BY-4.0".to_string()),
                package: None,
            },
            SourceInfo {
                name: "tools".to_string(),
                kind: LockedKind::Archive,
                path: "vendor/tools.tar.gz".to_string(),
                sha256: Sha256Digest::of(b"tools archive"),
                signer: None,
                license: None,
                package: None,
            },
        ];
        ImageContents {
            files: image_files(None, files.iter().map(|f| &f.layer)),
            sources,
            base: None,
        }
    }

    pub fn sha1_index(contents: &ImageContents) -> Sha1Index {
        let bytes: [&[u8]; 6] = [
            b"app:x:65532:\n",
            b"hi\n",
            b"docs",
            b"#!/bin/sh\n",
            b"hello",
            b"<html>",
        ];
        let index: Sha1Index = bytes
            .iter()
            .map(|b| (Sha256Digest::of(b), Sha1::digest(b).into()))
            .collect();
        assert!(contents
            .files
            .iter()
            .all(|f| index.contains_key(&f.sha256())));
        index
    }

    /// [`contents`] of `files` and its [`sha1_index`] built again, every list and map
    /// filled in reverse order through its own `HashMap` (each has its own random
    /// seed), then put in the order `ImageContents` promises (files by path, sources by
    /// name). Equal to the first build, but sharing no insertion order with it (nor any
    /// allocation, given `files` of their own): a generator whose bytes depend on
    /// either would give other bytes.
    pub fn contents_built_in_reverse(files: &[TestFile]) -> (ImageContents<'_>, Sha1Index) {
        let fresh = contents(files);
        // The layers merged in the map's order: the files come out sorted by path.
        let by_path: std::collections::HashMap<&String, &LayerTree> = files
            .iter()
            .rev()
            .map(|f| (f.layer.entries.keys().next().expect("one entry"), &f.layer))
            .collect();
        let by_name: std::collections::HashMap<String, SourceInfo> = fresh
            .sources
            .into_iter()
            .rev()
            .map(|s| (s.name.clone(), s))
            .collect();
        let mut sources: Vec<SourceInfo> = by_name.into_values().collect();
        sources.sort_by(|a, b| a.name.cmp(&b.name));
        let contents = ImageContents {
            files: image_files(None, by_path.into_values()),
            sources,
            base: fresh.base,
        };
        let sha1: std::collections::HashMap<Sha256Digest, [u8; 20]> =
            sha1_index(&contents).into_iter().rev().collect();
        let sha1 = sha1.into_iter().collect();
        (contents, sha1)
    }

    pub fn input<'a>(contents: &'a ImageContents<'a>, sha1: &'a Sha1Index) -> SbomInput<'a> {
        SbomInput {
            image_name: "hello",
            epoch: 1_700_000_000,
            platform: "linux/amd64",
            recipe_file_name: "hello.yaml",
            contents,
            cairn_version: "0.1.0",
            sha1,
            // Empty when a SHA-1 is missing: the document then fails on that file.
            image_verification_code: image_verification_code(contents.files.clone(), sha1)
                .unwrap_or_default(),
        }
    }

    /// Every string in a JSON document.
    pub fn strings(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::String(s) => out.push(s.clone()),
            serde_json::Value::Array(items) => items.iter().for_each(|v| strings(v, out)),
            serde_json::Value::Object(map) => map.values().for_each(|v| strings(v, out)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn uuid_v5_matches_rfc_9562() {
        // RFC 9562 appendix A.4: UUIDv5 of "www.example.com" in the DNS namespace.
        let dns = [
            0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4,
            0x30, 0xc8,
        ];
        assert_eq!(
            uuid_v5(&dns, "www.example.com"),
            "2ed6657d-e927-568b-95e1-2665a8aea6a2"
        );
    }

    #[test]
    fn document_digest_covers_every_input_field() {
        let files = files();
        let contents = contents(&files);
        let sha1 = sha1_index(&contents);
        let base = input(&contents, &sha1);
        let d = document_digest(&base);
        assert_eq!(d, document_digest(&input(&contents, &sha1)));
        let mut changed_files = super::test_support::files();
        changed_files[0].entry_mut().mode = 0o600;
        let changed_contents = super::test_support::contents(&changed_files);
        let variants = [
            SbomInput {
                image_name: "other",
                ..input(&contents, &sha1)
            },
            SbomInput {
                epoch: 1,
                ..input(&contents, &sha1)
            },
            SbomInput {
                platform: "linux/arm64",
                ..input(&contents, &sha1)
            },
            SbomInput {
                recipe_file_name: "other.yaml",
                ..input(&contents, &sha1)
            },
            SbomInput {
                cairn_version: "0.2.0",
                ..input(&contents, &sha1)
            },
            input(&changed_contents, &sha1),
        ];
        for v in &variants {
            assert_ne!(document_digest(v), d, "{v:?}");
        }
    }

    #[test]
    fn trace_puts_a_member_with_spaces_last() {
        let files = files();
        let c = contents(&files);
        let traces: Vec<String> = c.files.iter().map(|f| trace(&f)).collect();
        assert_eq!(
            traces,
            [
                "layer=accounts origin=accounts",
                "layer=base origin=recipe recipe-line=21",
                "layer=base origin=source source=tools recipe-line=17 member=read me",
                "layer=base origin=source source=tools recipe-line=17 member=bin/tool",
                "layer=app origin=source source=app recipe-line=25",
                "layer=app origin=source source=site_files recipe-line=28 member=index.html",
            ]
        );
    }

    #[test]
    fn base_purls_name_the_repository_and_the_manifest_digest() {
        let digest = Sha256Digest::of(b"m");
        let registry = BaseInfo {
            reference: "127.0.0.1:5000/lib/debian:12".into(),
            manifest_digest: digest,
            pinned: digest,
        };
        assert_eq!(
            base_purl(&registry),
            format!(
                "pkg:oci/debian@sha256%3A{}?repository_url=127.0.0.1:5000/lib/debian",
                digest.hex()
            )
        );
        let layout = BaseInfo {
            reference: "layout:images/Base/".into(),
            ..registry
        };
        assert_eq!(
            base_purl(&layout),
            format!("pkg:oci/base@sha256%3A{}", digest.hex())
        );
    }

    #[test]
    fn purls_carry_the_file_digest_and_only_for_files_and_archives() {
        let c = contents(&[]);
        assert_eq!(
            purl(&c.sources[0]).as_deref(),
            Some(
                format!(
                    "pkg:generic/app?checksum=sha256:{}",
                    Sha256Digest::of(b"hello").hex()
                )
                .as_str()
            )
        );
        assert_eq!(purl(&c.sources[1]), None);
        assert!(purl(&c.sources[2])
            .unwrap()
            .starts_with("pkg:generic/tools?checksum=sha256:"));
        assert_eq!(percent_encode("a b@c"), "a%20b%40c");
    }
}
