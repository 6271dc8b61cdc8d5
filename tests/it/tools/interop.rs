//! Real third-party tools accept what cairn writes: skopeo reads and copies the layout,
//! umoci unpacks it into exactly the file system the recipe describes (whiteouts
//! included, and the embedded SBOMs equal to the ones published beside the layout), runc
//! runs a busybox image built by cairn as the recipe's user, and the layout's JSON blobs
//! are canonical and carry the media types image-spec 1.1 requires, referrers (SBOMs and
//! signed attestations attached to the image) included.
//!
//! Needs skopeo, umoci, runc, busybox-static and gzip, and root (umoci keeps owners and
//! runc runs containers only as root). A missing tool fails the test, naming its package.

use crate::common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Finds `name` on PATH (or in /usr/sbin and /sbin, where runc lives, in case PATH is a
/// non-root one); panics naming the Debian package that provides it.
fn tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "`{name}` not found on PATH: install the Debian package `{package}` \
                 (`cargo xtask test` installs it when run as root)"
            )
        })
}

fn skopeo() -> Command {
    let mut cmd = Command::new(tool("skopeo", "skopeo"));
    // The host's signature policy is not what is under test.
    cmd.arg("--insecure-policy");
    cmd
}

fn umoci() -> Command {
    Command::new(tool("umoci", "umoci"))
}

fn require_root(what: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "{what} must run as root (CI does): umoci keeps owners and runc runs containers only as root"
    );
}

fn json_of(cmd: &mut Command) -> Value {
    let out = run_ok(cmd);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{cmd:?} did not print JSON: {e}"))
}

/// Builds recipes/hello.yaml into `out`; returns the `--json` report and the layout path.
fn build_hello(out: &Path) -> (Value, PathBuf) {
    build_hello_with(out, &[])
}

/// [`build_hello`] with extra `cairn build` arguments (e.g. `--sign-key`).
fn build_hello_with(out: &Path, extra: &[&str]) -> (Value, PathBuf) {
    let mut args = vec!["--locked", "--quiet"];
    args.extend_from_slice(extra);
    let report = build_json(&repo_root().join("recipes/hello.yaml"), out, &args);
    let layout = out.join("hello");
    assert!(
        layout.join("index.json").is_file(),
        "build did not write {}",
        layout.display()
    );
    (report, layout)
}

fn oci_ref(layout: &Path, tag: &str) -> String {
    format!("oci:{}:{tag}", layout.display())
}

fn layer_field(report: &Value, field: &str) -> Vec<Value> {
    report["layers"]
        .as_array()
        .expect("build --json has a `layers` array")
        .iter()
        .map(|l| l[field].clone())
        .collect()
}

// ---------------------------------------------------------------------------------
// skopeo

#[test]
fn skopeo_inspects_the_hello_layout_as_cairn_reported_it() {
    let out = tempfile::tempdir().unwrap();
    let (report, layout) = build_hello(out.path());
    let image = json_of(skopeo().arg("inspect").arg(oci_ref(&layout, "hello")));

    assert_eq!(
        image["Digest"], report["manifest_digest"],
        "skopeo sees a different manifest digest than `cairn build --json` reported"
    );
    assert_eq!(image["Architecture"], "amd64", "platform architecture");
    assert_eq!(image["Os"], "linux", "platform os");
    assert_eq!(image["Created"], "2023-11-14T22:13:20Z", "created = epoch");
    assert_eq!(
        image["Env"],
        serde_json::json!(["LANG=C.UTF-8", "PATH=/usr/bin:/bin"]),
        "env from the recipe, sorted by name"
    );
    assert_eq!(
        image["Labels"],
        serde_json::json!({"org.opencontainers.image.description": "cairn example image"}),
        "labels from the recipe"
    );
    assert_eq!(
        image["Layers"],
        Value::Array(layer_field(&report, "digest")),
        "skopeo lists different layer digests than cairn reported"
    );

    let config = json_of(
        skopeo()
            .args(["inspect", "--config"])
            .arg(oci_ref(&layout, "hello")),
    );
    assert_eq!(config["created"], "2023-11-14T22:13:20Z", "config created");
    assert_eq!(config["architecture"], "amd64", "config architecture");
    assert_eq!(config["os"], "linux", "config os");
    let c = &config["config"];
    assert_eq!(
        c["User"], "65532:65532",
        "user `app` resolved to numeric uid:gid"
    );
    assert_eq!(c["WorkingDir"], "/home/app", "workdir");
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"8080/tcp": {}}),
        "exposed ports"
    );
    assert_eq!(
        c["Entrypoint"],
        serde_json::json!(["/usr/bin/hello"]),
        "entrypoint"
    );
    assert_eq!(c["StopSignal"], "SIGTERM", "stop signal");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        Value::Array(layer_field(&report, "diff_id")),
        "config diff_ids differ from the ones cairn reported"
    );
    let history = config["history"].as_array().expect("config has a history");
    // base, app, accounts (from `accounts:`) and sbom (the embedded SBOMs).
    assert_eq!(
        history.len(),
        4,
        "one history entry per layer (base, app, accounts, sbom): {history:?}"
    );
    assert_eq!(
        history.len(),
        layer_field(&report, "digest").len(),
        "history entries and layers differ in number"
    );
    for entry in history {
        assert_eq!(
            entry["created"], "2023-11-14T22:13:20Z",
            "history entry not at epoch: {entry}"
        );
    }
}

