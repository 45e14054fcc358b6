//! The WebSocket transport, `GET /realtime`: one connection's loop (the auth deadline, pings and
//! the idle timeout, token expiry, deliveries); what the client sends is handled in `client`.

use std::time::Duration;

use axum::{
    extract::{
        Query, State, WebSocketUpgrade,
        ws::{CloseFrame, Message, WebSocket, rejection::WebSocketUpgradeRejection},
    },
    response::Response,
};
use futures_util::SinkExt;
use serde::Deserialize;
use serde_json::json;
use tokio::time::{Instant, sleep_until};

use crate::{
    http::AppError,
    realtime::{
        hub::{CloseReason, Outlet},
        messages::{self, Authed, Out},
        session::Session,
    },
    state::AppState,
};

mod client;

use client::handle;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// An access token; or send `{"type":"auth","token":…}` first, within 10 s.
    pub access_token: Option<String>,
}

/// Realtime over WebSocket. Send `{"type":"subscribe","path":P}` (with `since` to resume),
/// `{"type":"unsubscribe","path":P}`, `{"type":"auth","token":T}` and `{"type":"ping"}`; receive
/// `snapshot`, `event`, `reset`, `error`, `auth_ok`, `auth_expired`, `unsubscribed` and `pong`
/// messages. See `docs/realtime.md` for paths, ids and close codes.
#[utoipa::path(get, path = "/realtime", tag = "realtime", params(WsQuery),
    responses((status = 101, description = "Switching to the WebSocket protocol"), (status = 400, description = "not a WebSocket upgrade")))]
