//! Multi-platform images: `platforms:` with per-platform (`{arch}`) sources builds one
//! image per platform and an OCI image index over them, reproducibly; each platform
//! has its own SBOMs (valid to pyspdxtools) and signed provenance; inspect, verify,
//! trace and third-party tools (skopeo --all, skopeo + umoci) read the result; a pushed
//! multi-platform image serves as a base and verifies from the registry.

use crate::common;
use crate::common::*;
use crate::multiarch::{blob, read_json, workspace};
use std::path::Path;
use std::process::Command;

#[test]
fn one_image_per_platform_under_an_index_each_with_its_own_attestations() {
    let (dir, recipe) = workspace();
    let (key, public, _) = keygen(dir.path(), "signer");
    let out = dir.path().join("out");
    let report = build_json(
        &recipe,
        &out,
        &["--locked", "--sign-key", key.to_str().unwrap()],
    );
    let layout = out.join("multiarch");

    // Reproducible: a second build (other directory, one thread) is byte-identical.
    let again = dir.path().join("again");
    build_json(
        &recipe,
        &again,
        &[
            "--locked",
            "--jobs",
            "1",
            "--sign-key",
            key.to_str().unwrap(),
        ],
    );
    assert_eq!(tree_bytes(&layout), tree_bytes(&again.join("multiarch")));

    // index.json -> the image index (tagged) -> one manifest per platform.
    let index_json = read_json(&layout.join("index.json"));
    let top = &index_json["manifests"][0];
    assert_eq!(top["mediaType"], "application/vnd.oci.image.index.v1+json");
    assert_eq!(
        top["annotations"]["org.opencontainers.image.ref.name"],
        "multiarch"
    );
    assert_eq!(top["digest"], report["manifest_digest"]);
    let index = blob(&layout, top["digest"].as_str().unwrap());
    let platforms: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);

    // Each platform: its own file from the `{arch}` source, and its own referrers.
    let manifests: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap().to_string())
        .collect();
    for (manifest, arch) in manifests.iter().zip(["amd64", "arm64"]) {
        let config = blob(
            &layout,
            blob(&layout, manifest)["config"]["digest"]
                .as_str()
                .unwrap(),
        );
        assert_eq!(config["architecture"], arch);
        let referrers: Vec<&serde_json::Value> = index_json["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                blob(&layout, d["digest"].as_str().unwrap())["subject"]["digest"]
                    == manifest.as_str()
            })
            .collect();
        assert_eq!(
            referrers.len(),
            4,
            "SPDX, CycloneDX and two signed statements for {arch}"
        );
        let spdx = read_json(&out.join(format!("multiarch.linux-{arch}.spdx.json")));
        let hello = spdx["files"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["fileName"] == "./usr/bin/hello")
            .unwrap();
        let expected = cairn::digest::Sha256Digest::of(
            &std::fs::read(dir.path().join(format!("bin/hello-{arch}"))).unwrap(),
        );
        assert_eq!(hello["checksums"][1]["checksumValue"], expected.hex());
        pyspdxtools(&out.join(format!("multiarch.linux-{arch}.spdx.json"))).unwrap();
    }

    // verify checks every platform; inspect lists them; trace finds both files.
    let verified = run_ok(
        cairn()
            .arg("verify")
            .arg(&layout)
            .arg("--key")
            .arg(&public)
            .arg("--json"),
    );
    let verdict: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["manifest_digest"], report["manifest_digest"]);
    for arch in ["amd64", "arm64"] {
        assert!(
            verdict["checks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == "provenance"
                    && c["detail"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("linux/{arch}:"))),
            "{verdict}"
        );
    }
    let inspected = run_ok(cairn().arg("inspect").arg(&layout).arg("--json"));
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(inspected["index_digest"], report["manifest_digest"]);
    let listed: Vec<&str> = inspected["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["platform"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["linux/amd64", "linux/arm64"]);
    let traced = run_ok(
        cairn()
            .arg("trace")
            .arg(&layout)
            .arg("/usr/bin/hello")
            .arg("--json"),
    );
    let traced: serde_json::Value = serde_json::from_slice(&traced.stdout).unwrap();
    let sources: Vec<&str> = traced["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["source"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["bin/hello-amd64", "bin/hello-arm64"]);

    // Dropping one platform's attestations fails verification for that platform.
    let arm64 = &manifests[1];
    let mut stripped = index_json.clone();
    stripped["manifests"].as_array_mut().unwrap().retain(|d| {
        blob(&layout, d["digest"].as_str().unwrap())["subject"]["digest"] != arm64.as_str()
    });
    std::fs::write(layout.join("index.json"), stripped.to_string()).unwrap();
    let (code, stdout) = {
        let out = cairn()
            .arg("verify")
            .arg(&layout)
            .arg("--key")
            .arg(&public)
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8(out.stdout).unwrap())
    };
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("FAIL signatures  linux/arm64:"), "{stdout}");
}

