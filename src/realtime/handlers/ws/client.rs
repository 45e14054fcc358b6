//! What a WebSocket client sends: `auth`, `subscribe`, `unsubscribe` and `ping` messages, each
//! answered on the socket.

use axum::extract::ws::WebSocket;
use serde::Deserialize;
use serde_json::Value;
use tokio::time::Instant;

use super::{Phase, close, live, send};
use crate::{
    realtime::messages::{self, Authed, Out},
    state::AppState,
};

/// What the client may send.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Auth { token: String },
    Subscribe { path: String, since: Option<Value> },
    Unsubscribe { path: String },
    Ping,
}

/// `since` as a string or a number.
fn parse_since(v: Option<&Value>) -> Result<Option<u64>, ()> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| ()),
        Some(Value::Number(n)) => n.as_u64().map(Some).ok_or(()),
        Some(_) => Err(()),
    }
}

/// Handles one client message; `Some(reason)` ends the connection.
pub(super) async fn handle(
    state: &AppState,
    socket: &mut WebSocket,
    phase: &mut Phase,
    text: &str,
) -> Result<Option<&'static str>, axum::Error> {
    let msg = match serde_json::from_str::<ClientMessage>(text) {
        Ok(m) => m,
        Err(e) => {
            let message = format!("not a message this server understands: {e}");
            send(socket, messages::error(None, "invalid", &message)).await?;
            return Ok(None);
        }
    };
    match msg {
        ClientMessage::Ping => send(socket, Out { text: r#"{"type":"pong"}"#.into(), at: None }).await?,
        ClientMessage::Auth { token } => match Authed::check(state, &token) {
            Err(e) => {
                send(socket, messages::error(None, "unauthorized", &e.to_string())).await?;
                close(socket, 4001, "unauthorized").await;
                return Ok(Some("unauthorized"));
            }
            Ok(authed) => {
                let ok = authed.ok_message();
                match phase {
                    Phase::Waiting { .. } => *phase = live(state, authed).await,
                    Phase::Live { session, expires, grace } => {
                        if let Err(why) = session.reauth(&authed) {
                            send(socket, messages::error(None, "unauthorized", why)).await?;
                            close(socket, 4001, "unauthorized").await;
                            return Ok(Some("unauthorized"));
                        }
                        *expires = Instant::now() + authed.remaining();
                        *grace = None;
                    }
                }
                send(socket, ok).await?;
            }
        },
        ClientMessage::Subscribe { path, since } => {
            let Phase::Live { session, grace: None, .. } = phase else {
                let why = match phase {
                    Phase::Live { .. } => "the access token expired; send a new auth message first",
                    Phase::Waiting { .. } => "send an auth message first",
                };
                send(socket, messages::error(Some(&path), "unauthorized", why)).await?;
                return Ok(None);
            };
            let Ok(since) = parse_since(since.as_ref()) else {
                send(socket, messages::error(Some(&path), "invalid", "since must be an event id")).await?;
                return Ok(None);
            };
            for out in session.subscribe(&path, since).await {
                send(socket, out).await?;
            }
        }
        ClientMessage::Unsubscribe { path } => {
            let Phase::Live { session, .. } = phase else {
                send(socket, messages::error(Some(&path), "unauthorized", "send an auth message first")).await?;
                return Ok(None);
            };
            let out = session.unsubscribe(&path);
            send(socket, out).await?;
        }
    }
    Ok(None)
}
