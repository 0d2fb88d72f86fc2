//! `cargo +nightly fuzz run dns_request`: libFuzzer drives [`dnsd::fuzz::dns_request`], the check whose
//! properties its doc lists; `cargo test` runs the same check on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dnsd::fuzz::dns_request(data));
