//! CycloneDX 1.6 JSON.
//!
//! `metadata.component` is the image (`container`, bom-ref `image`). `components` holds
//! one `file` component per source (bom-ref `source:<name>`), plus `recipe` (inline
//! recipe content) and `accounts` when a file came from them, then one `file`
//! component per regular file of the image (bom-ref `file:<path>`).
//!
//! "File supplied by source" is recorded where the specification puts such findings:
//! the supplying component's `evidence.occurrences` lists every image path its content
//! occupies (`location`), with the file's trace as `additionalContext`; each file
//! component names its supplier in `cairn:` properties; a file cairn generated from
//! other files (the CA bundle) names each input in a `cairn:generated-from` property
//! (`sha256:<hex> <path>`) and is not among its package's occurrences. `dependencies` says what the
//! image was built from: `image` depends on every supplying component, and those depend
//! on nothing (a pinned input has no inputs of its own). Files are parts of the image,
//! not dependencies, so they stay out of the dependency graph.

use super::{
    base_purl, document_digest, generated_from, octal_mode, pseudo_suppliers, purl, trace, uuid_v5,
    write_json, SbomInput, Supplier,
};
use crate::attest::contents::{FileOrigin, ImageFile, ImageFiles, SourceInfo};
use crate::oci::time::rfc3339;
use crate::resolve::LockedKind;
use serde::ser::{SerializeSeq, SerializeStruct, Serializer};
use serde::Serialize;

/// RFC 9562's name space for URLs (`6ba7b811-9dad-11d1-80b4-00c04fd430c8`); the serial
/// number is the version-5 UUID of `urn:cairn:sbom:<document digest>` in it.
const NAMESPACE_URL: [u8; 16] = [
    0x6b, 0xa7, 0xb8, 0x11, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8,
];

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Bom<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    bom_format: &'static str,
    spec_version: &'static str,
    serial_number: String,
    version: u32,
    metadata: Metadata<'a>,
    components: Components<'a>,
    dependencies: Vec<Dependency>,
}

#[derive(Serialize)]
struct Metadata<'a> {
    timestamp: String,
    lifecycles: Vec<Lifecycle>,
    tools: Tools<'a>,
    component: Component<'a>,
}

#[derive(Serialize)]
struct Lifecycle {
    phase: &'static str,
}

#[derive(Serialize)]
struct Tools<'a> {
    components: Vec<Component<'a>>,
}

#[derive(Serialize, Default)]
struct Component<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(rename = "bom-ref", skip_serializing_if = "Option::is_none")]
    bom_ref: Option<String>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    hashes: Vec<Hash>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    licenses: Vec<License>,
    #[serde(skip_serializing_if = "Option::is_none")]
    purl: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    properties: Vec<Property>,
    #[serde(skip_serializing_if = "Option::is_none")]
    evidence: Option<Evidence<'a>>,
}

#[derive(Serialize)]
struct Hash {
    alg: &'static str,
    content: String,
}

/// The license choice as one SPDX expression, declared by the recipe.
#[derive(Serialize)]
struct License {
    expression: String,
    acknowledgement: &'static str,
}

#[derive(Serialize)]
struct Property {
    name: &'static str,
    value: String,
}

/// `{"occurrences": [...]}`: every file `supplier` put in the image, serialised as
/// the files are visited (a source may supply tens of thousands).
struct Evidence<'a> {
    supplier: Supplier<'a>,
    files: &'a ImageFiles<'a>,
}

impl Serialize for Evidence<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Occurrences<'e>(&'e Evidence<'e>);
        impl Serialize for Occurrences<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(None)?;
                for file in self.0.files.iter() {
                    if Supplier::of(&file) == self.0.supplier {
                        seq.serialize_element(&Occurrence {
                            location: file.path(),
                            additional_context: trace(&file),
                        })?;
                    }
                }
                seq.end()
            }
        }
        let mut evidence = serializer.serialize_struct("Evidence", 1)?;
        evidence.serialize_field("occurrences", &Occurrences(self))?;
        evidence.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Occurrence {
    location: String,
    additional_context: String,
}

