//! The control API against a fake driver: requests reach the driver as [`Request`]s and
//! its answers come back as HTTP, with the status codes and refusal kinds clients match on.

use std::path::Path;
use std::time::Duration;

use dnsd_api::{Action, ActionReply, EventKind, HeartbeatSettings, RefusalKind, Status};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::*;
use crate::handle::Request as DriverRequest;

fn empty_status() -> Status {
    Status {
        now_ms: 1,
        started_ms: 0,
        zone: "svc.test.".into(),
        serial: 7,
        ttl: 5,
        heartbeat: HeartbeatSettings {
            protocol: "tcp".into(),
            port: 7,
            interval_ms: 500,
            timeout_ms: 400,
            rise: 3,
            fall: 3,
        },
        nodes: Vec::new(),
        services: Vec::new(),
        cluster: None,
    }
}

/// A driver that answers every status request with `empty_status()` and refuses every
/// action that is not a pause, recording what it was asked.
async fn fake_driver(mut requests: mpsc::Receiver<DriverRequest>, seen: mpsc::Sender<Action>) {
    while let Some(request) = requests.recv().await {
        match request {
            DriverRequest::Status { reply } => {
                let _ = reply.send(empty_status());
            }
            DriverRequest::Events { reply } => {
                let _ = reply.send(Vec::new());
            }
            DriverRequest::Act { action, reply, .. } => {
                let answer = match action {
                    Action::Pause { .. } => ActionReply::done("www paused".into()),
                    _ => ActionReply::refused(RefusalKind::NotEligible, "app3 is down".into()),
                };
                let _ = seen.send(action).await;
                let _ = reply.send(answer);
            }
            DriverRequest::Metrics { .. } => {}
            DriverRequest::Reload { origin, reply } => {
                let _ = reply.send(ActionReply::refused(
                    RefusalKind::ReloadRefused,
                    format!("asked by {origin}: dns.listen cannot change while dnsd runs"),
                ));
            }
        }
    }
}

/// A `[control]` with only the socket, and the defaults of everything else.
fn unix_only(socket: &Path) -> ControlConfig {
    ControlConfig {
        socket: socket.to_owned(),
        tcp: None,
        header_timeout: Duration::from_secs(10),
        max_connections: 64,
    }
}

/// Serves the API on a socket in `dir`; `driver` decides whether a fake driver runs.
async fn serve_api(
    dir: &Path,
    driver: bool,
) -> (
    std::path::PathBuf,
    mpsc::Receiver<Action>,
    CancellationToken,
) {
    let socket = dir.join("control.sock");
    let served = serve_with(&unix_only(&socket), driver).await;
    (socket, served.seen, served.cancel)
}

/// A control API being served, and what a test needs to drive it.
struct Served {
    /// The actions the fake driver was asked for.
    seen: mpsc::Receiver<Action>,
    /// Events sent here reach the event streams.
    events: tokio::sync::broadcast::Sender<Event>,
    tcp: Option<std::net::SocketAddr>,
    cancel: CancellationToken,
}

/// Serves the API as `config` says; `driver` decides whether a fake driver runs.
async fn serve_with(config: &ControlConfig, driver: bool) -> Served {
    let listeners = ControlListeners::bind(config).await.unwrap();
    let tcp = listeners.tcp_addr();
    let (handle, requests, events) = DaemonHandle::channel(8);
    let (seen_tx, seen) = mpsc::channel(8);
    if driver {
        tokio::spawn(fake_driver(requests, seen_tx));
    } else {
        drop(requests);
    }
    let cancel = CancellationToken::new();
    tokio::spawn(serve(
        listeners,
        handle,
        Arc::new(DnsStats::default()),
        cancel.clone(),
    ));
    Served {
        seen,
        events,
        tcp,
        cancel,
    }
}

/// One HTTP/1.1 exchange; returns the status code and the body.
async fn exchange(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: dnsd\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(
        Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await
    .unwrap()
    .unwrap();
    let code = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

#[tokio::test]
async fn status_comes_from_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _, cancel) = serve_api(dir.path(), true).await;
    let (code, body) = exchange(&socket, "GET", paths::STATUS, "").await;
    assert_eq!(code, 200, "{body}");
    let status: Status = serde_json::from_str(&body).unwrap();
    assert_eq!(status, empty_status());
    cancel.cancel();
}

