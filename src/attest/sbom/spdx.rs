//! SPDX 2.3 JSON.
//!
//! The document DESCRIBES one package for the image (`SPDXRef-Image`, purpose
//! CONTAINER, files analysed, with a verification code). Every regular file of the
//! image is a `files[]` entry (`SPDXRef-File-<n>`, n = its index in path order) with
//! SHA1 and SHA256 checksums, and two relationships: `SPDXRef-Image CONTAINS` it and it
//! is `GENERATED_FROM` the package that supplied it: one per source
//! (`SPDXRef-Source-<name>`), plus `SPDXRef-Recipe` (inline recipe content) and
//! `SPDXRef-Accounts` (`accounts:`) when a file came from them, and `SPDXRef-BaseImage`
//! (purpose CONTAINER, the base's manifest digest and `oci` purl) for a base image. The image is
//! `GENERATED_FROM` each of those packages. Source packages have `filesAnalyzed: false`:
//! they are described by their digest, not by the subset of their members that made it
//! into the image. A Debian package (`SPDXRef-Source-deb.3A<name>`) is the exception:
//! named as the package, with `versionInfo` and a `pkg:deb` purl, analysed (cairn
//! unpacked all of it), and it CONTAINS each file it supplied. Each file's `comment`
//! carries its trace (`cairn: layer=... origin=...`). A file cairn generated in place
//! of a package's script (the CA bundle) is GENERATED_FROM that package (which does not
//! CONTAIN it) and from each input file of the image, and its comment lists every
//! input by digest and path (`generated-from=sha256:<hex> <path>`, one a line).

use super::{
    base_purl, document_digest, generated_from, package_trace, pseudo_suppliers, purl, trace,
    write_json, SbomError, SbomInput, Supplier,
};
use crate::attest::contents::FileOrigin;
use crate::attest::contents::{BaseInfo, ImageFile, ImageFiles, Sha1Lookup, SourceInfo};
use crate::oci::time::rfc3339;
use crate::resolve::LockedKind;
use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use sha1::{Digest as _, Sha1};
use std::collections::BTreeSet;

const NOASSERTION: &str = "NOASSERTION";
const DOCUMENT_ID: &str = "SPDXRef-DOCUMENT";
const IMAGE_ID: &str = "SPDXRef-Image";
const RECIPE_ID: &str = "SPDXRef-Recipe";
const ACCOUNTS_ID: &str = "SPDXRef-Accounts";
const BASE_ID: &str = "SPDXRef-BaseImage";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    spdx_version: &'static str,
    data_license: &'static str,
    name: String,
    document_namespace: String,
    creation_info: CreationInfo,
    packages: Vec<Package>,
    files: Files<'a>,
    relationships: Relationships<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    has_extracted_licensing_infos: Vec<ExtractedLicense>,
}

/// No `licenseListVersion`: cairn does not check license identifiers against any
/// version of the list, so it names none.
#[derive(Serialize)]
struct CreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Package {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_info: Option<String>,
    download_location: &'static str,
    files_analyzed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    package_verification_code: Option<VerificationCode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<Checksum>,
    license_concluded: String,
    license_declared: String,
    copyright_text: &'static str,
    supplier: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    external_refs: Vec<ExternalRef>,
    primary_package_purpose: &'static str,
    comment: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    annotations: Vec<Annotation>,
}

/// An SPDX 2.3 annotation (clause 12): what cairn states about a package beyond its
/// fields, dated with the build's epoch like the document.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Annotation {
    annotation_date: String,
    annotation_type: &'static str,
    annotator: String,
    comment: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerificationCode {
    package_verification_code_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Checksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    file_name: String,
    checksums: Vec<Checksum>,
    license_concluded: &'static str,
    copyright_text: &'static str,
    comment: String,
}

/// One [`File`] per image file, each built as it is serialised: the image may have tens
/// of thousands of files.
struct Files<'a> {
    files: &'a ImageFiles<'a>,
    sha1_of: &'a dyn Fn(&ImageFile) -> &'a [u8; 20],
}

