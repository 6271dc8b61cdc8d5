//! Base images from OCI layouts: layers reused byte for byte, config inherited and
//! overridden, path rules applied over the base's files, the base recorded in SBOMs
//! and provenance, pinning through the lock file, and clear errors for broken bases.

use crate::common::registry;
use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A workspace with the example image built as a base layout at `images/hello`.
struct Workspace {
    dir: tempfile::TempDir,
    base_manifest: String,
}

impl Workspace {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let report = build_json(
            &repo_root().join("recipes/hello.yaml"),
            &dir.path().join("images"),
            &["--locked"],
        );
        Workspace {
            base_manifest: report["manifest_digest"].as_str().unwrap().to_string(),
            dir,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn base_layout(&self) -> PathBuf {
        self.path().join("images/hello")
    }

    fn recipe(&self, base: &str) -> PathBuf {
        write_recipe(
            self.path(),
            "app.yaml",
            &format!(
                "cairn: 1
name: app
epoch: 1700000000
base: {base}
layers:
  - name: extra
    contents:
      - file: /tmp/note
        content: \"on top of the base\\n\"
      - remove: /etc/motd
config:
  cmd: [--version]
  env: {{ MODE: prod, LANG: en_US.UTF-8 }}
  labels: {{ org.example.stage: app }}
"
            ),
        )
    }
}

fn inspect(layout: &Path) -> serde_json::Value {
    let out = run_ok(cairn().arg("inspect").arg(layout).arg("--json"));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn layer_digests(image: &serde_json::Value) -> Vec<String> {
    image["manifest"]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_layout_base_is_reused_inherited_traced_and_verified() {
    let ws = Workspace::new();
    let recipe = ws.recipe("{ layout: images/hello }");
    let out = ws.path().join("out");
    let (key, public, _) = keygen(ws.path(), "signer");
    let ledger = ws.path().join("ledger.jsonl");
    let report = build_json(
        &recipe,
        &out,
        &[
            "--sign-key",
            key.to_str().unwrap(),
            "--ledger",
            ledger.to_str().unwrap(),
        ],
    );
    assert_eq!(report["base"]["manifest_digest"], ws.base_manifest.as_str());
    // The audit ledger's build entry names the base too.
    let entry: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&ledger)
            .unwrap()
            .lines()
            .last()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        entry["details"]["base"]["manifest_digest"],
        ws.base_manifest.as_str()
    );

    // The unpinned base was pinned into the lock file, and a --locked build uses it.
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("app.lock")).unwrap()).unwrap();
    assert_eq!(lock["base"]["reference"], "layout:images/hello");
    assert_eq!(lock["base"]["digest"], ws.base_manifest.as_str());
    let again = build_json(&recipe, &ws.path().join("again"), &["--locked"]);
    assert_eq!(again["manifest_digest"], report["manifest_digest"]);

    let base = inspect(&ws.base_layout())["images"][0].clone();
    let image = inspect(&out.join("app"))["images"][0].clone();
    // Base layers come first, byte for byte the same blobs.
    let base_layers = layer_digests(&base);
    let layers = layer_digests(&image);
    assert_eq!(layers[..base_layers.len()], base_layers[..]);
    assert_eq!(layers.len(), base_layers.len() + 2, "extra + sbom");
    for digest in &base_layers {
        let hex = digest.trim_start_matches("sha256:");
        assert_eq!(
            std::fs::read(ws.base_layout().join("blobs/sha256").join(hex)).unwrap(),
            std::fs::read(out.join("app/blobs/sha256").join(hex)).unwrap()
        );
    }
    let diff_ids = |i: &serde_json::Value| i["config"]["rootfs"]["diff_ids"].clone();
    assert_eq!(
        diff_ids(&image).as_array().unwrap()[..base_layers.len()],
        diff_ids(&base).as_array().unwrap()[..]
    );
    assert_eq!(
        image["config"]["history"].as_array().unwrap()[..base_layers.len()],
        base["config"]["history"].as_array().unwrap()[..]
    );

    // Config: inherited, then overridden by the recipe.
    let config = &image["config"]["config"];
    assert_eq!(config["Entrypoint"], serde_json::json!(["/usr/bin/hello"]));
    assert_eq!(config["Cmd"], serde_json::json!(["--version"]));
    assert_eq!(config["User"], "65532:65532");
    assert_eq!(config["WorkingDir"], "/home/app");
    assert_eq!(
        config["Env"],
        serde_json::json!(["LANG=en_US.UTF-8", "PATH=/usr/bin:/bin", "MODE=prod"])
    );
    assert_eq!(config["Labels"]["org.example.stage"], "app");
    assert_eq!(
        config["Labels"]["org.opencontainers.image.description"],
        "cairn example image"
    );
    assert!(config["ExposedPorts"]["8080/tcp"].is_object());

    // The recipe's layer keeps the base's /tmp mode (1777) and whites out /etc/motd.
    let extra = &image["layers"][base_layers.len()]["files"];
    let entry = |path: &str| {
        extra
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["path"] == path)
            .unwrap_or_else(|| panic!("{path} in {extra}"))
            .clone()
    };
    assert_eq!(entry("tmp/")["mode"], 0o1777);
    entry("etc/.wh.motd");

    // SBOMs and provenance name the base; every base file is in the SBOM.
    let spdx: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("app.spdx.json")).unwrap()).unwrap();
    let base_pkg = spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["SPDXID"] == "SPDXRef-BaseImage")
        .expect("a base image package");
    assert_eq!(
        base_pkg["checksums"][0]["checksumValue"],
        ws.base_manifest.trim_start_matches("sha256:")
    );
    assert!(spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["fileName"] == "./usr/bin/hello"
            && f["comment"].as_str().unwrap().contains("origin=base")));
    pyspdxtools(&out.join("app.spdx.json")).unwrap();
    cyclonedx_validate(&out.join("app.cdx.json")).unwrap();

    let verified = run_ok(
        cairn()
            .arg("verify")
            .arg(out.join("app"))
            .arg("--key")
            .arg(&public)
            .arg("--json"),
    );
    let verdict: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert_eq!(verdict["verified"], true, "{verdict}");
    let provenance = provenance_of(&out.join("app.intoto.jsonl"));
    let deps = &provenance["predicate"]["buildDefinition"]["resolvedDependencies"];
    assert_eq!(deps[0]["name"], "base-image");
    assert_eq!(deps[0]["uri"], "file:images/hello");
    assert_eq!(
        deps[0]["digest"]["sha256"],
        ws.base_manifest.trim_start_matches("sha256:")
    );

    // trace names the base as the origin of a base file.
    let traced = run_ok(
        cairn()
            .arg("trace")
            .arg(out.join("app"))
            .arg("/usr/bin/hello")
            .arg("--json"),
    );
    let traced: serde_json::Value = serde_json::from_slice(&traced.stdout).unwrap();
    assert_eq!(traced["matches"][0]["origin"], "base", "{traced}");
    // The layer is the base's second one, named as the SBOM names base layers, not
    // by what the base's own history calls its layers.
    assert_eq!(traced["matches"][0]["layer"]["name"], "base:1", "{traced}");
    assert_eq!(traced["matches"][0]["layer"]["index"], 1, "{traced}");

    // umoci unpacks base files and the recipe's together, without the whited-out one.
    let rootfs = umoci_unpack(&out.join("app"), "app", &ws.path().join("bundle"));
    assert!(rootfs.join("usr/bin/hello").is_file());
    assert_eq!(
        std::fs::read_to_string(rootfs.join("tmp/note")).unwrap(),
        "on top of the base\n"
    );
    assert!(!rootfs.join("etc/motd").exists());
}

