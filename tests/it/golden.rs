//! Golden outputs: every example recipe in `recipes/` builds to a checked-in manifest
//! digest. The snapshot also holds the manifest, config and file list, so when output
//! bytes change the diff shows what changed, and the change is deliberate.

use crate::common::*;

/// The headline digest (`manifest digest:`, or `index digest:` for a multi-platform
/// image), then each image.
fn summary(layout: &std::path::Path) -> String {
    let report = run_ok(cairn().arg("inspect").arg(layout).arg("--json"));
    let report: serde_json::Value = serde_json::from_slice(&report.stdout).unwrap();
    let Some(index) = report["index_digest"].as_str() else {
        return image_summary(&report["images"][0]);
    };
    let mut text = format!("index digest: {index}\n");
    for image in report["images"].as_array().unwrap() {
        text.push_str(&format!(
            "\n== platform {} ==\n",
            image["platform"].as_str().unwrap()
        ));
        text.push_str(&image_summary(image));
    }
    text
}

fn image_summary(image: &serde_json::Value) -> String {
    let mut text = format!(
        "manifest digest: {}\nref name: {}\n\nmanifest:\n{}\n\nconfig:\n{}\n",
        image["manifest_digest"].as_str().unwrap(),
        image["ref_name"].as_str().unwrap(),
        serde_json::to_string_pretty(&image["manifest"]).unwrap(),
        serde_json::to_string_pretty(&image["config"]).unwrap(),
    );
    for layer in image["layers"].as_array().unwrap() {
        text.push_str(&format!(
            "\nlayer {} ({} bytes)\n",
            layer["digest"].as_str().unwrap(),
            layer["size"]
        ));
        for f in layer["files"].as_array().unwrap() {
            let link = f["link"]
                .as_str()
                .map(|l| format!(" -> {l}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "  {:<8} {:04o} {}:{} {:>6} {}{link}\n",
                f["kind"].as_str().unwrap(),
                f["mode"].as_u64().unwrap(),
                f["uid"],
                f["gid"],
                f["size"],
                f["path"].as_str().unwrap(),
            ));
        }
    }
    text
}

/// Every example recipe but those that install Debian packages: what they resolve to
/// depends on the mirror on the day they are locked (`tools::debian_mirror` builds
/// `distroless.yaml` twice from one lock instead; `tools::debian` pins package images
/// from a repository made by the test).
#[test]
fn example_recipes_build_to_their_golden_digests() {
    let mut recipes: Vec<_> = std::fs::read_dir(repo_root().join("recipes"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .filter(|p| cairn::recipe::load(p).unwrap().packages.is_none())
        .collect();
    recipes.sort();
    assert!(!recipes.is_empty(), "no example recipes found");
    for recipe in recipes {
        let out = tempfile::tempdir().unwrap();
        let report = build_json(&recipe, out.path(), &["--locked"]);
        let name = report["name"].as_str().unwrap();
        let layout = out.path().join(name);
        let text = summary(&layout);
        let headline = if report["images"].is_array() {
            "index digest"
        } else {
            "manifest digest"
        };
        assert!(text.starts_with(&format!(
            "{headline}: {}",
            report["manifest_digest"].as_str().unwrap()
        )));
        insta::assert_snapshot!(format!("golden-{name}"), text);
    }
}
