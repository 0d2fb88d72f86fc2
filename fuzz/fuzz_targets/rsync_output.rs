//! `cargo +nightly fuzz run rsync_output`: libFuzzer drives [`rsync_sync::rsync::fuzz::rsync_output`], the check whose
//! properties its doc lists; `cargo test` runs the same check on stable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rsync_sync::rsync::fuzz::rsync_output(data));
