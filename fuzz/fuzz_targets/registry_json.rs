//! Fuzzes `cairn::fuzzing::registry_json`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn::fuzzing::registry_json(data));
