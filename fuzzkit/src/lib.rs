//! The stable-Rust side of the fuzz targets under `fuzz/`: each target is one check,
//! `fn(&[u8])` that panics when a property fails, which `cargo fuzz` drives with
//! libFuzzer on nightly and `cargo test` drives here, with proptest, on stable.
//!
//! [`run`] feeds a check random bytes and mutations of the target's committed corpus
//! (bit flips, overwrites, insertions of the target's dictionary words, cuts, copies
//! and splices between seeds, the same kinds of edits libFuzzer makes), shrinks a
//! failing input to a minimal one and fails with it written as a byte string to paste
//! into a regression test. [`replay`] runs the check on every corpus file as it is.
//!
//! `cargo test` runs a few thousand cases per target, deterministically. Environment
//! variables make a longer session: `FUZZ_CASES` (cases per target), `FUZZ_SECONDS` (a
//! deadline per target, after which the remaining cases are skipped and not counted)
//! and `FUZZ_SEED` (another sequence of inputs). Each run prints its count on stderr.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};

/// Where the targets' corpora are committed: `fuzz/corpus/<target>/`, as `cargo fuzz`
/// expects them.
pub fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

/// Every file of `target`'s corpus, by name, in name order. Panics when there is none:
/// a target whose seeds went missing would otherwise only ever see random bytes.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the corpus {}: {e}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path = entry
                .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
                .path();
            let bytes = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", dir.display());
    files
}

/// Runs `check` on every file of `target`'s corpus; a failure names the file.
pub fn replay(target: &str, check: impl Fn(&[u8])) {
    for (name, bytes) in corpus(target) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
            panic!("{target}: corpus file {name} fails: {}", message(&*panic));
        }
    }
}

/// Random bytes, up to `max_len` of them.
pub fn bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..=max_len)
}

/// One edit of an input. Positions are [`Index`]es, taken modulo the input's length
/// when applied, so they stay valid whatever the edits before them did and shrink
/// towards the start.
#[derive(Debug, Clone)]
enum Edit {
    Flip {
        at: Index,
        bit: u8,
    },
    Set {
        at: Index,
        byte: u8,
    },
    Insert {
        at: Index,
        bytes: Vec<u8>,
    },
    Word {
        at: Index,
        word: Index,
        overwrite: bool,
    },
    Remove {
        at: Index,
        len: usize,
    },
    Truncate {
        at: Index,
    },
    Copy {
        from: Index,
        len: usize,
        to: Index,
    },
    Splice {
        seed: Index,
        from: Index,
        len: usize,
        to: Index,
    },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        1 => (any::<Index>(), vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        3 => (any::<Index>(), any::<Index>(), any::<bool>())
            .prop_map(|(at, word, overwrite)| Edit::Word { at, word, overwrite }),
        1 => (any::<Index>(), 1usize..16).prop_map(|(at, len)| Edit::Remove { at, len }),
        1 => any::<Index>().prop_map(|at| Edit::Truncate { at }),
        1 => (any::<Index>(), 1usize..32, any::<Index>())
            .prop_map(|(from, len, to)| Edit::Copy { from, len, to }),
        1 => (any::<Index>(), any::<Index>(), 1usize..64, any::<Index>())
            .prop_map(|(seed, from, len, to)| Edit::Splice { seed, from, len, to }),
    ]
}