#[test]
fn skopeo_copy_to_another_layout_preserves_every_digest() {
    let out = tempfile::tempdir().unwrap();
    let (report, layout) = build_hello(out.path());
    let copy = out.path().join("copy");
    run_ok(
        skopeo()
            .arg("copy")
            .arg(oci_ref(&layout, "hello"))
            .arg(oci_ref(&copy, "x")),
    );

    let copied = json_of(skopeo().arg("inspect").arg(oci_ref(&copy, "x")));
    assert_eq!(
        copied["Digest"], report["manifest_digest"],
        "skopeo copy changed the manifest digest (it rewrote the manifest or recompressed a layer)"
    );
    assert_eq!(
        copied["Layers"],
        Value::Array(layer_field(&report, "digest")),
        "skopeo copy changed layer digests"
    );
    // The copy holds byte-identical blobs under the same names.
    for digest in layer_field(&report, "digest")
        .iter()
        .chain([&report["config_digest"], &report["manifest_digest"]])
    {
        let name = blob_path(Path::new(""), digest.as_str().unwrap());
        assert_eq!(
            std::fs::read(copy.join(&name)).ok(),
            std::fs::read(layout.join(&name)).ok(),
            "blob {} differs (or is missing) after skopeo copy",
            name.display()
        );
    }
}

// ---------------------------------------------------------------------------------
// gzip layers larger than one member

