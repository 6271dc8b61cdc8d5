//! Messages a user sees on bad input, through the real binary: a recipe that is not
//! UTF-8 is reported where its first bad byte is, and an error in a huge inline value
//! shows a bounded snippet, not the value.

use crate::common::*;

#[test]
fn a_recipe_that_is_not_utf8_is_reported_at_its_first_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("latin1.yaml");
    std::fs::write(&path, b"cairn: 1\nname: caf\xe9\nlayers: []\n").unwrap();
    let (code, stderr) = run_err(cairn().arg("validate").arg(&path));
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("--> {}:2:10", path.display()))
            && stderr.contains("is not UTF-8: byte 0xe9 at line 2, column 10")
            && stderr.contains("2 | name: caf\n")
            && stderr.contains("help: save the recipe as UTF-8"),
        "{stderr}"
    );
}

#[test]
fn an_error_beside_a_huge_inline_value_shows_a_clipped_snippet() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let content = "x".repeat(8 << 20);
    std::fs::write(
        &path,
        format!(
            "cairn: 1\nname: huge\nlayers:\n  - name: a\n    contents:\n      - {{ file: /big, content: \"{content}\", bogus: 1 }}\n"
        ),
    )
    .unwrap();
    let (code, stderr) = run_err(cairn().arg("validate").arg(&path));
    assert_eq!(code, 1);
    assert!(
        stderr.contains("bogus"),
        "{}",
        &stderr[..stderr.len().min(2000)]
    );
    assert!(
        stderr.len() < 4096,
        "the error is {} bytes long; it should show a window of the line",
        stderr.len()
    );
    assert!(stderr.contains('…'), "{stderr}");
}
