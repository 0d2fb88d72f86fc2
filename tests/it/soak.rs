//! The short seeded soak (issue 15): twenty faults drawn from a fixed seed (crashes,
//! partitions, cut and slow links, the operator's moves) against the real dnsd on lab
//! hosts, under a real workload, then the checker (bench/src/soak/check.rs). It asserts
//! data, never time: what was acknowledged must be in the final primary's data or in a
//! kept folder dnsd reported, no two members may accept writes at once, dnsd must not
//! crash and must settle once the faults are healed.

use std::path::PathBuf;
use std::time::Duration;

use bench::report::Reporter;
use bench::soak::{self, Options};
use integration::harness::binary;
use integration::lab::{Lab, LabOptions};

#[test]
fn a_short_seeded_soak_loses_no_acknowledged_write() {
    let test = "a_short_seeded_soak_loses_no_acknowledged_write";
    let Some(lab) = Lab::require(test, LabOptions::new(4)) else {
        return;
    };
    // Under /tmp: the hooks in it run on the members, which see the same /tmp.
    let dir = tempfile::Builder::new()
        .prefix("dnsd-soak-it-")
        .tempdir_in("/tmp")
        .unwrap();
    let options = Options {
        duration: Duration::from_secs(150),
        settle_timeout: Duration::from_secs(150),
        ..Options::new(
            15,
            20,
            binary("dnsd").unwrap(),
            binary("dnsd-bench").unwrap(),
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
        )
    };
    let record = dir.path().join("soak.jsonl");
    let out = Reporter::file_only(&record).unwrap();
    let verdict = soak::run(&lab, &options, dir.path(), &out).unwrap();
    let broken = verdict.violations();
    if !broken.is_empty() {
        // Kept for the diagnosis: the record, dnsd's log and events, every acknowledgement.
        let kept = dir.keep();
        let broken: Vec<String> = broken.iter().map(ToString::to_string).collect();
        panic!(
            "the soak (seed {}) broke:\n- {}\nits record, dnsd's log and the acknowledgements are in {}",
            options.seed,
            broken.join("\n- "),
            kept.display()
        );
    }
}
