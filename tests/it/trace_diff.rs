//! `cairn trace` and `cairn diff` through the real binary, on real builds: trace leads
//! from a file in an image (by path or by the SHA-256 of its bytes) to its layer, the
//! source that supplied it (digest, archive member, signer) and the recipe line that
//! put it there; diff lists exactly what differs between two images, with diff(1)'s
//! exit codes.

use crate::common::*;
use cairn::digest::Sha256Digest;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

fn hello_recipe() -> PathBuf {
    repo_root().join("recipes/hello.yaml")
}

/// The 1-based line of recipes/hello.yaml that reads `line` (trimmed).
fn hello_line(line: &str) -> u64 {
    let text = std::fs::read_to_string(hello_recipe()).unwrap();
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == line)
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "recipes/hello.yaml should have exactly one line `{line}`"
    );
    found[0] as u64
}

fn sha256_of(path: &Path) -> String {
    Sha256Digest::of(&std::fs::read(path).unwrap()).to_string()
}

/// The digest recipes/hello.lock or the recipe pins for a hello source.
fn hello_pin(source: &str) -> String {
    let lock: Value =
        serde_json::from_slice(&std::fs::read(repo_root().join("recipes/hello.lock")).unwrap())
            .unwrap();
    lock["sources"][source]["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("recipes/hello.lock pins no source `{source}`"))
        .to_string()
}

/// Builds recipes/hello.yaml into `out` (signed with a fresh key when `signed`).
fn build_hello(out: &Path, signed: bool) -> (Value, PathBuf) {
    let key = signed.then(|| keygen(out.parent().unwrap(), "signer").0);
    let mut args = vec!["--locked", "--quiet"];
    if let Some(key) = &key {
        args.extend(["--sign-key", key.to_str().unwrap()]);
    }
    (build_json(&hello_recipe(), out, &args), out.join("hello"))
}

fn trace_json(layout: &Path, what: &str) -> Value {
    let out = run_ok(cairn().arg("trace").arg(layout).arg(what).arg("--json"));
    serde_json::from_slice(&out.stdout).expect("trace --json prints JSON")
}

fn trace_text(layout: &Path, what: &str) -> String {
    String::from_utf8(run_ok(cairn().arg("trace").arg(layout).arg(what)).stdout).unwrap()
}

/// The only match of a trace; panics if there is not exactly one.
fn only_match<'a>(trace: &'a Value, what: &str) -> &'a Value {
    let matches = trace["matches"].as_array().expect("trace has `matches`");
    assert_eq!(
        matches.len(),
        1,
        "tracing {what} should find exactly one file: {trace:#}"
    );
    &matches[0]
}

/// The words of the text output's line that starts with `label` (e.g. `layer`).
fn text_field(text: &str, label: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .find(|words| words.first().map(String::as_str) == Some(label))
        .unwrap_or_else(|| panic!("trace printed no `{label}` line:\n{text}"))
}

// ---------------------------------------------------------------------------------
// trace