#[test]
fn a_docker_schema2_base_gets_oci_layer_types_with_the_same_blobs() {
    let ws = Workspace::new();
    let docker = ws.path().join("images/docker");
    run_ok(Command::new("skopeo").args([
        "copy",
        "--format",
        "v2s2",
        &format!("oci:{}:hello", ws.base_layout().display()),
        &format!("oci:{}:hello", docker.display()),
    ]));
    let recipe = ws.recipe("{ layout: images/docker }");
    let out = ws.path().join("out");
    build_json(&recipe, &out, &[]);
    let base = inspect(&docker)["images"][0].clone();
    assert_eq!(
        base["manifest"]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let image = inspect(&out.join("app"))["images"][0].clone();
    let base_layers = layer_digests(&base);
    assert_eq!(layer_digests(&image)[..base_layers.len()], base_layers[..]);
    for l in image["manifest"]["layers"].as_array().unwrap() {
        assert_eq!(
            l["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}

fn build_fails(recipe: &Path, out: &Path, args: &[&str]) -> String {
    let (code, stderr) = run_err(
        cairn()
            .arg("build")
            .arg(recipe)
            .arg("-o")
            .arg(out)
            .args(args),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        !out.join("app").exists(),
        "a failed build publishes nothing"
    );
    stderr
}

#[test]
fn broken_or_mismatched_bases_are_clear_errors() {
    let ws = Workspace::new();
    let out = ws.path().join("out");

    // A pinned digest the layout does not have.
    let wrong = format!("sha256:{}", "0".repeat(64));
    let recipe = ws.recipe(&format!("{{ layout: images/hello, digest: \"{wrong}\" }}"));
    let stderr = build_fails(&recipe, &out, &[]);
    assert!(
        stderr.contains(&format!("the base image has no manifest {wrong}")),
        "{stderr}"
    );
    assert!(stderr.contains("app.yaml:4:7"), "{stderr}");

    // --locked refuses a base pinned nowhere.
    let recipe = ws.recipe("{ layout: images/hello }");
    let stderr = build_fails(&recipe, &out, &["--locked"]);
    assert!(stderr.contains("is not pinned"), "{stderr}");

    // A layer blob missing from the base layout.
    let pinned = ws.recipe(&format!(
        "{{ layout: images/hello, digest: \"{}\" }}",
        ws.base_manifest
    ));
    let base = inspect(&ws.base_layout())["images"][0].clone();
    let first_layer = layer_digests(&base)[0].clone();
    let blob = ws
        .base_layout()
        .join("blobs/sha256")
        .join(first_layer.trim_start_matches("sha256:"));
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::remove_file(&blob).unwrap();
    let stderr = build_fails(&pinned, &out, &[]);
    assert!(
        stderr.contains(&format!("the base image has no blob {first_layer}"))
            && stderr.contains("incomplete"),
        "{stderr}"
    );

    // A layer blob whose bytes do not match its digest.
    let mut tampered = bytes.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&blob, &tampered).unwrap();
    let stderr = build_fails(&pinned, &out, &[]);
    assert!(
        stderr.contains("does not match its digest") && stderr.contains(&first_layer),
        "{stderr}"
    );
    std::fs::write(&blob, &bytes).unwrap();
    build_json(&pinned, &out, &[]);
}

/// The example image pushed to a registry the test starts (docker-registry on a
/// loopback port), as `127.0.0.1:PORT/lib/hello:v1`.
fn registry_with_hello(ws: &Workspace) -> (registry::Registry, String) {
    let registry = registry::Registry::start(registry::RegistryAuth::None);
    let reference = format!("{}/lib/hello:v1", registry.host);
    run_ok(
        cairn()
            .arg("push")
            .arg(ws.base_layout())
            .arg(&reference)
            .arg("--insecure"),
    );
    (registry, reference)
}

#[test]
fn a_registry_base_by_tag_is_pinned_in_the_lock_and_reused() {
    let ws = Workspace::new();
    let (registry, reference) = registry_with_hello(&ws);
    let recipe = ws.recipe(&format!("{{ ref: \"{reference}\" }}"));
    let out = ws.path().join("out");
    let report = build_json(&recipe, &out, &["--insecure"]);
    let lock: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ws.path().join("app.lock")).unwrap()).unwrap();
    assert_eq!(lock["base"]["reference"], reference.as_str());
    assert_eq!(lock["base"]["digest"], ws.base_manifest.as_str());
    assert_eq!(report["base"]["manifest_digest"], ws.base_manifest.as_str());

    let base = inspect(&ws.base_layout())["images"][0].clone();
    let image = inspect(&out.join("app"))["images"][0].clone();
    let base_layers = layer_digests(&base);
    assert_eq!(layer_digests(&image)[..base_layers.len()], base_layers[..]);

    // Pinned: a --locked rebuild gives the same image, also after the tag moves.
    run_ok(
        cairn()
            .arg("push")
            .arg(out.join("app"))
            .arg(&reference)
            .arg("--insecure"),
    );
    let again = build_json(
        &recipe,
        &ws.path().join("again"),
        &["--locked", "--insecure"],
    );
    assert_eq!(again["manifest_digest"], report["manifest_digest"]);

    // A digest the registry does not have, in the reference itself.
    let missing = format!("sha256:{}", "1".repeat(64));
    let recipe = ws.recipe(&format!("{{ ref: \"{reference}@{missing}\" }}"));
    let stderr = build_fails(&recipe, &ws.path().join("bad"), &["--insecure"]);
    assert!(
        stderr.contains(&format!("the base image has no manifest {missing}")),
        "{stderr}"
    );

    // A layer the registry lost.
    let pinned = ws.recipe(&format!("{{ ref: \"{reference}@{}\" }}", ws.base_manifest));
    let lost = layer_digests(&base)[0]
        .trim_start_matches("sha256:")
        .to_string();
    std::fs::remove_file(registry.blob_file(&lost)).unwrap();
    let stderr = build_fails(&pinned, &ws.path().join("bad"), &["--insecure"]);
    assert!(
        stderr.contains(&format!("the base image has no blob sha256:{lost}")),
        "{stderr}"
    );
}

#[test]
fn accounts_extend_the_base_images_users_and_groups() {
    let ws = Workspace::new();
    let recipe = write_recipe(
        ws.path(),
        "app.yaml",
        "cairn: 1
name: app
base: { layout: images/hello }
layers:
  - name: extra
    contents:
      - dir: /srv
accounts:
  users: [{ name: svc, uid: 100, gid: 100 }]
  groups: [{ name: svc, gid: 100 }]
config:
  user: svc
",
    );
    let out = ws.path().join("out");
    build_json(&recipe, &out, &[]);
    let rootfs = umoci_unpack(&out.join("app"), "app", &ws.path().join("bundle"));
    let read = |f: &str| std::fs::read_to_string(rootfs.join("etc").join(f)).unwrap();
    assert_eq!(
        read("passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\n\
         app:x:65532:65532::/home/app:/sbin/nologin\n\
         svc:x:100:100::/home/svc:/sbin/nologin\n"
    );
    assert_eq!(read("group"), "root:x:0:\napp:x:65532:\nsvc:x:100:\n");

    // A user of the base's own /etc/passwd, by name, without `accounts:` (the base's
    // config says 65532:65532).
    let on_base = write_recipe(
        ws.path(),
        "app2.yaml",
        "cairn: 1\nname: app2\nbase: { layout: images/hello }\nconfig:\n  user: root\n",
    );
    build_json(&on_base, &out, &[]);
    let image = inspect(&out.join("app2"))["images"][0].clone();
    assert_eq!(image["config"]["config"]["User"], "0:0");
}
