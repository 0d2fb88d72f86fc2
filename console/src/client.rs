//! A client of dnsd's control API: status, events (listed or streamed), actions and
//! metrics, over the daemon's Unix socket or over TCP with a bearer token: over TLS,
//! verifying dnsd's certificate (`tls`), or plain HTTP, which the command line only
//! allows towards a loopback address.
//!
//! Each call opens its own HTTP/1.1 connection: calls are rare (a status poll, an
//! operator action), connections over a Unix socket are cheap, and nothing has to be
//! kept alive or reconnected. The event stream keeps its connection for as long as it
//! is read.
//!
//! A client made with [`Client::cluster`] knows several terminal servers of one cluster
//! by name (the cluster demo's): a call goes to the current one and, when it cannot be
//! connected to, to the next; an action a follower refuses with `not_leader` is sent
//! again, once, to the leader it names. Only a program that chose this gets it:
//! [`Client::new`] talks to one dnsd and returns every refusal as it is.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dnsd_api::{Action, ActionReply, Event, RefusalKind, Status, paths};
use futures::Stream;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::net::{TcpStream, UnixStream};

mod tls;

pub use tls::{TlsClient, TlsSetupError, Trust};

/// The header naming the operator behind an action (logged by the daemon).
pub const OPERATOR_HEADER: &str = "x-dnsd-operator";
/// How long a connection attempt may take, the TLS handshake included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request may take once connected (not the event stream).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the daemon listens.
#[derive(Clone)]
pub enum Endpoint {
    /// The control socket (`[control] socket`).
    Unix(PathBuf),
    /// The TCP listener (`[control] tcp`), with the token from its token file; over TLS
    /// unless `tls` is `None` (plain HTTP).
    Tcp {
        addr: String,
        token: String,
        tls: Option<TlsClient>,
    },
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp {
                addr, tls: Some(_), ..
            } => write!(f, "https://{addr} (token ****)"),
            Endpoint::Tcp {
                addr, tls: None, ..
            } => write!(f, "http://{addr} (token ****)"),
        }
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Why a call failed. A refused action is not an error: it is an [`ActionReply`] with
/// `accepted: false`.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach dnsd at {endpoint}: {error}")]
    Connect {
        endpoint: String,
        error: std::io::Error,
    },
    #[error("TLS with dnsd at {endpoint} failed: {error}{hint}")]
    Tls {
        endpoint: String,
        error: std::io::Error,
        hint: &'static str,
    },
    #[error("dnsd at {endpoint} did not answer within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    #[error("HTTP error talking to dnsd at {endpoint}: {error}")]
    Http { endpoint: String, error: String },
    #[error("dnsd at {endpoint} answered {status} to {path}: {body}")]
    Status {
        endpoint: String,
        path: String,
        status: StatusCode,
        body: String,
    },
    #[error("cannot understand dnsd's answer to {path}: {error}")]
    Decode { path: String, error: String },
}

/// A control API client.
#[derive(Debug, Clone)]
pub struct Client {
    /// The terminal servers it may talk to, by name when it knows them (one, unnamed,
    /// for [`Client::new`]).
    endpoints: Arc<[(Option<String>, Endpoint)]>,
    /// The index in `endpoints` calls go to first; shared by the clones, so the status
    /// poller, the event follower and the actions move together.
    current: Arc<AtomicUsize>,
    operator: Option<String>,
}

type Body = Full<Bytes>;