/// The supplier components, then one component per file, each built as it is
/// serialised: the image may have tens of thousands of files.
struct Components<'a> {
    suppliers: Vec<Component<'a>>,
    files: &'a ImageFiles<'a>,
}

impl Serialize for Components<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for supplier in &self.suppliers {
            seq.serialize_element(supplier)?;
        }
        for file in self.files.iter() {
            seq.serialize_element(&file_component(&file))?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Dependency {
    #[serde(rename = "ref")]
    reference: String,
    depends_on: Vec<String>,
}

/// The CycloneDX 1.6 JSON document for `input`.
pub fn cyclonedx_json(input: &SbomInput) -> Vec<u8> {
    let mut out = Vec::new();
    write_cyclonedx_json(input, &mut out).expect("writing to a Vec cannot fail");
    out
}

/// [`cyclonedx_json`], written to `out` (a file: the document lists every file of the
/// image).
pub fn write_cyclonedx_json(
    input: &SbomInput,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    let contents = input.contents;
    let files = &contents.files;

    let mut suppliers: Vec<Component> = contents
        .sources
        .iter()
        .map(|s| source_component(s, files))
        .collect();
    if let Some(base) = &contents.base {
        suppliers.push(Component {
            kind: "container",
            bom_ref: Some(bom_ref(Supplier::Base)),
            name: base.reference.clone(),
            version: Some(base.manifest_digest.to_string()),
            description: Some("the base image".to_string()),
            hashes: vec![sha256(base.manifest_digest.hex())],
            purl: Some(base_purl(base)),
            properties: vec![property("cairn:pinned", &base.pinned.to_string())],
            evidence: occurrences(Supplier::Base, files),
            ..Component::default()
        });
    }
    let (from_recipe, from_accounts) = pseudo_suppliers(contents);
    if from_recipe {
        suppliers.push(Component {
            kind: "file",
            bom_ref: Some(bom_ref(Supplier::Recipe)),
            name: input.recipe_file_name.to_string(),
            description: Some("inline `file:` content of the recipe".to_string()),
            evidence: occurrences(Supplier::Recipe, files),
            ..Component::default()
        });
    }
    if from_accounts {
        suppliers.push(Component {
            kind: "data",
            bom_ref: Some(bom_ref(Supplier::Accounts)),
            name: "accounts".to_string(),
            description: Some(format!(
                "user and group files generated from `accounts:` in the recipe {}",
                input.recipe_file_name
            )),
            evidence: occurrences(Supplier::Accounts, files),
            ..Component::default()
        });
    }

    let supplier_refs: Vec<String> = suppliers.iter().filter_map(|c| c.bom_ref.clone()).collect();
    let mut dependencies = vec![Dependency {
        reference: "image".to_string(),
        depends_on: supplier_refs.clone(),
    }];
    dependencies.extend(supplier_refs.into_iter().map(|reference| Dependency {
        reference,
        depends_on: Vec::new(),
    }));

    let components = Components { suppliers, files };

    let bom = Bom {
        schema: "http://cyclonedx.org/schema/bom-1.6.schema.json",
        bom_format: "CycloneDX",
        spec_version: "1.6",
        serial_number: format!(
            "urn:uuid:{}",
            uuid_v5(
                &NAMESPACE_URL,
                &format!("urn:cairn:sbom:{}", document_digest(input).hex())
            )
        ),
        version: 1,
        metadata: Metadata {
            timestamp: rfc3339(input.epoch),
            lifecycles: vec![Lifecycle { phase: "build" }],
            tools: Tools {
                components: vec![Component {
                    kind: "application",
                    name: "cairn".to_string(),
                    version: Some(input.cairn_version.to_string()),
                    ..Component::default()
                }],
            },
            component: Component {
                kind: "container",
                bom_ref: Some("image".to_string()),
                name: input.image_name.to_string(),
                properties: vec![
                    property("cairn:platform", input.platform),
                    property("cairn:recipe", input.recipe_file_name),
                ],
                ..Component::default()
            },
        },
        components,
        dependencies,
    };
    write_json(&bom, out)
}

fn bom_ref(supplier: Supplier) -> String {
    match supplier {
        Supplier::Source(name) | Supplier::Generated(name) => format!("source:{name}"),
        Supplier::Recipe => "recipe".to_string(),
        Supplier::Accounts => "accounts".to_string(),
        Supplier::Base => "base".to_string(),
    }
}

/// A source is a `file` whatever its kind: an archive is a file too, and cairn knows
/// nothing more specific (`library`, `application`) about what is inside.
fn source_component<'a>(source: &'a SourceInfo, files: &'a ImageFiles<'a>) -> Component<'a> {
    let supplier = Supplier::Source(&source.name);
    let mut properties = Vec::new();
    // A directory's digest is cairn's tree digest, not the hash of one file's bytes.
    let hashes = match source.kind {
        LockedKind::File | LockedKind::Archive | LockedKind::Deb => {
            vec![sha256(source.sha256.hex())]
        }
        LockedKind::Dir => {
            properties.push(property("cairn:dir-digest", &source.sha256.to_string()));
            Vec::new()
        }
    };
    properties.push(property("cairn:kind", &source.kind.to_string()));
    properties.push(property("cairn:path", &source.path));
    if let Some(signer) = &source.signer {
        properties.push(property("cairn:signer", signer));
    }
    if let Some(p) = &source.package {
        properties.push(property("cairn:package:index", &p.index));
        properties.push(property(
            "cairn:package:index-digest",
            &p.index_sha256.to_string(),
        ));
        properties.push(property(
            "cairn:package:inrelease-digest",
            &p.inrelease_sha256.to_string(),
        ));
        properties.push(property("cairn:package:repository", &p.repository));
        properties.push(property("cairn:package:suite", &p.suite));
        // What `path_filters:` left out of the image, one path a property.
        properties.extend(
            p.left_out
                .iter()
                .map(|path| property("cairn:package:left-out", path)),
        );
    }
    Component {
        // A Debian package is a library in CycloneDX terms (as scanners emit it).
        kind: if source.package.is_some() {
            "library"
        } else {
            "file"
        },
        bom_ref: Some(bom_ref(supplier)),
        name: source
            .package
            .as_ref()
            .map_or_else(|| source.name.clone(), |p| p.name.clone()),
        version: source.package.as_ref().map(|p| p.version.clone()),
        hashes,
        licenses: source
            .license
            .iter()
            .map(|expression| License {
                expression: expression.clone(),
                acknowledgement: "declared",
            })
            .collect(),
        purl: purl(source),
        properties,
        evidence: occurrences(supplier, files),
        ..Component::default()
    }
}

