//! The real `console` binary: its scriptable commands against a real `dnsd` on loopback
//! (exit codes, `--socket` before and after the subcommand, `--url` with TLS and a token), its
//! TUI driven in tmux against `dnsd` on lab hosts (crash, failover, `b` + `y` for the
//! failback), the headless demo (DNS, failover, mirroring, clean stop), and the headless
//! cluster demo (etcd and three terminal servers: the leader killed, another leads and
//! decides, every live one answers DNS, everything stopped on quit).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dnsd_api::{Health, Status};
use integration::harness::{
    Dnsd, EchoPool, binary, dig_short, loopback_addr, require_tools, runtime, wait_for,
};
use integration::lab::{Lab, LabOptions};

use crate::lab_failover::lab_config;

/// Runs `console ARGS` with stdin closed and returns what it did.
fn console(args: &[&str]) -> Output {
    Command::new(binary("console").unwrap())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A pool of three echo services on loopback and dnsd on them, with the control API on
/// the Unix socket and on TCP with a token.
struct Loopback {
    dnsd: Dnsd,
    dir: tempfile::TempDir,
    _pool: EchoPool,
}

impl Loopback {
    fn start() -> Loopback {
        let dir = tempfile::tempdir().unwrap();
        let pool = EchoPool::start(3).unwrap();
        let (port, nodes) = (pool.port, pool.node_tables());
        let token = dir.path().join("token");
        std::fs::write(&token, "console-test-token-0123456789\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pki = integration::tls::TestPki::create(&dir.path().join("pki")).unwrap();
        let config = format!(
            r#"
[dns]
listen = ["127.0.0.1:0"]
zone = "svc.test."
nameservers = [{{ name = "ns1.svc.test.", address = "127.0.0.1" }}]
[heartbeat]
port = {port}
interval = "200ms"
timeout = "150ms"
fall = 3
rise = 2
[control]
socket = "{dir}/control.sock"
tcp = "127.0.0.1:0"
token_file = "{token}"
tls_cert = "{cert}"
tls_key = "{key}"
[state]
dir = "{dir}/state"
{nodes}
[[service]]
name = "www"
nodes = ["app1", "app2", "app3"]
"#,
            dir = dir.path().display(),
            token = token.display(),
            cert = pki.cert.display(),
            key = pki.key.display(),
        );
        let dnsd = Dnsd::start(dir.path(), &config, &[]).unwrap();
        let lb = Loopback {
            dnsd,
            dir,
            _pool: pool,
        };
        lb.wait("every member up", |s| {
            s.nodes.iter().all(|n| n.health == Health::Up)
        });
        lb
    }

    fn socket(&self) -> String {
        self.dnsd
            .ready()
            .control
            .clone()
            .unwrap()
            .display()
            .to_string()
    }

    fn status(&self) -> Status {
        runtime().block_on(self.dnsd.client().status()).unwrap()
    }

    fn wait(&self, what: &str, f: impl Fn(&Status) -> bool) {
        let done = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            f(&self.status()).then_some(())
        });
        assert!(
            done.is_some(),
            "{what} did not happen; dnsd log:\n{}",
            self.dnsd.log()
        );
    }
}

