//! `cargo +nightly fuzz run config_text`: libFuzzer drives [`dnsd::fuzz::config_text`], the check whose
//! properties its doc lists; `cargo test` runs the same check on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsd::fuzz::config_text(data));
