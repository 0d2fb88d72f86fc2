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

/// The cluster soak: the same workload and checker against three terminal servers on one
/// real etcd (each dnsd in a lab host of its own, the clients resolving through any of
/// them), with about twenty faults drawn from a fixed seed that include kill -9 of a
/// terminal server (restarted on its folder when the fault ends) and a terminal server cut
/// from etcd. Besides the data, the checker asserts that terminal servers in touch with
/// etcd never named different primaries for longer than the lease plus one watch, and
/// that none exited or panicked but those the soak killed.
#[test]
fn a_short_seeded_cluster_soak_loses_no_acknowledged_write() {
    let test = "a_short_seeded_cluster_soak_loses_no_acknowledged_write";
    let cluster = soak::ClusterOptions::new();
    let options = Options {
        duration: Duration::from_secs(150),
        settle_timeout: Duration::from_secs(150),
        mix: soak::plan::Mix::cluster(),
        cluster: Some(cluster),
        ..Options::new(
            CLUSTER_SEED,
            20,
            binary("dnsd").unwrap(),
            binary("dnsd-bench").unwrap(),
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
        )
    };
    if !integration::harness::require_tools(test, &["etcd"]) {
        return;
    }
    let Some(lab) = Lab::require(test, soak::lab_options(&options)) else {
        return;
    };
    let dir = tempfile::Builder::new()
        .prefix("dnsd-csoak-it-")
        .tempdir_in("/tmp")
        .unwrap();
    let record = dir.path().join("soak.jsonl");
    let out = Reporter::file_only(&record).unwrap();
    let verdict = soak::run(&lab, &options, dir.path(), &out).unwrap();
    // The faults that only a cluster has were injected (the seed's plan has them early).
    let text = std::fs::read_to_string(&record).unwrap();
    let applied = |kind: &str| {
        text.lines()
            .filter(|l| l.contains(r#""type":"fault""#) && l.contains(r#""result":"applied""#))
            .any(|l| l.contains(&format!(r#""kind":"{kind}""#)))
    };
    let broken = verdict.violations();
    if !broken.is_empty() || !applied("kill_ts") || !applied("etcd_partition") {
        let kept = dir.keep();
        let broken: Vec<String> = broken.iter().map(ToString::to_string).collect();
        panic!(
            "the cluster soak (seed {}) broke:\n- {}\nkill_ts applied: {}, etcd_partition applied: {}\nits record, the terminal servers' logs and the acknowledgements are in {}",
            options.seed,
            broken.join("\n- "),
            applied("kill_ts"),
            applied("etcd_partition"),
            kept.display()
        );
    }
    assert!(verdict.acknowledged > 0, "no write was acknowledged");
}

/// The cluster soak's seed: its plan kills a terminal server and cuts one from etcd among
/// its first twenty faults.
const CLUSTER_SEED: u64 = 16;
