//! in-toto attestation Statement v1 (in-toto/attestation `spec/v1/statement.md`,
//! `resource_descriptor.md`) and its SLSA Provenance v1 predicate
//! (slsa.dev/spec/v1.0/provenance), modelled field for field with the specs' camelCase
//! names; the `in-toto` crate only knows Statement v0.1.
//!
//! Takes the facts of a finished build ([`ProvenanceFacts`]) or an SPDX document and
//! gives a [`Statement`] about the image manifest. Guarantees: no wall-clock time unless
//! the caller passes one (`--record-times`), no random invocation id, no host path
//! (sources are recorded as their recipe-relative paths, the recipe by its file name),
//! and canonical JSON bytes, so the same build gives the same statement. Empty optional
//! fields are omitted; on input, unset, `null` and empty are read alike, as the SLSA
//! parsing rules require, and unknown fields are ignored.

use crate::attest::contents::{BaseInfo, SourceInfo};
use crate::attest::dsse::{decode_base64, encode_base64};
use crate::digest::Sha256Digest;
use crate::oci::json::canonical_json;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const SLSA_PROVENANCE_V1: &str = "https://slsa.dev/provenance/v1";
pub const SPDX_PREDICATE: &str = "https://spdx.dev/Document";
pub const BUILDER_ID: &str = "https://cairn.dev/cairn";

/// cairn compiling one recipe into an OCI image layout.
///
/// - `externalParameters`: what the user chose. `recipe`: `{"path": <recipe file name,
///   no directory>, "digest": {"sha256": <hex of the recipe file's bytes>}}`; `lock`,
///   present when the recipe has a lock file: `{"path": <its file name>, "digest":
///   {"sha256": <hex>}}`. Rebuilding means running `cairn build` on that recipe and lock.
/// - `internalParameters`: what cairn derived and fixed for the build: `epoch` (the
///   timestamp written into the image, seconds since 1970, a number), `platform`
///   (`os/arch[/variant]`) and `outputFormat` (cairn's output format version; the same
///   recipe, inputs and `outputFormat` give the same image bytes).
/// - `resolvedDependencies`: one entry per recipe source, sorted by name: `name` the
///   source name, `uri` `file:<path as written in the recipe, relative to it>`,
///   `digest.sha256` the pinned digest that was verified, `annotations.kind` one of
///   `file`, `dir`, `archive`, `annotations.signer` the key id of the verified
///   signature over the source (if it had one), `annotations.license` its declared SPDX
///   license expression (if any). A Debian package (`deb:<name>`, kind `deb`) has its
///   purl as `uri`, the .deb's digest, and annotations `version`, `architecture`,
///   `filename`, `index`, `indexSha256`, `inRelease` and `signer` (the fingerprint of
///   the key that signed the InRelease), and `maintainerScripts` when it has any: per
///   script its `name`, `sha256`, `run: false` and `doneNatively` (what cairn did in its
///   place, e.g. the `update-alternatives` calls it made the links of). Then one entry
///   per apt repository:
///   `inrelease:<repository>`, `uri` `apt:<repository>/dists/<suite>/InRelease`, the
///   digest of the verified InRelease, `annotations.kind` `inrelease` and `signer`.
pub const BUILD_TYPE: &str = "https://cairn.dev/buildtypes/recipe/v1";

/// An in-toto Statement v1: what is attested (`subject`) and the claim (`predicate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub type_: String,
    pub subject: Vec<ResourceDescriptor>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// Optional in the spec; unset is the same as empty.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub predicate: Value,
}

impl Statement {
    /// Canonical JSON (compact, keys sorted): the DSSE payload.
    pub fn to_json(&self) -> Vec<u8> {
        canonical_json(self)
    }
}

/// A ResourceDescriptor v1. Every field is optional, though one of `uri`, `digest` or
/// `content` must be set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// Algorithm (`sha256`) to lower-case hex.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub digest: BTreeMap<String, String>,
    /// Bytes, base64 in JSON.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "base64_bytes"
    )]
    pub content: Option<Vec<u8>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub annotations: BTreeMap<String, Value>,
}

