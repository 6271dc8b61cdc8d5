//! The CA bundle and links `update-ca-certificates` makes, made natively by cairn for
//! an image with `ca-certificates`, checked against the real tools: certificates made
//! with `openssl req -x509` (two with one subject, for the `.1` link), shipped by test
//! packages, and a recipe's extra certificate; the real `update-ca-certificates` and
//! `openssl rehash` run on the same files in a temporary directory give what cairn's
//! image must hold.

use crate::common;
use crate::common::apt::{fixture_packages, pkg, refused_on_base_with, AptRepo, Faults};
use crate::common::{cairn, run_err, run_ok, sha256_hex};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A self-signed CA certificate with `subject`, made by openssl in `dir`; returns the
/// certificate's and the key's paths.
fn ca_cert(dir: &Path, name: &str, subject: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    run_ok(
        Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "3650"])
            .args(["-utf8", "-subj", subject, "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert),
    );
    (cert, key)
}

/// The symlinks in `dir`, by name.
fn links_in(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_symlink())
        .map(|p| {
            let target = std::fs::read_link(&p).unwrap();
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                target.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

#[test]
fn the_ca_bundle_and_hash_links_are_what_update_ca_certificates_and_openssl_rehash_make() {
    let work = tempfile::tempdir().unwrap();
    let certs = work.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let (a, _) = ca_cert(&certs, "a", "/O=Cairn Test/CN=Root A");
    let (twin1, _) = ca_cert(&certs, "twin1", "/O=Cairn Test/CN=Twin Root");
    // The same subject written another way: one canonical name, one hash.
    let (twin2, _) = ca_cert(&certs, "twin2", "/O=cairn  test/CN=TWIN root");
    let (b, _) = ca_cert(&certs, "b", "/O=Other/CN=Root B \u{00e9}");
    let (corp, corp_key) = ca_cert(&certs, "corp", "/O=Corp/CN=Corp Internal CA");
    // A server certificate signed by the recipe's extra CA, for the TLS check.
    let server_key = certs.join("server.key");
    let csr = certs.join("server.csr");
    run_ok(
        Command::new("openssl")
            .args(["req", "-new", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                "/CN=localhost",
            ])
            .arg("-keyout")
            .arg(&server_key)
            .arg("-out")
            .arg(&csr),
    );
    let server = certs.join("server.pem");
    run_ok(
        Command::new("openssl")
            .args(["x509", "-req", "-days", "365", "-in"])
            .arg(&csr)
            .arg("-CA")
            .arg(&corp)
            .arg("-CAkey")
            .arg(&corp_key)
            .args(["-set_serial", "7", "-out"])
            .arg(&server),
    );
    let read = |p: &Path| std::fs::read(p).unwrap();
    // Shipped as the tool finds them: one without its final newline, one name with a
    // space (its link is `twin_2.pem`).
    let mut a_bytes = read(&a);
    a_bytes.pop();
    let shared: Vec<(&str, Vec<u8>)> = vec![
        ("test/a.crt", a_bytes),
        ("test/twin-1.crt", read(&twin1)),
        ("test/twin 2.crt", read(&twin2)),
        ("other/b.crt", read(&b)),
    ];
    let mut ca_pkg = pkg("ca-certificates", "20230311", "");
    ca_pkg.arch = "all";
    ca_pkg.postinst = "#!/bin/sh\nset -e\nupdate-ca-certificates --hooksdir \"\"\n";
    let mut other_pkg = pkg("other-certs", "1.0-1", "");
    other_pkg.arch = "all";
    for (rel, bytes) in &shared {
        let owner = if rel.starts_with("other/") {
            &mut other_pkg
        } else {
            &mut ca_pkg
        };
        owner.files.push((
            format!("usr/share/ca-certificates/{rel}"),
            bytes.clone(),
            0o644,
        ));
    }
    let mut packages = fixture_packages();
    packages.extend([ca_pkg, other_pkg]);
    let repo = AptRepo::new(&packages, Faults::default());
    let recipe = repo.recipe(work.path(), "ca-certificates, other-certs");
    std::fs::copy(&corp, work.path().join("corp.pem")).unwrap();
    let text = std::fs::read_to_string(&recipe).unwrap()
        + "sources:\n  corp-ca: { path: corp.pem }\nextra_ca_certificates:\n  - source: corp-ca\n";
    std::fs::write(&recipe, text).unwrap();
    let (key, public, _) = common::keygen(work.path(), "signer");
    // Each build with the cache it names (packages and layers): the second is made
    // afresh, not replayed.
    let build_with = |out: &str, cache: &str| -> Value {
        let cache = work.path().join(cache);
        common::build_signed_with_cache(&recipe, &work.path().join(out), &cache, &key)
    };
    let build = |out: &str| build_with(out, &format!("cache-{out}"));
    let first = build("one");
    let layout = work.path().join("one/pkgs");
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    common::unpack_layout(&layout, &rootfs);

    // The real tools on the same files: update-ca-certificates (all certificates, as
    // the conf a first install writes enables them) and its `openssl rehash`.
    let real = work.path().join("real");
    let (share, local, etc) = (
        real.join("share"),
        real.join("local"),
        real.join("etc/ssl/certs"),
    );
    for (rel, bytes) in &shared {
        std::fs::create_dir_all(share.join(rel).parent().unwrap()).unwrap();
        std::fs::write(share.join(rel), bytes).unwrap();
    }
    std::fs::create_dir_all(&local).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(&corp, local.join("corp-ca.crt")).unwrap();
    std::fs::write(real.join("ca-certificates.conf"), "").unwrap();
    run_ok(
        Command::new("/usr/sbin/update-ca-certificates")
            .env("LC_ALL", "C")
            .env("TMPDIR", &real)
            .arg("--default")
            .arg("--certsconf")
            .arg(real.join("ca-certificates.conf"))
            .arg("--certsdir")
            .arg(&share)
            .arg("--localcertsdir")
            .arg(&local)
            .arg("--etccertsdir")
            .arg(&etc)
            .args(["--hooksdir", ""]),
    );
    let certs_dir = rootfs.join("etc/ssl/certs");
    assert_eq!(
        read(&certs_dir.join("ca-certificates.crt")),
        read(&etc.join("ca-certificates.crt")),
        "the bundle differs from update-ca-certificates'"
    );
    // The links: the same names; the real tool's targets are below the temporary
    // directory, cairn's where the image has the files.
    let ours = links_in(&certs_dir);
    let theirs: BTreeMap<String, String> = links_in(&etc)
        .into_iter()
        .map(|(name, target)| {
            let target = target
                .replace(share.to_str().unwrap(), "/usr/share/ca-certificates")
                .replace(local.to_str().unwrap(), "/usr/local/share/ca-certificates");
            (name, target)
        })
        .collect();
    assert_eq!(ours, theirs);
    assert!(ours.contains_key("twin_2.pem"), "{ours:?}");
    let twins: Vec<&String> = ours
        .iter()
        .filter(|(_, t)| t.starts_with("twin"))
        .map(|(n, _)| n)
        .collect();
    assert!(
        twins.len() == 2 && twins[0].ends_with(".0") && twins[1].ends_with(".1"),
        "the two certificates with one subject hash are .0 and .1: {ours:?}"
    );
    // The hash cairn computed is openssl's.
    let hash = run_ok(
        Command::new("openssl")
            .args(["x509", "-noout", "-subject_hash", "-in"])
            .arg(&twin1),
    );
    assert_eq!(
        twins[0].split('.').next().unwrap(),
        String::from_utf8_lossy(&hash.stdout).trim()
    );

    // The conf as the postinst writes it on a first install: every certificate, in
    // C-locale order.
    let sort = run_ok(
        Command::new("sh")
            .arg("-c")
            .arg("cd \"$1\" && find . -type f -name '*.crt' | sed -e 's|^\\./||' | LC_ALL=C sort")
            .arg("sh")
            .arg(&share),
    );
    let conf = std::fs::read_to_string(rootfs.join("etc/ca-certificates.conf")).unwrap();
    assert!(conf.starts_with("# This file lists certificates"), "{conf}");
    assert!(
        conf.ends_with(&format!("#\n{}", String::from_utf8_lossy(&sort.stdout))),
        "{conf}"
    );
    assert_eq!(
        read(&rootfs.join("usr/local/share/ca-certificates/corp-ca.crt")),
        read(&corp)
    );

    // TLS: the bundle as the image has it verifies a server certificate from the
    // recipe's CA.
    run_ok(
        Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(certs_dir.join("ca-certificates.crt"))
            .arg(&server),
    );

    // Traceable: the bundle traces to the certificate files it was made from.
    let trace = run_ok(
        cairn()
            .arg("trace")
            .arg(&layout)
            .arg("/etc/ssl/certs/ca-certificates.crt")
            .arg("--json"),
    );
    let trace: Value = serde_json::from_slice(&trace.stdout).unwrap();
    let bundle = &trace["matches"][0];
    assert_eq!(bundle["origin"], "generated");
    assert_eq!(bundle["source"]["name"], "deb:ca-certificates");
    let inputs: Vec<(String, String)> = bundle["generated_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["path"].as_str().unwrap().to_string(),
                i["sha256"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut expected: Vec<(String, String)> = shared
        .iter()
        .map(|(rel, bytes)| {
            (
                format!("/usr/share/ca-certificates/{rel}"),
                format!("sha256:{}", sha256_hex(bytes)),
            )
        })
        .collect();
    expected.sort();
    expected.push((
        "/usr/local/share/ca-certificates/corp-ca.crt".into(),
        format!("sha256:{}", sha256_hex(&read(&corp))),
    ));
    assert_eq!(inputs, expected);
    let text = run_ok(
        cairn()
            .arg("trace")
            .arg(&layout)
            .arg("/etc/ssl/certs/ca-certificates.crt"),
    );
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("input   sha256:") && text.contains("/usr/share/ca-certificates/test/a.crt"),
        "{text}"
    );
    // Both SBOMs say so.
    let (spdx, cdx) = common::validated_sboms(&work.path().join("one"), "pkgs");
    let id_of = |path: &str| common::spdx_file_id(&spdx, path);
    let bundle_id = id_of("/etc/ssl/certs/ca-certificates.crt");
    let from: Vec<&str> = spdx["relationships"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["spdxElementId"] == bundle_id && r["relationshipType"] == "GENERATED_FROM")
        .map(|r| r["relatedSpdxElement"].as_str().unwrap())
        .collect();
    for (path, _) in &expected {
        let id = id_of(path);
        assert!(
            from.contains(&id.as_str()),
            "{path} ({id}) missing: {from:?}"
        );
    }
    assert!(
        from.contains(&"SPDXRef-Source-deb.3Aca-certificates"),
        "{from:?}"
    );
    let component = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "/etc/ssl/certs/ca-certificates.crt")
        .unwrap();
    let generated_from: Vec<&str> = component["properties"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "cairn:generated-from")
        .map(|p| p["value"].as_str().unwrap())
        .collect();
    assert_eq!(generated_from.len(), expected.len());
    for (path, sha) in &expected {
        assert!(generated_from.contains(&format!("{sha} {path}").as_str()));
    }

    // The provenance says what cairn did in place of the postinst.
    let provenance = common::provenance_of(&work.path().join("one/pkgs.intoto.jsonl"));
    let ca = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "deb:ca-certificates")
        .unwrap()
        .clone();
    let done = ca["annotations"]["maintainerScripts"][0]["doneNatively"].to_string();
    assert!(
        done.contains("update-ca-certificates: 5 certificate links and 5 subject-hash links"),
        "{done}"
    );

    // cairn verify accepts the image, its SBOM listing the generated files.
    let verified = run_ok(cairn().arg("verify").arg(&layout).arg("--key").arg(&public));
    assert!(verified.status.success());
    // Reproducible: built again from nothing cached, the same image.
    let second = build("two");
    assert_eq!(second["image_cached"], false);
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
    // Unchanged, it is replayed from the cache of the (locked) second build; with
    // another extra certificate it is not, and the bundle ends with the new one.
    let warm = build_with("warm", "cache-two");
    assert_eq!(warm["image_cached"], true);
    assert_eq!(warm["manifest_digest"], first["manifest_digest"]);
    // The source is pinned: another certificate is refused until `cairn lock`.
    std::fs::copy(&b, work.path().join("corp.pem")).unwrap();
    run_ok(
        cairn()
            .env("XDG_CACHE_HOME", work.path().join("cache-two"))
            .arg("lock")
            .arg(&recipe),
    );
    let changed = build_with("changed", "cache-two");
    assert_eq!(changed["image_cached"], false);
    let rootfs = work.path().join("rootfs-changed");
    std::fs::create_dir_all(&rootfs).unwrap();
    common::unpack_layout(&work.path().join("changed/pkgs"), &rootfs);
    let bundle = read(&rootfs.join("etc/ssl/certs/ca-certificates.crt"));
    assert!(bundle.ends_with(&read(&b)) && !bundle.ends_with(&read(&corp)));
}

/// `extra_ca_certificates` without the package that reads them, or naming a directory,
/// is a build error placed at the entry, with a hint.
#[test]
fn extra_ca_certificates_without_ca_certificates_or_from_a_directory_are_errors() {
    let work = tempfile::tempdir().unwrap();
    let repo = AptRepo::new(&fixture_packages(), Faults::default());
    let recipe = repo.recipe(work.path(), "app");
    let base = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(work.path().join("corp.pem"), "not read\n").unwrap();
    std::fs::create_dir_all(work.path().join("certs")).unwrap();
    let build_err = |source_path: &str| {
        let text = format!(
            "{base}sources:\n  corp-ca: {{ path: {source_path} }}\nextra_ca_certificates:\n  - source: corp-ca\n"
        );
        std::fs::write(&recipe, text).unwrap();
        let (code, stderr) = run_err(
            cairn()
                .env("XDG_CACHE_HOME", work.path().join("cache"))
                .arg("build")
                .arg(&recipe)
                .arg("-o")
                .arg(work.path().join("out")),
        );
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!("--> {}:20:13", recipe.display())),
            "{stderr}"
        );
        stderr
    };
    let stderr = build_err("corp.pem");
    assert!(
        stderr.contains("`extra_ca_certificates` needs the `ca-certificates` package")
            && stderr.contains("= help: add `ca-certificates` to `packages:`"),
        "{stderr}"
    );
    let stderr = build_err("certs");
    assert!(
        stderr.contains("extra CA certificate source `corp-ca` is a directory")
            && stderr.contains("= help: give each certificate as a `path:` source of one PEM file"),
        "{stderr}"
    );
}

/// A base image with its own `/etc/ca-certificates.conf` is refused: cairn would have
/// to read it to know which certificates it disables.
#[test]
fn a_base_image_with_its_own_ca_certificates_conf_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let mut ca_pkg = pkg("ca-certificates", "20230311", "");
    ca_pkg.arch = "all";
    let stderr = refused_on_base_with(
        work.path(),
        "/etc/ca-certificates.conf",
        "!mozilla/Untrusted.crt\n",
        ca_pkg,
    );
    assert!(
        stderr.contains("the base image has /etc/ca-certificates.conf")
            && stderr.contains("= help:"),
        "{stderr}"
    );
}
