//! The control API on TCP as an operator on another host meets it, against the real
//! daemon and the real console: TLS with a CA the test makes (the right CA works, a wrong
//! one is refused, the token is still required), clients that send nothing or dribble
//! cut off by the header timeout, the connection cap, plain HTTP refused at start except
//! on loopback with the flag, and a key file others can read refused at start.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use console::client::{Client, ClientError, Endpoint, TlsClient, Trust};
use integration::harness::{Dnsd, binary, output_within, runtime};
use integration::tls::TestPki;

const TOKEN: &str = "0123456789abcdef-tls-test-token";
/// Bounds every wait for something that should happen at once: generous, never a
/// measure of speed.
const GENEROUS: Duration = Duration::from_secs(20);

/// A minimal configuration (one member, never probed up) with these `[control]` lines;
/// `{d}` in them is the test's directory. Writes the token file (mode 0600).
fn config(dir: &Path, control: &str) -> String {
    let token = dir.join("token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let d = dir.display();
    let control = control.replace("{d}", &d.to_string());
    format!(
        "[dns]\nlisten = [\"127.0.0.1:0\"]\nzone = \"svc.test.\"\nnameservers = [{{ name = \"ns1.svc.test.\", address = \"127.0.0.1\" }}]\n[control]\nsocket = \"{d}/control.sock\"\ntoken_file = \"{d}/token\"\n{control}\n[state]\ndir = \"{d}/state\"\n[[node]]\nname = \"a\"\naddress = \"127.0.0.1\"\n[[service]]\nname = \"www\"\nnodes = [\"a\"]\n"
    )
}

/// `[control]` lines for TLS on 127.0.0.1 with `pki`'s files.
fn tls_lines(pki: &TestPki) -> String {
    format!(
        "tcp = \"127.0.0.1:0\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
        pki.cert.display(),
        pki.key.display()
    )
}

fn console(args: &[&str]) -> Output {
    let mut cmd = Command::new(binary("console").unwrap());
    cmd.args(args).stdin(Stdio::null());
    output_within(&mut cmd, GENEROUS)
}

/// `console status --json` on `url` with the test's token, trusting `ca` if given.
fn status_over(url: &str, dir: &Path, ca: Option<&Path>) -> Output {
    let token = dir.join("token");
    let mut args = vec!["status", "--json", "--url", url, "--token-file"];
    args.push(token.to_str().unwrap());
    if let Some(ca) = ca {
        args.extend(["--ca-file", ca.to_str().unwrap()]);
    }
    console(&args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `dnsd run` on `config`, expected to refuse to start: its stderr.
fn refused_at_start(dir: &Path, config: &str) -> String {
    let file = dir.join("refused.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(binary("dnsd").unwrap());
    cmd.args(["run", "--config"]).arg(&file);
    let out = output_within(&mut cmd, GENEROUS);
    assert!(!out.status.success(), "dnsd started: {}", text(&out.stdout));
    assert!(
        out.stdout.is_empty(),
        "no ready line for a daemon that did not start"
    );
    text(&out.stderr)
}

/// `dnsd check-config` on `config`: its exit success and stderr.
fn check_config(dir: &Path, config: &str) -> (bool, String) {
    let file = dir.join("check.toml");
    std::fs::write(&file, config).unwrap();
    let mut cmd = Command::new(binary("dnsd").unwrap());
    cmd.arg("check-config").arg(&file);
    let out = output_within(&mut cmd, GENEROUS);
    (out.status.success(), text(&out.stderr))
}

/// Reads until the peer closes; false if it is still open after [`GENEROUS`].
fn closed_by_peer(stream: &mut impl std::io::Read) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

#[test]
fn the_console_verifies_dnsds_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki")).unwrap();
    let dnsd = Dnsd::start(dir.path(), &config(dir.path(), &tls_lines(&pki)), &[]).unwrap();
    let url = format!("https://{}", dnsd.ready().control_tcp.unwrap());

    // The right CA: status over https, by address or by a name the certificate holds.
    let out = status_over(&url, dir.path(), Some(&pki.ca));
    assert!(out.status.success(), "{}", text(&out.stderr));
    let status: dnsd_api::Status = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status.zone, "svc.test.");
    let by_name = url.replace("127.0.0.1", "localhost");
    let out = status_over(&by_name, dir.path(), Some(&pki.ca));
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Another CA: refused, saying why.
    let other = TestPki::create(&dir.path().join("other")).unwrap();
    let out = status_over(&url, dir.path(), Some(&other.ca));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "TLS with dnsd at {url} (token ****) failed: invalid peer certificate: UnknownIssuer (is dnsd's certificate signed by the CA of --ca-file"
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty());

    // The system's CAs do not know the test CA either.
    let out = status_over(&url, dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("invalid peer certificate: UnknownIssuer")
            || err.contains("this system's CA store holds no usable certificate"),
        "{err}"
    );
    let token = dir.path().join("token");
    let token = token.to_str().unwrap();

    // Plain http:// is refused off loopback before anything is sent, and on the TLS port
    // it gets no HTTP answer.
    let out = console(&[
        "status",
        "--url",
        "http://192.0.2.50:8053",
        "--token-file",
        token,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("plain http:// only to a loopback address"));
    let plain = url.replace("https://", "http://");
    let out = console(&["status", "--url", &plain, "--token-file", token]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    // The token never reaches a log.
    assert!(!dnsd.log().contains(TOKEN));
}

#[test]
fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create_for(&dir.path().join("pki"), &["localhost"]).unwrap();
    let dnsd = Dnsd::start(dir.path(), &config(dir.path(), &tls_lines(&pki)), &[]).unwrap();
    let tcp = dnsd.ready().control_tcp.unwrap();
    let out = status_over(
        &format!("https://localhost:{}", tcp.port()),
        dir.path(),
        Some(&pki.ca),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The same server by an address its certificate does not name.
    let out = status_over(&format!("https://{tcp}"), dir.path(), Some(&pki.ca));
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("failed: invalid peer certificate: certificate not valid for name"),
        "{err}"
    );
}

#[test]
fn a_silent_or_dribbling_client_is_cut_off_by_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki")).unwrap();
    let control = format!("{}\nheader_timeout = \"1s\"", tls_lines(&pki));
    let dnsd = Dnsd::start(dir.path(), &config(dir.path(), &control), &[]).unwrap();

    // TCP: connects and never starts its TLS handshake.
    let mut silent = TcpStream::connect(dnsd.ready().control_tcp.unwrap()).unwrap();
    silent.set_read_timeout(Some(GENEROUS)).unwrap();
    assert!(closed_by_peer(&mut silent), "a silent TCP client was kept");

    // The socket: a request head sent a byte at a time, never finished.
    let socket = dnsd.ready().control.clone().unwrap();
    let mut slow = UnixStream::connect(&socket).unwrap();
    slow.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    slow.write_all(b"GET /v1/status HTTP/1.1\r\nx-slow: ")
        .unwrap();
    let mut cut = false;
    for _ in 0..(GENEROUS.as_millis() / 100) {
        if slow.write_all(b"a").is_err() {
            cut = true;
            break;
        }
        let mut buf = [0u8; 256];
        match slow.read(&mut buf) {
            Ok(0) => {
                cut = true;
                break;
            }
            Ok(n) => assert!(
                !text(&buf[..n]).contains("200 OK"),
                "a dribbled request was served"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                cut = true;
                break;
            }
        }
    }
    assert!(cut, "a dribbling client was kept");

    // Others are served all along.
    let rt = runtime();
    assert!(rt.block_on(dnsd.client().status()).is_ok());
}

#[test]
fn the_connection_cap_makes_the_next_client_wait_until_one_closes() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki")).unwrap();
    // A long header timeout, so the idle connections hold their slots.
    let control = format!(
        "{}\nmax_connections = 4\nheader_timeout = \"60s\"",
        tls_lines(&pki)
    );
    let dnsd = Dnsd::start(dir.path(), &config(dir.path(), &control), &[]).unwrap();
    let addr = dnsd.ready().control_tcp.unwrap();
    let tls = TlsClient::new("127.0.0.1", &Trust::CaFile(pki.ca.clone())).unwrap();
    let client = Client::new(Endpoint::Tcp {
        addr: addr.to_string(),
        token: TOKEN.into(),
        tls: Some(tls),
    });
    let rt = runtime();
    assert!(rt.block_on(client.status()).is_ok(), "{}", dnsd.log());

    let mut held: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let fifth = rt.spawn({
        let client = client.clone();
        async move { client.status().await }
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !fifth.is_finished(),
        "a fifth connection was served at a cap of 4"
    );
    // The cap is per listener: the socket still answers.
    assert!(rt.block_on(dnsd.client().status()).is_ok());

    drop(held.pop());
    let answer = rt.block_on(async { tokio::time::timeout(GENEROUS, fifth).await });
    let status = answer
        .expect("the fifth client never got an answer")
        .unwrap();
    assert!(status.is_ok(), "{status:?}");
    assert_eq!(
        dnsd.log()
            .matches("control connections at their cap")
            .count(),
        1,
        "{}",
        dnsd.log()
    );
    drop(held);
}

#[test]
fn tcp_without_tls_is_refused_except_on_loopback_with_the_flag() {
    let dir = tempfile::tempdir().unwrap();

    // No TLS files: refused by check-config and at start, with the key path.
    let plain = config(dir.path(), "tcp = \"127.0.0.1:0\"");
    let (ok, err) = check_config(dir.path(), &plain);
    assert!(!ok);
    assert!(
        err.contains("control.tcp: needs control.tls_cert and control.tls_key"),
        "{err}"
    );
    let err = refused_at_start(dir.path(), &plain);
    assert!(
        err.contains("control.tcp: needs control.tls_cert and control.tls_key"),
        "{err}"
    );

    // The flag on a non-loopback address: refused too.
    let open = config(
        dir.path(),
        "tcp = \"0.0.0.0:0\"\nallow_plain_tcp_on_loopback = true",
    );
    let (ok, err) = check_config(dir.path(), &open);
    assert!(!ok);
    let expected =
        "control.allow_plain_tcp_on_loopback: control.tcp 0.0.0.0:0 is not a loopback address";
    assert!(err.contains(expected), "{err}");
    assert!(refused_at_start(dir.path(), &open).contains(expected));

    // The flag on loopback: plain HTTP, with the token.
    let local = config(
        dir.path(),
        "tcp = \"127.0.0.1:0\"\nallow_plain_tcp_on_loopback = true",
    );
    let dnsd = Dnsd::start(dir.path(), &local, &[]).unwrap();
    let url = format!("http://{}", dnsd.ready().control_tcp.unwrap());
    let out = status_over(&url, dir.path(), None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rt = runtime();
    let without = Client::new(Endpoint::Tcp {
        addr: dnsd.ready().control_tcp.unwrap().to_string(),
        token: String::new(),
        tls: None,
    });
    match rt.block_on(without.status()) {
        Err(ClientError::Status { status, .. }) => assert_eq!(status.as_u16(), 401),
        other => panic!("let in without a token: {other:?}"),
    }
    assert!(dnsd.log().contains("plain HTTP"), "{}", dnsd.log());
}

#[test]
fn a_tls_key_others_can_read_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::create(&dir.path().join("pki")).unwrap();
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = refused_at_start(dir.path(), &config(dir.path(), &tls_lines(&pki)));
    assert!(
        err.contains(&format!(
            "TLS key file {} is readable by others than its owner: chmod 600 it",
            pki.key.display()
        )),
        "{err}"
    );
    assert!(
        !err.contains("PRIVATE KEY"),
        "key material in the error: {err}"
    );
    assert!(
        !dir.path().join("control.sock").exists(),
        "the socket was bound by a daemon that did not start"
    );
}