#[test]
fn trace_leads_from_usr_bin_hello_to_its_layer_source_and_recipe_line() {
    let work = tempfile::tempdir().unwrap();
    let (report, layout) = build_hello(&work.path().join("out"), true);
    let app_layer = &report["layers"][1];
    assert_eq!(app_layer["name"], "app", "hello's second layer is `app`");
    let file_digest = sha256_of(&repo_root().join("recipes/bin/hello-amd64"));
    let line = hello_line("- copy: app");

    let trace = trace_json(&layout, "/usr/bin/hello");
    let m = only_match(&trace, "/usr/bin/hello");
    assert_eq!(m["path"], "/usr/bin/hello", "traced path");
    assert_eq!(
        m["sha256"], file_digest,
        "the traced file's digest should be that of recipes/bin/hello-amd64"
    );
    assert_eq!(m["mode"], 0o755, "mode from `mode: 0o755` in the recipe");
    assert_eq!(
        m["layer"],
        json!({"index": 1, "name": "app", "digest": app_layer["digest"]}),
        "/usr/bin/hello should trace to layer 1, `app`, with the digest the build reported"
    );
    assert_eq!(m["origin"], "source", "origin");
    assert_eq!(
        m["source"],
        json!({
            "name": "app",
            "kind": "file",
            "path": "bin/hello-amd64",
            "digest": hello_pin("app"),
            "signer": null,
        }),
        "/usr/bin/hello should trace to the file source `app` with its pinned digest, unsigned"
    );
    assert_eq!(m["member"], Value::Null, "a file source has no member");
    assert_eq!(
        (&m["recipe"], &m["recipe_line"]),
        (&json!("hello.yaml"), &json!(line)),
        "/usr/bin/hello should trace to hello.yaml line {line} (`- copy: app`)"
    );

    let text = trace_text(&layout, "/usr/bin/hello");
    assert_eq!(
        text.lines().next(),
        Some("/usr/bin/hello"),
        "the text trace starts with the path:\n{text}"
    );
    assert_eq!(
        text_field(&text, "layer"),
        ["layer", "1", "app", app_layer["digest"].as_str().unwrap()],
        "text trace: layer line"
    );
    assert_eq!(
        text_field(&text, "source"),
        [
            "source",
            "app",
            "(file",
            "bin/hello-amd64)",
            &hello_pin("app")
        ],
        "text trace: source line"
    );
    assert_eq!(
        text_field(&text, "recipe"),
        ["recipe", "hello.yaml", "line", &line.to_string()],
        "text trace: recipe line"
    );
    assert!(
        text_field(&text, "signer").join(" ").contains("unsigned"),
        "text trace should say the source is unsigned:\n{text}"
    );
}

#[test]
fn trace_of_an_unsigned_image_still_names_the_recipe() {
    // The recipe's file name is in the attached SPDX SBOM of every build, signed or not.
    let work = tempfile::tempdir().unwrap();
    let (_, layout) = build_hello(&work.path().join("out"), false);
    let line = hello_line("- copy: app");
    let m = only_match(&trace_json(&layout, "/usr/bin/hello"), "/usr/bin/hello").clone();
    assert_eq!(
        m["recipe_line"],
        json!(line),
        "/usr/bin/hello should trace to line {line} of the recipe"
    );
    assert_eq!(
        m["recipe"], "hello.yaml",
        "an unsigned image's trace should still name the recipe file (its SBOM does): {m:#}"
    );
    let text = trace_text(&layout, "/usr/bin/hello");
    assert_eq!(
        text_field(&text, "recipe"),
        ["recipe", "hello.yaml", "line", &line.to_string()],
        "text trace of an unsigned image: recipe line"
    );
}

#[test]
fn trace_leads_from_an_unpacked_archive_member_to_the_archive() {
    let work = tempfile::tempdir().unwrap();
    let (report, layout) = build_hello(&work.path().join("out"), true);
    let m = only_match(
        &trace_json(&layout, "/opt/tools/bin/greet"),
        "/opt/tools/bin/greet",
    )
    .clone();
    assert_eq!(
        m["layer"]["name"], "base",
        "greet is unpacked in layer `base`: {m:#}"
    );
    assert_eq!(
        m["layer"]["digest"], report["layers"][0]["digest"],
        "layer digest"
    );
    assert_eq!(
        (
            &m["source"]["name"],
            &m["source"]["kind"],
            &m["source"]["digest"]
        ),
        (
            &json!("tools"),
            &json!("archive"),
            &json!(hello_pin("tools"))
        ),
        "/opt/tools/bin/greet should trace to the archive source `tools` and its digest"
    );
    assert_eq!(
        m["member"], "opt/tools/bin/greet",
        "the archive member greet was unpacked from"
    );
    let line = hello_line("- extract: tools");
    assert_eq!(
        m["recipe_line"],
        json!(line),
        "greet should trace to the `- extract: tools` line"
    );
    let text = trace_text(&layout, "/opt/tools/bin/greet");
    assert_eq!(
        text_field(&text, "member"),
        ["member", "opt/tools/bin/greet"],
        "text trace: member line"
    );
}