#[test]
fn scriptable_commands_against_a_real_dnsd() {
    let lb = Loopback::start();
    let sock = lb.socket();

    // status --json parses as the API's Status, with --socket before or after.
    let out = console(&["--socket", &sock, "status", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status.service("www").unwrap().primary, "app1");
    let out = console(&["status", "--socket", &sock]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("service www (www.svc.test.): primary app1, epoch 1"),
        "{table}"
    );
    assert!(table.contains("app2") && table.contains("next"), "{table}");

    // Without a terminal, a primary move needs --yes (usage, exit 2) and sends nothing.
    let out = console(&["--socket", &sock, "promote", "app2"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("confirm with --yes"));
    assert_eq!(lb.status().service("www").unwrap().primary, "app1");

    // Accepted: exit 0 with dnsd's message; the primary moves.
    let out = console(&["promote", "app2", "--yes", "--socket", &sock]);
    assert!(
        out.status.success(),
        "promote refused: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("app2"), "{}", text(&out.stdout));
    lb.wait("app2 primary", |s| {
        s.service("www").unwrap().primary == "app2"
    });

    // Refused: exit 3 and the daemon's reason on stderr.
    let out = console(&["--socket", &sock, "maintenance", "app2", "on"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("dnsd refused maintenance app2 on") && err.contains("is the primary of www"),
        "{err}"
    );

    // Actions that do not move a primary need no --yes.
    let out = console(&["--socket", &sock, "maintenance", "app3", "on"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    lb.wait("app3 in maintenance", |s| {
        s.node("app3").unwrap().maintenance
    });
    let out = console(&["--socket", &sock, "pause", "--service", "www"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = console(&["--socket", &sock, "pause", "--service", "www"]);
    assert_eq!(out.status.code(), Some(3), "pausing twice is refused");
    assert!(text(&out.stderr).contains("already paused"));

    // The event log names what happened and who did it.
    let out = console(&["events", "--socket", &sock]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stdout);
    assert!(log.contains(" promotion [www app1->app2 epoch 2]"), "{log}");
    assert!(log.contains("operator promotion from console "), "{log}");

    // reload: the unchanged file is taken (exit 0, dnsd's message); a broken one is
    // refused (exit 3, dnsd's reasons) and dnsd keeps running on what it had.
    let out = console(&["--socket", &sock, "reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("nothing changed"),
        "{}",
        text(&out.stdout)
    );
    let file = lb.dir.path().join("dnsd.toml");
    let good = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        good.replace("interval = \"200ms\"", "interval = \"soon\""),
    )
    .unwrap();
    let out = console(&["reload", "--socket", &sock]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("dnsd refused reload: reload refused, dnsd keeps its configuration"),
        "{err}"
    );
    std::fs::write(&file, good).unwrap();
    assert_eq!(lb.status().service("www").unwrap().primary, "app2");

    // The TCP API with its token, through --url (TLS, with the test CA).
    let tcp = lb.dnsd.ready().control_tcp.unwrap();
    let token = lb.dir.path().join("token");
    let ca = lb.dir.path().join("pki/ca.pem");
    let url = format!("https://{tcp}");
    let out = console(&[
        "status",
        "--json",
        "--url",
        &url,
        "--token-file",
        token.to_str().unwrap(),
        "--ca-file",
        ca.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: Status = serde_json::from_slice(&out.stdout).unwrap();
    assert!(status.service("www").unwrap().paused);

    // Nobody there: exit 1 with the reason.
    let missing = lb.dir.path().join("nobody.sock");
    let out = console(&["status", "--socket", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot reach dnsd"),
        "{}",
        text(&out.stderr)
    );
}

/// A tmux server of our own (its own socket, a unique name), killed when dropped, even
/// when the test fails.
struct Tmux {
    name: String,
}

impl Tmux {
    fn start(command: &[&str], width: u16, height: u16) -> Tmux {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "dnsd-console-it-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("tmux")
            .args(["-L", &name, "new-session", "-d", "-s", &name])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg("--")
            .args(command)
            .env("TERM", "xterm-256color")
            .status()
            .unwrap();
        assert!(status.success(), "tmux new-session failed");
        Tmux { name }
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.name, "capture-pane", "-p", "-t", &self.name])
            .output()
            .unwrap();
        text(&out.stdout)
    }

    /// Whether the session still exists (its command is still running).
    fn alive(&self) -> bool {
        Command::new("tmux")
            .args(["-L", &self.name, "has-session", "-t", &self.name])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn keys(&self, keys: &str) {
        let status = Command::new("tmux")
            .args(["-L", &self.name, "send-keys", "-t", &self.name, keys])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Captures the pane until `f` holds; panics with the last screen otherwise.
    fn wait(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&str) -> bool,
        log: &dyn Fn() -> String,
    ) {
        let done = wait_for(timeout, Duration::from_millis(200), || {
            f(&self.screen()).then_some(())
        });
        if done.is_none() {
            panic!(
                "{what}: not on screen within {timeout:?}; screen:\n{}\ndnsd log:\n{}",
                self.screen(),
                log()
            );
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.name, "kill-server"])
            .status();
    }
}

#[test]
fn tui_in_tmux_shows_a_failover_and_fails_back_on_b() {
    let test = "tui_in_tmux_shows_a_failover_and_fails_back_on_b";
    if !require_tools(test, &["tmux"]) {
        return;
    }
    let Some(lab) = Lab::require(test, LabOptions::new(3).data_size_mib(64)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = lab.client_key();
    let kh = lab.known_hosts();
    let mirror = format!(
        "[mirror]\ninterval = \"1s\"\nidentity = \"{key}\"\nknown_hosts = \"{kh}\"\npeer_identity = \"{key}\"\npeer_known_hosts = \"{kh}\"\nconnect_timeout = \"3s\"\nio_timeout = \"20s\"\nkeepalive = \"2s\"\n",
        key = key.display(),
        kh = kh.display()
    );
    let heartbeat = "protocol = \"tcp\"\nport = 7\ninterval = \"200ms\"\ntimeout = \"150ms\"\nfall = 3\nrise = 2";
    let mut cfg = lab_config(&lab, dir.path(), heartbeat, &mirror);
    // Round-robin: the failover below goes to h2, the next in order (under "freshest" it
    // would go to whichever of h2 and h3 last completed a later pass).
    cfg.push_str("paths = [\"/srv/data\"]\nfailback = \"manual\"\nelection = \"round-robin\"\n");
    let dnsd = Dnsd::start(dir.path(), &cfg, &[]).unwrap();
    let rt = runtime();
    let client = dnsd.client();
    let status = || rt.block_on(client.status()).unwrap();
    let log = || dnsd.log();
    let hosts = lab.hosts();
    let (h1, h2) = (hosts[0].name.clone(), hosts[1].name.clone());

    let socket = dnsd.ready().control.clone().unwrap();
    let bin = binary("console").unwrap();
    let tmux = Tmux::start(
        &[bin.to_str().unwrap(), "--socket", socket.to_str().unwrap()],
        120,
        40,
    );
    let primary_is = |name: &str| {
        let needle = format!("www  primary {name} ");
        move |screen: &str| screen.contains(&needle)
    };
    tmux.wait("h1 primary", Duration::from_secs(30), primary_is(&h1), &log);
    // Wait until every secondary has synced once and could be promoted, so that the
    // failover goes to h2, the next in order (`next` alone is set once any one is).
    let synced = wait_for(Duration::from_secs(60), Duration::from_millis(100), || {
        let s = status();
        let www = s.service("www")?;
        www.members
            .iter()
            .filter(|m| m.node != www.primary)
            .all(|m| m.eligible)
            .then_some(())
    });
    assert!(synced.is_some(), "no member ever eligible; log:\n{}", log());

    lab.crash(&hosts[0]).unwrap();
    tmux.wait(
        "h2 primary after h1 crashed",
        Duration::from_secs(30),
        primary_is(&h2),
        &log,
    );
    tmux.wait(
        "the failover in the event log",
        Duration::from_secs(10),
        |s| s.contains("failover") && s.contains(&format!("{h1}→{h2}")),
        &log,
    );

    lab.revive(&hosts[0]).unwrap();
    let eligible = wait_for(Duration::from_secs(90), Duration::from_millis(100), || {
        status().service("www")?.member(&h1)?.eligible.then_some(())
    });
    assert!(
        eligible.is_some(),
        "h1 never eligible again; log:\n{}",
        log()
    );
    // Manual failback: h1 is not taken back on its own.
    assert_eq!(status().service("www").unwrap().primary, h2);

    tmux.keys("b");
    let question = format!("Give www back to its preferred member {h1}?");
    tmux.wait(
        "the confirmation",
        Duration::from_secs(10),
        |s| s.contains(&question) && s.contains("[y/N]"),
        &log,
    );
    tmux.keys("y");
    tmux.wait(
        "h1 primary again",
        Duration::from_secs(60),
        primary_is(&h1),
        &log,
    );
    assert_eq!(status().service("www").unwrap().primary, h1);
    tmux.wait(
        "the failback in the event log",
        Duration::from_secs(10),
        |s| s.contains("failback") && s.contains(&format!("{h2}→{h1}")),
        &log,
    );
    // q quits: the console exits, its pane closes and the tmux server with it.
    tmux.keys("q");
    let gone = wait_for(Duration::from_secs(10), Duration::from_millis(100), || {
        (!tmux.alive()).then_some(())
    });
    assert!(
        gone.is_some(),
        "the console did not quit on q:\n{}",
        tmux.screen()
    );
}

/// A headless demo process: stdin for commands, stdout lines on a channel. Stopped
/// (SIGTERM, then SIGKILL) when dropped.
struct DemoProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl DemoProcess {
    fn start(dir: &Path, addrs: &[IpAddr], extra: &[&str]) -> DemoProcess {
        let addresses: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        let mut child = Command::new(binary("console").unwrap())
            .args(["demo", "--no-tui", "--dns", "127.0.0.1:0", "--dir"])
            .arg(dir)
            .args(["--addresses", &addresses.join(",")])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        DemoProcess {
            stdin: child.stdin.take(),
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The next stdout line that starts with `prefix`.
    fn line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line starting with {prefix:?}; output so far:\n{}",
            self.seen.join("\n")
        );
    }

    fn command(&mut self, command: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for DemoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe {
                libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
            }
            let stopped = wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
                self.child.try_wait().ok().flatten()
            });
            if stopped.is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn pids_in(run: &Path) -> Vec<(PathBuf, u32)> {
    std::fs::read_dir(run)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pid"))
        .filter_map(|p| {
            let pid = std::fs::read_to_string(&p).ok()?.trim().parse().ok()?;
            Some((p, pid))
        })
        .collect()
}

#[test]
fn headless_demo_fails_over_mirrors_and_stops_cleanly() {
    let test = "headless_demo_fails_over_mirrors_and_stops_cleanly";
    if !require_tools(test, &["dig", "rsync", "ssh", "ssh-keygen", "sshd"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let addrs: Vec<IpAddr> = (0..3).map(|_| loopback_addr()).collect();
    let mut demo = DemoProcess::start(&dir, &addrs, &[]);
    let ready = demo.line("{\"demo_ready\"", Duration::from_secs(60));
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let dns: SocketAddr = ready["demo_ready"]["dns"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let control = PathBuf::from(ready["demo_ready"]["control"].as_str().unwrap());
    let data = |n: usize| dir.join(format!("members/app{n}/srv/data"));
    let dnsd_log = || std::fs::read_to_string(dir.join("logs/dnsd.log")).unwrap_or_default();

    let answers = |want: IpAddr| {
        wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            (dig_short(dns, "www.demo.test.", "A") == vec![want.to_string()]).then_some(())
        })
        .is_some()
    };
    assert!(
        answers(addrs[0]),
        "www never answered app1; dnsd log:\n{}",
        dnsd_log()
    );

    // The first passes copy app1's seed data; then app2 may take over.
    let client = console::client::Client::new(console::client::Endpoint::Unix(control));
    let rt = runtime();
    let eligible = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        let s = rt.block_on(client.status()).ok()?;
        s.service("www")?.member("app2")?.eligible.then_some(())
    });
    assert!(
        eligible.is_some(),
        "app2 never eligible; dnsd log:\n{}",
        dnsd_log()
    );
    for f in ["README.txt", "photos/photo-1.bin", "photos/photo-3.bin"] {
        assert_eq!(
            std::fs::read(data(1).join(f)).unwrap(),
            std::fs::read(data(2).join(f)).unwrap(),
            "{f} differs on app2"
        );
    }

    demo.command("kill app1");
    let reply = demo.line("ok: app1 killed", Duration::from_secs(10));
    assert!(reply.contains("sshd stopped"), "{reply}");
    // The demo elects the freshest copy: app2 or app3, whichever completed the later pass.
    let moved = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        let answer = dig_short(dns, "www.demo.test.", "A");
        [1, 2]
            .into_iter()
            .find(|&i| answer == vec![addrs[i].to_string()])
    });
    let Some(new) = moved else {
        panic!("www never moved to app2 or app3; dnsd log:\n{}", dnsd_log());
    };
    let (new_n, other_n) = (new + 1, if new == 1 { 3 } else { 2 });
    // The writer follows the primary: the new primary's writes.log grows there.
    let written = format!("written on app{new_n}");
    let writes = wait_for(Duration::from_secs(20), Duration::from_millis(200), || {
        std::fs::read_to_string(data(new_n).join("writes.log"))
            .ok()
            .filter(|t| t.contains(&written))
    });
    assert!(
        writes.is_some(),
        "nothing written on app{new_n} after the failover"
    );
    // And it is mirrored to the other secondary.
    let mirrored = wait_for(Duration::from_secs(30), Duration::from_millis(200), || {
        std::fs::read_to_string(data(other_n).join("writes.log"))
            .ok()
            .filter(|t| t.contains(&written))
    });
    assert!(
        mirrored.is_some(),
        "app{new_n}'s writes never reached app{other_n}; dnsd log:\n{}",
        dnsd_log()
    );

    let sshd_pids = pids_in(&dir.join("run"));
    assert!(
        sshd_pids
            .iter()
            .filter(|(p, _)| p.to_string_lossy().contains("sshd-"))
            .count()
            >= 2,
        "{sshd_pids:?}"
    );
    let dnsd_pid = ready["demo_ready"]["dnsd_pid"].as_u64().unwrap() as u32;

    demo.command("quit");
    let stopped = wait_for(Duration::from_secs(30), Duration::from_millis(50), || {
        demo.child.try_wait().ok().flatten()
    });
    let status = stopped.expect("the demo did not stop on quit");
    assert!(status.success(), "demo exited with {status}");
    demo.line("demo stopped", Duration::from_secs(5));
    for (file, pid) in sshd_pids
        .iter()
        .chain([(PathBuf::from("dnsd"), dnsd_pid)].iter())
    {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{} (pid {pid}) is still running after the demo stopped",
            file.display()
        );
    }
}

/// What the headless cluster demo says about one terminal server in its ready line.
struct Ts {
    name: String,
    dns: SocketAddr,
    client: console::client::Client,
}

#[test]
fn headless_cluster_demo_hands_over_when_the_leader_dies_and_stops_everything() {
    let test = "headless_cluster_demo_hands_over_when_the_leader_dies_and_stops_everything";
    if !require_tools(test, &["dig", "rsync", "ssh", "ssh-keygen", "etcd", "sshd"]) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let addrs: Vec<IpAddr> = (0..3).map(|_| loopback_addr()).collect();
    let mut demo = DemoProcess::start(&dir, &addrs, &["--cluster", "--etcd", "127.0.0.1:0"]);
    let ready = demo.line("{\"demo_ready\"", Duration::from_secs(90));
    let ready: serde_json::Value = serde_json::from_str(&ready).unwrap();
    let ready = &ready["demo_ready"];
    let servers: Vec<Ts> = ready["terminal_servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| Ts {
            name: t["name"].as_str().unwrap().to_owned(),
            dns: t["dns"].as_str().unwrap().parse().unwrap(),
            client: console::client::Client::new(console::client::Endpoint::Unix(PathBuf::from(
                t["control"].as_str().unwrap(),
            ))),
        })
        .collect();
    let names: Vec<&str> = servers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ts1", "ts2", "ts3"]);
    assert!(ready["etcd"]["pid"].as_u64().is_some(), "{ready}");
    let logs = || {
        let mut text = String::new();
        for name in ["dnsd-ts1", "dnsd-ts2", "dnsd-ts3", "etcd"] {
            let log = std::fs::read_to_string(dir.join(format!("logs/{name}.log")));
            text.push_str(&format!("--- {name}.log\n{}\n", log.unwrap_or_default()));
        }
        text
    };
    let rt = runtime();
    let status = |t: &Ts| rt.block_on(t.client.status()).ok();
    // Who leads, as terminal server `t` sees it.
    let leader_seen_by = |t: &Ts| status(t)?.cluster?.leader;
    let answers = |t: &Ts, want: IpAddr| {
        wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
            (dig_short(t.dns, "www.demo.test.", "A") == vec![want.to_string()]).then_some(())
        })
        .is_some()
    };

    // One leader, the same for all three; every one answers app1.
    let leader = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        let seen: Vec<Option<String>> = servers.iter().map(leader_seen_by).collect();
        let first = seen[0].clone()?;
        seen.iter()
            .all(|s| s.as_deref() == Some(first.as_str()))
            .then_some(first)
    });
    let Some(leader) = leader else {
        panic!(
            "the terminal servers never agreed on a leader; logs:\n{}",
            logs()
        );
    };
    for t in &servers {
        assert!(
            answers(t, addrs[0]),
            "{} never answered app1; logs:\n{}",
            t.name,
            logs()
        );
    }
    // A member must hold a complete copy before a failover can promote it.
    let eligible = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        let s = servers.iter().find(|t| t.name == leader).and_then(status)?;
        let www = s.service("www")?;
        www.members
            .iter()
            .any(|m| m.node != www.primary && m.eligible)
            .then_some(())
    });
    assert!(
        eligible.is_some(),
        "no secondary ever eligible; logs:\n{}",
        logs()
    );

    // The leader's dnsd is killed: another terminal server takes the lead.
    demo.command(&format!("kill {leader}"));
    let reply = demo.line(&format!("ok: {leader} killed"), Duration::from_secs(10));
    assert!(reply.contains("SIGKILL"), "{reply}");
    let rest: Vec<&Ts> = servers.iter().filter(|t| t.name != leader).collect();
    let next = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        let s = rest.iter().find_map(|t| {
            let c = status(t)?.cluster?;
            c.leading.then_some(c)
        })?;
        // Its lease ended: the dead one is no longer listed.
        (!s.servers.iter().any(|x| x.name == leader)).then_some(s.name)
    });
    let Some(next) = next else {
        panic!(
            "nobody took the lead after {leader} died; logs:\n{}",
            logs()
        );
    };
    assert_ne!(next, leader);
    for t in &rest {
        assert!(
            answers(t, addrs[0]),
            "{} stopped answering after {leader} died; logs:\n{}",
            t.name,
            logs()
        );
    }

    // The new leader decides: once it has mirrored (no pass runs while nobody leads, and
    // a copy older than max_lag is not promoted), app1 dies, and every live terminal
    // server answers its successor.
    let mirrored = wait_for(Duration::from_secs(60), Duration::from_millis(200), || {
        let s = rest
            .iter()
            .find(|t| t.name == next)
            .and_then(|t| status(t))?;
        let www = s.service("www")?;
        www.members
            .iter()
            .any(|m| m.node != www.primary && m.eligible)
            .then_some(())
    });
    assert!(
        mirrored.is_some(),
        "{next} never made a secondary eligible; logs:\n{}",
        logs()
    );
    demo.command("kill app1");
    demo.line("ok: app1 killed", Duration::from_secs(10));
    let moved = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        let answer = dig_short(rest[0].dns, "www.demo.test.", "A");
        [1, 2]
            .into_iter()
            .find(|&i| answer == vec![addrs[i].to_string()])
    });
    let Some(new) = moved else {
        panic!("www never moved after app1 died; logs:\n{}", logs());
    };
    assert!(
        answers(rest[1], addrs[new]),
        "{} does not answer the new primary; logs:\n{}",
        rest[1].name,
        logs()
    );

    // Revived, the old leader follows the new one.
    demo.command(&format!("revive {leader}"));
    demo.line(&format!("ok: {leader} revived"), Duration::from_secs(60));
    let revived = servers.iter().find(|t| t.name == leader).unwrap();
    let follows = wait_for(Duration::from_secs(30), Duration::from_millis(100), || {
        (leader_seen_by(revived)? == next).then_some(())
    });
    assert!(
        follows.is_some(),
        "{leader} never followed {next}; logs:\n{}",
        logs()
    );
    assert!(
        answers(revived, addrs[new]),
        "{leader} answers an old primary"
    );

    // Quit stops everything the demo started, by PID: dnsd x3, etcd, the sshds.
    let pids = pids_in(&dir.join("run"));
    let count = |prefix: &str| {
        pids.iter()
            .filter(|(p, _)| {
                p.file_name()
                    .is_some_and(|f| f.to_string_lossy().starts_with(prefix))
            })
            .count()
    };
    assert_eq!(
        (count("dnsd-ts"), count("etcd"), count("sshd-") >= 2),
        (3, 1, true),
        "{pids:?}"
    );
    demo.command("quit");
    let stopped = wait_for(Duration::from_secs(60), Duration::from_millis(50), || {
        demo.child.try_wait().ok().flatten()
    });
    let exit = stopped.expect("the demo did not stop on quit");
    assert!(exit.success(), "demo exited with {exit}");
    demo.line("demo stopped", Duration::from_secs(5));
    for (file, pid) in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "{} (pid {pid}) is still running after the demo stopped",
            file.display()
        );
    }
    assert!(
        dir.join("etcd").is_dir(),
        "etcd's data stays in the demo's folder"
    );
}