/// Applies `edits` to `input`, in order; `seeds` and `words` are what splices and word
/// insertions draw from.
fn apply(mut input: Vec<u8>, edits: &[Edit], seeds: &[Vec<u8>], words: &[&[u8]]) -> Vec<u8> {
    // A position in 0..=len (an insertion point) and in 0..len (a byte; None if empty).
    let point = |at: &Index, len: usize| at.index(len + 1);
    let byte = |at: &Index, len: usize| (len > 0).then(|| at.index(len));
    for edit in edits {
        let len = input.len();
        match edit {
            Edit::Flip { at, bit } => {
                if let Some(i) = byte(at, len) {
                    input[i] ^= 1 << bit;
                }
            }
            Edit::Set { at, byte: b } => {
                if let Some(i) = byte(at, len) {
                    input[i] = *b;
                }
            }
            Edit::Insert { at, bytes } => {
                let i = point(at, len);
                input.splice(i..i, bytes.iter().copied());
            }
            Edit::Word {
                at,
                word,
                overwrite,
            } => {
                if words.is_empty() {
                    continue;
                }
                let w = words[word.index(words.len())];
                let i = point(at, len);
                let end = if *overwrite {
                    (i + w.len()).min(len)
                } else {
                    i
                };
                input.splice(i..end, w.iter().copied());
            }
            Edit::Remove { at, len: n } => {
                let i = point(at, len);
                input.drain(i..(i + n).min(len));
            }
            Edit::Truncate { at } => input.truncate(point(at, len)),
            Edit::Copy { from, len: n, to } => {
                if let Some(i) = byte(from, len) {
                    let piece = input[i..(i + n).min(len)].to_vec();
                    let j = point(to, len);
                    input.splice(j..j, piece);
                }
            }
            Edit::Splice {
                seed,
                from,
                len: n,
                to,
            } => {
                let other = &seeds[seed.index(seeds.len())];
                if let Some(i) = byte(from, other.len()) {
                    let j = point(to, len);
                    input.splice(j..j, other[i..(i + n).min(other.len())].iter().copied());
                }
            }
        }
    }
    input
}

/// A seed (one of `seeds`) with up to 8 edits, drawing inserted words from `words`: the
/// target's own tokens (markers, field names, interesting numbers).
pub fn mutations(
    seeds: Vec<Vec<u8>>,
    words: &'static [&'static [u8]],
) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "mutations need at least one seed");
    (any::<Index>(), vec(edit(), 0..=8)).prop_map(move |(seed, edits)| {
        let start = seeds[seed.index(seeds.len())].clone();
        apply(start, &edits, &seeds, words)
    })
}

/// What a target's corpus mutates into, and sometimes random bytes: the usual input of
/// [`run`]. The corpus files are the seeds.
pub fn corpus_mutations(
    target: &str,
    words: &'static [&'static [u8]],
    max_random: usize,
) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target).into_iter().map(|(_, bytes)| bytes).collect();
    prop_oneof![1 => bytes(max_random), 4 => mutations(seeds, words)]
}

/// How long and from where a run goes, from the environment (see the crate's doc).
#[derive(Debug, Clone, Copy)]
struct Settings {
    cases: u32,
    deadline: Option<Duration>,
    seed: u64,
}

impl Settings {
    fn from_env(target: &str, default_cases: u32) -> Settings {
        let var = |name: &str| -> Option<u64> {
            let text = std::env::var(name).ok()?;
            Some(
                text.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={text:?} is not a whole number")),
            )
        };
        // By default each target has its own fixed sequence: CI is reproducible.
        let named = target.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        });
        Settings {
            cases: var("FUZZ_CASES")
                .map_or(default_cases, |n| u32::try_from(n).unwrap_or(u32::MAX)),
            deadline: var("FUZZ_SECONDS").map(Duration::from_secs),
            seed: var("FUZZ_SEED").map_or(named, |s| s ^ named),
        }
    }
}

/// Runs `check` on `default_cases` inputs from `inputs` (or as the environment says),
/// then prints how many ran. A failing input is shrunk, and the run fails with it.
pub fn run(
    target: &str,
    default_cases: u32,
    inputs: impl Strategy<Value = Vec<u8>>,
    check: impl Fn(&[u8]),
) {
    let settings = Settings::from_env(target, default_cases);
    let config = Config {
        cases: settings.cases,
        failure_persistence: None,
        // Shrinking a failure is bounded too (it runs the check many times).
        max_shrink_time: 60_000,
        ..Config::default()
    };
    let rng = TestRng::from_seed(RngAlgorithm::XorShift, &seed_bytes(settings.seed));
    let mut runner = TestRunner::new_with_rng(config, rng);
    let start = Instant::now();
    let ran = std::cell::Cell::new(0u64);
    let result = runner.run(&inputs, |input| {
        if settings.deadline.is_some_and(|d| start.elapsed() >= d) {
            return Ok(());
        }
        ran.set(ran.get() + 1);
        catch_unwind(AssertUnwindSafe(|| check(&input)))
            .map_err(|panic| TestCaseError::fail(message(&*panic)))
    });
    eprintln!(
        "fuzz {target}: {} cases in {:.2}s (seed {})",
        ran.get(),
        start.elapsed().as_secs_f64(),
        settings.seed
    );
    match result {
        Ok(()) => {}
        Err(TestError::Fail(reason, input)) => {
            let input = minimise(input, &check);
            panic!(
                "fuzz {target} failed (seed {}): {reason}\nminimal input, {} bytes: b\"{}\"",
                settings.seed,
                input.len(),
                escape(&input)
            )
        }
        Err(TestError::Abort(reason)) => panic!("fuzz {target} aborted: {reason}"),
    }
}

