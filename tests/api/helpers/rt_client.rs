//! Small real clients of the realtime API (docs/realtime.md): a WebSocket client on
//! tokio-tungstenite and a Server-Sent Events client on reqwest's streamed body. They speak the
//! wire protocol only (no application code), so the tests check what a browser or a phone sees.
//!
//! Every wait takes a timeout and panics with what it was waiting for; a timeout is only ever
//! a bound on waiting, never something a test asserts about speed.

use std::{net::SocketAddr, time::Duration};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::{net::TcpStream, time::Instant};
use tokio_tungstenite::{
    WebSocketStream, client_async,
    tungstenite::{Message, protocol::CloseFrame},
};

use crate::helpers::TestApp;

/// The usual bound on waiting for something the server should send.
pub const WAIT: Duration = Duration::from_secs(10);

/// The WebSocket endpoint.
pub const WS_PATH: &str = "/api/v1/realtime";

/// The SSE endpoint.
pub const SSE_PATH: &str = "/api/v1/realtime/sse";

/// The event id in a `snapshot` or `event` message (a decimal string) as a number.
pub fn id_of(msg: &Value) -> u64 {
    let id = msg["id"].as_str().unwrap_or_else(|| panic!("the id of a message is a string: {msg}"));
    id.parse().unwrap_or_else(|_| panic!("the id of a message is a decimal integer: {msg}"))
}

// ---------------------------------------------------------------------------------------------
// WebSocket
// ---------------------------------------------------------------------------------------------

/// What a read from the socket gave.
#[derive(Debug)]
pub enum WsNext {
    Json(Value),
    /// A close frame (code and reason), or `None` when the connection ended without one.
    Closed(Option<(u16, String)>),
    TimedOut,
}

pub struct WsClient {
    ws: WebSocketStream<TcpStream>,
    /// For messages: which client this is.
    pub name: String,
    /// The error that ended the connection, if one did (for messages).
    pub error: Option<String>,
}

impl WsClient {
    /// Connects to `app`, with `?access_token=` when a token is given.
    pub async fn connect(app: &TestApp, token: Option<&str>) -> WsClient {
        WsClient::connect_to(app.addr, token, None).await
    }

    /// Connects with `?access_token=token` (the common case).
    pub async fn authed(app: &TestApp, token: &str) -> WsClient {
        WsClient::connect_to(app.addr, Some(token), None).await
    }