impl Client {
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoints: Arc::from(vec![(None, endpoint)]),
            current: Arc::new(AtomicUsize::new(0)),
            operator: None,
        }
    }

    /// A client of several terminal servers of one cluster, by name, starting with the
    /// first: a call that cannot connect moves on to the next one, and an action refused
    /// with `not_leader` is sent once more to the leader named in the current one's
    /// status (if it is among `servers`). For a program that runs the whole cluster (the
    /// demo); an operator's console talks to the one dnsd it is pointed at.
    ///
    /// # Panics
    /// When `servers` is empty.
    pub fn cluster(servers: Vec<(String, Endpoint)>) -> Client {
        assert!(
            !servers.is_empty(),
            "a cluster client needs a terminal server"
        );
        Client {
            endpoints: servers
                .into_iter()
                .map(|(name, endpoint)| (Some(name), endpoint))
                .collect(),
            current: Arc::new(AtomicUsize::new(0)),
            operator: None,
        }
    }

    /// Names the operator in every action this client sends (shown in the daemon's log).
    pub fn with_operator(mut self, operator: impl Into<String>) -> Client {
        self.operator = Some(operator.into());
        self
    }

    /// The endpoint calls go to now.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoints[self.current_index()].1
    }

    /// The name of the terminal server calls go to now, for a [`Client::cluster`].
    pub fn terminal_server(&self) -> Option<&str> {
        self.endpoints[self.current_index()].0.as_deref()
    }

    fn current_index(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.endpoints.len()
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.get_json(paths::STATUS).await
    }

    /// `GET /v1/events?since=N`: logged events with a sequence number above `since`.
    pub async fn events(&self, since: u64) -> Result<Vec<Event>, ClientError> {
        self.get_json(&format!("{}?since={since}", paths::EVENTS))
            .await
    }

    /// `GET /metrics`, as text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (endpoint, status, body) = self.call(Method::GET, paths::METRICS, None).await?;
        expect_ok(&endpoint, paths::METRICS, status, &body)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `POST /v1/actions`. Accepted and refused actions both come back as `Ok`. A
    /// [`Client::cluster`] sends an action refused with `not_leader` once more, to the
    /// leader, and says so in the reply's message.
    pub async fn act(&self, action: &Action) -> Result<ActionReply, ClientError> {
        let path = paths::ACTIONS;
        let body = serde_json::to_vec(action).map_err(|e| ClientError::Decode {
            path: path.into(),
            error: e.to_string(),
        })?;
        let reply = self.post_for_reply(path, Some(body.clone())).await?;
        if reply.kind != Some(RefusalKind::NotLeader) || self.endpoints.len() < 2 {
            return Ok(reply);
        }
        let Some((leader, at)) = self.leader().await else {
            return Ok(reply);
        };
        self.current.store(at, Ordering::Relaxed);
        let mut again = self.post_for_reply(path, Some(body)).await?;
        again.message = format!("{} (sent to {leader}, the leader)", again.message);
        Ok(again)
    }

    /// `POST /v1/reload`: dnsd re-reads its configuration file. Accepted and refused
    /// reloads both come back as `Ok` (a refusal lists the new file's problems).
    pub async fn reload(&self) -> Result<ActionReply, ClientError> {
        self.post_for_reply(paths::RELOAD, None)
            .await
            .map_err(|e| match e {
                ClientError::Status {
                    endpoint,
                    path,
                    status: StatusCode::NOT_FOUND,
                    body,
                } => ClientError::Status {
                    endpoint,
                    path,
                    status: StatusCode::NOT_FOUND,
                    body: format!(
                        "{body} (this dnsd does not know reload yet: send it SIGHUP, or restart it)"
                    ),
                },
                other => other,
            })
    }

    /// The leader named by the current terminal server's status, and its index among
    /// this client's named endpoints.
    async fn leader(&self) -> Option<(String, usize)> {
        let status = self.status().await.ok()?;
        let leader = status.cluster?.leader?;
        let at = self
            .endpoints
            .iter()
            .position(|(name, _)| name.as_deref() == Some(leader.as_str()))?;
        Some((leader, at))
    }

    /// POSTs `body` to `path`, whose answer is an [`ActionReply`]: 200 when accepted,
    /// 409 (or 422) when refused.
    async fn post_for_reply(
        &self,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<ActionReply, ClientError> {
        let (endpoint, status, body) = self.call(Method::POST, path, body).await?;
        match status {
            StatusCode::OK | StatusCode::CONFLICT | StatusCode::UNPROCESSABLE_ENTITY => {
                decode(path, &body)
            }
            _ => Err(status_error(&endpoint, path, status, &body)),
        }
    }

    /// `GET /v1/events/stream?since=N`: past events above `since`, then live ones, for
    /// as long as the stream is read. Ends when the daemon closes the connection.
    pub async fn stream_events(&self, since: u64) -> Result<EventStream, ClientError> {
        let path = format!("{}?since={since}", paths::EVENT_STREAM);
        let endpoint = self.endpoint().clone();
        let response = tokio::time::timeout(
            REQUEST_TIMEOUT,
            self.send(&endpoint, Method::GET, &path, None),
        )
        .await
        .map_err(|_| timeout(&endpoint, REQUEST_TIMEOUT))??;
        let status = response.status();
        if status != StatusCode::OK {
            let body = collect(response.into_body(), &endpoint)
                .await
                .unwrap_or_default();
            return Err(status_error(&endpoint, &path, status, &body));
        }
        Ok(EventStream::new(response.into_body(), endpoint.to_string()))
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (endpoint, status, body) = self.call(Method::GET, path, None).await?;
        expect_ok(&endpoint, path, status, &body)?;
        decode(path, &body)
    }

    /// One request and its whole answer, from the current terminal server or, when it
    /// cannot be connected to, from the next that can (which becomes the current one).
    /// Returns the endpoint that answered with the answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(Endpoint, StatusCode, Bytes), ClientError> {
        let n = self.endpoints.len();
        let first = self.current_index();
        let mut i = 0;
        loop {
            let at = (first + i) % n;
            let endpoint = &self.endpoints[at].1;
            match self
                .call_at(endpoint, method.clone(), path, body.clone())
                .await
            {
                Err(e @ ClientError::Connect { .. }) if i + 1 < n => drop(e),
                Err(e) => return Err(e),
                Ok((status, bytes)) => {
                    if at != first {
                        self.current.store(at, Ordering::Relaxed);
                    }
                    return Ok((endpoint.clone(), status, bytes));
                }
            }
            i += 1;
        }
    }

    async fn call_at(
        &self,
        endpoint: &Endpoint,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let response = self.send(endpoint, method, path, body).await?;
            let status = response.status();
            let body = collect(response.into_body(), endpoint).await?;
            Ok((status, body))
        })
        .await
        .map_err(|_| timeout(endpoint, REQUEST_TIMEOUT))?
    }

    async fn send(
        &self,
        endpoint: &Endpoint,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let name = endpoint.to_string();
        let http = |error: hyper::Error| ClientError::Http {
            endpoint: name.clone(),
            error: error.to_string(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "dnsd");
        if let Some(op) = &self.operator {
            req = req.header(OPERATOR_HEADER, op.as_str());
        }
        if let Endpoint::Tcp { token, .. } = endpoint {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let has_body = body.is_some();
        if has_body {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Body::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Http {
                endpoint: name.clone(),
                error: e.to_string(),
            })?;
        let connect_error = |error| ClientError::Connect {
            endpoint: name.clone(),
            error,
        };
        let tls_error = |error: std::io::Error| ClientError::Tls {
            endpoint: name.clone(),
            hint: tls::hint(&error),
            error,
        };
        let connect = async {
            match endpoint {
                Endpoint::Unix(path) => UnixStream::connect(path)
                    .await
                    .map(Either::Unix)
                    .map_err(connect_error),
                Endpoint::Tcp { addr, tls, .. } => {
                    let tcp = TcpStream::connect(addr.as_str())
                        .await
                        .map_err(connect_error)?;
                    match tls {
                        None => Ok(Either::Tcp(tcp)),
                        Some(tls) => tls
                            .connect(tcp)
                            .await
                            .map(|s| Either::Tls(Box::new(s)))
                            .map_err(tls_error),
                    }
                }
            }
        };
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| timeout(endpoint, CONNECT_TIMEOUT))??;
        let (mut sender, conn) = match stream {
            Either::Unix(s) => handshake(TokioIo::new(s)).await.map_err(http)?,
            Either::Tcp(s) => handshake(TokioIo::new(s)).await.map_err(http)?,
            Either::Tls(s) => handshake(TokioIo::new(*s)).await.map_err(http)?,
        };
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(http)
    }
}

