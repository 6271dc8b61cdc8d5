//! Users and groups of Debian packages, made natively by cairn: a test `base-passwd`
//! shipping the host's real master files and a package shipping a sysusers.d
//! fragment (and the host's static busybox). The real `systemd-sysusers --root` on the
//! same files must write the same `/etc/passwd` and `/etc/group`, and the image, run
//! under runc as the fragment's user, must say so with `id`.

use super::interop::run_in_runc;
use crate::common;
use crate::common::apt::{fixture_packages, pkg, AptRepo, Faults, Pkg};
use crate::common::{cairn, run_err, run_ok};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const FRAGMENT: &str = "# a service user\ng svcgroup -\nu svc - \"Service user\" /var/lib/svc\nm svc svcgroup\nm svc audio\n";

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// `base-passwd` with the host's master files (and a postinst, for the provenance).
fn base_passwd() -> Pkg {
    let mut p = pkg("base-passwd", "3.6.1", "");
    for name in ["passwd.master", "group.master"] {
        p.files.push((
            format!("usr/share/base-passwd/{name}"),
            read(&Path::new("/usr/share/base-passwd").join(name)),
            0o644,
        ));
    }
    p.postinst = "#!/bin/sh\nset -e\n[ -e /etc/passwd ] || cp /usr/share/base-passwd/passwd.master /etc/passwd\n";
    p
}

/// A package with a sysusers.d fragment and the host's static busybox.
fn service(name: &'static str, fragment: &str) -> Pkg {
    let mut p = pkg(name, "1.0-1", "");
    p.files.push((
        format!("usr/lib/sysusers.d/{name}.conf"),
        fragment.as_bytes().to_vec(),
        0o644,
    ));
    p.files.push((
        "usr/bin/busybox".into(),
        read(Path::new("/bin/busybox")),
        0o755,
    ));
    p
}

