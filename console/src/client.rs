//! A client of dnsd's control API: status, events (listed or streamed), actions and
//! metrics, over the daemon's Unix socket or over TCP with a bearer token: over TLS,
//! verifying dnsd's certificate (`tls`), or plain HTTP, which the command line only
//! allows towards a loopback address.
//!
//! Each call opens its own HTTP/1.1 connection: calls are rare (a status poll, an
//! operator action), connections over a Unix socket are cheap, and nothing has to be
//! kept alive or reconnected. The event stream keeps its connection for as long as it
//! is read.

use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use dnsd_api::{Action, ActionReply, Event, Status, paths};
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
    endpoint: Endpoint,
    operator: Option<String>,
}

type Body = Full<Bytes>;

impl Client {
    pub fn new(endpoint: Endpoint) -> Client {
        Client {
            endpoint,
            operator: None,
        }
    }

    /// Names the operator in every action this client sends (shown in the daemon's log).
    pub fn with_operator(mut self, operator: impl Into<String>) -> Client {
        self.operator = Some(operator.into());
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
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
        let (status, body) = self.call(Method::GET, paths::METRICS, None).await?;
        self.expect_ok(paths::METRICS, status, &body)?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// `POST /v1/actions`. Accepted and refused actions both come back as `Ok`.
    pub async fn act(&self, action: &Action) -> Result<ActionReply, ClientError> {
        let path = paths::ACTIONS;
        let body = serde_json::to_vec(action).map_err(|e| ClientError::Decode {
            path: path.into(),
            error: e.to_string(),
        })?;
        let (status, body) = self.call(Method::POST, path, Some(body)).await?;
        match status {
            StatusCode::OK | StatusCode::CONFLICT => decode(path, &body),
            _ => Err(self.status_error(path, status, &body)),
        }
    }

    /// `GET /v1/events/stream?since=N`: past events above `since`, then live ones, for
    /// as long as the stream is read. Ends when the daemon closes the connection.
    pub async fn stream_events(&self, since: u64) -> Result<EventStream, ClientError> {
        let path = format!("{}?since={since}", paths::EVENT_STREAM);
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.send(Method::GET, &path, None))
            .await
            .map_err(|_| self.timeout(REQUEST_TIMEOUT))??;
        let status = response.status();
        if status != StatusCode::OK {
            let body = collect(response.into_body(), &self.endpoint)
                .await
                .unwrap_or_default();
            return Err(self.status_error(&path, status, &body));
        }
        Ok(EventStream::new(
            response.into_body(),
            self.endpoint.to_string(),
        ))
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let (status, body) = self.call(Method::GET, path, None).await?;
        self.expect_ok(path, status, &body)?;
        decode(path, &body)
    }

    fn expect_ok(&self, path: &str, status: StatusCode, body: &[u8]) -> Result<(), ClientError> {
        if status == StatusCode::OK {
            Ok(())
        } else {
            Err(self.status_error(path, status, body))
        }
    }

    fn status_error(&self, path: &str, status: StatusCode, body: &[u8]) -> ClientError {
        // The daemon's errors are ActionReply JSON; show their message when they are.
        let text = serde_json::from_slice::<ActionReply>(body)
            .map(|r| r.message)
            .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned());
        ClientError::Status {
            endpoint: self.endpoint.to_string(),
            path: path.into(),
            status,
            body: text,
        }
    }

    fn timeout(&self, timeout: Duration) -> ClientError {
        ClientError::Timeout {
            endpoint: self.endpoint.to_string(),
            timeout,
        }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            let response = self.send(method, path, body).await?;
            let status = response.status();
            let body = collect(response.into_body(), &self.endpoint).await?;
            Ok((status, body))
        })
        .await
        .map_err(|_| self.timeout(REQUEST_TIMEOUT))?
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Response<Incoming>, ClientError> {
        let endpoint = self.endpoint.to_string();
        let http = |error: hyper::Error| ClientError::Http {
            endpoint: endpoint.clone(),
            error: error.to_string(),
        };
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "dnsd");
        if let Some(op) = &self.operator {
            req = req.header(OPERATOR_HEADER, op.as_str());
        }
        if let Endpoint::Tcp { token, .. } = &self.endpoint {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let has_body = body.is_some();
        if has_body {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Body::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ClientError::Http {
                endpoint: endpoint.clone(),
                error: e.to_string(),
            })?;
        let connect_error = |error| ClientError::Connect {
            endpoint: endpoint.clone(),
            error,
        };
        let tls_error = |error: std::io::Error| ClientError::Tls {
            endpoint: endpoint.clone(),
            hint: tls::hint(&error),
            error,
        };
        let connect = async {
            match &self.endpoint {
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
            .map_err(|_| self.timeout(CONNECT_TIMEOUT))??;
        let (mut sender, conn) = match stream {
            Either::Unix(s) => handshake(TokioIo::new(s)).await.map_err(http)?,
            Either::Tcp(s) => handshake(TokioIo::new(s)).await.map_err(http)?,
            Either::Tls(s) => handshake(TokioIo::new(*s)).await.map_err(http)?,
        };
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(http)
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