#[tokio::test]
async fn accepted_and_refused_actions_carry_their_code_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, mut seen, cancel) = serve_api(dir.path(), true).await;

    let (code, body) = exchange(&socket, "POST", paths::ACTIONS, r#"{"action":"pause"}"#).await;
    assert_eq!(code, 200, "{body}");
    let reply: ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply, ActionReply::done("www paused".into()));

    let (code, body) = exchange(
        &socket,
        "POST",
        paths::ACTIONS,
        r#"{"action":"promote","node":"app3"}"#,
    )
    .await;
    assert_eq!(code, 409, "{body}");
    let reply: ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.kind, Some(RefusalKind::NotEligible));
    assert_eq!(reply.message, "app3 is down");

    assert_eq!(seen.recv().await, Some(Action::Pause { service: None }));
    assert_eq!(
        seen.recv().await,
        Some(Action::Promote {
            service: None,
            node: "app3".into()
        })
    );
    cancel.cancel();
}

#[tokio::test]
async fn a_refused_reload_is_a_conflict_naming_who_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _, cancel) = serve_api(dir.path(), true).await;
    let (code, body) = exchange(&socket, "POST", paths::RELOAD, "").await;
    assert_eq!(code, 409, "{body}");
    let reply: ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.kind, Some(RefusalKind::ReloadRefused));
    let me = format!("unix uid={} pid={}", own_uid(), std::process::id());
    assert!(
        reply.message.starts_with(&format!("asked by {me}:")),
        "{}",
        reply.message
    );
    cancel.cancel();
}

fn own_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").map_or(u32::MAX, |m| m.uid())
}

#[tokio::test]
async fn a_malformed_action_never_reaches_the_driver() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, mut seen, cancel) = serve_api(dir.path(), true).await;
    let (code, body) = exchange(&socket, "POST", paths::ACTIONS, r#"{"action":"explode"}"#).await;
    assert_eq!(code, 400, "{body}");
    let reply: ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.kind, Some(RefusalKind::Malformed));
    assert!(
        reply.message.starts_with("malformed action: "),
        "{}",
        reply.message
    );
    // The next request is the first the driver sees.
    exchange(&socket, "POST", paths::ACTIONS, r#"{"action":"pause"}"#).await;
    assert_eq!(seen.recv().await, Some(Action::Pause { service: None }));
    cancel.cancel();
}

#[tokio::test]
async fn without_a_driver_the_api_answers_unavailable() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _, cancel) = serve_api(dir.path(), false).await;
    let (code, body) = exchange(&socket, "GET", paths::STATUS, "").await;
    assert_eq!(code, 503, "{body}");
    let reply: ActionReply = serde_json::from_str(&body).unwrap();
    assert_eq!(reply.kind, Some(RefusalKind::Unavailable));
    assert_eq!(reply.message, "the daemon is shutting down");
    cancel.cancel();
}

/// Reads until the server closes the connection (end of stream or an error such as a
/// reset); `None` if it is still open after `within`.
async fn closed_within(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    within: Duration,
) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let read = tokio::time::timeout(within, async {
        let mut buf = [0u8; 512];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| seen)
}

/// Long enough for anything that should happen at once on a loaded test machine.
const GENEROUS: Duration = Duration::from_secs(20);

/// Serves the API with a fake driver on a socket only, with these limits.
async fn on_socket(
    header_timeout: Duration,
    max_connections: usize,
) -> (tempfile::TempDir, std::path::PathBuf, Served) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("control.sock");
    let config = ControlConfig {
        header_timeout,
        max_connections,
        ..unix_only(&socket)
    };
    let served = serve_with(&config, true).await;
    (dir, socket, served)
}

#[tokio::test]
async fn a_silent_client_is_cut_off_after_the_header_timeout() {
    let (_dir, socket, served) = on_socket(Duration::from_millis(200), 64).await;
    let mut silent = UnixStream::connect(&socket).await.unwrap();
    assert!(
        closed_within(&mut silent, GENEROUS).await.is_some(),
        "a client that sent nothing was never disconnected"
    );
    // The listener still serves.
    let (code, _) = exchange(&socket, "GET", paths::STATUS, "").await;
    assert_eq!(code, 200);
    served.cancel.cancel();
}