#[test]
fn skopeo_copies_the_whole_index_and_umoci_unpacks_a_platform() {
    let (dir, recipe) = workspace();
    let out = dir.path().join("out");
    let report = build_json(&recipe, &out, &["--locked"]);
    let layout = out.join("multiarch");
    let raw = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci:{}:multiarch", layout.display()),
    ]));
    assert_eq!(
        cairn::digest::Sha256Digest::of(&raw.stdout).to_string(),
        report["manifest_digest"].as_str().unwrap()
    );
    let copy = dir.path().join("copy");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--all",
        &format!("oci:{}:multiarch", layout.display()),
        &format!("oci:{}:multiarch", copy.display()),
    ]));
    let copied = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        &format!("oci:{}:multiarch", copy.display()),
    ]));
    assert_eq!(
        copied.stdout, raw.stdout,
        "skopeo copy --all keeps the index bytes"
    );

    // skopeo picks the arm64 image from the index; umoci (which reads single
    // images only) unpacks it.
    let single = dir.path().join("arm64");
    copy_platform_image(&layout, "multiarch", "arm64", &single);
    let rootfs = umoci_unpack(&single, "arm64", &dir.path().join("bundle"));
    assert!(
        std::fs::read(rootfs.join("usr/bin/hello")).unwrap()
            == std::fs::read(dir.path().join("bin/hello-arm64")).unwrap(),
        "umoci unpacked another /usr/bin/hello than the arm64 executable"
    );
}

/// Copies the `arch` image of the index tagged `tag` in `layout` into a layout of its
/// own at `dest`, tagged `arch` (skopeo picks it; umoci reads single images only).
pub(super) fn copy_platform_image(layout: &Path, tag: &str, arch: &str, dest: &Path) {
    run_ok(Command::new("skopeo").args([
        "copy",
        "--override-arch",
        arch,
        &format!("oci:{}:{tag}", layout.display()),
        &format!("oci:{}:{arch}", dest.display()),
    ]));
}