#[test]
fn a_non_root_user_from_sysusers_d_runs_the_image() {
    let work = tempfile::tempdir().unwrap();
    // What the real tool makes of the same files, on base-passwd's first install.
    let real = work.path().join("real");
    std::fs::create_dir_all(real.join("etc")).unwrap();
    std::fs::create_dir_all(real.join("usr/lib/sysusers.d")).unwrap();
    std::fs::copy(
        "/usr/share/base-passwd/passwd.master",
        real.join("etc/passwd"),
    )
    .unwrap();
    std::fs::copy(
        "/usr/share/base-passwd/group.master",
        real.join("etc/group"),
    )
    .unwrap();
    std::fs::write(real.join("usr/lib/sysusers.d/svc.conf"), FRAGMENT).unwrap();
    run_ok(Command::new("systemd-sysusers").arg("--root").arg(&real));
    let real_passwd = String::from_utf8(read(&real.join("etc/passwd"))).unwrap();
    let svc_line = real_passwd
        .lines()
        .find(|l| l.starts_with("svc:"))
        .expect("systemd-sysusers made svc");
    let fields: Vec<&str> = svc_line.split(':').collect();
    let (uid, gid) = (fields[2], fields[3]);
    assert_ne!(uid, "0");

    let mut packages = fixture_packages();
    packages.extend([base_passwd(), service("svc", FRAGMENT)]);
    let repo = AptRepo::new(&packages, Faults::default());
    let recipe = repo.recipe(work.path(), "base-passwd, svc");
    let text = std::fs::read_to_string(&recipe).unwrap()
        + "config:\n  entrypoint: [/usr/bin/busybox, id]\n  user: svc\n";
    std::fs::write(&recipe, text).unwrap();
    let (key, _, _) = common::keygen(work.path(), "signer");
    let build = |out: &str| -> Value {
        let cache = work.path().join(format!("cache-{out}"));
        common::build_signed_with_cache(&recipe, &work.path().join(out), &cache, &key)
    };
    let first = build("one");
    let layout = work.path().join("one/pkgs");
    let rootfs = work.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    common::unpack_layout(&layout, &rootfs);
    for file in ["etc/passwd", "etc/group"] {
        assert_eq!(
            String::from_utf8(read(&rootfs.join(file))).unwrap(),
            String::from_utf8(read(&real.join(file))).unwrap(),
            "/{file} differs from systemd-sysusers'"
        );
    }

    // `config.user: svc` names the fragment's user: the config carries its numbers
    // (what Kubernetes' runAsNonRoot can check), and `id` names it from the image's files.
    let inspect = run_ok(cairn().arg("inspect").arg(&layout).arg("--json"));
    let inspect: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(
        inspect["images"][0]["config"]["config"]["User"],
        format!("{uid}:{gid}")
    );
    let (stdout, _) = run_in_runc(&layout, "pkgs", work.path(), "");
    assert!(
        stdout.starts_with(&format!("uid={uid}(svc) gid={gid}(svc)")),
        "{stdout}"
    );

    // Traceable to the master file and the fragment, in place of base-passwd's script.
    let trace = run_ok(
        cairn()
            .arg("trace")
            .arg(&layout)
            .arg("/etc/passwd")
            .arg("--json"),
    );
    let trace: Value = serde_json::from_slice(&trace.stdout).unwrap();
    let passwd = &trace["matches"][0];
    assert_eq!(passwd["origin"], "generated", "{passwd}");
    assert_eq!(passwd["source"]["name"], "deb:base-passwd");
    let inputs: Vec<&str> = passwd["generated_from"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        inputs,
        [
            "/usr/share/base-passwd/passwd.master",
            "/usr/lib/sysusers.d/svc.conf"
        ]
    );
    let (spdx, cdx) = common::validated_sboms(&work.path().join("one"), "pkgs");
    let passwd_id = common::spdx_file_id(&spdx, "/etc/passwd");
    let fragment_id = common::spdx_file_id(&spdx, "/usr/lib/sysusers.d/svc.conf");
    assert!(
        spdx["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["spdxElementId"] == passwd_id
                && r["relationshipType"] == "GENERATED_FROM"
                && r["relatedSpdxElement"] == fragment_id),
        "/etc/passwd is not GENERATED_FROM the fragment"
    );
    let component = cdx["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "/etc/group")
        .unwrap();
    assert!(
        component["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "cairn:generated-from"
                && p["value"]
                    .as_str()
                    .unwrap()
                    .ends_with(" /usr/share/base-passwd/group.master")),
        "{component}"
    );
    // The provenance says what cairn did in place of base-passwd's postinst.
    let provenance = common::provenance_of(&work.path().join("one/pkgs.intoto.jsonl"));
    let base = provenance["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "deb:base-passwd")
        .unwrap()
        .clone();
    let done = base["annotations"]["maintainerScripts"][0]["doneNatively"].to_string();
    assert!(
        done.contains("/etc/passwd and /etc/group from /usr/share/base-passwd/passwd.master"),
        "{done}"
    );

    // Reproducible: built again from nothing cached, the same image; and replayed
    // from the cache, the same user.
    let second = build("two");
    assert_eq!(second["image_cached"], false);
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
    let replayed = build("two");
    assert_eq!(replayed["image_cached"], true);
    assert_eq!(first["manifest_digest"], replayed["manifest_digest"]);

    // A name no account has: an error at `config.user` with the likely one.
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(&recipe, text.replace("user: svc", "user: svcc")).unwrap();
    let (_, stderr) = run_err(
        cairn()
            .arg("build")
            .arg(&recipe)
            .arg("--out")
            .arg(work.path().join("bad")),
    );
    assert!(
        stderr.contains("`config.user` names user `svcc`, which neither `accounts.users`, the packages nor the base image define")
            && stderr.contains("user: svcc")
            && stderr.contains("did you mean `svc`?"),
        "{stderr}"
    );
}

/// A package giving a user of base-passwd another uid fails the build, naming both;
/// a line cairn cannot honour is a warning naming package, file and line.
#[test]
fn conflicting_ids_are_an_error_naming_both_sources() {
    let work = tempfile::tempdir().unwrap();
    let mut packages = fixture_packages();
    packages.extend([
        base_passwd(),
        service("web", "u www-data 77 - /var/www\n"),
        service("odd", "\nu odd /usr/bin/busybox\n"),
    ]);
    let repo = AptRepo::new(&packages, Faults::default());
    let recipe = repo.recipe(work.path(), "base-passwd, web");
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
        stderr.contains("user `www-data` has uid 33 in base-passwd's /usr/share/base-passwd/passwd.master and uid 77 in package `web`'s /usr/lib/sysusers.d/web.conf line 1"),
        "{stderr}"
    );
    let recipe = repo.recipe(work.path(), "odd");
    let output = run_ok(
        cairn()
            .env("XDG_CACHE_HOME", work.path().join("cache"))
            .arg("build")
            .arg(&recipe)
            .arg("-o")
            .arg(work.path().join("out-odd")),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("package `odd`: /usr/lib/sysusers.d/odd.conf line 2: an id taken from a file's owner is not supported"),
        "{stderr}"
    );
}