/// The SLSA Provenance v1 predicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    pub build_type: String,
    /// Required by SLSA, so always written (possibly `{}`).
    #[serde(default, deserialize_with = "null_as_default")]
    pub external_parameters: Map<String, Value>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Map::is_empty"
    )]
    pub internal_parameters: Map<String, Value>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunDetails {
    pub builder: Builder,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BuildMetadata>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub byproducts: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Builder {
    pub id: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub version: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub builder_dependencies: Vec<ResourceDescriptor>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildMetadata {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// RFC 3339 timestamp in UTC (`Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_on: Option<String>,
}

/// What a finished build knows about itself, all of it reproducible except `times`.
#[derive(Debug, Clone)]
pub struct ProvenanceFacts<'a> {
    pub image_name: &'a str,
    pub manifest_digest: Sha256Digest,
    /// The recipe's file name; only its last component is recorded, never a directory.
    pub recipe_file_name: &'a str,
    pub recipe_sha256: Sha256Digest,
    /// Digest of the recipe's lock file, if it has one.
    pub lock_sha256: Option<Sha256Digest>,
    pub epoch: u64,
    pub platform: &'a str,
    pub sources: &'a [SourceInfo],
    /// The base image, if the recipe has one.
    pub base: Option<&'a BaseInfo>,
    pub cairn_version: &'a str,
    /// RFC 3339 `startedOn`, `finishedOn`; only with `--record-times`.
    pub times: Option<(String, String)>,
}

/// A Statement about the image manifest with a SLSA Provenance v1 predicate of
/// [`BUILD_TYPE`].
pub fn provenance_statement(facts: &ProvenanceFacts) -> Statement {
    provenance_statement_about(
        vec![image_subject(facts.image_name, facts.manifest_digest)],
        &provenance(facts),
    )
}

/// A Statement about `subject` (an image, or the files of a VM disk) with `provenance`
/// as its predicate.
pub fn provenance_statement_about(
    subject: Vec<ResourceDescriptor>,
    provenance: &Provenance,
) -> Statement {
    Statement {
        type_: STATEMENT_TYPE.into(),
        subject,
        predicate_type: SLSA_PROVENANCE_V1.into(),
        predicate: serde_json::to_value(provenance).expect("provenance serialises to JSON"),
    }
}

/// The SLSA Provenance v1 predicate of [`BUILD_TYPE`] the facts give; what a VM disk
/// adds (its parameters, the image as a dependency, the host tools) goes into the
/// typed fields before it becomes a statement.
pub fn provenance(facts: &ProvenanceFacts) -> Provenance {
    let recipe_name = last_component(facts.recipe_file_name);
    let mut external = Map::new();
    external.insert(
        "recipe".into(),
        json!({"path": recipe_name, "digest": {"sha256": facts.recipe_sha256.hex()}}),
    );
    if let Some(lock) = facts.lock_sha256 {
        let lock_name = crate::resolve::lock_path_for(Path::new(&recipe_name));
        external.insert(
            "lock".into(),
            json!({"path": lock_name.to_string_lossy(), "digest": {"sha256": lock.hex()}}),
        );
    }
    let mut internal = Map::new();
    internal.insert("epoch".into(), facts.epoch.into());
    internal.insert("platform".into(), facts.platform.into());
    internal.insert(
        "outputFormat".into(),
        crate::oci::OUTPUT_FORMAT_VERSION.into(),
    );
    let mut sources: Vec<&SourceInfo> = facts.sources.iter().collect();
    sources.sort_by(|a, b| a.name.cmp(&b.name));
    Provenance {
        build_definition: BuildDefinition {
            build_type: BUILD_TYPE.into(),
            external_parameters: external,
            internal_parameters: internal,
            resolved_dependencies: facts
                .base
                .map(base_descriptor)
                .into_iter()
                .chain(sources.iter().map(|s| source_descriptor(s)))
                .chain(inrelease_descriptors(&sources))
                .collect(),
        },
        run_details: RunDetails {
            builder: Builder {
                id: BUILDER_ID.into(),
                version: BTreeMap::from([("cairn".into(), facts.cairn_version.into())]),
                builder_dependencies: Vec::new(),
            },
            metadata: facts
                .times
                .clone()
                .map(|(started_on, finished_on)| BuildMetadata {
                    // A per-run id would make every statement differ; cairn has none.
                    invocation_id: None,
                    started_on: Some(started_on),
                    finished_on: Some(finished_on),
                }),
            byproducts: Vec::new(),
        },
    }
}

/// A Statement about the image manifest whose predicate is its SPDX SBOM.
/// The SBOM statement's JSON (the DSSE payload), with `spdx` (a JSON document) as
/// its predicate, byte for byte: the SBOM lists every file of the image, so it is
/// spliced in rather than parsed and serialised again. Keys stay sorted, as in
/// [`Statement::to_json`].
pub fn sbom_statement_json(
    image_name: &str,
    manifest_digest: Sha256Digest,
    spdx: &[u8],
) -> Vec<u8> {
    let spdx = spdx.trim_ascii();
    let (before, after) = sbom_statement_around(image_name, manifest_digest);
    let mut out = Vec::with_capacity(before.len() + spdx.len() + after.len());
    out.extend_from_slice(&before);
    out.extend_from_slice(spdx);
    out.extend_from_slice(&after);
    out
}

/// The bytes of [`sbom_statement_json`] before and after the SPDX document (without
/// surrounding whitespace), so that a large SBOM can be streamed into the statement.
pub fn sbom_statement_around(
    image_name: &str,
    manifest_digest: Sha256Digest,
) -> (Vec<u8>, Vec<u8>) {
    statement_around_predicate(&[image_subject(image_name, manifest_digest)])
}

/// [`sbom_statement_around`] for other subjects (a VM disk in its formats).
pub fn statement_around_predicate(subjects: &[ResourceDescriptor]) -> (Vec<u8>, Vec<u8>) {
    let mut before = b"{\"_type\":".to_vec();
    before.extend_from_slice(&canonical_json(&STATEMENT_TYPE));
    before.extend_from_slice(b",\"predicate\":");
    let mut after = b",\"predicateType\":".to_vec();
    after.extend_from_slice(&canonical_json(&SPDX_PREDICATE));
    after.extend_from_slice(b",\"subject\":");
    after.extend_from_slice(&canonical_json(&subjects));
    after.push(b'}');
    (before, after)
}

/// Signs the SBOM statement `before` + the SPDX document in the file at `spdx_path`
/// (`spdx_size` bytes, ending in one newline, which the statement omits) + `after`,
/// and writes its DSSE envelope to `out`: the document is read from the file for the
/// signature (twice) and for the base64 payload, never held in memory, for it lists
/// every file of the image.
pub fn write_signed_sbom_statement(
    (before, after): &(Vec<u8>, Vec<u8>),
    spdx_path: &Path,
    spdx_size: u64,
    key: &crate::keys::SigningKey,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    use std::io::Read as _;
    let spdx_len = spdx_size.saturating_sub(1);
    let feed = |sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>| {
        sink(before)?;
        let mut spdx = std::fs::File::open(spdx_path)?.take(spdx_len);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = spdx.read(&mut buf)?;
            if n == 0 {
                break;
            }
            sink(&buf[..n])?;
        }
        sink(after)
    };
    let payload_len = before.len() as u64 + spdx_len + after.len() as u64;
    crate::attest::dsse::write_signed_envelope(
        crate::attest::dsse::INTOTO_PAYLOAD_TYPE,
        payload_len,
        &feed,
        key,
        out,
    )
}