#[test]
fn trace_finds_a_file_by_the_sha256_of_its_bytes() {
    let work = tempfile::tempdir().unwrap();
    let (_, layout) = build_hello(&work.path().join("out"), false);
    // A file found on a running system: only its bytes are known.
    let digest = sha256_of(&repo_root().join("recipes/hello/site/index.html"));
    for query in [
        digest.clone(),
        digest.trim_start_matches("sha256:").to_string(),
    ] {
        let trace = trace_json(&layout, &query);
        let m = only_match(&trace, &query);
        assert_eq!(
            m["path"], "/var/www/index.html",
            "tracing {query} should find the file with those bytes"
        );
        assert_eq!(
            (&m["source"]["name"], &m["member"]),
            (&json!("site"), &json!("index.html")),
            "index.html should trace to the directory source `site`: {m:#}"
        );
    }
}

#[test]
fn trace_shows_the_signer_of_a_signed_source() {
    let work = tempfile::tempdir().unwrap();
    let project = signed_file_recipe(work.path());
    let out = work.path().join("out");
    build_json(&project.recipe, &out, &["--locked", "--quiet"]);
    let layout = out.join("signed");

    let m = only_match(&trace_json(&layout, "/usr/bin/tool"), "/usr/bin/tool").clone();
    assert_eq!(
        m["source"],
        json!({
            "name": "tool",
            "kind": "file",
            "path": "tool.sh",
            "digest": format!("sha256:{}", project.tool_sha256),
            "signer": project.signer,
        }),
        "/usr/bin/tool should trace to the source `tool` with the key id of its ssh signer"
    );
    let text = trace_text(&layout, "/usr/bin/tool");
    assert_eq!(
        text_field(&text, "signer"),
        ["signer", project.signer.as_str()],
        "text trace: signer line"
    );
}

