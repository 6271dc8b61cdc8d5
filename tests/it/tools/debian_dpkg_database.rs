//! `dpkg_database: full`: dpkg's own database in the image, checked with the host's real
//! dpkg on the unpacked image (`-l`, `--audit`, `--verify`, `-S`), against what real
//! `dpkg --unpack` writes for the same packages, and with dpkg rewriting the status file
//! to the same bytes.

use crate::common;
use crate::common::apt::{fixture_packages, pkg, AptRepo, Faults};
use crate::common::{cairn, run_ok};
use serde_json::Value;
use std::path::Path;
use std::process::Command;

/// `dpkg --root=ROOT ARGS`: its stdout and stderr together, which must be all it says.
fn dpkg(root: &Path, args: &[&str]) -> String {
    let out = run_ok(
        Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(args),
    );
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn the_full_database_is_what_dpkg_keeps_and_dpkg_finds_it_clean() {
    let work = tempfile::tempdir().unwrap();
    let mut tool = pkg("tool", "1.0-1", "Depends: app (>=1.0),app-data");
    tool.files
        .push(("etc/tool.conf".into(), b"setting = 1\n".to_vec(), 0o644));
    tool.files.push((
        "usr/bin/tool".into(),
        b"#!/bin/sh\necho tool\n".to_vec(),
        0o755,
    ));
    tool.conffiles = "/etc/tool.conf\n";
    tool.postinst = "#!/bin/sh\nset -e\necho configured\n";
    let mut packages = fixture_packages();
    packages.extend([pkg("dpkg", "1.0-1", ""), tool]);
    let repo = AptRepo::new(&packages, Faults::default());
    let recipe = repo.recipe(work.path(), "tool, dpkg");
    let mut text = std::fs::read_to_string(&recipe).unwrap();
    text.push_str("dpkg_database: full\npath_filters:\n  - exclude: /usr/share/doc/*\n");
    std::fs::write(&recipe, &text).unwrap();
    let build = |out: &str| -> Value {
        let cmd = {
            let mut c = cairn();
            c.env("XDG_CACHE_HOME", work.path().join(format!("cache-{out}")));
            c
        };
        common::build_json_with(cmd, &recipe, &work.path().join(out), &[])
    };
    let first = build("one");
    let layout = work.path().join("one/pkgs");
    let root = work.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    common::unpack_layout(&layout, &root);

    // dpkg lists every package as installed, and finds nothing to say about them.
    let listed = dpkg(&root, &["-l"]);
    let installed: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.strip_prefix("ii  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        installed,
        ["app", "app-data", "dpkg", "libfoo", "postfix-lite", "tool"],
        "{listed}"
    );
    assert_eq!(dpkg(&root, &["--audit"]), "");
    assert_eq!(dpkg(&root, &["--verify"]), "");
    assert_eq!(
        dpkg(&root, &["-S", "/usr/bin/tool"]),
        "tool: /usr/bin/tool\n"
    );
    // The file path_filters left out is not listed, so --verify has nothing missing.
    let libfoo_list = std::fs::read_to_string(root.join("var/lib/dpkg/info/libfoo.list")).unwrap();
    assert!(
        !libfoo_list.contains("/usr/share/doc/libfoo"),
        "{libfoo_list}"
    );
    assert!(libfoo_list.starts_with("/.\n/usr\n"), "{libfoo_list}");
    // A change to a conffile is what --verify reports, as on any Debian system.
    std::fs::write(root.join("etc/tool.conf"), "setting = 2\n").unwrap();
    let changed = dpkg(&root, &["--verify", "tool"]);
    assert_eq!(changed, "??5?????? c /etc/tool.conf\n");

    // What real dpkg writes when it unpacks the same packages with the same filter,
    // apart from the status (unpacked: it runs no script) and the paths it skipped,
    // which it still lists (and its --verify then reports as missing).
    let real = work.path().join("real");
    std::fs::create_dir_all(real.join("var/lib/dpkg")).unwrap();
    std::fs::write(real.join("var/lib/dpkg/status"), "").unwrap();
    let pool = repo.root().join("pool/main");
    let debs = [
        "app_1.0-1_amd64.deb",
        "app-data_1.0-1_all.deb",
        "dpkg_1.0-1_amd64.deb",
        "libfoo_2.0-1_amd64.deb",
        "postfix-lite_3.0-1_amd64.deb",
        "tool_1.0-1_amd64.deb",
    ];
    dpkg(
        &real,
        &[
            &[
                "--force-depends",
                "--path-exclude=/usr/share/doc/*",
                "--unpack",
            ][..],
            &debs
                .iter()
                .map(|d| pool.join(d).display().to_string())
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str)
                .collect::<Vec<_>>()[..],
        ]
        .concat(),
    );
    let read = |dir: &Path, name: &str| {
        std::fs::read_to_string(dir.join("var/lib/dpkg").join(name)).unwrap()
    };
    // Configuring would record each conffile's MD5 where unpacking leaves `newconffile`.
    let md5sum = run_ok(Command::new("md5sum").arg(real.join("etc/tool.conf.dpkg-new")));
    let conf_md5 = String::from_utf8_lossy(&md5sum.stdout)[..32].to_string();
    assert_eq!(
        read(&root, "status"),
        read(&real, "status")
            .replace("install ok unpacked", "install ok installed")
            .replace(
                "/etc/tool.conf newconffile",
                &format!("/etc/tool.conf {conf_md5}")
            )
    );
    let mut names: Vec<String> = std::fs::read_dir(real.join("var/lib/dpkg/info"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in &names {
        let mut expected = read(&real, &format!("info/{name}"));
        if name.ends_with(".list") {
            expected = expected
                .lines()
                .filter(|l| !l.starts_with("/usr/share/doc/"))
                .map(|l| format!("{l}\n"))
                .collect();
        }
        assert_eq!(read(&root, &format!("info/{name}")), expected, "{name}");
    }
    let mode = |dir: &Path, name: &str| {
        std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.join("var/lib/dpkg/info").join(name))
                .unwrap()
                .permissions(),
        ) & 0o7777
    };
    assert_eq!(mode(&root, "tool.postinst"), 0o755);
    assert_eq!(mode(&root, "tool.postinst"), mode(&real, "tool.postinst"));

    // dpkg, rewriting its status file, writes the same bytes.
    let status = read(&root, "status");
    dpkg(&root, &["--set-selections"]);
    assert_eq!(read(&root, "status"), status);
    assert!(root.join("var/lib/dpkg/status-old").exists());

    // The status traces to the packages' control files.
    let trace = run_ok(
        cairn()
            .arg("trace")
            .arg(&layout)
            .arg("/var/lib/dpkg/status")
            .arg("--json"),
    );
    let trace: Value = serde_json::from_slice(&trace.stdout).unwrap();
    let generated = &trace["matches"][0];
    assert_eq!(generated["origin"], "generated");
    assert_eq!(generated["source"]["name"], "deb:dpkg");
    assert_eq!(generated["generated_from"].as_array().unwrap().len(), 6);

    // Reproducible: built again from nothing cached, the same image.
    assert_eq!(first["manifest_digest"], build("two")["manifest_digest"]);

    // Without dpkg there is nothing to read the database: refused, saying so.
    let without = work.path().join("without");
    std::fs::create_dir_all(&without).unwrap();
    let recipe = repo.recipe(&without, "tool");
    std::fs::write(
        &recipe,
        std::fs::read_to_string(&recipe).unwrap() + "dpkg_database: full\n",
    )
    .unwrap();
    let (code, stderr) = common::run_err(
        cairn()
            .env("XDG_CACHE_HOME", work.path().join("cache-one"))
            .arg("build")
            .arg(&recipe)
            .arg("-o")
            .arg(without.join("out")),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("the `dpkg` package is not installed") && stderr.contains("add `dpkg`"),
        "{stderr}"
    );
}