fn image_subject(image_name: &str, manifest_digest: Sha256Digest) -> ResourceDescriptor {
    ResourceDescriptor {
        name: Some(image_name.into()),
        digest: sha256_digest_set(manifest_digest),
        ..Default::default()
    }
}

fn sha256_digest_set(digest: Sha256Digest) -> BTreeMap<String, String> {
    BTreeMap::from([("sha256".into(), digest.hex())])
}

fn source_descriptor(source: &SourceInfo) -> ResourceDescriptor {
    let mut annotations = BTreeMap::new();
    annotations.insert(
        "kind".into(),
        serde_json::to_value(source.kind).expect("a source kind serialises to JSON"),
    );
    if let Some(signer) = &source.signer {
        annotations.insert("signer".into(), signer.clone().into());
    }
    if let Some(license) = &source.license {
        annotations.insert("license".into(), license.clone().into());
    }
    let uri = match &source.package {
        Some(p) => {
            annotations.insert("version".into(), p.version.clone().into());
            annotations.insert("architecture".into(), p.architecture.clone().into());
            annotations.insert("filename".into(), source.path.clone().into());
            annotations.insert("index".into(), p.index.clone().into());
            annotations.insert("indexSha256".into(), p.index_sha256.hex().into());
            annotations.insert("inRelease".into(), inrelease_name(&p.repository).into());
            // Every maintainer script, none of them run, and what cairn did instead.
            if !p.scripts.is_empty() {
                let scripts: Vec<Value> = p
                    .scripts
                    .iter()
                    .map(|s| {
                        serde_json::json!({
                            "name": s.name,
                            "sha256": s.sha256.hex(),
                            "run": false,
                            "doneNatively": s.done_natively,
                        })
                    })
                    .collect();
                annotations.insert("maintainerScripts".into(), scripts.into());
            }
            crate::attest::sbom::purl(source).unwrap_or_default()
        }
        None => file_uri(&source.path),
    };
    ResourceDescriptor {
        name: Some(source.name.clone()),
        uri: Some(uri),
        digest: sha256_digest_set(source.sha256),
        annotations,
        ..Default::default()
    }
}

