//! Hostile archive sources at the recipe level, generated here: the entry and byte
//! limits refuse an archive with a message naming the source, the member and the
//! limit, and the recipe's `limits:` lets the same archive through; a chain of
//! symlinks that each look harmless but resolve outside the extraction directory is
//! refused with where it resolves.

use crate::common::*;
use std::path::Path;

/// Writes `tools.tar` into `dir` with `members` (name, kind, link target).
fn write_archive(dir: &Path, members: &[(&str, tar::EntryType, &str)]) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, kind, target) in members {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_mode(if *kind == tar::EntryType::Symlink {
            0o777
        } else {
            0o755
        });
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        let data: &[u8] = if *kind == tar::EntryType::Regular {
            b"0123456789"
        } else {
            b""
        };
        header.set_size(data.len() as u64);
        if !target.is_empty() {
            header.set_link_name(target).unwrap();
        }
        tar.append_data(&mut header, name, data).unwrap();
    }
    std::fs::write(dir.join("tools.tar"), tar.into_inner().unwrap()).unwrap();
}

fn recipe(dir: &Path, to: &str, limits: &str) -> std::path::PathBuf {
    write_recipe(
        dir,
        "recipe.yaml",
        &format!(
            "cairn: 1
name: t
epoch: 1700000000
{limits}sources:
  tools: {{ archive: tools.tar }}
layers:
  - name: l
    contents:
      - extract: tools
        to: {to}
"
        ),
    )
}

fn build_error(recipe: &Path, out: &Path) -> String {
    let (code, stderr) = run_err(cairn().arg("build").arg(recipe).arg("-o").arg(out));
    assert_eq!(code, 1, "{stderr}");
    stderr
}

#[test]
fn archives_over_a_limit_are_refused_until_the_recipe_raises_it() {
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<String> = (0..20).map(|i| format!("bin/tool{i:02}")).collect();
    let members: Vec<_> = files
        .iter()
        .map(|f| (f.as_str(), tar::EntryType::Regular, ""))
        .collect();
    write_archive(dir.path(), &members);
    let out = dir.path().join("out");

    // 21 entries (20 files and `bin`), 200 bytes.
    let low = recipe(dir.path(), "/opt/tools", "limits: { entries: 20 }\n");
    let stderr = build_error(&low, &out);
    assert!(
        stderr.contains("source `tools`")
            && stderr.contains("more than 20 entries")
            && stderr.contains("at member `bin/tool19`")
            && stderr.contains("= help: if you trust this input, raise the limit in the recipe"),
        "{stderr}"
    );
    let low = recipe(dir.path(), "/opt/tools", "limits: { bytes: 199 }\n");
    let stderr = build_error(&low, &out);
    assert!(
        stderr.contains("more than 199 bytes of data") && stderr.contains("limits: { bytes:"),
        "{stderr}"
    );

    let raised = recipe(
        dir.path(),
        "/opt/tools",
        "limits: { entries: 21, bytes: 200 }\n",
    );
    let report = build_json(&raised, &out, &[]);
    assert!(report["manifest_digest"].is_string(), "{report}");
}

#[test]
fn a_symlink_chain_that_resolves_outside_its_extraction_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // Each link text looks harmless (`sub` is `.`, `s` is `sub/..`), but through
    // `sub`, `s` resolves to /opt.
    write_archive(
        dir.path(),
        &[
            ("sub", tar::EntryType::Symlink, "."),
            ("s", tar::EntryType::Symlink, "sub/.."),
        ],
    );
    let out = dir.path().join("out");
    let stderr = build_error(&recipe(dir.path(), "/opt/x", ""), &out);
    assert!(
        stderr.contains(
            "archive `tools`: symlink /opt/x/s -> sub/.. resolves to /opt, outside /opt/x"
        ) && stderr.contains("= help: an archive may only link inside"),
        "{stderr}"
    );

    // Links that resolve inside, through each other, build.
    write_archive(
        dir.path(),
        &[
            ("lib/v2/tool", tar::EntryType::Regular, ""),
            ("current", tar::EntryType::Symlink, "lib/v2"),
            ("bin", tar::EntryType::Symlink, "current/../current"),
        ],
    );
    let report = build_json(&recipe(dir.path(), "/opt/x", ""), &out, &[]);
    assert!(report["manifest_digest"].is_string(), "{report}");
}