    /// Connects to `addr`; `recv_buffer` sets the socket's receive buffer before connecting
    /// (a small one makes a client that stops reading fall behind after little data).
    pub async fn connect_to(addr: SocketAddr, token: Option<&str>, recv_buffer: Option<u32>) -> WsClient {
        let url = match token {
            Some(t) => format!("ws://{addr}{WS_PATH}?access_token={t}"),
            None => format!("ws://{addr}{WS_PATH}"),
        };
        let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() }
            .expect("a socket");
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
        }
        let stream = socket.connect(addr).await.expect("TCP connect to the app");
        let (ws, _res) = match client_async(url.as_str(), stream).await {
            Ok(ok) => ok,
            Err(e) => panic!("WebSocket handshake with {url} failed: {e}"),
        };
        WsClient { ws, name: "ws".into(), error: None }
    }

    pub fn named(mut self, name: &str) -> WsClient {
        self.name = name.to_string();
        self
    }

    pub async fn send_json(&mut self, v: Value) {
        self.send_text(&v.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap_or_else(|e| panic!("{}: sending {text}: {e}", self.name));
    }

    /// The next JSON message, a close, or a timeout; WebSocket pings and pongs are skipped
    /// (tungstenite answers pings itself while we read).
    pub async fn recv(&mut self, timeout: Duration) -> WsNext {
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return WsNext::TimedOut,
                Ok(None) => return WsNext::Closed(None),
                Ok(Some(Err(e))) => {
                    self.error = Some(e.to_string());
                    return WsNext::Closed(None);
                }
                Ok(Some(Ok(msg))) => match msg {
                    Message::Text(t) => {
                        let v: Value = serde_json::from_str(t.as_str())
                            .unwrap_or_else(|e| panic!("{}: a text message that is not JSON ({e}): {t}", self.name));
                        assert!(v["type"].is_string(), "{}: every message has a type: {v}", self.name);
                        return WsNext::Json(v);
                    }
                    Message::Binary(b) => panic!("{}: unexpected binary message of {} bytes", self.name, b.len()),
                    Message::Close(frame) => {
                        return WsNext::Closed(
                            frame.map(|CloseFrame { code, reason }| (u16::from(code), reason.as_str().to_string())),
                        );
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                },
            }
        }
    }

    /// The next JSON message; panics on a timeout or a close.
    pub async fn next_json(&mut self, timeout: Duration) -> Value {
        match self.recv(timeout).await {
            WsNext::Json(v) => v,
            WsNext::Closed(c) => panic!("{}: closed ({c:?}, {:?}) while waiting for a message", self.name, self.error),
            WsNext::TimedOut => panic!("{}: no message within {timeout:?}", self.name),
        }
    }

    /// Reads (skipping whatever JSON messages come first) until the server closes; returns the
    /// close code and reason. Panics when the connection ends without a close frame or nothing
    /// closes it within `timeout`.
    pub async fn expect_close(&mut self, timeout: Duration) -> (u16, String) {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())).await {
                WsNext::Json(_) => continue,
                WsNext::Closed(Some(c)) => return c,
                WsNext::Closed(None) => {
                    panic!("{}: the connection ended without a close frame ({:?})", self.name, self.error)
                }
                WsNext::TimedOut => panic!("{}: not closed within {timeout:?}", self.name),
            }
        }
    }

    /// Like `expect_close`, also returning the JSON messages read before the close.
    pub async fn messages_until_close(&mut self, timeout: Duration) -> (Vec<Value>, (u16, String)) {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())).await {
                WsNext::Json(v) => seen.push(v),
                WsNext::Closed(Some(c)) => return (seen, c),
                WsNext::Closed(None) => panic!("{}: ended without a close frame after {seen:?}", self.name),
                WsNext::TimedOut => panic!("{}: not closed within {timeout:?}; read {seen:?}", self.name),
            }
        }
    }

    /// Reads until a message satisfies `pred`; returns the messages skipped and the match.
    pub async fn collect_until(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> (Vec<Value>, Value) {
        let deadline = Instant::now() + timeout;
        let mut skipped = Vec::new();
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())).await {
                WsNext::Json(v) if pred(&v) => return (skipped, v),
                WsNext::Json(v) => skipped.push(v),
                WsNext::Closed(c) => panic!("{}: closed ({c:?}) waiting for {what}; read {skipped:?}", self.name),
                WsNext::TimedOut => panic!("{}: no {what} within {timeout:?}; read {skipped:?}", self.name),
            }
        }
    }

    /// The next message of type `ty`, skipping others.
    pub async fn next_of_type(&mut self, ty: &str, timeout: Duration) -> Value {
        self.collect_until(&format!("a {ty:?} message"), timeout, |v| v["type"] == ty).await.1
    }

    /// The next message naming `path`, skipping messages of other paths and path-less ones
    /// (`pong`, `auth_ok`); a path-less `error` or `auth_expired` fails the test.
    pub async fn next_on(&mut self, path: &str, timeout: Duration) -> Value {
        let name = self.name.clone();
        self.collect_until(&format!("a message on {path}"), timeout, |v| {
            if v.get("path").is_none() && (v["type"] == "error" || v["type"] == "auth_expired") {
                panic!("{name}: unexpected {v} while waiting for {path}");
            }
            v["path"] == path
        })
        .await
        .1
    }

    /// The next message on `path`, asserted to be a snapshot.
    pub async fn expect_snapshot(&mut self, path: &str) -> Value {
        let v = self.next_on(path, WAIT).await;
        assert_eq!(v["type"], "snapshot", "{}: expected the snapshot of {path}, got {v}", self.name);
        id_of(&v);
        v
    }

    /// The next message on `path`, asserted to be an event.
    pub async fn expect_event(&mut self, path: &str) -> Value {
        let v = self.next_on(path, WAIT).await;
        assert_eq!(v["type"], "event", "{}: expected an event on {path}, got {v}", self.name);
        id_of(&v);
        v
    }

    /// The next message on `path`, asserted to be an `error` with this code.
    pub async fn expect_error(&mut self, path: &str, code: &str) -> Value {
        let v = self.next_on(path, WAIT).await;
        assert_eq!(v["type"], "error", "{}: expected an error for {path}, got {v}", self.name);
        assert_eq!(v["code"], code, "{}: {path}: {v}", self.name);
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: an error has a message: {v}", self.name);
        v
    }

    pub async fn subscribe(&mut self, path: &str) {
        self.send_json(json!({ "type": "subscribe", "path": path })).await;
    }

    pub async fn subscribe_since(&mut self, path: &str, since: &str) {
        self.send_json(json!({ "type": "subscribe", "path": path, "since": since })).await;
    }

    /// Subscribes and returns the snapshot.
    pub async fn snapshot(&mut self, path: &str) -> Value {
        self.subscribe(path).await;
        self.expect_snapshot(path).await
    }

    /// Sends `{"type":"auth"}` and returns the `auth_ok`.
    pub async fn auth(&mut self, token: &str) -> Value {
        self.send_json(json!({ "type": "auth", "token": token })).await;
        let v = self.next_json(WAIT).await;
        assert_eq!(v["type"], "auth_ok", "{}: expected auth_ok, got {v}", self.name);
        v
    }

    /// Sends `{"type":"ping"}` and reads until the `pong`; returns every message read before it.
    /// After it, whatever the server had queued for this connection before answering has been
    /// read.
    pub async fn ping_round_trip(&mut self) -> Vec<Value> {
        self.send_json(json!({ "type": "ping" })).await;
        self.collect_until("a pong", WAIT, |v| v["type"] == "pong").await.0
    }

    /// Closes from the client side and waits for the server's answer, so the server has seen
    /// the close when this returns.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        let deadline = Instant::now() + WAIT;
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(deadline, self.ws.next()).await {}
    }

    /// Stops reading entirely: the stream is held but never polled, so nothing is read and no
    /// WebSocket pong is sent (a dead or stuck client). `resume` reads again.
    pub fn stop_reading(self) -> StalledWs {
        StalledWs { client: self }
    }
}