/// The base image as a resolved dependency: its platform manifest digest, a URI that
/// names where it came from (`oci://REGISTRY/REPOSITORY[:TAG]@sha256:...`, or
/// `file:<layout path>` relative to the recipe) and, for a multi-platform base, the
/// pinned index digest.
fn base_descriptor(base: &BaseInfo) -> ResourceDescriptor {
    let uri = match base.reference.strip_prefix("layout:") {
        Some(path) => file_uri(path),
        None => format!("oci://{}@{}", base.reference, base.manifest_digest),
    };
    let mut annotations = BTreeMap::from([("kind".to_string(), Value::from(BASE_IMAGE_KIND))]);
    if base.pinned != base.manifest_digest {
        annotations.insert("index".into(), base.pinned.to_string().into());
    }
    ResourceDescriptor {
        name: Some(BASE_IMAGE_KIND.into()),
        uri: Some(uri),
        digest: sha256_digest_set(base.manifest_digest),
        annotations,
        ..Default::default()
    }
}

/// The `name` and `kind` annotation of the base image's resolved dependency.
pub const BASE_IMAGE_KIND: &str = "base-image";

fn inrelease_name(repository: &str) -> String {
    format!("inrelease:{repository}")
}

/// One descriptor per apt repository that supplied packages: its InRelease, with the
/// digest of the bytes whose signature the build verified and the signing key's
/// fingerprint. The URI names the repository and suite, not the mirror: where the
/// bytes were fetched from is not part of what was built.
fn inrelease_descriptors(sources: &[&SourceInfo]) -> Vec<ResourceDescriptor> {
    let mut by_repository = BTreeMap::new();
    for s in sources {
        if let Some(p) = &s.package {
            by_repository
                .entry(p.repository.clone())
                .or_insert_with(|| {
                    let mut annotations = BTreeMap::new();
                    annotations.insert("kind".into(), "inrelease".into());
                    if let Some(signer) = &s.signer {
                        annotations.insert("signer".into(), signer.clone().into());
                    }
                    ResourceDescriptor {
                        name: Some(inrelease_name(&p.repository)),
                        uri: Some(format!("apt:{}/dists/{}/InRelease", p.repository, p.suite)),
                        digest: sha256_digest_set(p.inrelease_sha256),
                        annotations,
                        ..Default::default()
                    }
                });
        }
    }
    by_repository.into_values().collect()
}

fn last_component(path: &str) -> String {
    Path::new(path)
        .file_name()
        .map_or_else(|| path.to_string(), |n| n.to_string_lossy().into_owned())
}

