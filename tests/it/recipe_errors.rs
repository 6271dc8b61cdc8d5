//! Error quality, reviewed like code: every `fixtures/errors/<case>.yaml` is a bad
//! recipe (its first line says what is wrong), and its rendered diagnostic is kept as
//! a snapshot in `tests/it/snapshots/`. A fixture that parses fails the test.

use cairn::recipe;
use std::path::PathBuf;

#[test]
fn every_bad_recipe_gets_a_clear_diagnostic() {
    insta::glob!("../../fixtures/errors", "*.yaml", |fixture| {
        let name = fixture.file_name().expect("glob yields files");
        // Load by the relative path a user would type, so snapshots are portable.
        let path = PathBuf::from("fixtures/errors").join(name);
        let diagnostic = match recipe::load(&path) {
            Ok(_) => panic!("{} parsed, but it is a bad recipe", path.display()),
            Err(diagnostic) => diagnostic,
        };
        insta::assert_snapshot!(cairn::diag::Report::of(&diagnostic).to_string());
    });
}