#[tokio::test]
async fn a_client_dribbling_its_request_head_is_cut_off() {
    let (_dir, socket, served) = on_socket(Duration::from_millis(300), 64).await;
    let stream = UnixStream::connect(&socket).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    // One byte of a never-ending header every 50 ms: each byte is "progress", but the
    // head as a whole is late.
    let dribbler = tokio::spawn(async move {
        write
            .write_all(b"GET /v1/status HTTP/1.1\r\nx-slow: ")
            .await?;
        loop {
            tokio::time::sleep(Duration::from_millis(50)).await;
            write.write_all(b"a").await?;
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    let answer = closed_within(&mut read, GENEROUS).await;
    let answer = answer.expect("a dribbling client was never disconnected");
    let text = String::from_utf8_lossy(&answer);
    assert!(!text.contains("200 OK"), "it was served: {text}");
    // Its writes now fail (the server is gone), which ends the dribbler.
    let ended = tokio::time::timeout(GENEROUS, dribbler).await;
    assert!(matches!(ended, Ok(Ok(Err(_)))), "{ended:?}");
    served.cancel.cancel();
}

#[tokio::test]
async fn an_event_stream_outlives_the_header_timeout() {
    let (_dir, socket, served) = on_socket(Duration::from_millis(200), 64).await;
    let mut stream = UnixStream::connect(&socket).await.unwrap();
    let request = format!("GET {} HTTP/1.1\r\nhost: dnsd\r\n\r\n", paths::EVENT_STREAM);
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read the response head, then stay quiet for several header timeouts.
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(GENEROUS, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before the response head");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{head:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut event = Event::new(5, EventKind::Started, "late but delivered".into());
    event.seq = 1;
    served.events.send(event).unwrap();
    let mut body = String::new();
    while !body.contains("late but delivered") {
        let n = tokio::time::timeout(GENEROUS, stream.read(&mut buf))
            .await
            .expect("the event never came")
            .unwrap();
        assert!(n > 0, "the stream was closed: {body}");
        body.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    served.cancel.cancel();
}

#[tokio::test]
async fn at_the_connection_cap_a_new_client_waits_for_a_free_slot() {
    let (_dir, socket, served) = on_socket(Duration::from_secs(10), 4).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(UnixStream::connect(&socket).await.unwrap());
    }
    // A fifth client connects (the kernel's backlog takes it) and sends its request...
    let fifth = tokio::spawn({
        let socket = socket.clone();
        async move { exchange(&socket, "GET", paths::STATUS, "").await }
    });
    // ...and gets no answer while the four are open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !fifth.is_finished(),
        "a fifth connection was served at a cap of 4"
    );
    // One closes: the fifth is served.
    drop(held.pop());
    let (code, _) = tokio::time::timeout(GENEROUS, fifth)
        .await
        .expect("the fifth client was never served")
        .unwrap();
    assert_eq!(code, 200);
    served.cancel.cancel();
}

/// A test CA and a certificate it signed for `127.0.0.1` and `localhost`, as PEM files in
/// `dir` (the key with mode 0600).
struct TestPki {
    ca_pem: String,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

fn test_pki(dir: &Path) -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let pki = TestPki {
        ca_pem: ca.pem(),
        cert: dir.join("control.crt"),
        key: dir.join("control.key"),
    };
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    pki
}

const TOKEN: &str = "0123456789abcdef-unit-token";

/// `[control]` with TLS on 127.0.0.1 (a port of the kernel's choosing).
fn with_tls(dir: &Path, pki: &TestPki) -> ControlConfig {
    let token = dir.join("token");
    std::fs::write(&token, TOKEN).unwrap();
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    ControlConfig {
        tcp: Some(crate::config::ControlTcp {
            addr: "127.0.0.1:0".parse().unwrap(),
            token_file: token,
            transport: ControlTransport::Tls {
                cert: pki.cert.clone(),
                key: pki.key.clone(),
            },
        }),
        ..unix_only(&dir.join("control.sock"))
    }
}

/// A TLS client trusting only `ca_pem`.
fn connector(ca_pem: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One request over TLS; the status code and body.
async fn tls_exchange(
    addr: std::net::SocketAddr,
    ca_pem: &str,
    token: Option<&str>,
) -> std::io::Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector(ca_pem).connect(name, tcp).await?;
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let request = format!(
        "GET {} HTTP/1.1\r\nhost: dnsd\r\n{auth}connection: close\r\n\r\n",
        paths::STATUS
    );
    tls.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(GENEROUS, tls.read_to_string(&mut response))
        .await
        .map_err(|_| std::io::Error::other("no answer"))??;
    let code = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[tokio::test]
async fn tcp_speaks_tls_with_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(dir.path());
    let served = serve_with(&with_tls(dir.path(), &pki), true).await;
    let addr = served.tcp.unwrap();

    let (code, body) = tls_exchange(addr, &pki.ca_pem, Some(TOKEN)).await.unwrap();
    assert_eq!(code, 200, "{body}");
    let status: Status = serde_json::from_str(&body).unwrap();
    assert_eq!(status, empty_status());

    let (code, body) = tls_exchange(addr, &pki.ca_pem, None).await.unwrap();
    assert_eq!(code, 401, "{body}");

    // A client trusting another CA refuses the server's certificate.
    let other = test_pki(&dir.path().join("other").tap_create());
    let err = tls_exchange(addr, &other.ca_pem, Some(TOKEN))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );

    // Plain HTTP on the TLS port gets no answer in HTTP.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /v1/status HTTP/1.1\r\nhost: dnsd\r\n\r\n")
        .await
        .unwrap();
    let answer = closed_within(&mut plain, GENEROUS).await.unwrap();
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    served.cancel.cancel();
}

#[tokio::test]
async fn a_tcp_client_that_never_shakes_hands_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(dir.path());
    let config = ControlConfig {
        header_timeout: Duration::from_millis(200),
        ..with_tls(dir.path(), &pki)
    };
    let served = serve_with(&config, true).await;
    let addr = served.tcp.unwrap();
    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut silent, GENEROUS).await.is_some(),
        "a TCP client that sent nothing was never disconnected"
    );
    // After the handshake, a silent client is cut off too.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector(&pki.ca_pem).connect(name, tcp).await.unwrap();
    assert!(
        closed_within(&mut tls, GENEROUS).await.is_some(),
        "a TLS client that sent no request was never disconnected"
    );
    served.cancel.cancel();
}

