//! Helpers shared by the integration tests: run the real `cairn` binary, read layouts,
//! and the test services (`apt`: a signed apt repository; `registry`: a real registry;
//! `postgres`: a throwaway PostgreSQL cluster; `tls`: a test CA made by openssl), and
//! VMs (`qemu`: QEMU running a disk; `ovmf`: the firmware with Secure Boot on).

pub mod apt;
pub mod ovmf;
pub mod postgres;
pub mod qemu;
pub mod registry;
pub mod tls;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A `cairn` command with a clean, fixed environment (no SOURCE_DATE_EPOCH leaking in
/// from the caller's shell), and without the layer cache, so that every build writes
/// its layers and no test touches the user's cache directory; the cache tests turn it
/// on with `--cache-dir` and `env_remove("CAIRN_NO_CACHE")`.
pub fn cairn() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
    cmd.env_remove("SOURCE_DATE_EPOCH")
        .env("CAIRN_NO_CACHE", "1");
    cmd
}

/// Runs the command, panicking with its stderr if it fails.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the command, expecting failure; returns stderr.
pub fn run_err(cmd: &mut Command) -> (i32, String) {
    let out = cmd.output().expect("spawn");
    assert!(
        !out.status.success(),
        "{cmd:?} unexpectedly succeeded:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds `recipe` into `out` with `--json` and returns the parsed report.
pub fn build_json(recipe: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    build_json_with(cairn(), recipe, out, extra)
}

/// [`build_json`] with a `cairn` command the caller prepared (e.g. with the layer
/// cache turned on).
pub fn build_json_with(
    mut cmd: Command,
    recipe: &Path,
    out: &Path,
    extra: &[&str],
) -> serde_json::Value {
    let output = run_ok(
        cmd.arg("build")
            .arg(recipe)
            .arg("-o")
            .arg(out)
            .arg("--json")
            .args(extra),
    );
    serde_json::from_slice(&output.stdout).expect("--json prints JSON")
}

/// `cairn build RECIPE -o OUT --json --sign-key KEY` with every cache (packages,
/// layers) in `cache`, whatever the environment says: the report.
pub fn build_signed_with_cache(
    recipe: &Path,
    out: &Path,
    cache: &Path,
    key: &Path,
) -> serde_json::Value {
    let mut cmd = cairn();
    cmd.env_remove("CAIRN_NO_CACHE")
        .env("XDG_CACHE_HOME", cache);
    let layers = cache.join("layers");
    let extra = [
        "--cache-dir",
        layers.to_str().unwrap(),
        "--sign-key",
        key.to_str().unwrap(),
    ];
    build_json_with(cmd, recipe, out, &extra)
}

/// Every file below `dir` with its bytes (symlinks as `-> target`), for comparing two
/// layouts bit for bit.
pub fn tree_bytes(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let ft = entry.file_type();
        let value = if ft.is_symlink() {
            format!("-> {}", std::fs::read_link(entry.path()).unwrap().display()).into_bytes()
        } else if ft.is_file() {
            std::fs::read(entry.path()).unwrap()
        } else {
            b"<dir>".to_vec()
        };
        out.insert(rel, value);
    }
    out
}

/// Copies a directory tree (files, dirs, symlinks), keeping the executable bit.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Unpacks the image tagged `tag` in the OCI layout `layout` with umoci (rootless)
/// into the bundle directory `bundle`; returns the bundle's root file system.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) -> PathBuf {
    run_ok(
        Command::new("umoci")
            .args(["unpack", "--rootless", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
    );
    bundle.join("rootfs")
}

/// Writes `text` as a recipe file in `dir` and returns its path.
pub fn write_recipe(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A tool from the Python validators virtualenv that `cargo xtask test` installs
/// (`$CAIRN_TEST_VENV`, else `target/test-venv`). Panics, never skips, if it is missing.
pub fn python_tool(name: &str) -> PathBuf {
    let venv = std::env::var_os("CAIRN_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/test-venv"));
    let tool = venv.join("bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run `cargo xtask test`, which installs the Python validators \
         (`--fast` does not: a test that needs them belongs under tests/it/tools/)",
        tool.display()
    );
    tool
}

/// `cairn keygen DIR/NAME`: returns the private key, the public key and the key id the
/// command printed.
pub fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf, String) {
    let prefix = dir.join(name);
    let out = run_ok(cairn().arg("keygen").arg(&prefix));
    let key_id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (private, public) = (prefix.with_extension("key"), prefix.with_extension("pub"));
    assert!(
        private.is_file() && public.is_file(),
        "`cairn keygen {}` did not write {name}.key and {name}.pub",
        prefix.display()
    );
    (private, public, key_id)
}

/// A recipe (`signed.yaml`, image `signed`) with one file source, `tool`, signed with
/// the real `ssh-keygen -Y sign -n file` and copied to /usr/bin/tool.
pub struct SignedFileRecipe {
    pub recipe: PathBuf,
    /// Key id of the ssh key that signed `tool`.
    pub signer: String,
    /// SHA-256 of the source file's bytes.
    pub tool_sha256: String,
}

pub fn signed_file_recipe(dir: &Path) -> SignedFileRecipe {
    let tool = dir.join("tool.sh");
    std::fs::write(&tool, "#!/bin/sh\necho signed tool\n").unwrap();
    let private = dir.join("upstream");
    for cmd in [
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "upstream", "-f"])
            .arg(&private),
        Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "file", "-f"])
            .arg(&private)
            .arg(&tool),
    ] {
        let out = cmd
            .output()
            .expect("ssh-keygen is installed (openssh-client)");
        assert!(
            out.status.success(),
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let public = private.with_extension("pub");
    let signer = cairn::keys::key_id(
        &cairn::keys::read_public(&public).expect("ssh-keygen wrote an ed25519 key"),
    );
    let tool_sha256 = cairn::digest::Sha256Digest::of(&std::fs::read(&tool).unwrap()).hex();
    let recipe = write_recipe(
        dir,
        "signed.yaml",
        &format!(
            "cairn: 1
name: signed
epoch: 1700000000
sources:
  tool:
    path: tool.sh
    sha256: {tool_sha256}
    signature: {{ path: tool.sh.sig, key: upstream.pub }}
layers:
  - name: base
    contents:
      - copy: tool
        to: /usr/bin/tool
        mode: 0o755
"
        ),
    );
    SignedFileRecipe {
        recipe,
        signer,
        tool_sha256,
    }
}

/// Runs a validator: `Ok` if it exits 0 and prints nothing at all, else its output.
fn quiet_success(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().expect("run the validator");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.is_empty() {
        Ok(())
    } else {
        Err(format!("exit {}: {text}", out.status))
    }
}

/// Runs `pyspdxtools -i <file>` (SPDX's own validator).
pub fn pyspdxtools(file: &Path) -> Result<(), String> {
    quiet_success(Command::new(python_tool("pyspdxtools")).arg("-i").arg(file))
}

const CYCLONEDX_VALIDATE: &str = r#"
import sys
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
with open(sys.argv[1]) as f:
    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(f.read(), all_errors=True)
if errors is not None:
    for e in errors:
        print(e.data.message, "at", "/".join(str(p) for p in e.data.absolute_path))
    sys.exit(1)
"#;

/// Validates against the official CycloneDX 1.6 JSON schema (strict: no unknown
/// properties), as shipped by cyclonedx-python-lib.
pub fn cyclonedx_validate(file: &Path) -> Result<(), String> {
    quiet_success(
        Command::new(python_tool("python3"))
            .arg("-c")
            .arg(CYCLONEDX_VALIDATE)
            .arg(file),
    )
}

/// The SPDX and CycloneDX side files of image `name` in `out`, each first checked by
/// its validator (pyspdxtools; the CycloneDX 1.6 schema).
pub fn validated_sboms(out: &Path, name: &str) -> (serde_json::Value, serde_json::Value) {
    let spdx = out.join(format!("{name}.spdx.json"));
    let cdx = out.join(format!("{name}.cdx.json"));
    pyspdxtools(&spdx).unwrap_or_else(|e| panic!("{} is not valid SPDX: {e}", spdx.display()));
    cyclonedx_validate(&cdx)
        .unwrap_or_else(|e| panic!("{} is not valid CycloneDX: {e}", cdx.display()));
    let read = |file: &Path| serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    (read(&spdx), read(&cdx))
}

/// The `SPDXID` of the image file at `path` (absolute) in an SPDX document.
pub fn spdx_file_id(spdx: &serde_json::Value, path: &str) -> String {
    spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == format!(".{path}"))
        .unwrap_or_else(|| panic!("{path} not in the SPDX SBOM"))["SPDXID"]
        .as_str()
        .unwrap()
        .to_string()
}