#[test]
fn a_multi_platform_image_pushed_to_a_registry_serves_as_a_ref_base() {
    let (dir, recipe) = workspace();
    let (key, public, _) = keygen(dir.path(), "signer");
    let base = build_json(
        &recipe,
        &dir.path().join("images"),
        &["--locked", "--sign-key", key.to_str().unwrap()],
    );
    let registry = common::registry::Registry::start(common::registry::RegistryAuth::None);
    let reference = format!("{}/lib/multiarch:v1", registry.host);
    run_ok(
        cairn()
            .arg("push")
            .arg(dir.path().join("images/multiarch"))
            .arg(&reference)
            .arg("--insecure"),
    );
    // Verified from the registry, platform by platform.
    let verified = run_ok(
        cairn()
            .arg("verify")
            .arg(&reference)
            .arg("--insecure")
            .arg("--key")
            .arg(&public)
            .arg("--json"),
    );
    let verdict: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verdict["verified"], true, "{verdict}");
    assert_eq!(verdict["manifest_digest"], base["manifest_digest"]);
    let signed_platforms = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["name"] == "signatures")
        .count();
    assert_eq!(signed_platforms, 2, "{verdict}");
    let app = write_recipe(
        dir.path(),
        "app.yaml",
        &format!(
            "cairn: 1
name: app
epoch: 1700000000
platforms: [linux/arm64, linux/amd64]
base: {{ ref: \"{reference}\" }}
layers:
  - name: extra
    contents:
      - file: /etc/app.conf
        content: \"x\\n\"
"
        ),
    );
    let report = build_json(&app, &dir.path().join("out"), &["--insecure"]);
    let lock = read_json(&dir.path().join("app.lock"));
    assert_eq!(
        lock["base"]["digest"], base["manifest_digest"],
        "the index is pinned"
    );
    let images = report["images"].as_array().unwrap();
    let base_images = base["images"].as_array().unwrap();
    // Recipe order is arm64 first; each gets the base manifest of its platform.
    let inspected = run_ok(
        cairn()
            .arg("inspect")
            .arg(dir.path().join("out/app"))
            .arg("--json"),
    );
    let inspected: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    for (i, image) in images.iter().enumerate() {
        let platform = image["platform"].as_str().unwrap();
        let base_image = base_images
            .iter()
            .find(|b| b["platform"] == platform)
            .unwrap();
        let built = &inspected["images"][i];
        assert_eq!(built["platform"], platform);
        let base_config = blob(
            &dir.path().join("images/multiarch"),
            base_image["config_digest"].as_str().unwrap(),
        );
        let diff_ids = base_config["rootfs"]["diff_ids"].as_array().unwrap();
        assert_eq!(
            built["config"]["rootfs"]["diff_ids"].as_array().unwrap()[..diff_ids.len()],
            diff_ids[..]
        );
    }
}

/// The push-hook gate on a multi-platform image: pulled back from the registry, every
/// platform's signatures, subject, provenance and SBOM are checked, and a tag that
/// points at an unsigned index is refused.
#[test]
fn a_signed_multi_platform_image_verifies_from_the_registry_and_an_unsigned_one_does_not() {
    let (dir, recipe) = workspace();
    let (key, public, key_id) = keygen(dir.path(), "ci");
    let registry = common::registry::Registry::start(common::registry::RegistryAuth::None);
    let push = |layout: &Path, reference: &str| {
        run_ok(
            cairn()
                .arg("push")
                .arg(layout)
                .arg(reference)
                .arg("--insecure"),
        );
    };
    let signed = format!("{}/lib/multiarch:signed", registry.host);
    build_json(
        &recipe,
        &dir.path().join("signed"),
        &["--locked", "--sign-key", key.to_str().unwrap()],
    );
    push(&dir.path().join("signed/multiarch"), &signed);
    let verified = run_ok(
        cairn()
            .arg("verify")
            .arg(&signed)
            .arg("--key")
            .arg(&public)
            .arg("--insecure"),
    );
    let text = String::from_utf8_lossy(&verified.stdout);
    for platform in ["linux/amd64", "linux/arm64"] {
        assert!(
            text.contains(&format!(
                "ok   signatures  {platform}: 2 envelopes verify, signed by {key_id}"
            )),
            "{platform} not verified from the registry:\n{text}"
        );
    }

    // Another repository: in the same one, the signed push's referrers would vouch for
    // the unsigned push too (the same image digest, signed).
    let unsigned = format!("{}/lib/unsigned:v1", registry.host);
    build_json(&recipe, &dir.path().join("unsigned"), &["--locked"]);
    push(&dir.path().join("unsigned/multiarch"), &unsigned);
    let refused = cairn()
        .arg("verify")
        .arg(&unsigned)
        .arg("--key")
        .arg(&public)
        .arg("--insecure")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(
        refused.status.code(),
        Some(1),
        "an unsigned index passed verify:\n{said}"
    );
    assert!(
        said.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("signatures")),
        "no failed signature check for the unsigned index:\n{said}"
    );
}
