//! `cairn push` and `cairn build --push` asked to record in a ledger that cannot take
//! the entry: the image is still in the registry, the command exits 1 with
//! `ledger_error` in its `--json` report, and the printed record commands, run once the
//! ledger is writable, record the entries in order (build before push).

use crate::common;
use crate::common::registry::{Registry, RegistryAuth};
use crate::ledger_unreachable::{
    cairn, entries, expect, record_commands, run_record_command, verified,
};
use serde_json::Value;

#[test]
fn a_push_that_cannot_record_is_in_the_registry_exits_1_and_its_commands_record_it_later() {
    let registry = Registry::start(RegistryAuth::None);
    let dir = tempfile::tempdir().unwrap();
    let (key, public, _) = common::keygen(dir.path(), "ci");
    let recipe = common::repo_root().join("recipes/hello.yaml");
    // A directory where the ledger file should be: nothing can be appended to it.
    let ledger = dir.path().join("ledger.jsonl");
    std::fs::create_dir(&ledger).unwrap();

    let built = common::build_json(&recipe, &dir.path().join("out"), &["--locked"]);
    let target = format!("{}/team/hello:v1", registry.host);
    let out = expect(
        1,
        cairn()
            .arg("push")
            .arg(dir.path().join("out/hello"))
            .arg(&target)
            .args(["--insecure", "--json", "--ledger"])
            .arg(&ledger)
            .arg("--ledger-key")
            .arg(&key),
    );
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["digest"], built["manifest_digest"]);
    assert!(registry.has_tag("team/hello", "v1"), "the image was pushed");
    let push_commands = record_commands(&pushed, &ledger, &["push"]);

    let target = format!("{}/team/hello:v2", registry.host);
    let out = expect(
        1,
        cairn()
            .arg("build")
            .arg(&recipe)
            .arg("-o")
            .arg(dir.path().join("again"))
            .args(["--locked", "--json", "--insecure", "--push", &target])
            .arg("--sign-key")
            .arg(&key)
            .arg("--ledger")
            .arg(&ledger),
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["push"]["digest"], built["manifest_digest"]);
    assert!(registry.has_tag("team/hello", "v2"), "the image was pushed");
    let build_commands = record_commands(&report, &ledger, &["build", "push"]);

    std::fs::remove_dir(&ledger).unwrap();
    for command in push_commands.iter().chain(&build_commands) {
        run_record_command(command);
    }
    let entries = entries(&ledger);
    let summary: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["details"]["reference"]
                    .as_str()
                    .or(e["details"]["image"].as_str())
                    .unwrap(),
            )
        })
        .collect();
    let digest = built["manifest_digest"].as_str().unwrap();
    assert_eq!(
        summary,
        [
            (
                "push",
                format!("{}/team/hello:v1@{digest}", registry.host).as_str()
            ),
            ("build", "hello"),
            (
                "push",
                format!("{}/team/hello:v2@{digest}", registry.host).as_str()
            ),
        ]
    );
    assert!(verified(&ledger, &public).contains("3 entries"));
}
