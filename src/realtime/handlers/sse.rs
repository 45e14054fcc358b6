//! The Server-Sent Events transport: `GET /realtime/sse?path=…&path=…`.
//!
//! The stream's SSE `id:` is a cursor of every path's last event id, comma-separated in the
//! order of the `path` parameters, so the one `Last-Event-ID` an `EventSource` sends back on
//! reconnect resumes every path.

use std::{collections::HashMap, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    extract::{RawQuery, State},
    http::HeaderMap,
    response::sse::{Event, Sse},
};
use futures_util::Stream;
use serde_json::json;
use tokio::{
    sync::mpsc,
    time::{Instant, sleep_until},
};

use crate::{
    http::{AppError, error::FieldError},
    realtime::{
        hub::Outlet,
        messages::{self, Authed, Out},
        session::Session,
    },
    state::AppState,
};

/// The query of `/realtime/sse` (documentation; parsed by hand, `path` repeats).
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[expect(dead_code, reason = "read by hand from the raw query; the struct documents it")]
pub struct SseQuery {
    /// A path to subscribe to; repeat for several (at most `REALTIME_MAX_SUBSCRIPTIONS`).
    pub path: Vec<String>,
    /// An access token, for clients that cannot send `Authorization` (`EventSource`).
    pub access_token: Option<String>,
    /// The cursor to resume from, for clients that cannot send `Last-Event-ID`.
    #[serde(rename = "lastEventId")]
    pub last_event_id: Option<String>,
}

/// Realtime over Server-Sent Events: every message is the `data:` of one SSE message, the same
/// JSON objects as on the WebSocket. Resume with `Last-Event-ID`. See `docs/realtime.md`.
#[utoipa::path(get, path = "/realtime/sse", tag = "realtime", params(SseQuery), security(("bearer" = [])),
    responses((status = 200, description = "An event stream", content_type = "text/event-stream"), (status = 400), (status = 401)))]
pub async fn realtime_sse(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, AppError> {
    let mut paths = Vec::new();
    let mut token = None;
    let mut cursor = headers.get("last-event-id").and_then(|v| v.to_str().ok()).map(str::to_string);
    for (k, v) in form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes()) {
        match &*k {
            "path" => paths.push(v.into_owned()),
            "access_token" => token = Some(v.into_owned()),
            "lastEventId" if cursor.is_none() => cursor = Some(v.into_owned()),
            _ => {}
        }
    }
    let token = token
        .or_else(|| crate::auth::extract::authorization(&headers, "bearer").map(str::to_string))
        .ok_or_else(|| AppError::Unauthorized("missing access token (access_token or Authorization: Bearer)".into()))?;
    let authed = Authed::check(&state, &token)?;
    let max = state.config.realtime.max_subscriptions;
    if paths.is_empty() || paths.len() > max {
        return Err(AppError::BadRequest {
            message: format!("path: give 1 to {max} path parameters"),
            details: vec![FieldError::new("path", format!("1 to {max} paths"))],
        });
    }
    if let Some((i, _)) = paths.iter().enumerate().find(|(i, p)| paths[..*i].contains(p)) {
        return Err(AppError::invalid_field(format!("path[{i}]"), "is given twice"));
    }
    let since = parse_cursor(cursor.as_deref(), paths.len());
    let (tx, rx) = mpsc::channel::<Event>(32);
    tokio::spawn(run(state, authed, paths, since, tx));
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) });
    Ok(Sse::new(stream))
}

/// One id per path, or none when the cursor does not fit these paths (then every path starts
/// with a snapshot).
fn parse_cursor(cursor: Option<&str>, paths: usize) -> Vec<Option<u64>> {
    let parsed: Option<Vec<Option<u64>>> = cursor.map(|c| c.split(',').map(|s| s.trim().parse().ok()).collect());
    match parsed {
        Some(ids) if ids.len() == paths => ids,
        _ => vec![None; paths],
    }
}

/// The writing end of one stream.
struct Writer {
    tx: mpsc::Sender<Event>,
    outlet: Arc<Outlet>,
    order: Vec<Arc<str>>,
    at: HashMap<Arc<str>, u64>,
    /// How long a last message may wait for a client that does not read.
    patience: Duration,
}