/// Shrinks a failing `input` further than proptest can (it only simplifies the edits,
/// never the seed they were made to): removes ever smaller pieces while the check still
/// fails, for at most 30 seconds, like `cargo fuzz tmin`. Any panic counts as failing.
fn minimise(mut input: Vec<u8>, check: &impl Fn(&[u8])) -> Vec<u8> {
    let start = Instant::now();
    // The panics on the way are expected: keep them off stderr while shrinking.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let fails = |candidate: &[u8]| catch_unwind(AssertUnwindSafe(|| check(candidate))).is_err();
    let mut piece = input.len().div_ceil(2);
    while piece > 0 && start.elapsed() < Duration::from_secs(30) {
        let mut at = 0;
        while at < input.len() && start.elapsed() < Duration::from_secs(30) {
            let mut candidate = input.clone();
            candidate.drain(at..(at + piece).min(input.len()));
            if fails(&candidate) {
                input = candidate;
            } else {
                at += piece;
            }
        }
        piece /= 2;
    }
    std::panic::set_hook(hook);
    input
}

fn seed_bytes(seed: u64) -> [u8; 16] {
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    bytes
}

/// `bytes` as the inside of a Rust byte string literal.
pub fn escape(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect()
}

/// The text of a panic's payload.
fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::ValueTree as _;

    #[test]
    fn edits_stay_in_bounds_and_words_land_whole() {
        let seeds = vec![b"abc".to_vec(), Vec::new()];
        let mut runner = TestRunner::deterministic();
        let strategy = (
            vec(edit(), 0..=16),
            any::<Index>(),
            any::<Index>(),
            any::<bool>(),
        );
        for _ in 0..2000 {
            let (edits, pick, at, overwrite) = strategy.new_tree(&mut runner).unwrap().current();
            // Applying never panics, from either seed, with or without words.
            let start = seeds[pick.index(2)].clone();
            apply(start.clone(), &edits, &seeds, &[]);
            apply(start.clone(), &edits, &seeds, &[b"WORD"]);
            // A word lands whole, whether it is inserted or overwrites.
            let word = Edit::Word {
                at,
                word: pick,
                overwrite,
            };
            let out = apply(start, &[word], &seeds, &[b"XY"]);
            assert!(out.windows(2).any(|w| w == b"XY"), "{out:?}");
        }
    }

    #[test]
    fn a_failing_check_is_shrunk_and_reported_as_a_byte_string() {
        let failure = catch_unwind(|| {
            run("selftest", 500, bytes(64), |b| {
                assert!(!b.contains(&b'\n'), "a newline");
            });
        })
        .expect_err("random bytes contain a newline within 500 cases");
        let text = message(&*failure);
        assert!(text.contains("a newline"), "{text}");
        assert!(
            text.contains("minimal input, 1 bytes: b\"\\n\""),
            "shrunk to the one byte that matters: {text}"
        );
    }

    #[test]
    fn settings_default_to_a_fixed_sequence_per_target() {
        let a = Settings::from_env("a", 10);
        assert_eq!(a.seed, Settings::from_env("a", 10).seed);
        assert_ne!(a.seed, Settings::from_env("b", 10).seed);
    }
}