fn expect_ok(
    endpoint: &Endpoint,
    path: &str,
    status: StatusCode,
    body: &[u8],
) -> Result<(), ClientError> {
    if status == StatusCode::OK {
        Ok(())
    } else {
        Err(status_error(endpoint, path, status, body))
    }
}

fn status_error(endpoint: &Endpoint, path: &str, status: StatusCode, body: &[u8]) -> ClientError {
    // The daemon's errors are ActionReply JSON; show their message when they are.
    let text = serde_json::from_slice::<ActionReply>(body)
        .map(|r| r.message)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
    ClientError::Status {
        endpoint: endpoint.to_string(),
        path: path.into(),
        status,
        body: text,
    }
}

fn timeout(endpoint: &Endpoint, timeout: Duration) -> ClientError {
    ClientError::Timeout {
        endpoint: endpoint.to_string(),
        timeout,
    }
}

enum Either {
    Unix(UnixStream),
    Tcp(TcpStream),
    // Boxed: a TLS session's state is large.
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

type Connection = Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

async fn handshake<T>(
    io: TokioIo<T>,
) -> Result<(hyper::client::conn::http1::SendRequest<Body>, Connection), hyper::Error>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    // The connection task ends with the response (or the stream); its error, if any,
    // has already reached the caller through the request.
    Ok((
        sender,
        Box::pin(async move {
            let _ = conn.await;
        }),
    ))
}

