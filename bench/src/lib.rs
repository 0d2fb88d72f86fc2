//! Benchmarks of `dnsd` against the systems a user would pick instead, measured side by
//! side in one run: DNS throughput and cost per query (dnsperf against dnsd, Knot, NSD and
//! gdnsd), failover and failback time (dnsd against gdnsd's health checks, on lab hosts),
//! mirroring cost (dnsd's rsync pass against rsync run by hand, and the data lost at a
//! crash), the data-loss window against lsyncd, the controller's cost at scale, and several
//! terminal servers on etcd against one (failover, leader takeover, etcd's writes); and the
//! fault soak, which checks rather than measures (random faults under a real workload, then
//! a count of what was lost).
//!
//! These are measurements, not tests: nothing here asserts a time. Each benchmark prints
//! JSON lines on stdout (one per run or trial, then a summary) and a human summary on
//! stderr; the scripts in `bench/` build, run and plot them. See `docs/benchmarks.md`.

pub mod cluster;
pub mod daemon;
pub mod dataloss;
pub mod dns;
pub mod dnsq;
pub mod failover;
pub mod machine;
pub mod mirror;
pub mod procs;
pub mod report;
pub mod scale;
pub mod secondaries;
pub mod soak;
pub mod stats;
