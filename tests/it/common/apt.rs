//! A small signed apt repository made by the test itself: tiny `.deb`s built from
//! fixture trees with `dpkg-deb --build`, a `Packages` index and `Release` generated
//! here, `InRelease` clear-signed by `gpg` with a throwaway key in a temporary
//! GNUPGHOME, served by `python3 -m http.server` on a loopback port. The server and
//! the gpg agent are stopped (by PID / by `gpgconf --kill`) when the repository drops.

use super::sha256_hex;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Served from the archive root so the test can tell its own server answers.
const PROBE_FILE: &str = "cairn-test-probe";

/// One fixture package: control fields and files (path, content, mode).
pub struct Pkg {
    pub name: &'static str,
    pub version: &'static str,
    pub arch: &'static str,
    /// Extra control fields (`Depends: ...`), one per line.
    pub fields: &'static str,
    /// Path, content, mode; a mode of [`SYMLINK`] makes a symlink to the content.
    pub files: Vec<(String, Vec<u8>, u32)>,
    /// The `postinst` maintainer script (empty: none).
    pub postinst: &'static str,
    /// The `conffiles` control file, one absolute path a line (empty: none).
    pub conffiles: &'static str,
}

/// The mode of a [`Pkg`] file that is a symlink (`S_IFLNK`), its content the target.
pub const SYMLINK: u32 = 0o120777;

pub fn pkg(name: &'static str, version: &'static str, fields: &'static str) -> Pkg {
    Pkg {
        name,
        version,
        arch: "amd64",
        fields,
        files: vec![(
            format!("usr/share/{name}/{version}.txt"),
            format!("{name} {version}\n").into_bytes(),
            0o644,
        )],
        postinst: "",
        conffiles: "",
    }
}

/// The fixture set: `app` needs `libfoo (>= 1.5)` (two versions offered), `mta |
/// mail-transport-agent` (no `mta`: a provider steps in) and pre-depends on an
/// `Architecture: all` package; `broken` needs a library nobody has.
pub fn fixture_packages() -> Vec<Pkg> {
    let mut app = pkg(
        "app",
        "1.0-1",
        "Pre-Depends: app-data\nDepends: libfoo (>= 1.5), mta | mail-transport-agent",
    );
    app.files.push((
        "usr/bin/app".into(),
        b"#!/bin/sh\necho app\n".to_vec(),
        0o755,
    ));
    let mut data = pkg("app-data", "1.0-1", "");
    data.arch = "all";
    let mut libfoo2 = pkg("libfoo", "2.0-1", "");
    libfoo2.files.push((
        "usr/share/doc/libfoo/copyright".into(),
        b"Format: https://format.example.invalid/copyright-format/1.0/\n\nFiles: *\nCopyright: 2024 Test\nLicense: Expat\n".to_vec(),
        0o644,
    ));
    vec![
        app,
        data,
        pkg("libfoo", "1.0-1", ""),
        libfoo2,
        pkg("postfix-lite", "3.0-1", "Provides: mail-transport-agent"),
        pkg("broken", "1.0-1", "Depends: app, missing-lib (>= 3)"),
    ]
}

/// Builds a base image whose one layer has each file `(path, content)`, as the
/// layout `images/base` in `work`.
pub fn base_image_with(work: &Path, files: &[(&str, &str)]) {
    let contents: String = files
        .iter()
        .map(|(path, content)| format!("      - file: {path}\n        content: {content:?}\n"))
        .collect();
    let base = crate::common::write_recipe(
        work,
        "base.yaml",
        &format!(
            "cairn: 1\nname: base\nepoch: 1700000000\nlayers:\n  - name: etc\n    contents:\n{contents}"
        ),
    );
    crate::common::run_ok(
        crate::common::cairn()
            .arg("build")
            .arg(&base)
            .arg("-o")
            .arg(work.join("images")),
    );
}

/// Puts the recipe at `recipe` on the base [`base_image_with`] built.
pub fn on_base(recipe: &Path) {
    let text = std::fs::read_to_string(recipe).unwrap() + "base: { layout: images/base }\n";
    std::fs::write(recipe, text).unwrap();
}

/// Builds a base image whose one layer has the file `path` holding `content`, then a
/// recipe of the fixture packages and `package` (installed by name) on that base, which
/// must be refused (exit 1): its stderr.
pub fn refused_on_base_with(work: &Path, path: &str, content: &str, package: Pkg) -> String {
    base_image_with(work, &[(path, content)]);
    let name = package.name;
    let mut packages = fixture_packages();
    packages.push(package);
    let repo = AptRepo::new(&packages, Faults::default());
    let recipe = repo.recipe(work, name);
    on_base(&recipe);
    let (code, stderr) = crate::common::run_err(
        crate::common::cairn()
            .env("XDG_CACHE_HOME", work.join("cache"))
            .arg("build")
            .arg(&recipe)
            .arg("-o")
            .arg(work.join("out")),
    );
    assert_eq!(code, 1, "{stderr}");
    stderr
}