/// Pseudo-random bytes (xorshift), text-like when `text`: a few MiB that gzip cannot
/// squeeze into one member.
fn generated_file(len: usize, seed: u64, text: bool) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        if text {
            let words: [&[u8]; 6] = [
                b"layer ",
                b"member ",
                b"gzip ",
                b"deflate\n",
                b"the ",
                b"0644 ",
            ];
            out.extend_from_slice(words[(state % 6) as usize]);
        } else {
            out.extend_from_slice(&state.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

/// A gzip layer of several members (cairn compresses each 1 MiB of tar as a gzip member
/// of its own) reads back as the same tar in gzip(1), Python's `gzip`, skopeo (Go's
/// `compress/gzip`) and umoci: none of them stops after the first member.
#[test]
fn a_multi_member_gzip_layer_reads_the_same_in_gzip_python_skopeo_and_umoci() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    let files = [
        ("text.txt", generated_file(2_500_000, 1, true)),
        ("sub/random.bin", generated_file(1_700_000, 2, false)),
        ("sub/small.txt", b"after the big ones\n".to_vec()),
    ];
    for (name, bytes) in &files {
        std::fs::write(tree.join(name), bytes).unwrap();
    }
    let recipe = write_recipe(
        dir.path(),
        "big.yaml",
        "cairn: 1\nname: big\nepoch: 0\ncompression: gzip\nsources:\n  tree: { path: tree/ }\n\
         layers:\n  - name: tree\n    contents:\n      - copy: tree\n        to: /data\n",
    );
    let out = dir.path().join("out");
    let report = build_json(&recipe, &out, &["--quiet"]);
    let layout = out.join("big");
    let digest = layer_field(&report, "digest")[0]
        .as_str()
        .unwrap()
        .to_owned();
    let diff_id = layer_field(&report, "diff_id")[0]
        .as_str()
        .unwrap()
        .to_owned();
    let blob = blob_path(&layout, &digest);

    // Count the members: a decoder of one member stops at its end.
    let gz = std::fs::read(&blob).unwrap();
    let mut rest = &gz[..];
    let mut members = 0;
    while !rest.is_empty() {
        let mut member = flate2::bufread::GzDecoder::new(rest);
        std::io::copy(&mut member, &mut std::io::sink()).unwrap();
        rest = member.into_inner();
        members += 1;
    }
    assert!(
        members >= 4,
        "expected a layer of 4 or more gzip members, got {members}"
    );

    let gunzipped = run_ok(Command::new("gzip").arg("-dc").arg(&blob)).stdout;
    assert_eq!(
        format!("sha256:{}", sha256_hex(&gunzipped)),
        diff_id,
        "gzip -dc did not give the tar the diff_id names"
    );
    let python = run_ok(
        Command::new(python_tool("python"))
            .arg("-c")
            .arg(
                "import gzip, hashlib, sys\n\
                 print(hashlib.sha256(gzip.decompress(open(sys.argv[1], 'rb').read())).hexdigest())",
            )
            .arg(&blob),
    );
    assert_eq!(
        format!("sha256:{}", String::from_utf8_lossy(&python.stdout).trim()),
        diff_id,
        "Python's gzip did not give the tar the diff_id names"
    );

    // skopeo decompresses the layer with Go's compress/gzip when saving to `dir:`.
    let copy = dir.path().join("copy");
    run_ok(
        skopeo()
            .args(["copy", "--dest-decompress"])
            .arg(oci_ref(&layout, "big"))
            .arg(format!("dir:{}", copy.display())),
    );
    let decompressed = std::fs::read(copy.join(diff_id.trim_start_matches("sha256:")))
        .expect("skopeo --dest-decompress stores the layer under its diff_id");
    assert!(
        decompressed == gunzipped,
        "skopeo's decompressed layer differs from gzip -dc's"
    );

    let rootfs = umoci_unpack(&layout, "big", &dir.path().join("bundle"));
    for (name, bytes) in &files {
        let unpacked = std::fs::read(rootfs.join("data").join(name))
            .unwrap_or_else(|e| panic!("umoci did not unpack /data/{name}: {e}"));
        assert!(
            unpacked == *bytes,
            "umoci unpacked other bytes for /data/{name}"
        );
    }
}

// ---------------------------------------------------------------------------------
// umoci: the unpacked file system is exactly the recipe's

/// One file-system entry as a comparable line: kind, mode, owner, and content or target.
fn describe(path: &Path) -> String {
    let meta = std::fs::symlink_metadata(path).unwrap();
    let owner = format!("{}:{}", meta.uid(), meta.gid());
    let ft = meta.file_type();
    if ft.is_symlink() {
        // Symlink modes are always 0777 on Linux; nothing to compare.
        format!(
            "link {owner} -> {}",
            std::fs::read_link(path).unwrap().display()
        )
    } else if ft.is_dir() {
        format!("dir {:04o} {owner}", meta.mode() & 0o7777)
    } else if ft.is_file() {
        let content = std::fs::read(path).unwrap();
        format!(
            "file {:04o} {owner} {:?}",
            meta.mode() & 0o7777,
            String::from_utf8_lossy(&content)
        )
    } else {
        format!("other {:?} {:04o} {owner}", ft, meta.mode() & 0o7777)
    }
}

/// Every entry below `root` (not `root` itself), keyed by its path relative to `root`.
fn describe_tree(root: &Path) -> BTreeMap<String, String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|entry| {
            let entry = entry.unwrap();
            let rel = entry.path().strip_prefix(root).unwrap();
            (rel.to_string_lossy().into_owned(), describe(entry.path()))
        })
        .collect()
}

