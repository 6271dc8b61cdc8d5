//! Fuzzes `cairn::fuzzing::authenticode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn::fuzzing::authenticode(data));
