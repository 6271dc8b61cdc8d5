//! `/etc/ld.so.cache`, made natively by cairn for an image with `libc-bin`, checked
//! against the real `ldconfig`: test packages ship the host's own libc and loader and
//! tiny shared objects compiled here with `cc -shared -Wl,-soname,...` (versions whose
//! numbers sort as numbers, a symlink per soname, a `.so` link for `ld`, one without
//! a soname, a linker script), in `/lib/<multiarch>` (merged /usr moves them),
//! `/usr/lib` and `/usr/local/lib`; `ldconfig -r ROOT -C ... -X` on the unpacked image
//! must write the same bytes.

use crate::common;
use crate::common::apt::{fixture_packages, pkg, refused_on_base_with, AptRepo, Faults, SYMLINK};
use crate::common::{cairn, run_ok};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::process::Command;

/// A shared object compiled by the host's `cc`, with `soname` (none if empty).
fn shared_object(dir: &Path, name: &str, soname: &str) -> Vec<u8> {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(
        &src,
        format!(
            "int {}(void) {{ return 1; }}\n",
            name.replace(['.', '-'], "_")
        ),
    )
    .unwrap();
    let out = dir.join(name);
    let mut cc = Command::new("cc");
    cc.args(["-shared", "-fPIC", "-o"]).arg(&out).arg(&src);
    if !soname.is_empty() {
        cc.arg(format!("-Wl,-soname,{soname}"));
    }
    run_ok(&mut cc);
    std::fs::read(out).unwrap()
}

/// The host's version of a package, e.g. `2.36-9+deb12u14`.
fn host_version(package: &str) -> &'static str {
    let out = run_ok(Command::new("dpkg-query").args(["-W", "-f", "${Version}", package]));
    Box::leak(
        String::from_utf8_lossy(&out.stdout)
            .into_owned()
            .into_boxed_str(),
    )
}

fn file(path: &str, bytes: Vec<u8>, mode: u32) -> (String, Vec<u8>, u32) {
    (path.to_string(), bytes, mode)
}

fn link(path: &str, target: &str) -> (String, Vec<u8>, u32) {
    (path.to_string(), target.as_bytes().to_vec(), SYMLINK)
}