/// `file:` followed by the recipe-relative path, percent-encoding every byte that may
/// not appear in an RFC 3986 path segment (spaces, `%`, `#`, `?`, non-ASCII, ...).
fn file_uri(relative_path: &str) -> String {
    let mut uri = String::from("file:");
    for byte in relative_path.bytes() {
        let keep = byte.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&byte);
        if keep {
            uri.push(char::from(byte));
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri
}

/// Reads `null` as the type's empty value (SLSA: unset, null and empty are equivalent).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// ResourceDescriptor `content`: standard padded base64 out; standard or URL-safe,
/// padded or not, in.
mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_str(&encode_base64(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) if !text.is_empty() => decode_base64(&text)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("`content` is not base64: {e}"))),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolve::LockedKind;

    fn digest(byte: u8) -> Sha256Digest {
        Sha256Digest::of(&[byte])
    }

    fn sources() -> Vec<SourceInfo> {
        vec![
            SourceInfo {
                name: "tools".into(),
                kind: LockedKind::Archive,
                path: "vendor/tools 1.0.tar.gz".into(),
                sha256: digest(2),
                signer: Some("ab".repeat(32)),
                license: Some("Apache-2.0 OR MIT".into()),
                package: None,
            },
            SourceInfo {
                name: "app".into(),
                kind: LockedKind::Dir,
                path: "../app".into(),
                sha256: digest(1),
                signer: None,
                license: None,
                package: None,
            },
        ]
    }

    fn facts(sources: &[SourceInfo]) -> ProvenanceFacts<'_> {
        ProvenanceFacts {
            image_name: "hello",
            manifest_digest: digest(0),
            recipe_file_name: "hello.yaml",
            recipe_sha256: digest(3),
            lock_sha256: Some(digest(4)),
            epoch: 1_700_000_000,
            platform: "linux/amd64",
            sources,
            base: None,
            cairn_version: "0.1.0",
            times: None,
        }
    }

    #[test]
    fn provenance_json_uses_the_spec_field_names() {
        let sources = sources();
        let text = String::from_utf8(provenance_statement(&facts(&sources)).to_json()).unwrap();
        let expected = format!(
            concat!(
                r#"{{"_type":"https://in-toto.io/Statement/v1","#,
                r#""predicate":{{"buildDefinition":{{"buildType":"https://cairn.dev/buildtypes/recipe/v1","#,
                r#""externalParameters":{{"lock":{{"digest":{{"sha256":"{lock}"}},"path":"hello.lock"}},"#,
                r#""recipe":{{"digest":{{"sha256":"{recipe}"}},"path":"hello.yaml"}}}},"#,
                r#""internalParameters":{{"epoch":1700000000,"outputFormat":"{format}","platform":"linux/amd64"}},"#,
                r#""resolvedDependencies":["#,
                r#"{{"annotations":{{"kind":"dir"}},"digest":{{"sha256":"{app}"}},"name":"app","uri":"file:../app"}},"#,
                r#"{{"annotations":{{"kind":"archive","license":"Apache-2.0 OR MIT","signer":"{signer}"}},"#,
                r#""digest":{{"sha256":"{tools}"}},"name":"tools","uri":"file:vendor/tools%201.0.tar.gz"}}]}},"#,
                r#""runDetails":{{"builder":{{"id":"https://cairn.dev/cairn","version":{{"cairn":"0.1.0"}}}}}}}},"#,
                r#""predicateType":"https://slsa.dev/provenance/v1","#,
                r#""subject":[{{"digest":{{"sha256":"{manifest}"}},"name":"hello"}}]}}"#
            ),
            lock = digest(4).hex(),
            recipe = digest(3).hex(),
            app = digest(1).hex(),
            tools = digest(2).hex(),
            signer = "ab".repeat(32),
            manifest = digest(0).hex(),
            format = crate::oci::OUTPUT_FORMAT_VERSION,
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn times_appear_only_when_recorded_and_never_an_invocation_id() {
        let sources = sources();
        let plain = provenance_statement(&facts(&sources));
        assert!(plain.predicate["runDetails"].get("metadata").is_none());

        let mut timed = facts(&sources);
        timed.times = Some(("2024-01-01T00:00:00Z".into(), "2024-01-01T00:00:05Z".into()));
        let statement = provenance_statement(&timed);
        assert_eq!(
            statement.predicate["runDetails"]["metadata"],
            json!({"startedOn": "2024-01-01T00:00:00Z", "finishedOn": "2024-01-01T00:00:05Z"})
        );
    }

    #[test]
    fn same_facts_give_the_same_bytes_whatever_the_source_order() {
        let sources = sources();
        let reversed: Vec<SourceInfo> = sources.iter().rev().cloned().collect();
        assert_eq!(
            provenance_statement(&facts(&sources)).to_json(),
            provenance_statement(&facts(&reversed)).to_json()
        );
    }

    #[test]
    fn provenance_has_no_absolute_paths() {
        let sources = sources();
        let mut f = facts(&sources);
        f.recipe_file_name = "/home/builder/project/hello.yaml";
        f.lock_sha256 = Some(digest(4));
        let value: Value = serde_json::from_slice(&provenance_statement(&f).to_json()).unwrap();
        let mut strings = Vec::new();
        collect_strings(&value, &mut strings);
        for s in &strings {
            assert!(
                !s.contains("/home") && !s.starts_with('/') && !s.starts_with("file:/"),
                "host path in provenance: {s}"
            );
        }
        let external = &value["predicate"]["buildDefinition"]["externalParameters"];
        assert_eq!(external["recipe"]["path"], "hello.yaml");
        assert_eq!(external["lock"]["path"], "hello.lock");
    }

    fn collect_strings(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::String(s) => out.push(s.clone()),
            Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                out.push(k.clone());
                collect_strings(v, out)
            }),
            _ => {}
        }
    }

    #[test]
    fn without_a_lock_file_there_is_no_lock_parameter() {
        let mut f = facts(&[]);
        f.lock_sha256 = None;
        let statement = provenance_statement(&f);
        let definition = &statement.predicate["buildDefinition"];
        assert_eq!(
            definition["externalParameters"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["recipe"]
        );
        assert!(definition.get("resolvedDependencies").is_none());
    }

    #[test]
    fn file_uris_percent_encode_what_a_uri_path_cannot_hold() {
        assert_eq!(file_uri("src/hello.txt"), "file:src/hello.txt");
        assert_eq!(file_uri("a b/ü%#?.tar"), "file:a%20b/%C3%BC%25%23%3F.tar");
    }

    #[test]
    fn statements_read_back_into_the_same_values() {
        let sources = sources();
        let mut f = facts(&sources);
        f.times = Some(("2024-01-01T00:00:00Z".into(), "2024-01-01T00:00:05Z".into()));
        let statement = provenance_statement(&f);
        let back: Statement = serde_json::from_slice(&statement.to_json()).unwrap();
        assert_eq!(back, statement);
        let provenance: Provenance = serde_json::from_value(back.predicate).unwrap();
        assert_eq!(provenance.build_definition.build_type, BUILD_TYPE);
        assert_eq!(provenance.run_details.builder.id, BUILDER_ID);
        assert_eq!(provenance.build_definition.resolved_dependencies.len(), 2);
        assert_eq!(
            serde_json::to_value(&provenance).unwrap(),
            statement.predicate
        );
    }

    #[test]
    fn null_and_missing_optional_fields_read_as_empty() {
        let provenance: Provenance = serde_json::from_value(json!({
            "buildDefinition": {"buildType": "x", "externalParameters": null,
                                "resolvedDependencies": null, "futureField": 1},
            "runDetails": {"builder": {"id": "y", "version": null}, "metadata": null,
                           "byproducts": [{"uri": "u", "digest": null, "content": "aGk",
                                           "annotations": null}]}
        }))
        .unwrap();
        assert!(provenance.build_definition.external_parameters.is_empty());
        assert!(provenance.run_details.metadata.is_none());
        let byproduct = &provenance.run_details.byproducts[0];
        assert_eq!(byproduct.content.as_deref(), Some(&b"hi"[..]));
        assert!(byproduct.digest.is_empty());
        // Written back, `content` is standard padded base64 and empty fields are gone.
        assert_eq!(
            serde_json::to_value(byproduct).unwrap(),
            json!({"uri": "u", "content": "aGk="})
        );
    }

    #[test]
    fn sbom_statement_carries_the_spdx_document_as_its_predicate() {
        let spdx = json!({"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT"});
        let bytes = sbom_statement_json("hello", digest(0), spdx.to_string().as_bytes());
        let statement: Statement = serde_json::from_slice(&bytes).unwrap();
        let reparsed: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            canonical_json(&reparsed),
            bytes,
            "keys stay sorted around the spliced predicate"
        );
        let value: Value = serde_json::from_slice(&statement.to_json()).unwrap();
        assert_eq!(
            value,
            json!({
                "_type": "https://in-toto.io/Statement/v1",
                "subject": [{"name": "hello", "digest": {"sha256": digest(0).hex()}}],
                "predicateType": "https://spdx.dev/Document",
                "predicate": spdx,
            })
        );
    }
}