/// A WebSocket client nobody reads from.
pub struct StalledWs {
    client: WsClient,
}

impl StalledWs {
    pub fn resume(self) -> WsClient {
        self.client
    }
}

// ---------------------------------------------------------------------------------------------
// Server-Sent Events
// ---------------------------------------------------------------------------------------------

/// How an SSE request carries its token.
#[derive(Clone, Copy, Debug)]
pub enum SseAuth<'a> {
    None,
    Query(&'a str),
    Bearer(&'a str),
}

/// The SSE URL with these query parameters, encoded.
pub fn sse_url(addr: SocketAddr, query: &[(&str, &str)]) -> String {
    let mut qs = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        qs.append_pair(k, v);
    }
    format!("http://{addr}{SSE_PATH}?{}", qs.finish())
}

/// `GET /api/v1/realtime/sse?path=..` as it is, for checking refusals.
pub async fn sse_request(
    addr: SocketAddr,
    paths: &[&str],
    auth: SseAuth<'_>,
    last_event_id: Option<&str>,
) -> reqwest::Response {
    // No overall timeout: a stream lives as long as the test wants it.
    let client = reqwest::Client::builder().build().expect("client");
    let mut query: Vec<(&str, &str)> = paths.iter().map(|p| ("path", *p)).collect();
    if let SseAuth::Query(t) = auth {
        query.push(("access_token", t));
    }
    let mut req = client.get(sse_url(addr, &query)).header("accept", "text/event-stream");
    if let SseAuth::Bearer(t) = auth {
        req = req.bearer_auth(t);
    }
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id);
    }
    tokio::time::timeout(WAIT, req.send())
        .await
        .expect("the SSE response headers within the timeout")
        .expect("SSE request failed")
}

/// What reading an SSE stream gave.
#[derive(Debug)]
pub enum SseNext {
    /// A message: its `id:` field (when it had one) and its `data:` as JSON.
    Message(Option<String>, Value),
    Ended,
    TimedOut,
}

pub struct SseClient {
    res: reqwest::Response,
    buf: Vec<u8>,
    ended: bool,
    /// Data messages read (and skipped) by `ended`.
    pub skipped: Vec<Value>,
    /// How many comment lines (`: ping`) were read.
    pub comments: usize,
}

impl SseClient {
    /// Opens a stream (200 and `text/event-stream` asserted).
    pub async fn connect(
        addr: SocketAddr,
        paths: &[&str],
        auth: SseAuth<'_>,
        last_event_id: Option<&str>,
    ) -> SseClient {
        let res = sse_request(addr, paths, auth, last_event_id).await;
        SseClient::from_response(res).await
    }

    /// A stream from a response to a request made elsewhere (200 and the content type asserted).
    pub async fn from_response(res: reqwest::Response) -> SseClient {
        let status = res.status().as_u16();
        if status != 200 {
            let url = res.url().path().to_string();
            let body = res.text().await.unwrap_or_default();
            panic!("SSE {url}: status {status}: {body}");
        }
        let ct = res.headers().get("content-type").map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default();
        assert!(ct.starts_with("text/event-stream"), "SSE content type: {ct:?}");
        SseClient { res, buf: Vec::new(), ended: false, skipped: Vec::new(), comments: 0 }
    }

