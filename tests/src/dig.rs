//! `dig` and `kdig` for tests that must not fail on one slow answer: a query that times
//! out (a busy machine can hold a 1 s query past its deadline) is asked again, for at
//! most 30 s in all; any answer, refusals and errors from the server included, is
//! returned at once. Queries are idempotent, so asking again changes nothing.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long a query may keep timing out before its last output is returned.
const LIMIT: Duration = Duration::from_secs(30);

/// Whether `out` is a client's timeout rather than a server's answer.
fn timed_out(out: &str) -> bool {
    out.trim().is_empty()
        || out.contains("timed out")
        || out.contains("communications error")
        || out.contains("no servers could be reached")
}

fn retrying(mut query: impl FnMut() -> String) -> String {
    let deadline = Instant::now() + LIMIT;
    loop {
        let out = query();
        if !timed_out(&out) || Instant::now() >= deadline {
            return out;
        }
    }
}

/// `dig @server -p port ARGS` (1 s per try, see [`crate::harness::dig`]), asked again
/// while it times out.
pub fn dig(server: SocketAddr, args: &[&str]) -> String {
    retrying(|| crate::harness::dig(server, args))
}

/// The lines `dig +short NAME TYPE` prints (empty for NXDOMAIN or NODATA), asked again
/// while it times out.
pub fn dig_short(server: SocketAddr, name: &str, rtype: &str) -> Vec<String> {
    dig(server, &["+short", name, rtype])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with(';'))
        .map(str::to_owned)
        .collect()
}

/// `kdig @server -p port ARGS +time=5 +retry=0`, stdout and stderr together (kdig
/// reports a server's refusal on stderr), asked again while it times out.
pub fn kdig(server: SocketAddr, args: &[&str]) -> String {
    retrying(|| {
        let out = Command::new("kdig")
            .arg(format!("@{}", server.ip()))
            .arg("-p")
            .arg(server.port().to_string())
            .args(args)
            .args(["+time=5", "+retry=0"])
            .output();
        match out {
            Ok(o) => format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("cannot run kdig: {e}"),
        }
    })
}