impl Writer {
    fn cursor(&self) -> String {
        self.order.iter().map(|p| self.at.get(p).map(u64::to_string).unwrap_or_default()).collect::<Vec<_>>().join(",")
    }

    fn event(&mut self, out: Out) -> Event {
        let mut event = Event::default().data(&*out.text);
        if let Some((path, id)) = out.at {
            self.at.insert(path, id);
            event = event.id(self.cursor());
        }
        event
    }

    /// Sends one message; `false` when the client is gone or the connection is being closed
    /// (a client that stopped reading must not hold the stream open).
    async fn send(&mut self, out: Out) -> bool {
        let event = self.event(out);
        tokio::select! {
            sent = self.tx.send(event) => sent.is_ok(),
            _ = self.outlet.wait_killed() => false,
        }
    }

    /// The last message before the stream ends, if the client takes it in time.
    async fn send_last(&mut self, out: Out) {
        let event = self.event(out);
        let _ = tokio::time::timeout(self.patience, self.tx.send(event)).await;
    }
}

async fn run(state: AppState, authed: Authed, paths: Vec<String>, since: Vec<Option<u64>>, tx: mpsc::Sender<Event>) {
    let expires = Instant::now() + authed.remaining();
    let mut session = Session::open(&state, authed.user, "sse").await;
    let mut out = Writer {
        tx,
        outlet: session.outlet.clone(),
        order: paths.iter().map(|p| Arc::from(p.as_str())).collect(),
        at: HashMap::new(),
        patience: state.config.realtime.idle_timeout,
    };
    let ping_every = state.config.realtime.ping_interval;
    let reason = 'run: {
        'subscribing: for (path, since) in paths.iter().zip(since) {
            for msg in session.subscribe(path, since).await {
                if !out.send(msg).await {
                    if out.outlet.killed().is_some() {
                        // Closing already (revoked, slow): the loop below says why.
                        break 'subscribing;
                    }
                    break 'run "client_closed";
                }
            }
        }
        let mut ping = tokio::time::interval_at(Instant::now() + ping_every, ping_every);
        let outlet = out.outlet.clone();
        loop {
            tokio::select! {
                biased;
                killed = outlet.wait_killed() => {
                    let (_, words, why) = messages::close_reason(killed);
                    if why != "shutdown" {
                        out.send_last(messages::error(None, why, words)).await;
                    }
                    break why;
                }
                d = session.next_delivery() => {
                    let Some(d) = d else { break "closed" };
                    let msgs = session.outs_from(d).await;
                    let n = msgs.len() as u64;
                    let mut stopped = false;
                    for m in msgs {
                        if !out.send(m).await {
                            stopped = true;
                            break;
                        }
                    }
                    if stopped {
                        // Closing (the kill branch says why) or the client is gone.
                        if out.outlet.killed().is_some() { continue }
                        break 'run "client_closed";
                    }
                    state.metrics.realtime_messages_sent.inc_by(n);
                }
                _ = ping.tick() => {
                    // A comment: keeps proxies from timing the stream out, and shows a client
                    // that went away (the send fails).
                    let sent = tokio::time::timeout(out.patience, out.tx.send(Event::default().comment("ping"))).await;
                    if !matches!(sent, Ok(Ok(()))) { break "client_closed" }
                }
                () = sleep_until(expires) => {
                    let msg = json!({ "type": "auth_expired", "message": "access token expired; reconnect with a new token and Last-Event-ID" });
                    out.send_last(Out { text: msg.to_string().into(), at: None }).await;
                    break "auth_expired";
                }
            }
        }
    };
    session.close(reason).await;
}

#[cfg(test)]
mod tests {
    use super::parse_cursor;

    #[test]
    fn a_cursor_resumes_each_path_or_none() {
        assert_eq!(parse_cursor(Some("5"), 1), vec![Some(5)]);
        assert_eq!(parse_cursor(Some("5,,7"), 3), vec![Some(5), None, Some(7)]);
        assert_eq!(parse_cursor(Some("5,7"), 3), vec![None, None, None]);
        assert_eq!(parse_cursor(None, 2), vec![None, None]);
        assert_eq!(parse_cursor(Some("x"), 1), vec![None]);
    }
}
