//! Fuzzes `cairn::fuzzing::debian_index`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn::fuzzing::debian_index(data));