impl Serialize for Files<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.files.len()))?;
        for (n, file) in self.files.iter().enumerate() {
            seq.serialize_element(&File {
                spdx_id: file_id(n),
                file_name: format!(".{}", file.path()),
                checksums: vec![
                    checksum("SHA1", hex::encode((self.sha1_of)(&file))),
                    checksum("SHA256", file.sha256().hex()),
                ],
                license_concluded: NOASSERTION,
                copyright_text: NOASSERTION,
                comment: std::iter::once(format!("cairn: {}", trace(&file)))
                    .chain(generated_from(&file))
                    .collect::<Vec<_>>()
                    .join("\n"),
            })?;
        }
        seq.end()
    }
}

/// The document's and packages' relationships (`head`), then the image CONTAINS each
/// file, then each file's GENERATED_FROM (and its package's CONTAINS), built as they
/// are serialised.
struct Relationships<'a> {
    head: Vec<Relationship>,
    files: &'a ImageFiles<'a>,
    sources: &'a [SourceInfo],
}

impl Serialize for Relationships<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for relationship in &self.head {
            seq.serialize_element(relationship)?;
        }
        for n in 0..self.files.len() {
            seq.serialize_element(&relationship(IMAGE_ID, "CONTAINS", &file_id(n)))?;
        }
        for (n, file) in self.files.iter().enumerate() {
            let supplier = Supplier::of(&file);
            let supplier_spdx_id = supplier_id(supplier);
            seq.serialize_element(&relationship(
                &file_id(n),
                "GENERATED_FROM",
                &supplier_spdx_id,
            ))?;
            let from_package = matches!(supplier, Supplier::Source(name)
                if self.sources.iter().any(|s| s.name == name && s.package.is_some()));
            if from_package {
                seq.serialize_element(&relationship(&supplier_spdx_id, "CONTAINS", &file_id(n)))?;
            }
            // Each input that is the image's file at its path, with the same bytes.
            if let FileOrigin::Generated { inputs, .. } = file.origin() {
                for (path, sha256) in inputs {
                    let input = self
                        .files
                        .position(path)
                        .filter(|&i| self.files.get(i).sha256() == *sha256);
                    if let Some(i) = input {
                        seq.serialize_element(&relationship(
                            &file_id(n),
                            "GENERATED_FROM",
                            &file_id(i),
                        ))?;
                    }
                }
            }
        }
        seq.end()
    }
}

