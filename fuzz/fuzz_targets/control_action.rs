//! `cargo +nightly fuzz run control_action`: libFuzzer drives [`dnsd::fuzz::control_action`], the check whose
//! properties its doc lists; `cargo test` runs the same check on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsd::fuzz::control_action(data));
