//! Fuzzes `cairn::fuzzing::ld_so_cache`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn::fuzzing::ld_so_cache(data));