async fn collect(body: Incoming, endpoint: &Endpoint) -> Result<Bytes, ClientError> {
    body.collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| ClientError::Http {
            endpoint: endpoint.to_string(),
            error: e.to_string(),
        })
}

fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Decode {
        path: path.into(),
        error: e.to_string(),
    })
}

/// Live events from `/v1/events/stream`, parsed from server-sent events.
pub struct EventStream {
    inner: Pin<Box<dyn Stream<Item = Result<Event, ClientError>> + Send>>,
}

impl EventStream {
    fn new(body: Incoming, endpoint: String) -> EventStream {
        let state = (
            body,
            SseParser::default(),
            std::collections::VecDeque::new(),
            endpoint,
        );
        let stream = futures::stream::unfold(
            state,
            |(mut body, mut parser, mut ready, endpoint)| async move {
                loop {
                    if let Some(item) = ready.pop_front() {
                        return Some((item, (body, parser, ready, endpoint)));
                    }
                    match body.frame().await {
                        None => return None,
                        Some(Err(e)) => {
                            let err = ClientError::Http {
                                endpoint: endpoint.clone(),
                                error: e.to_string(),
                            };
                            return Some((Err(err), (body, parser, ready, endpoint)));
                        }
                        Some(Ok(frame)) => {
                            if let Ok(data) = frame.into_data() {
                                ready.extend(parser.feed(&data));
                            }
                        }
                    }
                }
            },
        );
        EventStream {
            inner: Box::pin(stream),
        }
    }
}