/// How to publish and serve the repository, and what to do wrong.
#[derive(Default, Clone, Copy)]
pub struct Faults {
    /// `Valid-Until` in the past.
    pub expired: bool,
    /// Serve the Release unsigned as InRelease.
    pub unsigned: bool,
    /// Sign with a key that is not in the keyring handed to cairn.
    pub unknown_key: bool,
    /// Also publish each index under `by-hash/SHA256/<hex>` and say so in the Release
    /// (`Acquire-By-Hash: yes`), as Debian's mirrors do.
    pub by_hash: bool,
    /// Serve each file wrong the first time it is asked for: a `.deb` breaks off
    /// halfway, anything else is answered `503 Service Unavailable`.
    pub flaky: bool,
}

/// `python3 -c FLAKY_SERVER PORT ROOT`: python's own file server, failing each path's
/// first request as [`Faults::flaky`] says; its access log goes to stderr as
/// `http.server`'s does.
const FLAKY_SERVER: &str = r#"
import functools, http.server, os, sys
seen = set()
class Flaky(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path in seen or self.path.endswith("/cairn-test-probe"):
            return super().do_GET()
        seen.add(self.path)
        if not self.path.endswith(".deb"):
            return self.send_error(503)
        with open(self.translate_path(self.path), "rb") as f:
            data = f.read()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.close_connection = True
handler = functools.partial(Flaky, directory=sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), handler).serve_forever()
"#;

pub struct AptRepo {
    pub dir: tempfile::TempDir,
    /// The archive root URL (`http://127.0.0.1:PORT`).
    pub url: String,
    /// The keyring cairn gets (binary OpenPGP, exported by gpg).
    pub keyring: PathBuf,
    /// Fingerprint of the signing key.
    pub fingerprint: String,
    server: Option<Child>,
    gnupghome: PathBuf,
    /// Published by hash ([`Faults::by_hash`]).
    by_hash: bool,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn gpg(home: &Path) -> Command {
    let mut cmd = Command::new("gpg");
    cmd.env("GNUPGHOME", home)
        .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""]);
    cmd
}

/// Makes a key for `uid` and returns its fingerprint.
fn make_key(home: &Path, uid: &str) -> String {
    run(gpg(home).args(["--quick-gen-key", uid, "ed25519", "sign", "never"]));
    let listing = run(gpg(home).args(["--with-colons", "--list-keys", uid]));
    listing
        .lines()
        .find_map(|l| l.strip_prefix("fpr:"))
        .map(|l| l.trim_matches(':').to_string())
        .expect("gpg lists the fingerprint")
}