pub async fn realtime(
    State(state): State<AppState>,
    Query(q): Query<WsQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, AppError> {
    let upgrade = upgrade.map_err(|e| AppError::bad_request(format!("expected a WebSocket upgrade: {e}")))?;
    Ok(upgrade
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(64 * 1024)
        .max_frame_size(64 * 1024)
        .on_upgrade(move |socket| run(state, socket, q.access_token)))
}

async fn send(socket: &mut WebSocket, out: Out) -> Result<(), axum::Error> {
    socket.feed(Message::Text(out.text)).await
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    close_within(socket, code, reason, Duration::from_secs(2)).await;
}

/// Sends the close frame, waiting at most `wait` for a peer that does not read.
async fn close_within(socket: &mut WebSocket, code: u16, reason: &'static str, wait: Duration) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(wait, socket.send(Message::Close(Some(frame)))).await;
}

/// Connection state before and after authentication.
enum Phase {
    Waiting { deadline: Instant },
    Live { session: Box<Session>, expires: Instant, grace: Option<Instant> },
}

async fn run(state: AppState, mut socket: WebSocket, token: Option<String>) {
    let cfg = state.config.realtime.clone();
    let mut phase = Phase::Waiting { deadline: Instant::now() + cfg.auth_timeout };
    if let Some(token) = token {
        match Authed::check(&state, &token) {
            Ok(authed) => phase = live(&state, authed).await,
            Err(e) => {
                let _ = send(&mut socket, messages::error(None, "unauthorized", &e.to_string())).await;
                close(&mut socket, 4001, "unauthorized").await;
                return;
            }
        }
    }
    let mut ping = tokio::time::interval_at(Instant::now() + cfg.ping_interval, cfg.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let far = || Instant::now() + Duration::from_secs(86_400 * 365);
    let reason: &'static str = loop {
        let (auth_deadline, expires, grace, delivering) = match &phase {
            Phase::Waiting { deadline } => (Some(*deadline), None, None, false),
            Phase::Live { expires, grace, .. } => (None, Some(*expires), *grace, grace.is_none()),
        };
        let outlet = match &phase {
            Phase::Live { session, .. } => Some(session.outlet.clone()),
            Phase::Waiting { .. } => None,
        };
        tokio::select! {
            biased;
            killed = killed_of(&outlet) => {
                break closing(&mut socket, killed, cfg.idle_timeout).await;
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break "client_closed" };
                last_heard = Instant::now();
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(_) => break "client_closed",
                    Message::Ping(_) | Message::Pong(_) => continue,
                    Message::Binary(_) => {
                        if send(&mut socket, messages::error(None, "invalid", "messages are JSON text")).await.is_err() { break "write_failed" }
                        let _ = socket.flush().await;
                        continue;
                    }
                };
                match handle(&state, &mut socket, &mut phase, &text).await {
                    Ok(None) => {}
                    Ok(Some(why)) => break why,
                    Err(_) => break "write_failed",
                }
                if socket.flush().await.is_err() { break "write_failed" }
            }
            d = async { match &mut phase { Phase::Live { session, .. } => session.next_delivery().await, Phase::Waiting { .. } => None } }, if delivering => {
                let Some(d) = d else { break "closed" };
                let Phase::Live { session, .. } = &mut phase else { continue };
                let outs = session.outs_from(d).await;
                let n = outs.len() as u64;
                let write = async {
                    for out in outs {
                        send(&mut socket, out).await?;
                    }
                    socket.flush().await
                };
                // A client that stops reading blocks the write; it must not hold the
                // connection, so the write gives way to a close.
                let killed = tokio::select! {
                    written = write => match written {
                        Ok(()) => None,
                        Err(_) => break "write_failed",
                    },
                    killed = killed_of(&outlet) => Some(killed),
                };
                if let Some(killed) = killed {
                    break closing(&mut socket, killed, cfg.idle_timeout).await;
                }
                state.metrics.realtime_messages_sent.inc_by(n);
            }
            _ = ping.tick() => {
                if last_heard.elapsed() >= cfg.idle_timeout {
                    close(&mut socket, 4000, "idle timeout").await;
                    break "idle_timeout";
                }
                if socket.send(Message::Ping(Default::default())).await.is_err() { break "write_failed" }
            }
            () = sleep_until(auth_deadline.unwrap_or_else(far)), if auth_deadline.is_some() => {
                let _ = send(&mut socket, messages::error(None, "unauthorized", "no auth message in time")).await;
                close(&mut socket, 4001, "unauthorized").await;
                break "unauthorized";
            }
            () = sleep_until(expires.unwrap_or_else(far)), if expires.is_some() && grace.is_none() => {
                if let Phase::Live { grace, .. } = &mut phase {
                    *grace = Some(Instant::now() + cfg.auth_grace);
                }
                let msg = json!({ "type": "auth_expired", "message": "access token expired; send a new auth message to continue" });
                if socket.send(Message::Text(msg.to_string().into())).await.is_err() { break "write_failed" }
            }
            () = sleep_until(grace.unwrap_or_else(far)), if grace.is_some() => {
                close(&mut socket, 4001, "auth expired").await;
                break "auth_expired";
            }
        }
    };
    if let Phase::Live { session, .. } = phase {
        session.close(reason).await;
    }
}

/// Resolves when the connection is asked to close; never before authentication.
async fn killed_of(outlet: &Option<std::sync::Arc<Outlet>>) -> CloseReason {
    match outlet {
        Some(o) => o.wait_killed().await,
        None => std::future::pending().await,
    }
}

/// Closes for `killed`: an `error` saying why (not at shutdown) and the close frame, waiting up
/// to `patience` for a client that is behind to read up to them.
async fn closing(socket: &mut WebSocket, killed: CloseReason, patience: Duration) -> &'static str {
    let (code, words, why) = messages::close_reason(killed);
    let wait = if killed == CloseReason::Shutdown { Duration::from_secs(2) } else { patience };
    if code != 1001 {
        let _ = tokio::time::timeout(wait, send(socket, messages::error(None, why, words))).await;
    }
    close_within(socket, code, words, wait).await;
    why
}

async fn live(state: &AppState, authed: Authed) -> Phase {
    let expires = Instant::now() + authed.remaining();
    let session = Box::new(Session::open(state, authed.user, "ws").await);
    Phase::Live { session, expires, grace: None }
}