impl Stream for EventStream {
    type Item = Result<Event, ClientError>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// Splits a server-sent-events byte stream into events; keeps only `data` of events
/// without an `event:` name (named ones are notices such as "lagged").
#[derive(Default)]
struct SseParser {
    line: Vec<u8>,
    data: String,
    named: bool,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<Result<Event, ClientError>> {
        let mut out = Vec::new();
        for &b in bytes {
            if b != b'\n' {
                self.line.push(b);
                continue;
            }
            let line = String::from_utf8_lossy(&self.line)
                .trim_end_matches('\r')
                .to_owned();
            self.line.clear();
            if line.is_empty() {
                if !self.data.is_empty() && !self.named {
                    out.push(decode::<Event>(paths::EVENT_STREAM, self.data.as_bytes()));
                }
                self.data.clear();
                self.named = false;
            } else if let Some(d) = line.strip_prefix("data:") {
                if !self.data.is_empty() {
                    self.data.push('\n');
                }
                self.data.push_str(d.strip_prefix(' ').unwrap_or(d));
            } else if line.starts_with("event:") {
                self.named = true;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_parser_splits_events_across_chunks_and_skips_named_ones() {
        let mut p = SseParser::default();
        let e1 = r#"{"seq":1,"at_ms":5,"kind":"started","reason":"x"}"#;
        let e2 = r#"{"seq":2,"at_ms":6,"kind":"node_up","node":"a","reason":"y"}"#;
        let text = format!(
            "id: 1\ndata: {e1}\n\n: keep-alive\n\nevent: lagged\ndata: 3\n\nid: 2\ndata: {e2}\n\n"
        );
        let (a, b) = text.as_bytes().split_at(20);
        let mut got = p.feed(a);
        got.extend(p.feed(b));
        let seqs: Vec<u64> = got.into_iter().map(|r| r.unwrap().seq).collect();
        assert_eq!(seqs, vec![1, 2]);
    }

    /// A stand-in for dnsd on a Unix socket: answers every request with what `answer`
    /// says for its method, path and body, and records the requests.
    struct Fake {
        path: PathBuf,
        requests: Arc<std::sync::Mutex<Vec<String>>>,
        task: tokio::task::JoinHandle<()>,
    }

    type Answer = fn(&Method, &str, &[u8]) -> (StatusCode, String);

    impl Fake {
        fn start(dir: &std::path::Path, name: &str, answer: Answer) -> Fake {
            use hyper::service::service_fn;
            let path = dir.join(format!("{name}.sock"));
            let listener = tokio::net::UnixListener::bind(&path).unwrap();
            let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
            let seen = requests.clone();
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let seen = seen.clone();
                    let service = service_fn(move |req: Request<Incoming>| {
                        let seen = seen.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes())?;
                            let path = parts.uri.to_string();
                            // No await while the lock is held.
                            seen.lock()
                                .unwrap()
                                .push(format!("{} {path}", parts.method));
                            let (status, text) = answer(&parts.method, &path, &body);
                            let mut response = Response::new(Full::new(Bytes::from(text)));
                            *response.status_mut() = status;
                            Ok::<_, hyper::Error>(response)
                        }
                    });
                    tokio::spawn(
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service),
                    );
                }
            });
            Fake {
                path,
                requests,
                task,
            }
        }

        fn endpoint(&self) -> Endpoint {
            Endpoint::Unix(self.path.clone())
        }

        fn requests(&self) -> Vec<String> {
            self.requests.lock().unwrap().clone()
        }
    }

    impl Drop for Fake {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    fn reply_json(reply: &ActionReply) -> String {
        serde_json::to_string(reply).unwrap()
    }

    /// A status whose cluster says `leader` leads; nothing else in it matters here.
    fn status_led_by(me: &str, leader: &str) -> String {
        let mut st = crate::fixtures::three_members();
        st.cluster = Some(dnsd_api::ClusterStatus {
            name: me.into(),
            leading: me == leader,
            leader: Some(leader.into()),
            leader_contact: None,
            lease_left_ms: None,
            etcd_reachable: true,
            stale_for_ms: None,
            down_quorum: 2,
            servers: Vec::new(),
        });
        serde_json::to_string(&st).unwrap()
    }

    #[tokio::test]
    async fn reload_posts_without_a_body_and_reads_acceptance_and_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let accepting = Fake::start(dir.path(), "ok", |method, path, body| {
            assert_eq!(
                (method, path, body),
                (&Method::POST, "/v1/reload", &b""[..])
            );
            let reply = ActionReply::done("configuration reloaded: app4 added".into());
            (StatusCode::OK, reply_json(&reply))
        });
        let reply = Client::new(accepting.endpoint()).reload().await.unwrap();
        assert!(reply.accepted);
        assert_eq!(reply.message, "configuration reloaded: app4 added");
        assert_eq!(accepting.requests(), ["POST /v1/reload"]);

        let refusing = Fake::start(dir.path(), "refused", |_, _, _| {
            let reply = ActionReply::refused(
                RefusalKind::ReloadRefused,
                "node[3].address: \"300.1.1.1\" is not an IP address".into(),
            );
            (StatusCode::CONFLICT, reply_json(&reply))
        });
        let reply = Client::new(refusing.endpoint()).reload().await.unwrap();
        assert!(!reply.accepted);
        assert_eq!(reply.kind, Some(RefusalKind::ReloadRefused));
        assert!(
            reply.message.contains("node[3].address"),
            "{}",
            reply.message
        );

        // A dnsd from before reload answers 404: an error that says what to do instead.
        let old = Fake::start(dir.path(), "old", |_, _, _| {
            (StatusCode::NOT_FOUND, String::new())
        });
        let err = Client::new(old.endpoint()).reload().await.unwrap_err();
        assert!(err.to_string().contains("send it SIGHUP"), "{err}");
    }

    #[tokio::test]
    async fn a_cluster_client_moves_on_from_a_dead_server_and_resends_to_the_leader() {
        let dir = tempfile::tempdir().unwrap();
        // ts1 is gone: its socket file stays, nobody listens (as after a SIGKILL).
        let dead = dir.path().join("ts1.sock");
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        let follower = Fake::start(dir.path(), "ts2", |_, path, _| {
            if path == paths::STATUS {
                return (StatusCode::OK, status_led_by("ts2", "ts3"));
            }
            let reply = ActionReply::refused(
                RefusalKind::NotLeader,
                "ts2 does not decide: ts3 leads; send the action there".into(),
            );
            (StatusCode::CONFLICT, reply_json(&reply))
        });
        let leader = Fake::start(dir.path(), "ts3", |_, path, _| {
            if path == paths::STATUS {
                return (StatusCode::OK, status_led_by("ts3", "ts3"));
            }
            let reply = ActionReply::done("www: failover to app2".into());
            (StatusCode::OK, reply_json(&reply))
        });
        let client = Client::cluster(vec![
            ("ts1".into(), Endpoint::Unix(dead)),
            ("ts2".into(), follower.endpoint()),
            ("ts3".into(), leader.endpoint()),
        ]);
        assert_eq!(client.terminal_server(), Some("ts1"));
        let status = client.status().await.unwrap();
        assert_eq!(status.cluster.unwrap().name, "ts2");
        assert_eq!(client.terminal_server(), Some("ts2"), "ts1 is skipped");

        let reply = client
            .act(&Action::Failover { service: None })
            .await
            .unwrap();
        assert!(reply.accepted, "{reply:?}");
        assert_eq!(
            reply.message,
            "www: failover to app2 (sent to ts3, the leader)"
        );
        assert_eq!(client.terminal_server(), Some("ts3"));
        assert_eq!(
            follower.requests(),
            ["GET /v1/status", "POST /v1/actions", "GET /v1/status"],
            "the first status, then refused once, then asked who leads"
        );
        assert_eq!(leader.requests(), ["POST /v1/actions"]);

        // A client of one dnsd returns the refusal as it is.
        let single = Client::new(follower.endpoint());
        let reply = single
            .act(&Action::Failover { service: None })
            .await
            .unwrap();
        assert_eq!(reply.kind, Some(RefusalKind::NotLeader));
    }

    #[test]
    fn token_is_not_printed() {
        let e = Endpoint::Tcp {
            addr: "127.0.0.1:1".into(),
            token: "s3cr3t-s3cr3t-s3cr3t".into(),
            tls: None,
        };
        assert!(!format!("{e:?} {e}").contains("s3cr3t"));
    }
}