#[test]
fn trace_of_what_is_not_in_the_image_fails_and_says_so() {
    let work = tempfile::tempdir().unwrap();
    let (_, layout) = build_hello(&work.path().join("out"), false);
    let absent_digest = Sha256Digest::of(b"in no image").to_string();
    for query in ["/usr/bin/nope", absent_digest.as_str()] {
        for json in [false, true] {
            let mut cmd = cairn();
            cmd.arg("trace").arg(&layout).arg(query);
            if json {
                cmd.arg("--json");
            }
            let (code, stderr) = run_err(&mut cmd);
            assert_eq!(code, 1, "{cmd:?} should exit 1: {stderr}");
            assert!(
                stderr.contains(query) && stderr.contains("no regular file"),
                "{cmd:?} should say that no file in the image matches {query}: {stderr}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// diff

fn diff(a: &Path, b: &Path, json: bool) -> Output {
    let mut cmd = cairn();
    cmd.arg("diff").arg(a).arg(b);
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("spawn cairn")
}

#[test]
fn diff_of_two_builds_of_one_recipe_is_identical() {
    let work = tempfile::tempdir().unwrap();
    let (report, a) = build_hello(&work.path().join("a"), false);
    let (_, b) = build_hello(&work.path().join("b"), false);

    let text = diff(&a, &b, false);
    assert_eq!(
        text.status.code(),
        Some(0),
        "diff of identical builds should exit 0: {}",
        String::from_utf8_lossy(&text.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&text.stdout),
        format!(
            "identical: {}\n",
            report["manifest_digest"].as_str().unwrap()
        ),
        "diff of identical builds should say so, with the manifest digest"
    );
    let out = diff(&a, &b, true);
    assert_eq!(
        out.status.code(),
        Some(0),
        "diff --json of identical builds"
    );
    let d: Value = serde_json::from_slice(&out.stdout).expect("diff --json prints JSON");
    for list in [
        "config",
        "layers",
        "files_added",
        "files_removed",
        "files_changed",
        "sources",
    ] {
        assert_eq!(
            d[list],
            json!([]),
            "identical builds differ in {list}: {d:#}"
        );
    }
}

#[test]
fn diff_of_a_missing_layout_exits_2() {
    let work = tempfile::tempdir().unwrap();
    let (_, a) = build_hello(&work.path().join("a"), false);
    let missing = work.path().join("nothing-here");
    let out = diff(&a, &missing, false);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(2),
        "diff with an unreadable side is trouble (exit 2), not a difference: {stderr}"
    );
    assert!(
        stderr.contains("nothing-here"),
        "diff should name the layout it cannot read: {stderr}"
    );
}

/// Two recipes that differ in exactly: the content of the file source `app` (so its
/// digest too), one added file, one mode, one env var. No embedded SBOM, whose bytes
/// would differ as well.
struct TwoRecipes {
    work: tempfile::TempDir,
    app_a: String,
    app_b: String,
    conf: String,
}

fn recipe_text(app_sha256: &str, conf_mode: &str, extra: &str, env: &str) -> String {
    format!(
        "cairn: 1
name: diffme
epoch: 1700000000
sbom: false
sources:
  app: {{ path: app.sh, sha256: {app_sha256} }}
layers:
  - name: base
    contents:
      - copy: app
        to: /usr/bin/app
        mode: 0o755
      - file: /etc/conf
        content: \"setting=1\\n\"
        mode: {conf_mode}
{extra}config:
  env: {{ A: \"{env}\" }}
"
    )
}

fn two_recipes() -> TwoRecipes {
    let work = tempfile::tempdir().unwrap();
    let mut digests = Vec::new();
    for (side, app, mode, extra, env) in [
        ("a", "#!/bin/sh\necho one\n", "0o644", "", "1"),
        (
            "b",
            "#!/bin/sh\necho two\n",
            "0o600",
            "      - file: /etc/extra\n        content: \"new\\n\"\n",
            "2",
        ),
    ] {
        let dir = work.path().join(side);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.sh"), app).unwrap();
        let digest = Sha256Digest::of(app.as_bytes());
        write_recipe(
            &dir,
            "diffme.yaml",
            &recipe_text(&digest.hex(), mode, extra, env),
        );
        build_json(
            &dir.join("diffme.yaml"),
            &dir.join("out"),
            &["--locked", "--quiet"],
        );
        digests.push(digest.to_string());
    }
    TwoRecipes {
        work,
        app_a: digests[0].clone(),
        app_b: digests[1].clone(),
        conf: Sha256Digest::of(b"setting=1\n").to_string(),
    }
}

impl TwoRecipes {
    fn layout(&self, side: &str) -> PathBuf {
        self.work.path().join(side).join("out/diffme")
    }
}

#[test]
fn diff_lists_exactly_the_changed_file_added_file_mode_env_and_source() {
    let t = two_recipes();
    let out = diff(&t.layout("a"), &t.layout("b"), true);
    assert_eq!(
        out.status.code(),
        Some(1),
        "diff of different images should exit 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d: Value = serde_json::from_slice(&out.stdout).expect("diff --json prints JSON");
    assert_ne!(d["manifest"][0], d["manifest"][1], "the manifests differ");

    assert_eq!(
        d["files_changed"],
        json!([
            {"what": "/etc/conf", "a": format!("file 0644 0:0 {}", t.conf),
             "b": format!("file 0600 0:0 {}", t.conf)},
            {"what": "/usr/bin/app", "a": format!("file 0755 0:0 {}", t.app_a),
             "b": format!("file 0755 0:0 {}", t.app_b)},
        ]),
        "files_changed should be /etc/conf (mode 0644 -> 0600) and /usr/bin/app (content)"
    );
    assert_eq!(d["files_added"], json!(["/etc/extra"]), "files_added");
    assert_eq!(d["files_removed"], json!([]), "files_removed");

    let config = d["config"].as_array().expect("diff has a `config` list");
    let env = config
        .iter()
        .find(|c| c["what"] == "/config/Env")
        .unwrap_or_else(|| panic!("the env change is not listed under /config/Env: {config:#?}"));
    assert!(
        env["a"].as_str().unwrap().contains("A=1") && env["b"].as_str().unwrap().contains("A=2"),
        "the /config/Env change should go from A=1 to A=2: {env}"
    );
    let config_paths: Vec<&str> = config.iter().filter_map(|c| c["what"].as_str()).collect();
    assert_eq!(
        config_paths,
        ["/config/Env", "/rootfs/diff_ids"],
        "besides the env, only the layer diff_ids may differ in the config"
    );
    assert_eq!(
        d["layers"].as_array().map(Vec::len),
        Some(1),
        "the one layer differs: {:#}",
        d["layers"]
    );
    assert_eq!(
        d["sources"],
        json!([{"what": "source app", "a": t.app_a, "b": t.app_b}]),
        "the source `app` changed digest"
    );
}

#[test]
fn diff_text_lists_each_change_once() {
    let t = two_recipes();
    let out = diff(&t.layout("a"), &t.layout("b"), false);
    assert_eq!(
        out.status.code(),
        Some(1),
        "diff of different images exits 1"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let stuttering: Vec<&&str> = lines
        .iter()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().take(2).collect();
            words.len() == 2 && words[0] == words[1]
        })
        .collect();
    assert!(
        stuttering.is_empty(),
        "diff's text output repeats its label (e.g. `layer layer 0`, `source source app`) in \
         {stuttering:?}"
    );
    for want in [
        "added /etc/extra".to_string(),
        format!(
            "changed /etc/conf: file 0644 0:0 {} -> file 0600 0:0 {}",
            t.conf, t.conf
        ),
        format!("source app: {} -> {}", t.app_a, t.app_b),
    ] {
        assert!(
            lines.contains(&want.as_str()),
            "diff's text output should have the line {want:?}:\n{text}"
        );
    }
}

/// Builds `recipes/hello.yaml`, then the recipe `name` made of `base:` on it and
/// `rest`, and gives `trace` of `/usr/bin/hello` in that image.
fn trace_hello_in_image_based_on_it(name: &str, rest: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    build_json(
        &repo_root().join("recipes/hello.yaml"),
        &dir.path().join("images"),
        &["--locked", "--quiet"],
    );
    let recipe = write_recipe(
        dir.path(),
        &format!("{name}.yaml"),
        &format!(
            "cairn: 1\nname: {name}\nepoch: 1700000000\nbase: {{ layout: images/hello }}\n{rest}"
        ),
    );
    build_json(&recipe, &dir.path().join("out"), &["--quiet"]);
    trace_text(&dir.path().join("out").join(name), "/usr/bin/hello")
}

#[test]
fn trace_names_a_base_images_layers_as_base_layers() {
    let text = trace_hello_in_image_based_on_it(
        "app",
        "layers:\n  - name: extra\n    contents:\n      - file: /tmp/note\n        content: \"on top\\n\"\n",
    );
    // hello's second layer is the base's layer 1, not the base's own layer `app`.
    assert!(text.contains("  layer   1 base:1 sha256:"), "{text}");
    assert!(text.contains("  source  base"), "{text}");
}

/// A recipe made only of `base:` builds, e.g. to re-sign or re-describe an image:
/// its files are the base's.
#[test]
fn a_recipe_of_a_base_alone_builds() {
    let text = trace_hello_in_image_based_on_it("again", "");
    assert!(text.contains("  source  base"), "{text}");
}
