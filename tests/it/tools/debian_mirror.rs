//! The real thing: `recipes/distroless.yaml` (busybox-static, ca-certificates, mawk)
//! built from the Debian mirror of this host's apt configuration (`mirror: host`),
//! verified with the Debian archive keyring, then run with runc. Needs the Debian
//! package archive that this machine's apt reaches; nothing else leaves the machine.

use crate::common::qemu::{SshVm, VmDisk};
use crate::common::{cairn, repo_root, run_ok};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn distroless_busybox_and_ca_certificates_from_the_hosts_mirror() {
    let work = tempfile::tempdir().unwrap();
    // A copy, so the lock it writes stays out of the repository.
    let recipe = work.path().join("distroless.yaml");
    std::fs::copy(repo_root().join("recipes/distroless.yaml"), &recipe).unwrap();
    let first = build_from_mirror(work.path(), &recipe, "a", &[]);
    let again = build_from_mirror(work.path(), &recipe, "b", &["--locked"]);
    assert_eq!(first["manifest_digest"], again["manifest_digest"]);

    let layout = work.path().join("a/distroless");
    let inspect = run_ok(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:distroless", layout.display())),
    );
    let inspected: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(inspected["Digest"], first["manifest_digest"]);

    // Unpack every layer in order and find the busybox binary the package ships.
    let root = work.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    crate::common::unpack_layout(&layout, &root);
    // Merged /usr: busybox-static's /bin/busybox is in /usr/bin, /bin a symlink to it.
    assert_eq!(
        std::fs::read_link(root.join("bin")).unwrap(),
        Path::new("usr/bin")
    );
    let busybox = root.join("usr/bin/busybox");
    assert!(
        busybox.is_file(),
        "busybox-static's /bin/busybox is not in /usr/bin"
    );
    let help = Command::new(&busybox).arg("--help").output().unwrap();
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("BusyBox"),
        "busybox --help: {help:?}"
    );
    let actual = hex::encode(Sha256::digest(std::fs::read(&busybox).unwrap()));
    let image_path = format!("./{}", busybox.strip_prefix(&root).unwrap().display());

    let spdx: Value =
        serde_json::from_slice(&std::fs::read(work.path().join("a/distroless.spdx.json")).unwrap())
            .unwrap();
    let file = spdx["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["fileName"] == image_path.as_str())
        .expect("busybox in the SBOM");
    let stated = file["checksums"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["algorithm"] == "SHA256")
        .unwrap()["checksumValue"]
        .as_str()
        .unwrap();
    assert_eq!(stated, actual);
    assert!(file["comment"]
        .as_str()
        .unwrap()
        .contains("source=deb:busybox-static"));
    assert!(spdx["packages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "ca-certificates"
            && p["externalRefs"][0]["referenceLocator"]
                .as_str()
                .unwrap()
                .starts_with("pkg:deb/debian/ca-certificates@")));
    assert!(root.join("var/lib/dpkg/status.d/busybox-static").is_file());

    // ca-certificates' postinst, done natively: the bundle every TLS client reads
    // (openssl's /usr/lib/ssl/cert.pem points at it) holds Debian's roots, and one
    // of them verifies against it.
    let bundle = root.join("etc/ssl/certs/ca-certificates.crt");
    let text = std::fs::read_to_string(&bundle).unwrap();
    let roots = text.matches("-----BEGIN CERTIFICATE-----").count();
    assert!(roots > 100, "{roots} certificates in the bundle");
    run_ok(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(&bundle)
            .arg(root.join("usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt")),
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/ssl/certs/ISRG_Root_X1.pem")).unwrap(),
        Path::new("/usr/share/ca-certificates/mozilla/ISRG_Root_X1.crt")
    );

    // The release, its updates and its security suite were each read, their InRelease
    // signed by a key of the Debian archive keyring.
    let lock: Value =
        serde_json::from_slice(&std::fs::read(recipe.with_extension("lock")).unwrap()).unwrap();
    let gnupghome = work.path().join("gnupg");
    std::fs::create_dir_all(&gnupghome).unwrap();
    let keys = run_ok(
        Command::new("gpg")
            .env("GNUPGHOME", &gnupghome)
            .args(["--batch", "--show-keys", "--with-colons"])
            .arg(Path::new("/usr/share/keyrings/debian-archive-keyring.gpg")),
    );
    for (repository, suite) in [
        ("debian", "bookworm"),
        ("debian-updates", "bookworm-updates"),
        ("debian-security", "bookworm-security"),
    ] {
        let pinned = &lock["packages"]["repositories"][repository];
        assert_eq!(pinned["suite"], suite, "{lock}");
        let signer = pinned["signed_by"].as_str().unwrap();
        assert!(
            String::from_utf8_lossy(&keys.stdout).contains(&format!("fpr:::::::::{signer}:")),
            "{signer} ({repository}) is not a Debian archive key"
        );
    }

    // The image runs: its entrypoint (busybox sh) reads commands from its input, as
    // user nonroot.
    let (stdout, stderr) = super::interop::run_in_runc(
        &layout,
        "distroless",
        work.path(),
        "echo hello from distroless; busybox id -u; awk 'BEGIN{print 1}'; readlink /etc/alternatives/awk\n",
    );
    assert_eq!(
        stdout, "hello from distroless\n65532\n1\n/usr/bin/mawk\n",
        "stderr:\n{stderr}"
    );
}

