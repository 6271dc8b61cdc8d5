//! Replays the fuzz corpora on stable: every file under `fuzz/corpus/<target>/` and
//! `fuzz/regressions/<target>/` goes through the `cairn::fuzzing` entry point of that
//! target, the same function the cargo-fuzz target calls. An input that once crashed,
//! hung or exhausted memory (kept under `fuzz/regressions/`) must now pass.

use std::path::Path;

#[test]
fn every_corpus_and_regression_input_passes_its_target() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut replayed = 0;
    for (target, run) in cairn::fuzzing::TARGETS {
        assert!(
            fuzz.join("fuzz_targets")
                .join(format!("{target}.rs"))
                .is_file(),
            "fuzz target `{target}` has no fuzz/fuzz_targets/{target}.rs"
        );
        let mut seeds = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(dir) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
                continue;
            };
            let mut inputs: Vec<_> = dir.map(|e| e.unwrap().path()).collect();
            inputs.sort();
            for input in inputs {
                let data = std::fs::read(&input).unwrap();
                let outcome = std::panic::catch_unwind(|| run(&data));
                assert!(
                    outcome.is_ok(),
                    "fuzz input {} fails target `{target}`",
                    input.display()
                );
                seeds += usize::from(kind == "corpus");
                replayed += 1;
            }
        }
        assert!(
            seeds > 0,
            "fuzz target `{target}` has no corpus in fuzz/corpus/{target}/"
        );
    }
    assert!(replayed >= cairn::fuzzing::TARGETS.len());
}
