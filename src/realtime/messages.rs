//! The messages a connection sends that are not events, the same on both transports, and the
//! checked token a connection runs on.

use std::{sync::Arc, time::Duration};

use axum::extract::ws::Utf8Bytes;
use serde_json::{Value, json};

use super::outlet::{CloseReason, Delivery};
use crate::{auth::AuthUser, http::AppError, state::AppState};

/// A message for the client; `at` is the (path, id) it brings the client to, for SSE cursors.
pub struct Out {
    pub text: Utf8Bytes,
    pub at: Option<(Arc<str>, u64)>,
}

impl Out {
    pub fn plain(v: Value) -> Self {
        Self { text: v.to_string().into(), at: None }
    }

    pub fn event(d: &Delivery) -> Self {
        Self { text: d.text.clone(), at: Some((d.path.clone(), d.id)) }
    }
}

/// `{"type":"error", …}`.
pub fn error(path: Option<&str>, code: &str, message: &str) -> Out {
    let mut v = json!({ "type": "error", "code": code, "message": message });
    if let Some(p) = path {
        v["path"] = json!(p);
    }
    Out::plain(v)
}

/// What a transport tells the client when the server closes: the code (WebSocket) and words.
pub fn close_reason(reason: CloseReason) -> (u16, &'static str, &'static str) {
    match reason {
        CloseReason::SlowConsumer => (4008, "slow consumer", "slow_consumer"),
        CloseReason::Revoked => (4003, "session revoked", "revoked"),
        CloseReason::Shutdown => (1001, "server shutting down", "shutdown"),
    }
}

/// A token checked: the user, and when the token expires.
pub struct Authed {
    pub user: AuthUser,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl Authed {
    pub fn check(state: &AppState, token: &str) -> Result<Self, AppError> {
        let (user, exp) = crate::auth::extract::authenticate_until(state, token)?;
        let expires_at = chrono::DateTime::from_timestamp(exp, 0).unwrap_or_else(chrono::Utc::now);
        Ok(Self { user, expires_at })
    }

    /// Time left before the token expires.
    pub fn remaining(&self) -> Duration {
        (self.expires_at - chrono::Utc::now()).to_std().unwrap_or(Duration::ZERO)
    }

    pub fn ok_message(&self) -> Out {
        Out::plain(json!({ "type": "auth_ok", "userId": self.user.user_id, "expiresAt": self.expires_at }))
    }
}