fn file_id(n: usize) -> String {
    format!("SPDXRef-File-{n}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Relationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExtractedLicense {
    license_id: String,
    extracted_text: &'static str,
    comment: String,
}

/// The SPDX 2.3 JSON document for `input`. Fails only if `input.sha1` lacks a file.
pub fn spdx_json(input: &SbomInput) -> Result<Vec<u8>, SbomError> {
    let mut out = Vec::new();
    write_spdx_json(input, &mut out)?;
    Ok(out)
}

/// [`spdx_json`], written to `out` (a file: the document lists every file of the image).
pub fn write_spdx_json(input: &SbomInput, out: &mut dyn std::io::Write) -> Result<(), SbomError> {
    let contents = input.contents;
    let files = &contents.files;
    // Every file's SHA-1 is looked up where it is written rather than copied into a
    // list beside the files (20 bytes a file, at the SBOM stage's peak); checked first.
    if let Some(f) = files.iter().find(|f| input.sha1.sha1(f).is_none()) {
        return Err(SbomError::MissingSha1 {
            path: f.path(),
            sha256: f.sha256(),
        });
    }
    let sha1_of = |f: &ImageFile| -> &[u8; 20] {
        input
            .sha1
            .sha1(f)
            .expect("every file's SHA-1 was checked above")
    };

    let mut packages = vec![image_package(input)];
    packages.extend(contents.base.iter().map(base_package));
    let first_source = packages.len();
    packages.extend(contents.sources.iter().map(source_package));
    // A Debian package's files are known (cairn unpacked them): it is analysed, with
    // the verification code of the files it put in the image, and CONTAINS them.
    for (package, source) in packages[first_source..].iter_mut().zip(&contents.sources) {
        if let Some(p) = source.package.as_ref().filter(|p| !p.left_out.is_empty()) {
            package.annotations.push(Annotation {
                annotation_date: rfc3339(input.epoch),
                annotation_type: "OTHER",
                annotator: format!("Tool: cairn-{}", input.cairn_version),
                comment: format!(
                    "cairn: path_filters left out {} paths of this package:\n{}",
                    p.left_out.len(),
                    p.left_out.join("\n")
                ),
            });
        }
        if source.package.is_some() {
            let own = files
                .iter()
                .filter(|f| Supplier::of(f) == Supplier::Source(&source.name))
                .map(|f| sha1_of(&f))
                .collect();
            package.files_analyzed = true;
            package.package_verification_code = Some(VerificationCode {
                package_verification_code_value: verification_code(own),
            });
        }
    }
    let (from_recipe, from_accounts) = pseudo_suppliers(contents);
    if from_recipe {
        packages.push(pseudo_package(
            RECIPE_ID,
            input.recipe_file_name,
            "FILE",
            format!(
                "cairn: inline `file:` content of the recipe {}",
                input.recipe_file_name
            ),
        ));
    }
    if from_accounts {
        packages.push(pseudo_package(
            ACCOUNTS_ID,
            "accounts",
            "OTHER",
            format!(
                "cairn: user and group files generated from `accounts:` in the recipe {}",
                input.recipe_file_name
            ),
        ));
    }

    let mut relationships = vec![relationship(DOCUMENT_ID, "DESCRIBES", IMAGE_ID)];
    for package in &packages[1..] {
        relationships.push(relationship(IMAGE_ID, "GENERATED_FROM", &package.spdx_id));
    }

    let document = Document {
        spdx_id: DOCUMENT_ID,
        spdx_version: "SPDX-2.3",
        data_license: "CC0-1.0",
        name: input.image_name.to_string(),
        document_namespace: format!(
            "https://spdx.org/spdxdocs/cairn-{}-{}",
            input.image_name,
            document_digest(input).hex()
        ),
        creation_info: CreationInfo {
            created: rfc3339(input.epoch),
            creators: vec![format!("Tool: cairn-{}", input.cairn_version)],
        },
        packages,
        files: Files {
            files,
            sha1_of: &sha1_of,
        },
        relationships: Relationships {
            head: relationships,
            files,
            sources: &contents.sources,
        },
        has_extracted_licensing_infos: extracted_licenses(input),
    };
    write_json(&document, out).map_err(SbomError::Write)
}

fn image_package(input: &SbomInput) -> Package {
    Package {
        spdx_id: IMAGE_ID.to_string(),
        name: input.image_name.to_string(),
        version_info: None,
        download_location: NOASSERTION,
        files_analyzed: true,
        package_verification_code: Some(VerificationCode {
            package_verification_code_value: input.image_verification_code.clone(),
        }),
        checksums: Vec::new(),
        license_concluded: NOASSERTION.to_string(),
        license_declared: NOASSERTION.to_string(),
        copyright_text: NOASSERTION,
        supplier: NOASSERTION,
        external_refs: Vec::new(),
        primary_package_purpose: "CONTAINER",
        comment: format!(
            "cairn: platform={} recipe={}",
            input.platform, input.recipe_file_name
        ),
        annotations: Vec::new(),
    }
}

fn source_package(source: &SourceInfo) -> Package {
    let license = source.license.as_deref().unwrap_or(NOASSERTION);
    // A directory's digest is cairn's tree digest, not the checksum of a package
    // file, so it goes in the comment only.
    let (checksums, purpose) = match source.kind {
        LockedKind::File => (vec![checksum("SHA256", source.sha256.hex())], "FILE"),
        LockedKind::Archive => (vec![checksum("SHA256", source.sha256.hex())], "ARCHIVE"),
        LockedKind::Deb => (vec![checksum("SHA256", source.sha256.hex())], "INSTALL"),
        LockedKind::Dir => (Vec::new(), "OTHER"),
    };
    let signer = source
        .signer
        .as_ref()
        .map(|k| format!(" signer={k}"))
        .unwrap_or_default();
    Package {
        spdx_id: supplier_id(Supplier::Source(&source.name)),
        // A Debian package under its own name, as scanners expect.
        name: source
            .package
            .as_ref()
            .map_or_else(|| source.name.clone(), |p| p.name.clone()),
        version_info: source.package.as_ref().map(|p| p.version.clone()),
        download_location: NOASSERTION,
        files_analyzed: false,
        package_verification_code: None,
        checksums,
        license_concluded: license.to_string(),
        license_declared: license.to_string(),
        copyright_text: NOASSERTION,
        supplier: NOASSERTION,
        external_refs: purl(source)
            .map(|locator| ExternalRef {
                reference_category: "PACKAGE-MANAGER",
                reference_type: "purl",
                reference_locator: locator,
            })
            .into_iter()
            .collect(),
        primary_package_purpose: purpose,
        // `path` last: it runs to the end and may contain spaces.
        comment: format!(
            "cairn: kind={} digest={}{signer}{} path={}",
            source.kind,
            source.sha256,
            package_trace(source),
            source.path
        ),
        annotations: Vec::new(),
    }
}

/// The base image: a CONTAINER package with its manifest digest and `oci` purl.
fn base_package(base: &BaseInfo) -> Package {
    Package {
        checksums: vec![checksum("SHA256", base.manifest_digest.hex())],
        external_refs: vec![ExternalRef {
            reference_category: "PACKAGE-MANAGER",
            reference_type: "purl",
            reference_locator: base_purl(base),
        }],
        ..pseudo_package(
            BASE_ID,
            &base.reference,
            "CONTAINER",
            format!(
                "cairn: base image manifest={} pinned={} reference={}",
                base.manifest_digest, base.pinned, base.reference
            ),
        )
    }
}

fn pseudo_package(id: &str, name: &str, purpose: &'static str, comment: String) -> Package {
    Package {
        spdx_id: id.to_string(),
        name: name.to_string(),
        version_info: None,
        download_location: NOASSERTION,
        files_analyzed: false,
        package_verification_code: None,
        checksums: Vec::new(),
        license_concluded: NOASSERTION.to_string(),
        license_declared: NOASSERTION.to_string(),
        copyright_text: NOASSERTION,
        supplier: NOASSERTION,
        external_refs: Vec::new(),
        primary_package_purpose: purpose,
        comment,
        annotations: Vec::new(),
    }
}

fn supplier_id(supplier: Supplier) -> String {
    match supplier {
        Supplier::Source(name) | Supplier::Generated(name) => {
            format!("SPDXRef-Source-{}", id_string(name))
        }
        Supplier::Recipe => RECIPE_ID.to_string(),
        Supplier::Accounts => ACCOUNTS_ID.to_string(),
        Supplier::Base => BASE_ID.to_string(),
    }
}

/// An SPDX idstring (letters, digits, `.`, `-`) for a source name. Names may also hold
/// `_`; every byte but letters, digits and `-` becomes `.XX` (hex), so `.` appears
/// only in escapes and distinct names keep distinct ids.
fn id_string(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!(".{b:02X}"));
        }
    }
    out
}

