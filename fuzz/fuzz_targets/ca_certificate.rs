//! Fuzzes `cairn::fuzzing::ca_certificate`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cairn::fuzzing::ca_certificate(data));