/// Where in the image `supplier`'s content is, one occurrence per file.
fn occurrences<'a>(supplier: Supplier<'a>, files: &'a ImageFiles<'a>) -> Option<Evidence<'a>> {
    files
        .iter()
        .any(|f| Supplier::of(&f) == supplier)
        .then_some(Evidence { supplier, files })
}

fn file_component(file: &ImageFile) -> Component<'static> {
    let mut properties = vec![property("cairn:layer", &file.layer())];
    match file.origin() {
        FileOrigin::Source {
            name,
            rel_path,
            line,
        } => {
            if !rel_path.is_empty() {
                properties.push(property("cairn:member", rel_path));
            }
            properties.push(property("cairn:mode", &octal_mode(file.mode())));
            properties.push(property("cairn:origin", "source"));
            properties.push(property("cairn:owner", &owner(file)));
            properties.push(property("cairn:recipe-line", &line.to_string()));
            properties.push(property("cairn:size", &file.size().to_string()));
            properties.push(property("cairn:source", name));
        }
        FileOrigin::Recipe { line } => {
            properties.push(property("cairn:mode", &octal_mode(file.mode())));
            properties.push(property("cairn:origin", "recipe"));
            properties.push(property("cairn:owner", &owner(file)));
            properties.push(property("cairn:recipe-line", &line.to_string()));
            properties.push(property("cairn:size", &file.size().to_string()));
        }
        FileOrigin::Generated { by, line, .. } => {
            // The inputs, one property each: `sha256:<hex> <path>`.
            properties.extend(
                generated_from(file)
                    .iter()
                    .filter_map(|l| l.strip_prefix("generated-from="))
                    .map(|input| property("cairn:generated-from", input)),
            );
            properties.push(property("cairn:mode", &octal_mode(file.mode())));
            properties.push(property("cairn:origin", "generated"));
            properties.push(property("cairn:owner", &owner(file)));
            properties.push(property("cairn:recipe-line", &line.to_string()));
            properties.push(property("cairn:size", &file.size().to_string()));
            properties.push(property("cairn:source", by));
        }
        FileOrigin::Base => {
            properties.push(property("cairn:mode", &octal_mode(file.mode())));
            properties.push(property("cairn:origin", "base"));
            properties.push(property("cairn:owner", &owner(file)));
            properties.push(property("cairn:size", &file.size().to_string()));
        }
        FileOrigin::Accounts => {
            properties.push(property("cairn:mode", &octal_mode(file.mode())));
            properties.push(property("cairn:origin", "accounts"));
            properties.push(property("cairn:owner", &owner(file)));
            properties.push(property("cairn:size", &file.size().to_string()));
        }
    }
    Component {
        kind: "file",
        bom_ref: Some(format!("file:{}", file.path())),
        name: file.path(),
        hashes: vec![sha256(file.sha256().hex())],
        properties,
        ..Component::default()
    }
}