/// TLS clients in an image read the bundle cairn made in place of ca-certificates'
/// postinst: python3's default SSL context loads Debian's roots from it (through
/// openssl's `/usr/lib/ssl/cert.pem`), and `curl`, with no `--cacert`, trusts a
/// loopback server whose certificate a test CA signed, the CA given through
/// `extra_ca_certificates:`. tzdata's zone files answer for Europe/Paris.
#[test]
fn tls_clients_trust_the_bundle_with_the_recipes_extra_ca_and_tzdata_has_its_zones() {
    let work = tempfile::tempdir().unwrap();
    let ca = crate::common::tls::TestCa::new(work.path(), "loopback");
    let recipe = mirror_recipe(
        work.path(),
        "python-tls",
        "platform: linux/amd64",
        &format!(
            "sources:\n  test-ca: {{ path: {} }}\npackages: [python3, ca-certificates, curl, tzdata]\nextra_ca_certificates: [{{ source: test-ca }}]\nconfig:\n  entrypoint: [/usr/bin/python3, \"-\"]\n",
            ca.ca.file_name().unwrap().to_str().unwrap()
        ),
    );
    build_from_mirror(work.path(), &recipe, "out", &[]);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(&ca.cert)
        .arg("-key")
        .arg(&ca.key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("openssl s_server");
    // Stopped by its PID whatever the assertions do.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _server = Stop(server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server did not listen"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let script = format!(
        "import datetime, ssl, subprocess, zoneinfo\n\
         ctx = ssl.create_default_context()\n\
         n = ctx.cert_store_stats()['x509_ca']\n\
         print(n > 100, ssl.get_default_verify_paths().openssl_cafile)\n\
         print(zoneinfo.ZoneInfo('Europe/Paris').utcoffset(datetime.datetime(2024, 7, 1)))\n\
         curl = subprocess.run(['curl', '-sS', 'https://127.0.0.1:{port}/'], capture_output=True, text=True)\n\
         print(curl.returncode, 's_server' in curl.stdout, curl.stderr.strip())\n"
    );
    let (stdout, stderr) = super::interop::run_in_runc_on_host_network(
        &work.path().join("out/python-tls"),
        "python-tls",
        work.path(),
        &script,
    );
    assert_eq!(
        stdout, "True /usr/lib/ssl/cert.pem\n2:00:00\n0 True \n",
        "stderr:\n{stderr}"
    );
}