#[tokio::test]
async fn tls_files_are_checked_before_anything_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_pki(dir.path());
    let config = with_tls(dir.path(), &pki);
    let socket = config.socket.clone();

    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = ControlListeners::bind(&config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "TLS key file {} is readable by others than its owner: chmod 600 it",
            pki.key.display()
        )
    );
    assert!(!socket.exists(), "the socket was bound anyway");

    std::fs::write(&pki.key, "not a key\n").unwrap();
    std::fs::set_permissions(&pki.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = ControlListeners::bind(&config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "TLS key file {} holds no unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
            pki.key.display()
        )
    );

    std::fs::write(&pki.cert, "-----BEGIN CERTIFICATE-----\nAAAA\n").unwrap();
    let err = ControlListeners::bind(&config).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "TLS certificate file {} is not valid PEM: a section has no END line",
            pki.cert.display()
        )
    );

    // A key that is not the certificate's.
    let other = test_pki(&dir.path().join("other").tap_create());
    let mismatched = ControlConfig {
        tcp: config.tcp.clone().map(|tcp| crate::config::ControlTcp {
            transport: ControlTransport::Tls {
                cert: other.cert.clone(),
                key: test_pki(&dir.path().join("third").tap_create()).key,
            },
            ..tcp
        }),
        ..config.clone()
    };
    let err = ControlListeners::bind(&mismatched).await.unwrap_err();
    assert!(matches!(err, ControlError::TlsConfig { .. }), "{err}");
    assert!(!socket.exists(), "the socket was bound anyway");
}

/// Creates a directory in a test and hands its path on.
trait TapCreate {
    fn tap_create(self) -> Self;
}

impl TapCreate for std::path::PathBuf {
    fn tap_create(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