fn relationship(from: &str, kind: &'static str, to: &str) -> Relationship {
    Relationship {
        spdx_element_id: from.to_string(),
        relationship_type: kind,
        related_spdx_element: to.to_string(),
    }
}

fn checksum(algorithm: &'static str, value: String) -> Checksum {
    Checksum {
        algorithm,
        checksum_value: value,
    }
}

/// The image package's verification code ([`verification_code`]) over `files`, the
/// image's regular files. It takes the list, which becomes that of the SHA-1s in place
/// ([`ImageFiles::into_sha1s`]): computed before the SBOMs' own list of the files
/// exists, the SBOM stage holds one list of 8 bytes a file at a time, not two.
pub fn image_verification_code(
    files: ImageFiles,
    sha1: &dyn Sha1Lookup,
) -> Result<String, SbomError> {
    let sha1s = files.into_sha1s(sha1).map_err(|f| SbomError::MissingSha1 {
        path: f.path(),
        sha256: f.sha256(),
    })?;
    Ok(verification_code(sha1s))
}

/// SPDX 2.3 clause 7.9: SHA-1 over the files' SHA-1 hex values, sorted and concatenated.
fn verification_code(mut file_sha1s: Vec<&[u8; 20]>) -> String {
    // Sorting the raw digests orders them as their lower-case hex spellings would be;
    // in place, as equal digests are interchangeable.
    file_sha1s.sort_unstable();
    let mut hasher = Sha1::new();
    for s in file_sha1s {
        hasher.update(hex::encode(s).as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// Every `LicenseRef-` the recipe's license expressions use must be declared in the
/// document. cairn has only the identifier, not the text, and says so.
fn extracted_licenses(input: &SbomInput) -> Vec<ExtractedLicense> {
    let refs: BTreeSet<&str> = input
        .contents
        .sources
        .iter()
        .filter_map(|s| s.license.as_deref())
        .flat_map(|expr| expr.split(|c: char| c.is_whitespace() || c == '(' || c == ')'))
        .filter(|token| token.starts_with("LicenseRef-"))
        .collect();
    refs.into_iter()
        .map(|id| ExtractedLicense {
            license_id: id.to_string(),
            extracted_text: NOASSERTION,
            comment: format!(
                "cairn: declared in the recipe {}; its text is not recorded",
                input.recipe_file_name
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::digest::{Sha1Index, Sha256Digest};
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn document() -> Value {
        let files = files();
        let c = contents(&files);
        let sha1 = sha1_index(&c);
        serde_json::from_slice(&spdx_json(&input(&c, &sha1)).unwrap()).unwrap()
    }

    fn ids(doc: &Value, section: &str) -> Vec<String> {
        doc[section]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["SPDXID"].as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn same_input_same_bytes() {
        let files = files();
        let c = contents(&files);
        let sha1 = sha1_index(&c);
        let files_again = super::super::test_support::files();
        let (rebuilt, rebuilt_sha1) = contents_built_in_reverse(&files_again);
        assert_eq!(rebuilt, c);
        let a = spdx_json(&input(&c, &sha1)).unwrap();
        let b = spdx_json(&input(&rebuilt, &rebuilt_sha1)).unwrap();
        assert!(
            a == b,
            "the same input built in another order gives other bytes"
        );
        assert!(a.ends_with(b"}\n"));
    }

    #[test]
    fn different_contents_get_a_different_namespace() {
        let files = files();
        let c = contents(&files);
        let sha1 = sha1_index(&c);
        let mut changed_files = super::super::test_support::files();
        changed_files[1].layer.name = "other".to_string();
        let changed = contents(&changed_files);
        let namespace = |c| {
            let doc: Value = serde_json::from_slice(&spdx_json(&input(c, &sha1)).unwrap()).unwrap();
            doc["documentNamespace"].as_str().unwrap().to_string()
        };
        let a = namespace(&c);
        assert!(
            a.starts_with("https://spdx.org/spdxdocs/cairn-hello-"),
            "{a}"
        );
        assert_ne!(a, namespace(&changed));
    }

    #[test]
    fn document_header_is_spdx_2_3_at_the_epoch() {
        let doc = document();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["SPDXID"], "SPDXRef-DOCUMENT");
        assert_eq!(doc["dataLicense"], "CC0-1.0");
        assert_eq!(doc["name"], "hello");
        assert_eq!(doc["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_eq!(doc["creationInfo"]["creators"][0], "Tool: cairn-0.1.0");
    }

    #[test]
    fn every_file_is_listed_with_both_checksums_and_its_trace() {
        let image_files = files();
        let c = contents(&image_files);
        let doc = document();
        let files = doc["files"].as_array().unwrap();
        assert_eq!(files.len(), c.files.len());
        for (n, (entry, file)) in files.iter().zip(c.files.iter()).enumerate() {
            assert_eq!(entry["SPDXID"], format!("SPDXRef-File-{n}"));
            assert_eq!(entry["fileName"], format!(".{}", file.path()));
            let sums = entry["checksums"].as_array().unwrap();
            assert_eq!(sums[0]["algorithm"], "SHA1");
            assert_eq!(sums[0]["checksumValue"].as_str().unwrap().len(), 40);
            assert_eq!(sums[1]["algorithm"], "SHA256");
            assert_eq!(sums[1]["checksumValue"], file.sha256().hex());
            assert_eq!(entry["comment"], format!("cairn: {}", trace(&file)));
        }
        assert_eq!(
            files[3]["comment"],
            "cairn: layer=base origin=source source=tools recipe-line=17 member=bin/tool"
        );
    }

    #[test]
    fn a_generated_file_is_generated_from_its_inputs_that_the_image_still_has() {
        let mut image_files = files();
        let hello = Sha256Digest::of(b"hello");
        // Made from /usr/bin/hello (still those bytes) and /etc/motd (other bytes
        // then): only the first is an element it is GENERATED_FROM.
        let origin =
            crate::layers::Origin::Generated(std::sync::Arc::new(crate::layers::GeneratedFrom {
                by: "app".into(),
                line: 25,
                inputs: vec![
                    ("/usr/bin/hello".into(), hello),
                    ("/etc/motd".into(), Sha256Digest::of(b"old motd\n")),
                ],
            }));
        image_files.insert(2, file("etc/ssl/bundle", b"hello", "ca", origin));
        let c = contents(&image_files);
        let sha1 = sha1_index(&c);
        let doc: Value = serde_json::from_slice(&spdx_json(&input(&c, &sha1)).unwrap()).unwrap();
        let entry = &doc["files"][2];
        assert_eq!(entry["fileName"], "./etc/ssl/bundle");
        assert_eq!(
            entry["comment"],
            format!(
                "cairn: layer=ca origin=generated source=app recipe-line=25 inputs=2\ngenerated-from={hello} /usr/bin/hello\ngenerated-from={} /etc/motd",
                Sha256Digest::of(b"old motd\n")
            )
        );
        let from: Vec<&str> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["spdxElementId"] == "SPDXRef-File-2")
            .map(|r| r["relatedSpdxElement"].as_str().unwrap())
            .collect();
        // The supplier, then /usr/bin/hello (file 5); no CONTAINS from the supplier.
        assert_eq!(from, ["SPDXRef-Source-app", "SPDXRef-File-5"]);
        assert!(!doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["relatedSpdxElement"] == "SPDXRef-File-2"
                && r["relationshipType"] == "CONTAINS"
                && r["spdxElementId"] != "SPDXRef-Image"));
    }

    #[test]
    fn a_missing_sha1_is_an_error_naming_the_file() {
        let files = files();
        let c = contents(&files);
        let sha1: Sha1Index = sha1_index(&c)
            .into_iter()
            .filter(|(sha256, _)| *sha256 != Sha256Digest::of(b"hello"))
            .collect();
        match spdx_json(&input(&c, &sha1)) {
            Err(SbomError::MissingSha1 { path, sha256 }) => {
                assert_eq!(path, "/usr/bin/hello");
                assert_eq!(sha256, Sha256Digest::of(b"hello"));
            }
            other => panic!("expected MissingSha1, got {other:?}"),
        }
    }

    #[test]
    fn relationships_point_to_existing_elements_and_trace_every_file() {
        let doc = document();
        let mut known: BTreeSet<String> = ids(&doc, "packages").into_iter().collect();
        known.extend(ids(&doc, "files"));
        known.insert("SPDXRef-DOCUMENT".to_string());
        let rels: Vec<(String, String, String)> = doc["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let field = |k: &str| r[k].as_str().unwrap().to_string();
                (
                    field("spdxElementId"),
                    field("relationshipType"),
                    field("relatedSpdxElement"),
                )
            })
            .collect();
        for (from, _, to) in &rels {
            assert!(known.contains(from) && known.contains(to), "{from} -> {to}");
        }
        let has = |a: &str, kind: &str, b: &str| {
            rels.contains(&(a.to_string(), kind.to_string(), b.to_string()))
        };
        assert!(has("SPDXRef-DOCUMENT", "DESCRIBES", "SPDXRef-Image"));
        for id in ids(&doc, "files") {
            assert!(has("SPDXRef-Image", "CONTAINS", &id));
        }
        assert!(has("SPDXRef-File-0", "GENERATED_FROM", "SPDXRef-Accounts"));
        assert!(has("SPDXRef-File-1", "GENERATED_FROM", "SPDXRef-Recipe"));
        assert!(has(
            "SPDXRef-File-3",
            "GENERATED_FROM",
            "SPDXRef-Source-tools"
        ));
        assert!(has(
            "SPDXRef-File-5",
            "GENERATED_FROM",
            "SPDXRef-Source-site.5Ffiles"
        ));
        for package in &ids(&doc, "packages")[1..] {
            assert!(has("SPDXRef-Image", "GENERATED_FROM", package));
        }
    }

    #[test]
    fn source_packages_carry_digest_license_purl_and_signer() {
        let doc = document();
        let packages = doc["packages"].as_array().unwrap();
        let app = &packages[1];
        assert_eq!(app["SPDXID"], "SPDXRef-Source-app");
        assert_eq!(app["filesAnalyzed"], false);
        assert_eq!(app["checksums"][0]["algorithm"], "SHA256");
        assert_eq!(
            app["checksums"][0]["checksumValue"],
            Sha256Digest::of(b"hello").hex()
        );
        assert_eq!(app["licenseDeclared"], "MIT");
        assert_eq!(app["externalRefs"][0]["referenceType"], "purl");
        let comment = app["comment"].as_str().unwrap();
        assert!(comment.contains(&format!(" signer={}", "ab".repeat(32))));
        assert!(comment.ends_with(" path=app/hello.sh"), "{comment}");

        let site = &packages[2];
        assert!(site.get("checksums").is_none() && site.get("externalRefs").is_none());
        assert!(site["comment"].as_str().unwrap().contains(&format!(
            "kind=dir digest={}",
            Sha256Digest::of(b"site tree")
        )));
        assert_eq!(packages[3]["licenseConcluded"], "NOASSERTION");
        assert_eq!(
            doc["hasExtractedLicensingInfos"][0]["licenseId"],
            "LicenseRef-site"
        );
    }

    #[test]
    fn image_package_verification_code_follows_clause_7_9() {
        let doc = document();
        let image = &doc["packages"][0];
        assert_eq!(image["primaryPackagePurpose"], "CONTAINER");
        let mut sha1s: Vec<String> = doc["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                f["checksums"][0]["checksumValue"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        sha1s.sort();
        let expected = hex::encode(Sha1::digest(sha1s.concat().as_bytes()));
        assert_eq!(
            image["packageVerificationCode"]["packageVerificationCodeValue"],
            expected
        );
    }

    #[test]
    fn pseudo_packages_appear_only_when_used() {
        let files = files();
        let mut c = contents(&files);
        let sha1 = sha1_index(&c);
        c.files.retain(|f| f.layer() != "accounts");
        let doc: Value = serde_json::from_slice(&spdx_json(&input(&c, &sha1)).unwrap()).unwrap();
        let packages = ids(&doc, "packages");
        assert!(packages.contains(&"SPDXRef-Recipe".to_string()));
        assert!(!packages.contains(&"SPDXRef-Accounts".to_string()));
    }

    #[test]
    fn source_ids_are_distinct_and_valid() {
        let names = ["a_b", "a-b", "a.b", "a.5Fb", "ab"];
        let escaped: BTreeSet<String> = names.iter().map(|n| id_string(n)).collect();
        assert_eq!(escaped.len(), names.len());
        for id in &escaped {
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
        }
    }

    #[test]
    fn no_string_is_an_absolute_path() {
        // SPDX file names are relative (`./usr/bin/hello`); sources appear by their
        // recipe-relative path.
        let mut all = Vec::new();
        strings(&document(), &mut all);
        assert!(all.iter().any(|s| s == "./usr/bin/hello"));
        for s in all {
            assert!(!s.starts_with('/') && !s.contains(" /"), "{s}");
        }
    }
}