/// Real libraries from the mirror: the `/etc/ld.so.cache` cairn makes for `libc-bin`,
/// `libssl3` and `zlib1g` is, byte for byte, the one the image's own `ldconfig` writes
/// when run in the unpacked image (`chroot ROOT /sbin/ldconfig -X`), for amd64 and
/// for arm64 (its `ldconfig` run by qemu-user through binfmt).
#[test]
fn the_ld_so_cache_of_real_libraries_is_the_images_own_ldconfigs() {
    let work = tempfile::tempdir().unwrap();
    for (arch, flags, multiarch) in [
        ("amd64", "libc6,x86-64", "x86_64-linux-gnu"),
        ("arm64", "libc6,AArch64", "aarch64-linux-gnu"),
    ] {
        let name = format!("libs-{arch}");
        let recipe = mirror_recipe(
            work.path(),
            &name,
            &format!("platform: linux/{arch}"),
            "packages: [libc-bin, libssl3, zlib1g]\n",
        );
        build_from_mirror(work.path(), &recipe, &format!("out-{arch}"), &[]);
        let root = work.path().join(format!("rootfs-{arch}"));
        std::fs::create_dir_all(&root).unwrap();
        crate::common::unpack_layout(&work.path().join(format!("out-{arch}/{name}")), &root);
        run_ok(Command::new("chroot").arg(&root).args([
            "/sbin/ldconfig",
            "-C",
            "/etc/ld.so.cache.real",
            "-X",
        ]));
        let ours = std::fs::read(root.join("etc/ld.so.cache")).unwrap();
        let theirs = std::fs::read(root.join("etc/ld.so.cache.real")).unwrap();
        let listed = run_ok(
            Command::new("ldconfig")
                .arg("-p")
                .arg("-C")
                .arg(root.join("etc/ld.so.cache")),
        );
        let listed = String::from_utf8_lossy(&listed.stdout);
        assert_eq!(ours, theirs, "{arch}: cairn's cache lists:\n{listed}");
        for lib in ["libc.so.6", "libssl.so.3", "libz.so.1"] {
            let line = format!("{lib} ({flags}) => /lib/{multiarch}/{lib}");
            assert!(listed.contains(&line), "{line} missing:\n{listed}");
        }
    }
}

/// The case: `openssl` from bookworm alone, on a base that has `libssl3` (and
/// `libc6`) from bookworm with its updates and security fixes, keeps the base's
/// libraries (no `libssl3` downgraded to bookworm's, no `libc6` again in a new
/// layer) and runs.
#[test]
fn openssl_on_a_base_with_libssl3_keeps_the_bases_libraries() {
    let work = tempfile::tempdir().unwrap();
    let repositories = distroless_repositories();
    let bookworm_only = &repositories[..repositories.find("  debian-updates:").unwrap()];
    let build = |name: &str, text: String| {
        let recipe = work.path().join(format!("{name}.yaml"));
        std::fs::write(&recipe, text).unwrap();
        build_from_mirror(work.path(), &recipe, "images", &[]);
        let lock: Value =
            serde_json::from_slice(&std::fs::read(recipe.with_extension("lock")).unwrap()).unwrap();
        lock["packages"].clone()
    };
    let base = build(
        "base",
        format!("cairn: 1\nname: base\nepoch: 1700000000\nplatform: linux/amd64\n{repositories}packages: [libssl3]\n"),
    );
    let tls = build(
        "tls",
        format!("cairn: 1\nname: tls\nepoch: 1700000000\nplatform: linux/amd64\nbase: {{ layout: images/base }}\n{bookworm_only}packages: [openssl]\nconfig:\n  entrypoint: [/usr/bin/openssl, version]\n"),
    );
    let installed: Vec<&String> = tls["packages"].as_object().unwrap().keys().collect();
    assert_eq!(installed, ["openssl"], "{tls:#}");
    for kept in ["libc6", "libssl3"] {
        assert_eq!(
            tls["from_base"][kept], base["packages"][kept]["version"],
            "{kept}: {tls:#}"
        );
    }
    let (stdout, stderr) =
        super::interop::run_in_runc(&work.path().join("images/tls"), "tls", work.path(), "");
    assert!(
        stdout.starts_with("OpenSSL 3."),
        "{stdout}\nstderr:\n{stderr}"
    );
}

/// A recipe `<name>.yaml` in `dir` for `platform` (its `platform:` or `platforms:`
/// line), with distroless's repositories and `rest` (packages, config).
fn mirror_recipe(dir: &Path, name: &str, platform: &str, rest: &str) -> PathBuf {
    let repositories = distroless_repositories();
    let recipe = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &recipe,
        format!("cairn: 1\nname: {name}\nepoch: 1700000000\n{platform}\n{repositories}{rest}"),
    )
    .unwrap();
    recipe
}