impl AptRepo {
    pub fn new(packages: &[Pkg], faults: Faults) -> AptRepo {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let gnupghome = dir.path().join("gnupg");
        std::fs::create_dir_all(&gnupghome).unwrap();
        std::fs::set_permissions(
            &gnupghome,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let fingerprint = make_key(&gnupghome, "cairn test archive <archive@test.invalid>");
        let keyring = dir.path().join("archive-keyring.gpg");
        let exported = Command::new("gpg")
            .env("GNUPGHOME", &gnupghome)
            .args(["--batch", "--export", &fingerprint])
            .output()
            .unwrap();
        std::fs::write(&keyring, exported.stdout).unwrap();
        let signer = if faults.unknown_key {
            make_key(&gnupghome, "someone else <other@test.invalid>")
        } else {
            fingerprint.clone()
        };

        publish(dir.path(), &root, &gnupghome, &signer, packages, faults);

        // A file only this repository serves: a port probed free can be taken by
        // another test's server before python binds it (python then exits), so
        // "something answers on the port" does not prove it is this server.
        let token = format!("{}", root.display());
        std::fs::write(root.join(PROBE_FILE), &token).unwrap();
        let mut repo = AptRepo {
            dir,
            url: String::new(),
            keyring,
            fingerprint,
            server: None,
            gnupghome,
            by_hash: faults.by_hash,
        };
        for _ in 0..5 {
            let port = {
                let l = TcpListener::bind("127.0.0.1:0").unwrap();
                l.local_addr().unwrap().port()
            };
            let mut server = Command::new("python3");
            if faults.flaky {
                server
                    .args(["-c", FLAKY_SERVER, &port.to_string()])
                    .arg(&root);
            } else {
                server
                    .args(["-m", "http.server", "--bind", "127.0.0.1", "--directory"])
                    .arg(&root)
                    .arg(port.to_string());
            }
            let server = server
                .stdout(Stdio::null())
                // Its access log: one line per request.
                .stderr(std::fs::File::create(repo.dir.path().join("requests.log")).unwrap())
                .spawn()
                .expect("start python3 -m http.server");
            repo.server = Some(server);
            repo.url = format!("http://127.0.0.1:{port}");
            if repo.wait_until_serving(port, &token) {
                return repo;
            }
            repo.stop_server();
        }
        panic!("the test apt server did not start (5 ports tried)");
    }

    /// Whether this repository's server came up on `port`: `false` if it exited (the
    /// port was taken) or never served the probe file.
    fn wait_until_serving(&mut self, port: u16, token: &str) -> bool {
        for _ in 0..200 {
            let exited = self
                .server
                .as_mut()
                .is_none_or(|child| !matches!(child.try_wait(), Ok(None)));
            if exited {
                return false;
            }
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let request = format!("GET /{PROBE_FILE} HTTP/1.0\r\n\r\n");
                let mut response = String::new();
                let served = stream.write_all(request.as_bytes()).is_ok()
                    && std::io::Read::read_to_string(&mut stream, &mut response).is_ok()
                    && response.starts_with("HTTP/1.0 200")
                    && response.ends_with(token);
                if served {
                    return true;
                }
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// Publishes `packages` in place of what the repository held, signed by the same
    /// key (and by hash if it was): the mirror after an update (a security fix, say).
    pub fn republish(&self, packages: &[Pkg]) {
        let work = self.dir.path().join("republished");
        std::fs::create_dir_all(&work).unwrap();
        publish(
            &work,
            &self.root(),
            &self.gnupghome,
            &self.fingerprint,
            packages,
            Faults {
                by_hash: self.by_hash,
                ..Faults::default()
            },
        );
    }

    /// How many times the server was asked for `path` (below the archive root), by
    /// its access log.
    pub fn requests_for(&self, path: &str) -> usize {
        let log = std::fs::read_to_string(self.dir.path().join("requests.log")).unwrap();
        let request = format!("\"GET /{path} HTTP/1.1\"");
        log.lines().filter(|l| l.contains(&request)).count()
    }

    /// The archive directory the server serves.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// Stops the server (by PID): later fetches fail.
    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// A recipe installing `packages` from this repository, in `dir`.
    pub fn recipe(&self, dir: &Path, packages: &str) -> PathBuf {
        let path = dir.join("pkgs.yaml");
        std::fs::write(
            &path,
            format!(
                "cairn: 1\nname: pkgs\nepoch: 1700000000\nrepositories:\n  test:\n    mirror: {}\n    suite: stable\n    components: [main]\n    keyring: {}\npackages: [{packages}]\nlayering: {{ max_layers: 3 }}\nlayers:\n  - name: base\n    contents:\n      - dir: /tmp\n        mode: 0o1777\n",
                self.url,
                self.keyring.display()
            ),
        )
        .unwrap();
        path
    }
}

impl Drop for AptRepo {
    fn drop(&mut self) {
        self.stop_server();
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.gnupghome)
            .args(["--kill", "gpg-agent"])
            .output();
    }
}

/// Writes `packages` into the archive at `root` (the `.deb`s, built in `work`, and
/// one `Packages` index per architecture the packages have, `amd64` when they are all
/// `Architecture: all`; as on Debian's mirrors, the `all` packages are listed in every
/// index), with a `Release` clear-signed as `InRelease` by `signer`, made wrong as
/// `faults` says.
fn publish(
    work: &Path,
    root: &Path,
    gnupghome: &Path,
    signer: &str,
    packages: &[Pkg],
    faults: Faults,
) {
    let mut architectures: Vec<&str> = packages
        .iter()
        .map(|p| p.arch)
        .filter(|a| *a != "all")
        .collect();
    architectures.sort();
    architectures.dedup();
    if architectures.is_empty() {
        architectures.push("amd64");
    }
    let mut entries = Vec::new();
    for p in packages {
        let rel = format!("pool/main/{}_{}_{}.deb", p.name, p.version, p.arch);
        // As on a real mirror, a package once published never changes.
        if !root.join(&rel).exists() {
            std::fs::create_dir_all(root.join("pool/main")).unwrap();
            std::fs::copy(build_deb(work, p), root.join(&rel)).unwrap();
        }
        let bytes = std::fs::read(root.join(&rel)).unwrap();
        let entry = format!(
            "{}Filename: {rel}\nSize: {}\nSHA256: {}\n\n",
            control(p),
            bytes.len(),
            sha256_hex(&bytes)
        );
        entries.push((p.arch, entry));
    }
    let dists = root.join("dists/stable");
    let mut indexes = Vec::new();
    for arch in &architectures {
        let index: String = entries
            .iter()
            .filter(|(a, _)| a == arch || *a == "all")
            .map(|(_, entry)| entry.as_str())
            .collect();
        let binary = format!("main/binary-{arch}");
        std::fs::create_dir_all(dists.join(&binary)).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(index.as_bytes()).unwrap();
        let gz = gz.finish().unwrap();
        for (name, bytes) in [("Packages", index.into_bytes()), ("Packages.gz", gz)] {
            std::fs::write(dists.join(&binary).join(name), &bytes).unwrap();
            if faults.by_hash {
                let by_hash = dists.join(&binary).join("by-hash/SHA256");
                std::fs::create_dir_all(&by_hash).unwrap();
                std::fs::write(by_hash.join(sha256_hex(&bytes)), &bytes).unwrap();
            }
            indexes.push(format!(
                " {} {} {binary}/{name}\n",
                sha256_hex(&bytes),
                bytes.len()
            ));
        }
    }

    let valid_until = if faults.expired {
        "Thu, 01 Jan 2015 00:00:00 UTC"
    } else {
        "Fri, 01 Jan 2100 00:00:00 UTC"
    };
    let by_hash = if faults.by_hash {
        "Acquire-By-Hash: yes\n"
    } else {
        ""
    };
    let release = format!(
        "Origin: cairn-test\nSuite: stable\nCodename: test\nDate: Wed, 01 Jan 2014 00:00:00 UTC\nValid-Until: {valid_until}\n{by_hash}Architectures: {}\nComponents: main\nSHA256:\n{}",
        architectures.join(" "),
        indexes.concat()
    );
    std::fs::write(dists.join("Release"), &release).unwrap();
    if faults.unsigned {
        std::fs::write(dists.join("InRelease"), &release).unwrap();
    } else {
        run(gpg(gnupghome)
            .args([
                "--yes",
                "--digest-algo",
                "SHA256",
                "--local-user",
                signer,
                "--clearsign",
            ])
            .arg("--output")
            .arg(dists.join("InRelease"))
            .arg(dists.join("Release")));
    }
}

fn control(p: &Pkg) -> String {
    let mut c = format!(
        "Package: {}\nVersion: {}\nArchitecture: {}\nMaintainer: Test <test@test.invalid>\n",
        p.name, p.version, p.arch
    );
    if !p.fields.is_empty() {
        c.push_str(p.fields);
        c.push('\n');
    }
    c.push_str(&format!("Description: fixture {}\n", p.name));
    c
}

/// `dpkg-deb --build` of the package's tree, deterministic via SOURCE_DATE_EPOCH.
fn build_deb(work: &Path, p: &Pkg) -> PathBuf {
    let tree = work.join(format!("tree-{}-{}-{}", p.name, p.version, p.arch));
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::write(tree.join("DEBIAN/control"), control(p)).unwrap();
    let mut md5sums = String::new();
    for (path, content, mode) in &p.files {
        let file = tree.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        if *mode == SYMLINK {
            std::os::unix::fs::symlink(String::from_utf8_lossy(content).as_ref(), &file).unwrap();
            continue;
        }
        std::fs::write(&file, content).unwrap();
        std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(*mode))
            .unwrap();
        md5sums.push_str(&format!("{:x}  {path}\n", md5(content)));
    }
    std::fs::write(tree.join("DEBIAN/md5sums"), md5sums).unwrap();
    if !p.postinst.is_empty() {
        let script = tree.join("DEBIAN/postinst");
        std::fs::write(&script, p.postinst).unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
    }
    if !p.conffiles.is_empty() {
        std::fs::write(tree.join("DEBIAN/conffiles"), p.conffiles).unwrap();
    }
    let deb = work.join(format!("{}_{}_{}.deb", p.name, p.version, p.arch));

    run(Command::new("dpkg-deb")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&tree)
        .arg(&deb));
    deb
}

/// md5sum(1) of `bytes` (dpkg's md5sums format), via the md5sum tool.
fn md5(bytes: &[u8]) -> Md5 {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    Md5(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string())
}

pub struct Md5(String);
impl std::fmt::LowerHex for Md5 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
