//! The `Idempotency-Key` header, and the key bound to its caller and request.

use axum::{extract::FromRequestParts, http::request::Parts};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::http::AppError;

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
const MAX_KEY_LEN: usize = 255;

/// The `Idempotency-Key` header, when the client sent one: 1 to 255 visible ASCII characters
/// (400 naming the header otherwise).
#[derive(Debug, Clone, Default)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let Some(raw) = parts.headers.get(HEADER) else {
            return Ok(Self(None));
        };
        let bad = |m: &str| AppError::invalid_field("Idempotency-Key", m);
        let value = raw.to_str().map_err(|_| bad("must be visible ASCII"))?;
        if value.is_empty() || value.len() > MAX_KEY_LEN {
            return Err(bad("must be 1 to 255 characters"));
        }
        if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
            return Err(bad("must be visible ASCII"));
        }
        Ok(Self(Some(value.to_string())))
    }
}

impl IdempotencyKey {
    /// Binds the key (if any) to the caller and to this request: `route` names the operation
    /// (`"POST /orders"`, with ids of the path) and `request` is the parsed body.
    pub fn bind(self, user_id: Uuid, route: &str, request: &impl Serialize) -> Option<Bound> {
        let key = self.0?;
        let mut hash = Sha256::new();
        hash.update(route.as_bytes());
        hash.update([0]);
        hash.update(serde_json::to_vec(request).unwrap_or_default());
        Some(Bound { user_id, key, hash: hex::encode(hash.finalize()) })
    }
}

/// A key bound to its caller and request.
#[derive(Debug, Clone)]
pub struct Bound {
    pub(super) user_id: Uuid,
    pub(super) key: String,
    pub(super) hash: String,
}
