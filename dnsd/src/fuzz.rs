//! The checks the fuzz targets under `fuzz/` run, one `fn(&[u8])` each, panicking when a
//! property fails: built with the `fuzzing` feature for `cargo fuzz` (nightly, libFuzzer)
//! and in `cargo test`, where the property tests of each run it on stable (see the
//! `fuzzkit` crate). The DNS and control API checks live beside the code they reach
//! into; the configuration loader's is here.
//!
//! `config_text`: the input is a configuration file, then, after a NUL byte, `DNSD_*`
//! overrides as `KEY=VALUE` separated by NUL bytes. Whatever it holds, the loader reports
//! problems (each with its key path and a message) and never panics, and a configuration
//! it accepts starts: the controller's topology, the controller and the zone snapshot
//! build from it.

pub use crate::control::fuzz::control_action;
pub use crate::dns::fuzz::dns_request;

use crate::config::{ParseFailure, Problem, parse};
use crate::controller::Controller;
use crate::dns::Snapshot;

/// Checks one input of `config_text`; panics when a property fails.
pub fn config_text(bytes: &[u8]) {
    let (text, env) = config_input(bytes);
    match parse(&text, env) {
        Err(ParseFailure::Syntax(message)) => assert!(!message.is_empty()),
        Err(ParseFailure::Problems(problems)) => check_problems(&problems),
        Ok(raw) => match raw.validate() {
            Err(problems) => check_problems(&problems),
            Ok(config) => {
                for warning in config.warnings() {
                    check_problems(&[warning]);
                }
                let (controller, _) = Controller::new(&crate::pool::topology(&config), None, 0);
                let zone = crate::pool::build_zone(&config, &controller).unwrap_or_else(|e| {
                    panic!("a valid configuration whose zone does not build: {e}")
                });
                Snapshot::new(zone);
            }
        },
    }
}

/// The text and the environment an input stands for.
fn config_input(bytes: &[u8]) -> (String, Vec<(String, String)>) {
    let mut parts = bytes.split(|&b| b == 0);
    let text = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let env = parts
        .filter(|p| !p.is_empty())
        .map(|p| {
            let p = String::from_utf8_lossy(p);
            let (key, value) = p.split_once('=').unwrap_or((&p, ""));
            (key.to_owned(), value.to_owned())
        })
        .collect();
    (text, env)
}

fn check_problems(problems: &[Problem]) {
    assert!(!problems.is_empty(), "refused without a problem");
    for p in problems {
        assert!(
            !p.path.is_empty() && !p.message.is_empty(),
            "a problem without a key path or a message: {p:?}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces of configurations, for the mutations to insert.
    const WORDS: &[&[u8]] = &[
        b"[dns]\n",
        b"[heartbeat]\n",
        b"[control]\n",
        b"[state]\n",
        b"[mirror]\n",
        b"[cluster]\n",
        b"[[node]]\n",
        b"[[service]]\n",
        b"[service.check]\n",
        b"\n",
        b" = ",
        b"\"",
        b"'",
        b"[]",
        b"{}",
        b"true",
        b"0",
        b"-1",
        b"4294967296",
        b"18446744073709551616",
        b"1e308",
        b"\"\"",
        b"\"0s\"",
        b"\"1ns\"",
        b"\"18446744073709551615s\"",
        b"\"999999999999999d\"",
        b"\"::\"",
        b"\"0.0.0.0/0\"",
        b"\"127.0.0.1:0\"",
        b"\"[::1]:53\"",
        b"\".\"",
        b"\"a..b.\"",
        b"nodes = [\"app1\", \"app1\"]\n",
        b"paths = [\"/\"]\n",
        b"failback_after = ",
        b"max_lag = ",
        b"interval = ",
        b"timeout = ",
        b"fall = ",
        b"rise = ",
        b"ttl = ",
        b"negative_ttl = ",
        b"zone = ",
        b"threads = ",
        b"\x00DNSD_HEARTBEAT__INTERVAL=",
        b"\x00DNSD_HEARTBEAT__FALL=",
        b"\x00DNSD_DNS__LISTEN=",
        b"\x00DNSD_DNS__THREADS=",
        b"\x00DNSD_DNS__ZONE=",
        b"\x00DNSD_CONTROL__TCP=",
        b"\x00DNSD_NODE=",
        b"\x00DNSD_=",
        b"\x00DNSD___=",
    ];

    /// The corpus and every example under `etc/`.
    fn seeds() -> Vec<Vec<u8>> {
        let etc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc");
        let examples = std::fs::read_dir(&etc)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .map(|p| std::fs::read(p).unwrap());
        let corpus = fuzzkit::corpus("config_text").into_iter().map(|(_, b)| b);
        corpus.chain(examples).collect()
    }

    #[test]
    fn config_text_holds_for_mutated_examples_and_random_bytes() {
        use proptest::prelude::*;
        let inputs = prop_oneof![
            1 => fuzzkit::bytes(200),
            6 => fuzzkit::mutations(seeds(), WORDS),
        ];
        fuzzkit::run("config_text", 1_500, inputs, config_text);
    }

    #[test]
    fn config_text_holds_for_the_corpus_and_the_examples() {
        fuzzkit::replay("config_text", config_text);
        for example in seeds() {
            config_text(&example);
        }
    }

    /// Found by `config_text`: an empty key, in the file or as `DNSD_=`, was refused with
    /// an empty key path (the problem read ": unknown key").
    #[test]
    fn fuzz_an_empty_key_is_named_in_its_problem() {
        let problems = |input: &[u8]| -> Vec<String> {
            let (text, env) = config_input(input);
            match parse(&text, env) {
                Err(ParseFailure::Problems(p)) => p.iter().map(ToString::to_string).collect(),
                other => panic!("{other:?}"),
            }
        };
        let minimal: &[u8] = b"\x00DNSD_=";
        assert!(problems(minimal).contains(&r#""": unknown key"#.to_owned()));
        assert!(
            problems(b"\"\" = 1\n[dns]\n\"\" = 2\n").contains(&r#"dns."": unknown key"#.to_owned())
        );
        config_text(minimal);
    }

    /// Found by `config_text`: with a `[cluster]`, a heartbeat interval over half the
    /// longest duration overflowed while the lease was compared with two of them.
    #[test]
    fn fuzz_a_heartbeat_interval_too_long_to_double_is_a_problem() {
        let text = std::fs::read_to_string(fuzzkit::corpus_dir("config_text").join("minimal"))
            .unwrap()
            .replace("interval = \"500ms\"", "interval = \"300000000000y\"")
            + "[cluster]\nname = \"ts1\"\netcd = [\"http://127.0.0.1:2379\"]\n";
        let problems = parse(&text, []).unwrap().validate().unwrap_err();
        assert!(
            problems.iter().any(|p| p.path == "cluster.lease"
                && p.message
                    .contains("is shorter than two heartbeat intervals")),
            "{problems:?}"
        );
        config_text(text.as_bytes());
    }

    #[test]
    fn overrides_follow_the_first_nul_byte() {
        let (text, env) = config_input(b"[dns]\0DNSD_A=1=2\0DNSD_B\0");
        assert_eq!(text, "[dns]");
        assert_eq!(
            env,
            [("DNSD_A", "1=2"), ("DNSD_B", "")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
    }
}
