//! Fuzzes `cairn::fuzzing::dsse`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn::fuzzing::dsse(data));