/// `cairn build RECIPE -o WORK/OUT --json EXTRA...` with a package cache in `work`:
/// the report.
fn build_from_mirror(work: &Path, recipe: &Path, out: &str, extra: &[&str]) -> Value {
    build_with_cache(work, &work.join("cache"), recipe, out, extra)
}

/// [`build_from_mirror`] with the package cache in `cache`.
fn build_with_cache(work: &Path, cache: &Path, recipe: &Path, out: &str, extra: &[&str]) -> Value {
    let output = run_ok(
        cairn()
            .env("XDG_CACHE_HOME", cache)
            .arg("build")
            .arg(recipe)
            .arg("-o")
            .arg(work.join(out))
            .arg("--json")
            .args(extra),
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// The `repositories:` block of recipes/distroless.yaml (release, updates, security),
/// for recipes of other packages from the same mirror.
fn distroless_repositories() -> String {
    let distroless = std::fs::read_to_string(repo_root().join("recipes/distroless.yaml")).unwrap();
    let start = distroless.find("\nrepositories:").unwrap() + 1;
    let end = distroless.find("\npackages:").unwrap() + 1;
    distroless[start..end].to_string()
}

/// Real accounts: `base-passwd`'s master files from the mirror and the sysusers.d
/// fragment of `dbus-system-bus-common` (`messagebus`) give the `/etc/passwd` and
/// `/etc/group` the real `systemd-sysusers --root` writes on the image's own files,
/// and the image runs as `messagebus`, named so in `config.user`.
#[test]
fn base_passwd_and_a_sysusers_fragment_give_what_systemd_sysusers_writes() {
    let work = tempfile::tempdir().unwrap();
    let repositories = distroless_repositories();
    let recipe = work.path().join("accounts.yaml");
    let write_recipe = |user: &str| {
        std::fs::write(
            &recipe,
            format!(
                "cairn: 1\nname: accounts\nepoch: 1700000000\nplatform: linux/amd64\n{repositories}packages: [base-passwd, busybox-static, dbus-system-bus-common]\nconfig:\n  entrypoint: [/bin/busybox, id]\n  user: \"{user}\"\n"
            ),
        )
        .unwrap()
    };
    let build = |out: &str| {
        run_ok(
            cairn()
                .env("XDG_CACHE_HOME", work.path().join("cache"))
                .arg("build")
                .arg(&recipe)
                .arg("-o")
                .arg(work.path().join(out)),
        );
        let root = work.path().join(format!("rootfs-{out}"));
        std::fs::create_dir_all(&root).unwrap();
        crate::common::unpack_layout(&work.path().join(out).join("accounts"), &root);
        root
    };
    write_recipe("0");
    let root = build("first");
    // The real tool on the image's own master files and fragment.
    let real = work.path().join("real");
    std::fs::create_dir_all(real.join("etc")).unwrap();
    std::fs::create_dir_all(real.join("usr/lib/sysusers.d")).unwrap();
    for (master, file) in [("passwd.master", "passwd"), ("group.master", "group")] {
        std::fs::copy(
            root.join("usr/share/base-passwd").join(master),
            real.join("etc").join(file),
        )
        .unwrap();
    }
    std::fs::copy(
        root.join("usr/lib/sysusers.d/dbus.conf"),
        real.join("usr/lib/sysusers.d/dbus.conf"),
    )
    .unwrap();
    run_ok(Command::new("systemd-sysusers").arg("--root").arg(&real));
    for file in ["etc/passwd", "etc/group"] {
        assert_eq!(
            std::fs::read_to_string(root.join(file)).unwrap(),
            std::fs::read_to_string(real.join(file)).unwrap(),
            "/{file} differs from systemd-sysusers'"
        );
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let messagebus: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("messagebus:"))
        .expect("messagebus from dbus.conf")
        .split(':')
        .collect();
    // By name: the package's user, resolved to its numbers in the config.
    write_recipe("messagebus");
    build("run");
    let config = run_ok(
        cairn()
            .arg("inspect")
            .arg(work.path().join("run/accounts"))
            .arg("--json"),
    );
    let config: serde_json::Value = serde_json::from_slice(&config.stdout).unwrap();
    assert_eq!(
        config["images"][0]["config"]["config"]["User"],
        format!("{}:{}", messagebus[2], messagebus[3])
    );
    let (stdout, stderr) = super::interop::run_in_runc(
        &work.path().join("run/accounts"),
        "accounts",
        work.path(),
        "",
    );
    assert!(
        stdout.starts_with(&format!(
            "uid={}(messagebus) gid={}(messagebus)",
            messagebus[2], messagebus[3]
        )),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
}

/// An image index over amd64 and arm64 from the mirror's packages (busybox-static,
/// mawk with its libc): cairn resolves and unpacks the arm64 packages on this amd64
/// machine without running any of them, and the arm64 image runs under runc, its
/// programs executed by qemu-user through binfmt: busybox says the machine is aarch64,
/// and mawk, dynamically linked against the arm64 libc, answers through the `awk`
/// alternative beside the arm64 `/etc/ld.so.cache` cairn made.
#[test]
fn the_arm64_image_of_a_packages_index_runs_under_qemu_user() {
    let work = tempfile::tempdir().unwrap();
    let recipe = mirror_recipe(
        work.path(),
        "tools",
        "platforms: [linux/amd64, linux/arm64]",
        "packages: [busybox-static, mawk]\nconfig:\n  entrypoint: [/bin/busybox, sh]\n  env: { PATH: /usr/bin:/bin }\n",
    );
    let first = build_from_mirror(work.path(), &recipe, "a", &[]);
    let again = build_from_mirror(work.path(), &recipe, "b", &["--locked"]);
    assert_eq!(first["manifest_digest"], again["manifest_digest"]);
    let lock: Value =
        serde_json::from_slice(&std::fs::read(recipe.with_extension("lock")).unwrap()).unwrap();
    for arch in ["amd64", "arm64"] {
        let section = &lock["packages"][format!("linux/{arch}")];
        assert_eq!(section["architecture"], arch, "{lock}");
        assert_eq!(section["packages"]["busybox-static"]["architecture"], arch);
    }

    // skopeo picks the arm64 image from the index; runc runs it.
    let layout = work.path().join("a/tools");
    let arm64 = work.path().join("arm64");
    super::multiarch::copy_platform_image(&layout, "tools", "arm64", &arm64);
    let (stdout, stderr) = super::interop::run_in_runc(
        &arm64,
        "arm64",
        work.path(),
        "busybox uname -m; /usr/bin/awk 'BEGIN{print 6*7}'; busybox od -An -tx1 -j18 -N2 /usr/bin/mawk; busybox test -s /etc/ld.so.cache && echo cached\n",
    );
    assert_eq!(stdout, "aarch64\n42\n b7 00\ncached\n", "stderr:\n{stderr}");
}

/// `dpkg_database: full` with real packages: the image's own dpkg and apt, run in the
/// unpacked image, see every package installed (`dpkg -l` all `ii`), find nothing to
/// report (`dpkg --audit`, `dpkg --verify`, with documentation left out by
/// `path_filters:`), find the package of a file (`dpkg -S`) and a consistent dependency
/// tree (`apt-get check`); built twice, the same image.
#[test]
fn the_images_own_dpkg_and_apt_find_the_full_database_clean() {
    let work = tempfile::tempdir().unwrap();
    let repositories = distroless_repositories();
    let recipe = work.path().join("dpkg.yaml");
    std::fs::write(
        &recipe,
        format!(
            "cairn: 1\nname: dpkg\nepoch: 1700000000\nplatform: linux/amd64\n{repositories}packages: [apt, dpkg, ca-certificates]\ndpkg_database: full\npath_filters:\n  - exclude: /usr/share/doc/*\n  - exclude: /usr/share/man/*\n  - exclude: /usr/share/locale/*\n"
        ),
    )
    .unwrap();
    let build = |out: &str| -> Value {
        let mut cmd = cairn();
        cmd.env("XDG_CACHE_HOME", work.path().join(format!("cache-{out}")));
        crate::common::build_json_with(cmd, &recipe, &work.path().join(out), &[])
    };
    let first = build("one");
    let root = work.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    crate::common::unpack_layout(&work.path().join("one/dpkg"), &root);
    let in_image = |args: &[&str]| -> String {
        let out = run_ok(Command::new("chroot").arg(&root).args(args));
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let listed = in_image(&["dpkg-query", "-W", "-f", "${db:Status-Abbrev}${Package}\n"]);
    let names: Vec<&str> = listed.lines().collect();
    assert!(names.len() > 10, "{listed}");
    for line in &names {
        assert!(line.starts_with("ii "), "not installed: {line}\n{listed}");
    }
    for package in ["apt", "dpkg", "ca-certificates", "libc6"] {
        assert!(
            names.contains(&format!("ii {package}").as_str()),
            "{listed}"
        );
    }
    assert_eq!(in_image(&["dpkg", "--audit"]), "");
    assert_eq!(in_image(&["dpkg", "--verify"]), "");
    assert_eq!(
        in_image(&["dpkg", "-S", "/usr/bin/dpkg"]),
        "dpkg: /usr/bin/dpkg\n"
    );
    // Exit 0 (run_ok), its dependency tree built without an error or a warning.
    let check = in_image(&["apt-get", "check"]);
    assert!(check.contains("Building dependency tree"), "{check}");
    assert!(!check.contains("E:") && !check.contains("W:"), "{check}");

    let second = build("two");
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
}

/// How long the Debian VM may take from starting QEMU to answering over SSH.
const SSH_DEADLINE: Duration = Duration::from_secs(180);

/// `recipes/debian-vm.yaml` for real: Debian bookworm from the host's mirror with the
/// cloud kernel its `linux-image-cloud-amd64` ships, systemd, networkd and OpenSSH.
/// The disk boots under QEMU (TCG, user-mode networking) to `multi-user.target`, and
/// root logs in over SSH with the key the recipe names within 180 s of QEMU's start;
/// the host keys were made on that boot (the image has none) and the machine id too
/// (the image's is empty). Raw and qcow2 disks are bit for bit the same when built
/// again from the lock with another package cache.
#[test]
fn the_debian_vm_boots_systemd_and_answers_over_ssh() {
    let work = tempfile::tempdir().unwrap();
    let key = work.path().join("id_ed25519");
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "cairn-test", "-f"])
            .arg(&key),
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let recipe = work.path().join("debian-vm.yaml");
    let text = std::fs::read_to_string(repo_root().join("recipes/debian-vm.yaml")).unwrap();
    let placeholder = "ssh-ed25519 REPLACE-WITH-YOUR-PUBLIC-KEY you@example";
    assert!(text.contains(placeholder));
    std::fs::write(&recipe, text.replace(placeholder, public.trim())).unwrap();

    let first = build_from_mirror(work.path(), &recipe, "a", &[]);
    let started = Instant::now();
    let again = build_with_cache(
        work.path(),
        &work.path().join("cache-2"),
        &recipe,
        "b",
        &["--locked"],
    );
    eprintln!(
        "debian-vm from the lock with an empty package cache: {:?}",
        started.elapsed()
    );
    let disks = |report: &Value| -> Vec<(String, String)> {
        report["disk"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let path = PathBuf::from(f["path"].as_str().unwrap());
                let bytes = std::fs::read(&path).unwrap();
                assert_eq!(
                    f["sha256"],
                    format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
                );
                (
                    f["format"].as_str().unwrap().to_string(),
                    f["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let disks_a = disks(&first);
    assert_eq!(
        disks_a.iter().map(|(f, _)| f.as_str()).collect::<Vec<_>>(),
        ["raw", "qcow2"]
    );
    assert_eq!(disks_a, disks(&again));
    let kernel = &first["disk"]["kernel_in_image"];
    assert!(
        kernel["path"]
            .as_str()
            .unwrap()
            .starts_with("/boot/vmlinuz-")
            && kernel["from"]
                .as_str()
                .unwrap()
                .starts_with("deb:linux-image-"),
        "{kernel}"
    );

    // What first boot makes is not in the image: no host keys, an empty machine id;
    // sshd's user is there.
    let root = work.path().join("rootfs");
    std::fs::create_dir_all(&root).unwrap();
    crate::common::unpack_layout(&work.path().join("a/debian-vm"), &root);
    let host_keys: Vec<String> = std::fs::read_dir(root.join("etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ssh_host_"))
        .collect();
    assert!(
        host_keys.is_empty(),
        "host keys in the image: {host_keys:?}"
    );
    assert_eq!(std::fs::read(root.join("etc/machine-id")).unwrap(), b"");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("sshd:")), "{passwd}");

    let out = work.path().join("a");
    let cmdline = std::fs::read_to_string(out.join("debian-vm.cmdline")).unwrap();
    let vm = SshVm::start(
        &VmDisk {
            kernel: &out.join("debian-vm.vmlinuz"),
            cmdline: cmdline.trim(),
            qcow2: &out.join("debian-vm.qcow2"),
        },
        &key,
        &work.path().join("serial.log"),
    )
    .expect("qemu-system-x86_64 runs (TEST_TOOLS: qemu-system-x86)");
    let (os_release, answered) = vm
        .wait_for_ssh("cat /etc/os-release", SSH_DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        os_release.contains("PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\""),
        "{os_release}"
    );
    // Asked of systemd, not read from the console: systemd stops writing its status
    // there once the serial getty holds it, which under load comes before
    // multi-user.target.
    let state = vm
        .ssh("timeout 120 systemctl is-system-running --wait; systemctl --failed --no-legend")
        .unwrap();
    let state = String::from_utf8_lossy(&state.stdout);
    assert_eq!(
        state.lines().collect::<Vec<_>>(),
        ["running"],
        "startup did not finish cleanly:\n{state}\nserial console:\n{}",
        vm.console()
    );
    eprintln!("debian-vm under TCG: SSH answered after {answered:?}, startup finished");

    // Made on this boot: the host key sshd answered with and the machine id.
    let made = vm
        .ssh("cat /etc/ssh/ssh_host_ed25519_key.pub /etc/machine-id")
        .unwrap();
    let made = String::from_utf8_lossy(&made.stdout);
    let lines: Vec<&str> = made.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].starts_with("ssh-ed25519 ")
            && lines[1].len() == 32
            && lines[1].bytes().all(|b| b.is_ascii_hexdigit()),
        "{made}"
    );
    drop(vm);
}

/// How long the immutable VM may take from QEMU's start (OVMF with Secure Boot, all
/// under TCG) to its marker, or to the kernel's refusal of a changed root.
const MARKER_DEADLINE: Duration = Duration::from_secs(300);

/// `recipes/immutable-vm.yaml` for real: Debian bookworm from the host's mirror on a
/// read-only root under dm-verity, its unified kernel image (with the initrd made from
/// the image's busybox, veritysetup and dm-verity modules) signed with the repository's
/// test key. OVMF with Secure Boot on and only the test certificate enrolled boots it,
/// the initrd opens the root with the root hash of the signed command line, and
/// systemd reaches `multi-user.target` with no failed unit: the marker names the
/// read-only `/dev/mapper/root` and the root hash the kernel checks it against, the
/// build's. `cairn verify` of the raw disk passes (the initrd's files and the verity
/// tree included). One byte of the root file system changed: the kernel refuses the
/// block and stops, no marker. Built again from the lock with another package cache,
/// the same disk.
#[test]
fn the_immutable_vm_boots_its_verity_root_under_secure_boot_and_verifies() {
    use crate::common::ovmf::{enrolled_vars, secure_boot_qemu, test_keys};
    use crate::common::qemu::Qemu;

    let work = tempfile::tempdir().unwrap();
    let recipe = work.path().join("immutable-vm.yaml");
    std::fs::copy(repo_root().join("recipes/immutable-vm.yaml"), &recipe).unwrap();
    // The initrd's init and the Secure Boot pair the recipe names, beside the copy as
    // beside the original.
    std::fs::create_dir(work.path().join("initrd")).unwrap();
    std::fs::copy(
        repo_root().join("recipes/initrd/verity-init"),
        work.path().join("initrd/verity-init"),
    )
    .unwrap();
    let (sb_key, sb_cert) = test_keys();
    std::fs::create_dir(work.path().join("keys")).unwrap();
    for file in [&sb_key, &sb_cert] {
        std::fs::copy(
            file,
            work.path().join("keys").join(file.file_name().unwrap()),
        )
        .unwrap();
    }
    let (sign_key, sign_pub, _) = crate::common::keygen(work.path(), "ci");
    let sign = ["--sign-key", sign_key.to_str().unwrap()];

    let first = build_from_mirror(work.path(), &recipe, "a", &sign);
    let roothash = first["disk"]["verity"]["roothash"]
        .as_str()
        .unwrap_or_else(|| panic!("no root hash in the report: {:#}", first["disk"]))
        .to_string();
    let raw = work.path().join("a/immutable-vm.raw");

    let verified = cairn()
        .arg("verify")
        .arg(&raw)
        .arg("--key")
        .arg(&sign_pub)
        .arg("--json")
        .output()
        .unwrap();
    let verdict: Value = serde_json::from_slice(&verified.stdout).unwrap_or_else(|e| {
        panic!(
            "verify --json: {e}: {}",
            String::from_utf8_lossy(&verified.stderr)
        )
    });
    assert!(verified.status.success(), "{verdict:#}");
    let checked: Vec<&str> = verdict["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == true)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for name in [
        "disk",
        "signatures",
        "boot",
        "secure_boot",
        "initrd",
        "verity",
    ] {
        assert!(
            checked.contains(&name),
            "no passed `{name}` check: {verdict:#}"
        );
    }

    let (_, cert) = test_keys();
    let vars = enrolled_vars(work.path(), &cert);
    let boot = |disk: &Path, name: &str| -> Qemu {
        let own_vars = work.path().join(format!("{name}.vars.fd"));
        std::fs::copy(&vars, &own_vars).unwrap();
        Qemu::start(
            secure_boot_qemu(disk, &own_vars),
            &work.path().join(format!("{name}.serial.log")),
        )
        .expect("qemu-system-x86_64 runs (TEST_TOOLS: qemu-system-x86)")
    };
    let vm = boot(&raw, "signed");
    // The marker's unit runs after multi-user.target and writes to the console
    // itself: systemd's own "Reached target" line is not shown once the serial getty
    // holds the console, which under load comes first.
    let marker =
        format!("IMMUTABLE-VM-READY root=/dev/mapper/root ro roothash={roothash} failed=0");
    let ready = vm
        .wait_for_console("IMMUTABLE-VM-READY", MARKER_DEADLINE)
        .and_then(|seen| vm.wait_for_console(&marker, seen + Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("immutable-vm under OVMF with Secure Boot (TCG): marker after {ready:?}");
    let console = vm.console();
    drop(vm);
    assert!(
        console.contains("secureboot: Secure boot enabled"),
        "the kernel did not run under Secure Boot; serial console:\n{console}"
    );

    // One byte of the ext4 superblock, which mounting the root reads: dm-verity refuses
    // its block and the kernel panics before systemd runs.
    let mut changed = std::fs::read(&raw).unwrap();
    let (_, partitions) =
        cairn::disk::gpt::read_partitions(&mut std::io::Cursor::new(&changed)).unwrap();
    let root = partitions.iter().find(|p| p.name == "root").unwrap();
    // The first byte of the volume name (`s_volume_name`, empty).
    changed[root.offset as usize + 1024 + 0x78] ^= 0x01;
    let changed_raw = work.path().join("changed.raw");
    std::fs::write(&changed_raw, changed).unwrap();
    let vm = boot(&changed_raw, "changed");
    vm.wait_for_console("Kernel panic", MARKER_DEADLINE)
        .unwrap_or_else(|e| panic!("{e}"));
    let console = vm.console();
    drop(vm);
    assert!(
        console.contains("data block 0 is corrupted") && !console.contains("IMMUTABLE-VM-READY"),
        "the changed root was not refused; serial console:\n{console}"
    );

    let again = build_with_cache(
        work.path(),
        &work.path().join("cache-2"),
        &recipe,
        "b",
        &["--locked", sign[0], sign[1]],
    );
    let digests = |report: &Value| -> Vec<Value> {
        report["disk"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["sha256"].clone())
            .collect()
    };
    assert_eq!(digests(&first), digests(&again));
    assert_eq!(again["disk"]["verity"]["roothash"], roothash.as_str());
}