    /// A stream with `?access_token=`.
    pub async fn authed(app: &TestApp, paths: &[&str], token: &str) -> SseClient {
        SseClient::connect(app.addr, paths, SseAuth::Query(token), None).await
    }

    /// One complete block (up to a blank line) out of the buffer, if there is one.
    fn take_block(&mut self) -> Option<String> {
        let pos = self.buf.windows(2).position(|w| w == b"\n\n")?;
        let block: Vec<u8> = self.buf.drain(..pos + 2).collect();
        Some(String::from_utf8(block).expect("SSE is UTF-8"))
    }

    /// Parses a block; `None` for a block of comments only.
    fn parse(&mut self, block: &str) -> Option<(Option<String>, Value)> {
        let mut id = None;
        let mut data: Vec<&str> = Vec::new();
        for line in block.split('\n') {
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                continue;
            }
            if line.starts_with(':') {
                self.comments += 1;
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line, ""),
            };
            match field {
                "id" => id = Some(value.to_string()),
                "data" => data.push(value),
                _ => {}
            }
        }
        if data.is_empty() {
            return None;
        }
        let text = data.join("\n");
        let v: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("SSE data that is not JSON ({e}): {text}"));
        assert!(v["type"].is_string(), "every SSE message has a type: {v}");
        Some((id, v))
    }

    /// The next message, the end of the stream, or a timeout (comments skipped).
    pub async fn recv(&mut self, timeout: Duration) -> SseNext {
        let deadline = Instant::now() + timeout;
        loop {
            while let Some(block) = self.take_block() {
                if let Some((id, v)) = self.parse(&block) {
                    return SseNext::Message(id, v);
                }
            }
            if self.ended {
                return SseNext::Ended;
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Err(_) => return SseNext::TimedOut,
                // CRLF normalised, so blocks split on one separator.
                Ok(Ok(Some(bytes))) => self.buf.extend(bytes.iter().filter(|&&b| b != b'\r')),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// The next message as `(id field, data)`; panics on a timeout or the end of the stream.
    pub async fn next_message(&mut self, timeout: Duration) -> (Option<String>, Value) {
        match self.recv(timeout).await {
            SseNext::Message(id, v) => (id, v),
            SseNext::Ended => panic!("the SSE stream ended while waiting for a message"),
            SseNext::TimedOut => panic!("no SSE message within {timeout:?}"),
        }
    }

    /// The next message naming `path` (others, and path-less `pong`s, skipped).
    pub async fn next_on(&mut self, path: &str, timeout: Duration) -> (Option<String>, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let (id, v) = self.next_message(deadline.saturating_duration_since(Instant::now())).await;
            if v["path"] == path {
                return (id, v);
            }
            assert!(v["type"] != "error" && v["type"] != "auth_expired", "unexpected {v} waiting for {path}");
        }
    }

    /// The next message of type `ty` (others skipped).
    pub async fn next_of_type(&mut self, ty: &str, timeout: Duration) -> (Option<String>, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            let (id, v) = self.next_message(deadline.saturating_duration_since(Instant::now())).await;
            if v["type"] == ty {
                return (id, v);
            }
        }
    }

    /// Whether a comment line (a keep-alive `: ping`) arrives within `timeout`; data messages
    /// read meanwhile are kept in `skipped`.
    pub async fn wait_for_comment(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let before = self.comments;
        loop {
            while let Some(block) = self.take_block() {
                if let Some((_, v)) = self.parse(&block) {
                    self.skipped.push(v);
                }
            }
            if self.comments > before {
                return true;
            }
            if self.ended {
                return false;
            }
            match tokio::time::timeout_at(deadline, self.res.chunk()).await {
                Err(_) => return false,
                Ok(Ok(Some(bytes))) => self.buf.extend(bytes.iter().filter(|&&b| b != b'\r')),
                Ok(Ok(None)) | Ok(Err(_)) => self.ended = true,
            }
        }
    }

    /// Whether the server ends the stream within `timeout`; data messages read meanwhile are
    /// kept in `skipped`.
    pub async fn ended(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            match self.recv(deadline.saturating_duration_since(Instant::now())).await {
                SseNext::Message(_, v) => self.skipped.push(v),
                SseNext::Ended => return true,
                SseNext::TimedOut => return false,
            }
        }
    }
}
