//! Device credentials: `Authorization: Device <token>`.
//!
//! A token is `mdt_<id>.<secret>`: `id` (12 characters, 72 random bits) is stored in the clear
//! under a unique index, so a token is found with one indexed lookup and never by scanning
//! devices; `secret` (256 random bits) is stored only as its SHA-256, compared in constant
//! time. A fast hash is right here: the secret is random, so there is nothing to brute-force
//! that a slow hash would protect. The token is shown once, when it is issued; rotating it
//! replaces both parts, so the old one stops working at once.

use axum::{extract::FromRequestParts, http::request::Parts};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::Utc;
use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    auth::{AuthUser, ClientMeta},
    db::Db,
    greenhouse::{
        GreenhouseError,
        access::{self, Need},
        audit,
        entity::device,
    },
    http::AppError,
    ids::{DeviceId, GrowerId},
    state::AppState,
};

const PREFIX: &str = "mdt_";

/// A freshly issued token: `token` goes to the caller once; `id` and `hash` are stored.
pub struct IssuedToken {
    pub token: String,
    pub id: String,
    pub hash: String,
}

pub fn issue() -> IssuedToken {
    let mut rng = rand::rng();
    let mut id = [0u8; 9];
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut id);
    rng.fill_bytes(&mut secret);
    let id = URL_SAFE_NO_PAD.encode(id);
    let secret = URL_SAFE_NO_PAD.encode(secret);
    IssuedToken { token: format!("{PREFIX}{id}.{secret}"), hash: hash_secret(&secret), id }
}

fn hash_secret(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

/// `(id, secret)` of a well-formed token.
fn split(token: &str) -> Option<(&str, &str)> {
    let (id, secret) = token.strip_prefix(PREFIX)?.split_once('.')?;
    (id.len() == 12 && (40..=64).contains(&secret.len())).then_some((id, secret))
}

/// An authenticated device (or the gateway speaking for it).
#[derive(Debug, Clone, Copy)]
pub struct DeviceAuth {
    pub device_id: DeviceId,
    pub grower_id: GrowerId,
}

/// Checks a device token against the store: one indexed lookup, a constant-time comparison.
pub async fn verify<C: ConnectionTrait>(db: &C, token: &str) -> Result<Option<DeviceAuth>, sea_orm::DbErr> {
    let Some((id, secret)) = split(token.trim()) else { return Ok(None) };
    let row = device::Entity::find()
        .select_only()
        .columns([device::Column::Id, device::Column::GrowerId, device::Column::TokenHash])
        .filter(device::Column::TokenId.eq(id))
        .filter(device::Column::DeletedAt.is_null())
        .into_tuple::<(Uuid, Uuid, String)>()
        .one(db)
        .await?;
    let Some((device_id, grower_id, stored)) = row else { return Ok(None) };
    let given = hash_secret(secret);
    Ok(crate::util::constant_time_eq(given.as_bytes(), stored.as_bytes())
        .then_some(DeviceAuth { device_id: DeviceId(device_id), grower_id: GrowerId(grower_id) }))
}

/// Issues a new token for a device (owners and ADMIN); the old one stops working at once.
/// The device and the new token, to show once.
pub async fn rotate(
    db: &Db,
    me: &AuthUser,
    client: &ClientMeta,
    id: Uuid,
) -> Result<(device::Model, IssuedToken), GreenhouseError> {
    let txn = db.begin_write().await?;
    let d = access::device(&txn, me, id, Need::Manage).await?;
    let token = issue();
    let now = Utc::now();
    let mut active: device::ActiveModel = d.into();
    active.token_id = Set(token.id.clone());
    active.token_hash = Set(token.hash.clone());
    active.token_rotated_at = Set(now);
    active.updated_at = Set(now);
    let d = active.update(&txn).await?;
    audit::record(&txn, me, client, "device.token_rotated", ("device", id), None).await?;
    txn.commit().await?;
    Ok((d, token))
}

/// The token of an `Authorization: Device <token>` header, if that is the scheme used.
pub fn device_token(parts: &Parts) -> Option<&str> {
    crate::auth::extract::authorization(&parts.headers, "device")
}

impl FromRequestParts<AppState> for DeviceAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = device_token(parts).ok_or_else(|| AppError::Unauthorized("missing device token".into()))?;
        let auth =
            verify(&state.db, token).await?.ok_or_else(|| AppError::Unauthorized("invalid device token".into()))?;
        state.greenhouse.seen(&state.db, &[auth.device_id.0]).await;
        Ok(auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_tokens_split_back_and_hash_to_what_is_stored() {
        let t = issue();
        let (id, secret) = split(&t.token).expect("well-formed");
        assert_eq!(id, t.id);
        assert_eq!(hash_secret(secret), t.hash);
        assert_ne!(issue().token, t.token);
        assert!(split("mdt_short.x").is_none());
        assert!(split(&t.token.replace("mdt_", "xyz_")).is_none());
    }
}
