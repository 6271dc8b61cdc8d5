//! Fuzzes `cairn::fuzzing::recipe`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn::fuzzing::recipe(data));