fn owner(file: &ImageFile) -> String {
    let owner = file.owner();
    format!("{}:{}", owner.uid, owner.gid)
}

fn sha256(hex: String) -> Hash {
    Hash {
        alg: "SHA-256",
        content: hex,
    }
}

fn property(name: &'static str, value: &str) -> Property {
    Property {
        name,
        value: value.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::*;
    use crate::digest::Sha256Digest;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn bom() -> Value {
        let files = files();
        let c = contents(&files);
        let sha1 = sha1_index(&c);
        serde_json::from_slice(&cyclonedx_json(&input(&c, &sha1))).unwrap()
    }

    fn by_ref<'v>(bom: &'v Value, r: &str) -> &'v Value {
        bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["bom-ref"] == r)
            .unwrap_or_else(|| panic!("no component {r}"))
    }

    fn props(component: &Value) -> Vec<(String, String)> {
        component["properties"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["value"].as_str().unwrap().to_string(),
                )
            })
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
        let a = cyclonedx_json(&input(&c, &sha1));
        let b = cyclonedx_json(&input(&rebuilt, &rebuilt_sha1));
        assert!(
            a == b,
            "the same input built in another order gives other bytes"
        );
    }

    #[test]
    fn different_contents_get_a_different_serial_number() {
        let files = files();
        let c = contents(&files);
        let sha1 = sha1_index(&c);
        let mut changed_files = super::super::test_support::files();
        changed_files[2].entry_mut().owner.uid = 1;
        let changed = contents(&changed_files);
        let serial = |c| {
            let bom: Value = serde_json::from_slice(&cyclonedx_json(&input(c, &sha1))).unwrap();
            bom["serialNumber"].as_str().unwrap().to_string()
        };
        let a = serial(&c);
        // RFC 9562 version 5, variant 10.
        assert_eq!(a.len(), "urn:uuid:".len() + 36);
        assert_eq!(&a[23..24], "5", "{a}");
        assert!("89ab".contains(&a[28..29]), "{a}");
        assert_ne!(a, serial(&changed));
    }

    #[test]
    fn header_names_the_spec_tool_and_image() {
        let bom = bom();
        assert_eq!(bom["bomFormat"], "CycloneDX");
        assert_eq!(bom["specVersion"], "1.6");
        assert_eq!(bom["version"], 1);
        let m = &bom["metadata"];
        assert_eq!(m["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(m["tools"]["components"][0]["name"], "cairn");
        assert_eq!(m["tools"]["components"][0]["version"], "0.1.0");
        assert_eq!(m["component"]["type"], "container");
        assert_eq!(m["component"]["bom-ref"], "image");
        assert_eq!(m["component"]["name"], "hello");
    }

    #[test]
    fn every_file_is_a_component_with_its_sha256_and_trace() {
        let files = files();
        let c = contents(&files);
        let bom = bom();
        for file in c.files.iter() {
            let component = by_ref(&bom, &format!("file:{}", file.path()));
            assert_eq!(component["type"], "file");
            assert_eq!(component["name"], file.path());
            assert_eq!(component["hashes"][0]["alg"], "SHA-256");
            assert_eq!(component["hashes"][0]["content"], file.sha256().hex());
        }
        let tool = props(by_ref(&bom, "file:/opt/tools/tool"));
        let expected = [
            ("cairn:layer", "base"),
            ("cairn:member", "bin/tool"),
            ("cairn:mode", "0755"),
            ("cairn:origin", "source"),
            ("cairn:owner", "0:0"),
            ("cairn:recipe-line", "17"),
            ("cairn:size", "10"),
            ("cairn:source", "tools"),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(tool, expected);
    }

    #[test]
    fn each_supplier_lists_the_image_paths_it_supplied() {
        let files = files();
        let c = contents(&files);
        let bom = bom();
        let mut located = BTreeSet::new();
        for r in [
            "source:app",
            "source:site_files",
            "source:tools",
            "recipe",
            "accounts",
        ] {
            for o in by_ref(&bom, r)["evidence"]["occurrences"]
                .as_array()
                .unwrap()
            {
                assert!(located.insert(o["location"].as_str().unwrap().to_string()));
            }
        }
        let paths: BTreeSet<String> = c.files.iter().map(|f| f.path()).collect();
        assert_eq!(located, paths);
        let tools = &by_ref(&bom, "source:tools")["evidence"]["occurrences"];
        assert_eq!(tools[1]["location"], "/opt/tools/tool");
        assert_eq!(
            tools[1]["additionalContext"],
            "layer=base origin=source source=tools recipe-line=17 member=bin/tool"
        );
    }

    #[test]
    fn sources_carry_digest_license_purl_and_signer() {
        let bom = bom();
        let app = by_ref(&bom, "source:app");
        assert_eq!(
            app["hashes"][0]["content"],
            Sha256Digest::of(b"hello").hex()
        );
        assert_eq!(app["licenses"][0]["expression"], "MIT");
        assert_eq!(app["licenses"][0]["acknowledgement"], "declared");
        assert!(app["purl"]
            .as_str()
            .unwrap()
            .starts_with("pkg:generic/app?"));
        assert!(props(app).contains(&("cairn:signer".to_string(), "ab".repeat(32))));
        let site = by_ref(&bom, "source:site_files");
        assert!(site.get("hashes").is_none() && site.get("purl").is_none());
        assert!(props(site).contains(&(
            "cairn:dir-digest".to_string(),
            Sha256Digest::of(b"site tree").to_string()
        )));
        assert!(by_ref(&bom, "source:tools").get("licenses").is_none());
    }

    #[test]
    fn dependencies_reference_existing_components() {
        let bom = bom();
        let mut refs: BTreeSet<String> = bom["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["bom-ref"].as_str().unwrap().to_string())
            .collect();
        refs.insert("image".to_string());
        let deps = bom["dependencies"].as_array().unwrap();
        assert_eq!(deps[0]["ref"], "image");
        assert_eq!(deps[0]["dependsOn"].as_array().unwrap().len(), 5);
        for d in deps {
            assert!(refs.contains(d["ref"].as_str().unwrap()));
            for on in d["dependsOn"].as_array().unwrap() {
                assert!(refs.contains(on.as_str().unwrap()), "{on}");
            }
        }
    }

    #[test]
    fn the_only_paths_are_image_paths_and_recipe_relative_ones() {
        let files = files();
        let c = contents(&files);
        let mut all = Vec::new();
        strings(&bom(), &mut all);
        for s in all.iter().filter(|s| s.starts_with('/')) {
            assert!(c.files.iter().any(|f| &f.path() == s), "{s}");
        }
    }
}