#[test]
fn the_ld_so_cache_is_the_one_ldconfig_writes_for_the_image() {
    let work = tempfile::tempdir().unwrap();
    let so = work.path().join("so");
    std::fs::create_dir_all(&so).unwrap();
    let version = host_version("libc-bin");
    let ma = "lib/x86_64-linux-gnu";
    let host_lib = |name: &str| std::fs::read(format!("/{ma}/{name}")).unwrap();

    let mut libc_bin = pkg("libc-bin", version, "Depends: libc6");
    libc_bin.postinst = "#!/bin/sh\nset -e\nldconfig\n";
    libc_bin.files.extend([
        file(
            "etc/ld.so.conf",
            b"include /etc/ld.so.conf.d/*.conf\n\n".to_vec(),
            0o644,
        ),
        file(
            "etc/ld.so.conf.d/libc.conf",
            b"# libc default configuration\n/usr/local/lib\n".to_vec(),
            0o644,
        ),
    ]);
    let mut libc6 = pkg("libc6", version, "");
    libc6.files.extend([
        file(
            "etc/ld.so.conf.d/x86_64-linux-gnu.conf",
            b"# Multiarch support\n/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n".to_vec(),
            0o644,
        ),
        file(&format!("{ma}/libc.so.6"), host_lib("libc.so.6"), 0o755),
        file(&format!("{ma}/ld-linux-x86-64.so.2"), host_lib("ld-linux-x86-64.so.2"), 0o755),
        link("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"),
    ]);
    let mut libs = pkg("libtest1", "1.0-1", "Depends: libc6");
    libs.files.extend([
        // A real file and its soname link, and the `.so` link for ld.
        file(
            &format!("usr/{ma}/libfoo.so.1.2"),
            shared_object(&so, "libfoo.so.1.2", "libfoo.so.1"),
            0o644,
        ),
        link(&format!("usr/{ma}/libfoo.so.1"), "libfoo.so.1.2"),
        link(&format!("usr/{ma}/libfoo.so"), "libfoo.so.1"),
        // Numbers sort as numbers: 10 after 9.
        file(
            &format!("{ma}/libzed.so.9"),
            shared_object(&so, "libzed.so.9", "libzed.so.9"),
            0o644,
        ),
        file(
            &format!("{ma}/libzed.so.10"),
            shared_object(&so, "libzed.so.10", "libzed.so.10"),
            0o644,
        ),
        // No soname: listed by its file name. A linker script: left out.
        file(
            &format!("{ma}/libplain.so"),
            shared_object(&so, "libplain.so", ""),
            0o644,
        ),
        file(
            &format!("usr/{ma}/libscript.so"),
            b"INPUT(-lfoo)\n".to_vec(),
            0o644,
        ),
        // In /usr/lib and /usr/local/lib (from libc.conf).
        file(
            "usr/lib/libbar.so.3",
            shared_object(&so, "libbar.so.3", "libbar.so.3"),
            0o644,
        ),
        file(
            "usr/local/lib/libloc.so.1",
            shared_object(&so, "libloc.so.1", "libloc.so.1"),
            0o644,
        ),
    ]);
    let mut packages = fixture_packages();
    packages.extend([libc_bin, libc6, libs]);
    let repo = AptRepo::new(&packages, Faults::default());
    let recipe = repo.recipe(work.path(), "libc-bin, libtest1");
    let (key, public, _) = common::keygen(work.path(), "signer");
    let build = |out: &str| -> Value {
        let cache = work.path().join(format!("cache-{out}"));
        common::build_signed_with_cache(&recipe, &work.path().join(out), &cache, &key)
    };
    let first = build("one");
    let layout = work.path().join("one/pkgs");
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    common::unpack_layout(&layout, &rootfs);
    let ours = std::fs::read(rootfs.join("etc/ld.so.cache")).unwrap();

    // The real ldconfig on the same tree, its cache written beside ours.
    run_ok(Command::new("ldconfig").arg("-r").arg(&rootfs).args([
        "-C",
        "/etc/ld.so.cache.real",
        "-X",
    ]));
    let theirs = std::fs::read(rootfs.join("etc/ld.so.cache.real")).unwrap();
    let print = |cache: &Path| {
        let out = run_ok(Command::new("ldconfig").arg("-p").arg("-C").arg(cache));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = print(&rootfs.join("etc/ld.so.cache"));
    assert_eq!(
        ours,
        theirs,
        "cairn's cache:\n{listed}\nldconfig's:\n{}",
        print(&rootfs.join("etc/ld.so.cache.real"))
    );
    for line in [
        "libzed.so.10 (libc6,x86-64) => /lib/x86_64-linux-gnu/libzed.so.10",
        "libfoo.so.1 (libc6,x86-64) => /lib/x86_64-linux-gnu/libfoo.so.1",
        "libfoo.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libfoo.so",
        "libc.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libc.so.6",
        "libbar.so.3 (libc6,x86-64) => /lib/libbar.so.3",
        "libloc.so.1 (libc6,x86-64) => /usr/local/lib/libloc.so.1",
        "libplain.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libplain.so",
    ] {
        assert!(listed.contains(line), "{line} missing:\n{listed}");
    }
    assert!(!listed.contains("libscript"), "{listed}");

    // Traceable: the cache traces to the configuration and the libraries.
    let trace = run_ok(
        cairn()
            .arg("trace")
            .arg(&layout)
            .arg("/etc/ld.so.cache")
            .arg("--json"),
    );
    let trace: Value = serde_json::from_slice(&trace.stdout).unwrap();
    let cache = &trace["matches"][0];
    assert_eq!(cache["origin"], "generated");
    assert_eq!(cache["source"]["name"], "deb:libc-bin");
    let inputs: Vec<String> = cache["generated_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i["sha256"].as_str().unwrap(),
                i["path"].as_str().unwrap()
            )
        })
        .collect();
    let foo = std::fs::read(rootfs.join("usr/lib/x86_64-linux-gnu/libfoo.so.1.2")).unwrap();
    let foo_input = format!(
        "sha256:{} /usr/lib/x86_64-linux-gnu/libfoo.so.1.2",
        hex::encode(Sha256::digest(&foo))
    );
    for expected in [
        foo_input.as_str(),
        "/etc/ld.so.conf",
        "/etc/ld.so.conf.d/x86_64-linux-gnu.conf",
        "/usr/lib/x86_64-linux-gnu/libc.so.6",
        "/usr/local/lib/libloc.so.1",
    ] {
        assert!(
            inputs
                .iter()
                .any(|i| i.ends_with(expected) || i == expected),
            "{expected} not among {inputs:?}"
        );
    }
    // Both SBOMs: GENERATED_FROM the library in SPDX, a property in CycloneDX.
    let (spdx, cdx) = common::validated_sboms(&work.path().join("one"), "pkgs");
    run_ok(cairn().arg("verify").arg(&layout).arg("--key").arg(&public));
    let id_of = |path: &str| common::spdx_file_id(&spdx, path);
    let cache_id = id_of("/etc/ld.so.cache");
    let foo_id = id_of("/usr/lib/x86_64-linux-gnu/libfoo.so.1.2");
    assert!(spdx["relationships"].as_array().unwrap().iter().any(|r| {
        r["spdxElementId"] == cache_id
            && r["relationshipType"] == "GENERATED_FROM"
            && r["relatedSpdxElement"] == foo_id
    }));
    let component = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "/etc/ld.so.cache")
        .unwrap();
    assert!(component["properties"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "cairn:generated-from" && p["value"] == foo_input));

    // The provenance says what cairn did in place of libc-bin's ldconfig.
    let provenance = common::provenance_of(&work.path().join("one/pkgs.intoto.jsonl"));
    let libc_bin = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "deb:libc-bin")
        .unwrap()
        .clone();
    let done = libc_bin["annotations"]["maintainerScripts"][0]["doneNatively"].to_string();
    assert!(done.contains("the ldconfig trigger"), "{done}");

    // Reproducible: built again from nothing cached, the same image.
    let second = build("two");
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);

    // libc6 without libc-bin: no ld.so.conf, the built-in directories only, the cache
    // traced to libc6; still what ldconfig writes. Without libc6: no cache at all.
    for (packages, owner) in [("libtest1", Some("deb:libc6")), ("app", None)] {
        let dir = work.path().join(packages);
        std::fs::create_dir_all(&dir).unwrap();
        let recipe = repo.recipe(&dir, packages);
        let out = dir.join("out");
        run_ok(
            cairn()
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .arg("build")
                .arg(&recipe)
                .arg("-o")
                .arg(&out),
        );
        let rootfs = dir.join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        common::unpack_layout(&out.join("pkgs"), &rootfs);
        let cache = rootfs.join("etc/ld.so.cache");
        let Some(owner) = owner else {
            assert!(!cache.exists(), "{packages}: a cache without libc6");
            continue;
        };
        assert!(!rootfs.join("etc/ld.so.conf").exists());
        run_ok(Command::new("ldconfig").arg("-r").arg(&rootfs).args([
            "-C",
            "/etc/ld.so.cache.real",
            "-X",
        ]));
        assert_eq!(
            std::fs::read(&cache).unwrap(),
            std::fs::read(rootfs.join("etc/ld.so.cache.real")).unwrap(),
            "{packages}: cairn's cache:\n{}",
            print(&cache)
        );
        assert!(print(&cache).contains("libfoo.so.1 (libc6,x86-64)"));
        let trace = run_ok(
            cairn()
                .arg("trace")
                .arg(out.join("pkgs"))
                .arg("/etc/ld.so.cache")
                .arg("--json"),
        );
        let trace: Value = serde_json::from_slice(&trace.stdout).unwrap();
        assert_eq!(trace["matches"][0]["source"]["name"], owner);
    }
}

/// A base image with its own `/etc/ld.so.cache` is refused: the cache lists the base's
/// libraries, whose bytes cairn does not keep, so it could not list them again.
#[test]
fn a_base_image_with_its_own_ld_so_cache_is_refused() {
    let work = tempfile::tempdir().unwrap();
    let stderr = refused_on_base_with(
        work.path(),
        "/etc/ld.so.cache",
        "glibc-ld.so.cache1.1",
        pkg("libc-bin", "2.36-9", ""),
    );
    assert!(
        stderr.contains("the base image has /etc/ld.so.cache") && stderr.contains("= help:"),
        "{stderr}"
    );
}
