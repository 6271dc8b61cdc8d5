//! An ELF file for another machine than the image's platform (an arm64 binary in an
//! amd64 image) is reported: a warning that names the file, its source, its machine
//! and the platform, repeated when the image is replayed from the cache; `--strict`
//! refuses the image and publishes nothing.

use crate::common::*;

/// The first bytes of a 64-bit little-endian ELF executable for `machine`, then a body.
fn elf_header(machine: u16) -> Vec<u8> {
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0".to_vec();
    elf.extend(machine.to_le_bytes());
    elf.extend([0; 44]);
    elf
}

const AARCH64: u16 = 183;
const X86_64: u16 = 62;

/// A recipe for linux/amd64 copying `tool` (written with `bytes`) to /usr/bin/tool.
fn recipe(dir: &std::path::Path, bytes: &[u8]) -> std::path::PathBuf {
    std::fs::write(dir.join("tool"), bytes).unwrap();
    write_recipe(
        dir,
        "elf.yaml",
        &format!(
            "cairn: 1\nname: elf\nepoch: 1700000000\nplatform: linux/amd64\nsources:\n  tool: {{ path: tool, sha256: {} }}\nlayers:\n  - name: app\n    contents:\n      - copy: tool\n        to: /usr/bin/tool\n        mode: 0o755\n",
            cairn::digest::Sha256Digest::of(bytes).hex()
        ),
    )
}

#[test]
fn an_arm64_binary_in_an_amd64_image_is_warned_about_and_refused_with_strict() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), &elf_header(AARCH64));
    let cache = dir.path().join("cache");
    let cache = cache.to_str().unwrap();
    let warned = |out: &str| {
        let mut cmd = cairn();
        cmd.env_remove("CAIRN_NO_CACHE");
        let report = build_json_with(
            cmd,
            &recipe,
            &dir.path().join(out),
            &["--locked", "--cache-dir", cache],
        );
        report["warnings"].to_string()
    };
    for out in ["cold", "warm"] {
        let warnings = warned(out);
        assert!(
            warnings.contains(
                "/usr/bin/tool (from source `tool`) is an ELF file for AArch64 (arm64), 64-bit little-endian, but the image is for linux/amd64"
            ),
            "{out} build: {warnings}"
        );
    }

    let (code, stderr) = run_err(
        cairn()
            .arg("build")
            .arg(&recipe)
            .args(["--locked", "--strict", "-o"])
            .arg(dir.path().join("strict")),
    );
    assert_eq!(code, 1);
    assert!(
        stderr.contains("1 file(s) of the image are ELF for another machine than its platform (refused with --strict)")
            && stderr.contains("/usr/bin/tool (from source `tool`)")
            && stderr.contains("help: build each file for the image's platform"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("strict/elf").exists(),
        "a refused build published a layout"
    );
}

#[test]
fn a_binary_for_the_platform_passes_strict_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = recipe(dir.path(), &elf_header(X86_64));
    let report = build_json(&recipe, &dir.path().join("out"), &["--locked", "--strict"]);
    assert_eq!(report["warnings"], serde_json::json!([]), "{report}");
}