/// An unsigned `build` entry by `writer`, numbered `n` in its details: what the
/// concurrent-writer tests append, so each writer's entries can be counted.
pub fn ledger_entry(writer: &str, n: u64) -> cairn::ledger::Entry {
    let details = [("n".to_string(), serde_json::json!(n))].into();
    cairn::ledger::Entry::new(
        cairn::ledger::Action::Build,
        writer,
        "2026-11-27T05:39:03Z".into(),
        details,
    )
}

/// The SLSA provenance statement of a `<name>.intoto.jsonl` side file (its DSSE
/// payload, decoded).
pub fn provenance_of(jsonl: &Path) -> serde_json::Value {
    use base64::Engine as _;
    for line in std::fs::read_to_string(jsonl).unwrap().lines() {
        let envelope: serde_json::Value = serde_json::from_str(line).unwrap();
        let payload = base64::engine::general_purpose::STANDARD
            .decode(envelope["payload"].as_str().unwrap())
            .unwrap();
        let statement: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        if statement["predicateType"] == "https://slsa.dev/provenance/v1" {
            return statement;
        }
    }
    panic!("no provenance in {}", jsonl.display());
}

/// The layer blob files of the first image of the OCI layout at `layout`, bottom first.
pub fn layer_blobs(layout: &Path) -> Vec<PathBuf> {
    let blob = |digest: &serde_json::Value| {
        let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
        layout.join("blobs/sha256").join(hex)
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blob(&index["manifests"][0]["digest"])).unwrap())
            .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|layer| blob(&layer["digest"]))
        .collect()
}

/// Unpacks every layer of the first image of the layout into `root`, in order.
pub fn unpack_layout(layout: &Path, root: &Path) {
    for blob in layer_blobs(layout) {
        run_ok(
            Command::new("tar")
                .arg("-xzf")
                .arg(blob)
                .arg("-C")
                .arg(root),
        );
    }
}

/// `cairn verify --json` of a disk with the attestation key `public`: whether it
/// verified (exit code 0), and the verdict.
pub fn verify_disk(disk: &Path, public: &Path) -> (bool, serde_json::Value) {
    let out = cairn()
        .arg("verify")
        .arg(disk)
        .arg("--key")
        .arg(public)
        .arg("--json")
        .output()
        .unwrap();
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), verdict)
}