/// `verify --policy` with `refuse_unhandled_maintainer_scripts: true`: an image whose
/// provenance lists an installation script cairn did nothing for is refused, naming the
/// package and the script; one whose scripts were all done natively (or run only at
/// removal) passes.
#[test]
fn a_policy_refuses_images_with_maintainer_scripts_left_unhandled() {
    let work = tempfile::tempdir().unwrap();
    let mut configured = pkg("configured", "1.0-1", "");
    configured.postinst = "#!/bin/sh\nset -e\nmkdir -p /var/lib/configured\n";
    let mut linked = pkg("linked", "1.0-1", "");
    linked
        .files
        .push(("usr/bin/linked".into(), b"#!/bin/sh\n".to_vec(), 0o755));
    linked.postinst =
        "#!/bin/sh\nset -e\nupdate-alternatives --install /usr/bin/lk lk /usr/bin/linked 5\n";
    let mut packages = fixture_packages();
    packages.extend([configured, linked]);
    let repo = AptRepo::new(&packages, Faults::default());
    let (key, public, _) = common::keygen(work.path(), "signer");
    let policy = work.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "cairn_policy: 1\nrefuse_unhandled_maintainer_scripts: true\n",
    )
    .unwrap();
    let verify = |packages: &str| -> (Option<i32>, Value) {
        let dir = work.path().join(packages.replace(", ", "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let recipe = repo.recipe(&dir, packages);
        common::build_json_with(
            {
                let mut c = cairn();
                c.env("XDG_CACHE_HOME", work.path().join("cache"));
                c
            },
            &recipe,
            &dir.join("out"),
            &["--sign-key", key.to_str().unwrap()],
        );
        let out = cairn()
            .arg("verify")
            .arg(dir.join("out/pkgs"))
            .arg("--key")
            .arg(&public)
            .arg("--policy")
            .arg(&policy)
            .arg("--json")
            .output()
            .unwrap();
        (
            out.status.code(),
            serde_json::from_slice(&out.stdout).unwrap(),
        )
    };
    let policy_check = |verdict: &Value| {
        verdict["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "policy")
            .cloned()
            .unwrap_or_else(|| panic!("no policy check in {verdict}"))
    };

    let (code, verdict) = verify("configured, linked");
    assert_ne!(code, Some(0), "{verdict}");
    let check = policy_check(&verdict);
    assert_eq!(check["ok"], false);
    assert_eq!(
        check["detail"],
        "package `configured`: its postinst was not run and nothing was done in its place"
    );

    let (code, verdict) = verify("linked");
    assert_eq!(code, Some(0), "{verdict}");
    assert_eq!(policy_check(&verdict)["ok"], true);
}