fn dir(mode: u32, owner: &str) -> String {
    format!("dir {mode:04o} {owner}")
}

fn file(mode: u32, owner: &str, content: &str) -> String {
    format!("file {mode:04o} {owner} {content:?}")
}

fn link(owner: &str, target: &str) -> String {
    format!("link {owner} -> {target}")
}

/// Panics listing every path that is missing, unexpected or different.
fn assert_tree_eq(
    what: &str,
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) {
    let mut problems = Vec::new();
    for (path, want) in expected {
        match actual.get(path) {
            None => problems.push(format!("  missing    /{path}: want {want}")),
            Some(got) if got != want => problems.push(format!(
                "  different  /{path}:\n    want {want}\n    got  {got}"
            )),
            Some(_) => {}
        }
    }
    for (path, got) in actual {
        if !expected.contains_key(path) {
            problems.push(format!("  unexpected /{path}: {got}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{what}: the unpacked rootfs is not what the recipe describes:\n{}",
        problems.join("\n")
    );
}

fn unpack(layout: &Path, tag: &str, bundle: &Path) {
    run_ok(
        umoci()
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
    );
}

fn repo_text(rel: &str) -> String {
    std::fs::read_to_string(repo_root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// A member of the hello recipe's vendored archive, read with GNU tar.
fn tools_member(member: &str) -> String {
    let out = run_ok(
        Command::new("tar")
            .arg("-xzOf")
            .arg(repo_root().join("recipes/hello/vendor/tools.tar.gz"))
            .arg(member),
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A side file the build wrote beside the layout, as text.
fn side_file(out: &Path, name: &str) -> String {
    std::fs::read_to_string(out.join(name))
        .unwrap_or_else(|e| panic!("the build did not write the side file {name}: {e}"))
}

#[test]
fn umoci_unpacks_hello_into_exactly_the_recipes_file_system() {
    require_root("umoci_unpacks_hello_into_exactly_the_recipes_file_system");
    let out = tempfile::tempdir().unwrap();
    let (_, layout) = build_hello(out.path());
    // The SBOMs embedded in the image must be the very bytes published beside it.
    let spdx = side_file(out.path(), "hello.spdx.json");
    let cyclonedx = side_file(out.path(), "hello.cdx.json");
    let bundle = out.path().join("bundle");
    unpack(&layout, "hello", &bundle);

    let root = "0:0";
    let app = "65532:65532";
    let expected: BTreeMap<String, String> = [
        ("bin", dir(0o755, root)),
        ("bin/hi", link(root, "/usr/bin/hello")),
        ("etc", dir(0o755, root)),
        ("etc/group", file(0o644, root, "root:x:0:\napp:x:65532:\n")),
        (
            "etc/motd",
            file(0o644, root, "Built by cairn from a pinned recipe.\n"),
        ),
        (
            "etc/passwd",
            file(
                0o644,
                root,
                "root:x:0:0:root:/root:/sbin/nologin\napp:x:65532:65532::/home/app:/sbin/nologin\n",
            ),
        ),
        ("home", dir(0o755, root)),
        ("home/app", dir(0o755, app)),
        ("opt", dir(0o755, root)),
        ("opt/tools", dir(0o755, root)),
        ("opt/tools/bin", dir(0o755, root)),
        (
            "opt/tools/bin/greet",
            file(0o755, root, &tools_member("opt/tools/bin/greet")),
        ),
        ("opt/tools/bin/hi", link(root, "greet")),
        ("opt/tools/share", dir(0o755, root)),
        (
            "opt/tools/share/README",
            file(0o644, root, &tools_member("opt/tools/share/README")),
        ),
        ("tmp", dir(0o1777, root)),
        ("usr", dir(0o755, root)),
        ("usr/bin", dir(0o755, root)),
        (
            "usr/bin/hello",
            file(
                0o755,
                root,
                &String::from_utf8_lossy(
                    &std::fs::read(repo_root().join("recipes/bin/hello-amd64")).unwrap(),
                ),
            ),
        ),
        // The `sbom` layer: the SBOMs published as OUT/hello.{spdx,cdx}.json.
        ("usr/share", dir(0o755, root)),
        ("usr/share/sbom", dir(0o755, root)),
        (
            "usr/share/sbom/hello.cdx.json",
            file(0o644, root, &cyclonedx),
        ),
        ("usr/share/sbom/hello.spdx.json", file(0o644, root, &spdx)),
        ("var", dir(0o755, root)),
        // `copy: site` to /var/www with `owner:` owns its destination directory too.
        ("var/www", dir(0o755, app)),
        ("var/www/css", dir(0o755, app)),
        (
            "var/www/css/site.css",
            file(0o644, app, &repo_text("recipes/hello/site/css/site.css")),
        ),
        (
            "var/www/index.html",
            file(0o644, app, &repo_text("recipes/hello/site/index.html")),
        ),
    ]
    .into_iter()
    .map(|(path, line)| (path.to_owned(), line))
    .collect();

    assert_tree_eq(
        "recipes/hello.yaml",
        &expected,
        &describe_tree(&bundle.join("rootfs")),
    );
}

#[test]
fn umoci_applies_whiteouts_for_removed_files_and_directories() {
    require_root("umoci_applies_whiteouts_for_removed_files_and_directories");
    let out = tempfile::tempdir().unwrap();
    build_json(
        &repo_root().join("fixtures/interop/whiteouts.yaml"),
        out.path(),
        // `--locked`, so the build never writes a lock file into fixtures/.
        &["--locked", "--quiet"],
    );
    let bundle = out.path().join("bundle");
    unpack(&out.path().join("whiteouts"), "whiteouts", &bundle);

    let root = "0:0";
    // Gone: etc/old, srv/cache/a, srv/cache/sub (removed in `cleanup`; `recreate`
    // writes srv/cache/fresh only). No `.wh.` marker may survive into the rootfs.
    // The recipe says `sbom: false`, so nothing under /usr/share/sbom either (the SBOMs
    // are still published beside the layout).
    assert!(
        out.path().join("whiteouts.spdx.json").is_file(),
        "`sbom: false` must only keep the SBOMs out of the image, not stop publishing them"
    );
    let expected: BTreeMap<String, String> = [
        ("etc", dir(0o755, root)),
        ("etc/keep", file(0o644, root, "keep\n")),
        ("etc/new", file(0o644, root, "new\n")),
        ("srv", dir(0o755, root)),
        ("srv/cache", dir(0o755, root)),
        ("srv/cache/fresh", file(0o644, root, "fresh\n")),
        ("srv/keep", file(0o644, root, "keep\n")),
    ]
    .into_iter()
    .map(|(path, line)| (path.to_owned(), line))
    .collect();

    assert!(
        !bundle.join("rootfs/usr/share/sbom").exists(),
        "the recipe says `sbom: false`, yet /usr/share/sbom was unpacked"
    );
    assert_tree_eq(
        "fixtures/interop/whiteouts.yaml",
        &expected,
        &describe_tree(&bundle.join("rootfs")),
    );
}

// ---------------------------------------------------------------------------------
// runc: a cairn image runs

/// Removes the container however the test ends.
struct Container {
    runc: PathBuf,
    id: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        // Best effort: the container may never have been created.
        let _ = Command::new(&self.runc)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Unpacks image `tag` of `layout` with umoci into a bundle under `work` and runs it
/// with runc (as root), with `stdin` as its input; returns its stdout and stderr once
/// it exits 0 (panics, with both, if it fails or runs for more than 60 s).
pub(crate) fn run_in_runc(layout: &Path, tag: &str, work: &Path, stdin: &str) -> (String, String) {
    run_container(layout, tag, work, stdin, false)
}

/// [`run_in_runc`] in the host's network namespace: the container reaches servers the
/// test runs on loopback.
pub(crate) fn run_in_runc_on_host_network(
    layout: &Path,
    tag: &str,
    work: &Path,
    stdin: &str,
) -> (String, String) {
    run_container(layout, tag, work, stdin, true)
}

fn run_container(
    layout: &Path,
    tag: &str,
    work: &Path,
    stdin: &str,
    host_network: bool,
) -> (String, String) {
    require_root("running an image with runc");
    let runc = tool("runc", "runc");
    let bundle = work.join(format!("bundle-{tag}"));
    unpack(layout, tag, &bundle);

    // umoci writes `terminal: true`; with no terminal on stdin runc would fail to open
    // /dev/tty, so run with plain pipes.
    let config_path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["process"]["terminal"] = Value::Bool(false);
    if host_network {
        if let Some(namespaces) = config["linux"]["namespaces"].as_array_mut() {
            namespaces.retain(|ns| ns["type"] != "network");
        }
    }
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();

    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let container = Container {
        runc: runc.clone(),
        id: format!("cairn-{tag}-{}-{nanos}", std::process::id()),
    };
    // Output goes to files, not pipes, so a hung container cannot block a reader.
    let stdin_path = work.join(format!("{tag}.stdin"));
    std::fs::write(&stdin_path, stdin).unwrap();
    let stdout_path = work.join(format!("{tag}.stdout"));
    let stderr_path = work.join(format!("{tag}.stderr"));
    let mut child = Command::new(&runc)
        .arg("run")
        .arg("--bundle")
        .arg(&bundle)
        .arg(&container.id)
        .stdin(std::fs::File::open(&stdin_path).unwrap())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn runc");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "runc run did not finish within 60 s; stderr:\n{}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        status.success(),
        "runc run failed ({status}):\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

#[test]
fn runc_runs_a_busybox_image_as_the_recipes_user() {
    let busybox_host = Path::new("/bin/busybox");
    let busybox = std::fs::read(busybox_host).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}; install the Debian package `busybox-static` \
             (a static busybox, so the image needs no libc)",
            busybox_host.display()
        )
    });

    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("busybox"), &busybox).unwrap();
    let recipe = write_recipe(
        work.path(),
        "busybox.yaml",
        &format!(
            r#"cairn: 1
name: busybox
epoch: 1700000000
sources:
  busybox: {{ path: busybox, sha256: {sha} }}
layers:
  - name: base
    contents:
      - copy: busybox
        to: /bin/busybox
        mode: 0o755
      - symlink: /bin/sh
        target: busybox
      - file: /etc/motd
        content: "motd from a cairn image\n"
accounts:
  groups: [{{ name: app, gid: 65532 }}]
  users:  [{{ name: app, uid: 65532, gid: 65532, home: /home/app }}]
config:
  entrypoint:
    - /bin/sh
    - -c
    - echo uid=$(/bin/busybox id -u) gid=$(/bin/busybox id -g) cwd=$(/bin/busybox pwd); /bin/busybox cat /etc/motd
  user: app
  workdir: /home/app
"#,
            sha = sha256_hex(&busybox)
        ),
    );
    let out = work.path().join("out");
    // Pinned inline, so a --locked build needs no lock file.
    build_json(&recipe, &out, &["--locked", "--quiet"]);
    assert!(
        !work.path().join("busybox.lock").exists(),
        "--locked wrote a lock file"
    );
    let (stdout, stderr) = run_in_runc(&out.join("busybox"), "busybox", work.path(), "");
    assert_eq!(
        stdout, "uid=65532 gid=65532 cwd=/home/app\nmotd from a cairn image\n",
        "the container did not run as user app in /home/app, or could not read /etc/motd \
         (stderr:\n{stderr})"
    );
}

// ---------------------------------------------------------------------------------
// The layout itself

/// JSON with object keys sorted byte-wise and no whitespace, built by hand so the
/// check does not depend on serde_json's map order features.
fn canonical(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            let body: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v)))
                .collect();
            format!("{{{}}}", body.join(","))
        }
        Value::Array(items) => {
            let body: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", body.join(","))
        }
        scalar => scalar.to_string(),
    }
}

fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("digest {digest:?} is not sha256:<hex>"));
    layout.join("blobs/sha256").join(hex)
}

/// Reads the blob a descriptor points at, checking its digest and size.
fn read_descriptor(layout: &Path, descriptor: &Value, what: &str) -> Vec<u8> {
    let digest = descriptor["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("{what} descriptor has no digest: {descriptor}"));
    let bytes = std::fs::read(blob_path(layout, digest))
        .unwrap_or_else(|e| panic!("{what} blob {digest} missing from the layout: {e}"));
    assert_eq!(
        format!("sha256:{}", sha256_hex(&bytes)),
        digest,
        "{what} blob's content does not match its digest"
    );
    assert_eq!(
        descriptor["size"].as_u64(),
        Some(bytes.len() as u64),
        "{what} descriptor size differs from the blob's length"
    );
    bytes
}

fn parse_canonical(bytes: &[u8], what: &str) -> Value {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what} is not UTF-8: {e}"));
    let value: Value =
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON: {e}"));
    assert_eq!(
        text,
        canonical(&value),
        "{what} is not canonical JSON (sorted keys, no whitespace)"
    );
    value
}

#[test]
fn layout_blobs_are_canonical_and_typed_as_image_spec_1_1_says() {
    let out = tempfile::tempdir().unwrap();
    // Signed, so every kind of referrer (SBOMs and DSSE attestations) is in the layout.
    let key = out.path().join("signer");
    run_ok(cairn().arg("keygen").arg(&key));
    let key = key.with_extension("key");
    let (_, layout) = build_hello_with(out.path(), &["--sign-key", key.to_str().unwrap()]);

    assert_eq!(
        std::fs::read_to_string(layout.join("oci-layout")).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
        "oci-layout file"
    );

    let index = parse_canonical(
        &std::fs::read(layout.join("index.json")).unwrap(),
        "index.json",
    );
    assert_eq!(index["schemaVersion"], 2, "index schemaVersion");
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "index mediaType"
    );
    let manifests = index["manifests"].as_array().expect("index has manifests");
    // Every manifest in the index is canonical JSON; exactly one is the image (tagged,
    // no subject), the others are its referrers (SBOMs).
    let parsed: Vec<(&Value, Value)> = manifests
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let what = format!("index.json manifests[{i}]");
            let bytes = read_descriptor(&layout, entry, &what);
            (entry, parse_canonical(&bytes, &what))
        })
        .collect();
    let images: Vec<&(&Value, Value)> = parsed
        .iter()
        .filter(|(entry, manifest)| {
            entry["annotations"]["org.opencontainers.image.ref.name"].is_string()
                && manifest.get("subject").is_none()
        })
        .collect();
    assert_eq!(
        images.len(),
        1,
        "want exactly one tagged manifest without a subject (the image) in index.json: {manifests:?}"
    );
    let (entry, manifest) = images[0];
    assert_eq!(
        entry["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "index entry mediaType"
    );
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"], "hello",
        "ref name annotation"
    );
    assert_eq!(
        entry["platform"],
        serde_json::json!({"architecture": "amd64", "os": "linux"}),
        "index entry platform"
    );
    let image_descriptor = serde_json::json!({
        "mediaType": entry["mediaType"],
        "digest": entry["digest"],
        "size": entry["size"],
    });
    let empty_descriptor = serde_json::json!({
        "mediaType": "application/vnd.oci.empty.v1+json",
        "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        "size": 2,
    });

    let mut referenced = Vec::new();
    let mut artifact_types: Vec<(String, Value)> = Vec::new();
    for (referrer_entry, referrer) in parsed
        .iter()
        .filter(|(e, _)| e["digest"] != entry["digest"])
    {
        let what = format!("referrer {}", referrer_entry["digest"]);
        let artifact_type = referrer_entry["artifactType"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: its index entry has no artifactType"));
        assert!(
            referrer_entry["annotations"]["org.opencontainers.image.ref.name"].is_null(),
            "{what} is tagged; only the image may carry the ref name: {referrer_entry}"
        );
        assert_eq!(
            referrer["artifactType"], artifact_type,
            "{what}: the manifest's artifactType differs from its index entry's"
        );
        assert_eq!(
            referrer["mediaType"], "application/vnd.oci.image.manifest.v1+json",
            "{what}: manifest mediaType"
        );
        assert_eq!(
            referrer["subject"], image_descriptor,
            "{what}: subject is not the image manifest's descriptor"
        );
        assert_eq!(
            referrer["config"], empty_descriptor,
            "{what}: config is not the empty descriptor image-spec 1.1 prescribes for artifacts"
        );
        assert_eq!(
            read_descriptor(&layout, &referrer["config"], &format!("{what} config")),
            b"{}",
            "{what}: the empty config blob is not `{{}}`"
        );
        let blobs = referrer["layers"]
            .as_array()
            .unwrap_or_else(|| panic!("{what} has no layers array"));
        assert_eq!(blobs.len(), 1, "{what}: want exactly one artifact blob");
        read_descriptor(&layout, &blobs[0], &format!("{what} blob"));
        referenced.extend([
            referrer_entry["digest"].as_str().unwrap().to_owned(),
            referrer["config"]["digest"].as_str().unwrap().to_owned(),
            blobs[0]["digest"].as_str().unwrap().to_owned(),
        ]);
        artifact_types.push((
            artifact_type.to_owned(),
            referrer["annotations"]["in-toto.io/predicate-type"].clone(),
        ));
    }
    artifact_types.sort_by(|a, b| (&a.0, a.1.to_string()).cmp(&(&b.0, b.1.to_string())));
    let dsse = "application/vnd.dsse.envelope.v1+json";
    assert_eq!(
        artifact_types,
        [
            ("application/spdx+json".to_owned(), Value::Null),
            ("application/vnd.cyclonedx+json".to_owned(), Value::Null),
            (dsse.to_owned(), "https://slsa.dev/provenance/v1".into()),
            (dsse.to_owned(), "https://spdx.dev/Document".into()),
        ],
        "a signed build attaches its two SBOMs and two DSSE envelopes (provenance, SBOM \
         statement, each annotated with its predicate type) as referrers"
    );

    assert_eq!(manifest["schemaVersion"], 2, "manifest schemaVersion");
    assert_eq!(
        manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "manifest mediaType"
    );
    assert_eq!(
        manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json",
        "config descriptor mediaType"
    );
    assert_eq!(
        manifest["annotations"]["dev.cairn.output-format"], "6",
        "output format annotation"
    );
    let config = parse_canonical(
        &read_descriptor(&layout, &manifest["config"], "config"),
        "config",
    );

    let layers = manifest["layers"].as_array().expect("manifest has layers");
    let diff_ids = config["rootfs"]["diff_ids"]
        .as_array()
        .expect("config has rootfs.diff_ids");
    assert_eq!(config["rootfs"]["type"], "layers", "rootfs type");
    assert_eq!(layers.len(), diff_ids.len(), "one diff_id per layer");
    referenced.extend([
        entry["digest"].as_str().unwrap().to_owned(),
        manifest["config"]["digest"].as_str().unwrap().to_owned(),
    ]);
    for (i, (layer, diff_id)) in layers.iter().zip(diff_ids).enumerate() {
        let what = format!("layer {i}");
        assert_eq!(
            layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
            "{what} mediaType"
        );
        read_descriptor(&layout, layer, &what);
        // gzip(1) must decompress the layer to the bytes its diff_id names.
        let digest = layer["digest"].as_str().unwrap();
        let tar = run_ok(
            Command::new("gzip")
                .arg("-dc")
                .arg(blob_path(&layout, digest)),
        )
        .stdout;
        assert_eq!(
            Value::String(format!("sha256:{}", sha256_hex(&tar))),
            *diff_id,
            "{what}: gzip -dc output does not hash to the config's diff_id"
        );
        referenced.push(digest.to_owned());
    }

    // No stray blobs (e.g. leftovers of an interrupted write) in the published layout.
    let mut present: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    present.sort();
    referenced.sort();
    referenced.dedup();
    assert_eq!(
        present, referenced,
        "blobs/sha256 holds exactly the referenced blobs"
    );
}
