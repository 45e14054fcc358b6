//! Sessions: one per sign-in, on a login device, with the refresh tokens descended from it
//! (rotation is in `refresh.rs`). A session is revoked in the database first and then announced,
//! so its access tokens stop working at once on every instance.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait,
    sea_query::{Expr, ExprTrait, InsertStatement, OnConflict, SimpleExpr},
};
use serde::Serialize;
use uuid::Uuid;

pub use super::entity::RevokeReason;
use super::{
    AuthError, AuthUser,
    entity::{refresh_token, session, user_device},
    extract::ClientMeta,
    roles::Role,
    secrets, tokens,
    types::{SessionOut, TokenPair},
};
use crate::{
    audit::{self, Entry},
    ids::UserId,
    state::AppState,
    users::entity::user,
};

/// The login device a session is for (optional, from the client).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub device_id: Option<String>,
    pub device_name: Option<String>,
}

/// Whether a user may hold a session right now.
pub fn is_active(u: &user::Model) -> bool {
    u.disabled_at.is_none() && u.deleted_at.is_none()
}

/// The `user_devices` row of this device (created or touched); `None` when the client named none.
async fn upsert_device<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    info: &DeviceInfo,
) -> Result<Option<Uuid>, AuthError> {
    let Some(device_id) = info.device_id.as_deref().map(str::trim).filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    let device_id: String = device_id.chars().take(128).collect();
    let name = info.device_name.as_deref().map(|n| n.chars().take(128).collect::<String>());
    let now = Utc::now();
    // One statement, so two logins from a new device at the same moment both succeed (a
    // find-then-insert lets the second hit the unique index and fail the login).
    let mut update = vec![user_device::Column::LastActiveAt];
    if name.is_some() {
        update.push(user_device::Column::DeviceName);
    }
    user_device::Entity::insert(user_device::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(user_id),
        device_id: Set(device_id.clone()),
        device_name: Set(name),
        device_type: Set(None),
        last_active_at: Set(now),
        created_at: Set(now),
    })
    .on_conflict(
        OnConflict::columns([user_device::Column::UserId, user_device::Column::DeviceId])
            .update_columns(update)
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let id: Option<Uuid> = user_device::Entity::find()
        .select_only()
        .column(user_device::Column::Id)
        .filter(user_device::Column::UserId.eq(user_id))
        .filter(user_device::Column::DeviceId.eq(device_id.as_str()))
        .into_tuple()
        .one(db)
        .await?;
    Ok(Some(id.ok_or_else(|| anyhow::anyhow!("user device vanished after upsert"))?))
}

/// When a session (or refresh token) made or used now expires.
pub(super) fn refresh_expiry(state: &AppState) -> chrono::DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(state.config.auth.refresh_ttl).unwrap_or_default()
}

/// A new refresh token for `session_id`, and the insert that stores its hash.
pub(super) fn new_refresh(state: &AppState, session_id: Uuid, user_id: UserId) -> (String, InsertStatement) {
    let token = secrets::random_token();
    let insert = refresh_token::Entity::insert(refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        session_id: Set(session_id),
        user_id: Set(user_id.into()),
        token_hash: Set(secrets::token_hash(&token)),
        created_at: Set(Utc::now()),
        expires_at: Set(refresh_expiry(state)),
        used_at: Set(None),
    })
    .into_query();
    (token, insert)
}

/// The pair a client holds: a fresh access token for the session, and `refresh`.
pub(super) fn pair(
    state: &AppState,
    user_id: UserId,
    session_id: Uuid,
    role: Role,
    refresh: String,
) -> Result<TokenPair, AuthError> {
    let ttl = state.config.auth.access_ttl;
    let access = tokens::issue(&state.auth.keys, user_id, session_id, role, ttl)?;
    Ok(TokenPair { access_token: access, refresh_token: refresh, expires_in: ttl.as_secs(), token_type: "Bearer" })
}

/// Creates a session for a user who just proved who they are, in one transaction with its
/// first refresh token and the audit row.
pub async fn start(
    state: &AppState,
    u: &user::Model,
    device: &DeviceInfo,
    client: &ClientMeta,
    how: &str,
) -> Result<TokenPair, AuthError> {
    // Outside the session's own write: a device row touched by a login that then fails is
    // harmless, and on PostgreSQL the three rows below go in one statement.
    let device_row = upsert_device(&state.db, u.id, device).await?;
    let now = Utc::now();
    let session_id = Uuid::now_v7();
    let session = session::Entity::insert(session::ActiveModel {
        id: Set(session_id),
        user_id: Set(u.id),
        user_device_id: Set(device_row),
        ip_address: Set(client.ip_string()),
        user_agent: Set(client.user_agent.clone()),
        created_at: Set(now),
        last_used_at: Set(now),
        expires_at: Set(refresh_expiry(state)),
        revoked_at: Set(None),
        revoked_reason: Set(None),
    })
    .into_query();
    let (refresh, refresh_row) = new_refresh(state, session_id, u.id.into());
    let (_, audit_row) = audit::insert(
        Entry::new("auth.login")
            .by(Some(u.id))
            .on("session", session_id)
            .details(serde_json::json!({ "method": how }))
            .client(client),
    );
    state.db.insert_together(vec![session, refresh_row, audit_row]).await?;
    pair(state, u.id.into(), session_id, u.role, refresh)
}

/// Marks the matching live sessions revoked; returns their ids. Call [`announce`] after the
/// surrounding transaction commits.
pub async fn revoke_where<C: ConnectionTrait>(
    db: &C,
    filter: SimpleExpr,
    reason: RevokeReason,
) -> Result<Vec<Uuid>, DbErr> {
    let ids: Vec<Uuid> = session::Entity::find()
        .select_only()
        .column(session::Column::Id)
        .filter(filter)
        .filter(session::Column::RevokedAt.is_null())
        .into_tuple()
        .all(db)
        .await?;
    if ids.is_empty() {
        return Ok(ids);
    }
    session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
        .col_expr(session::Column::RevokedReason, Expr::value(reason))
        .filter(session::Column::Id.is_in(ids.clone()))
        .filter(session::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(ids)
}

/// All live sessions of a user, optionally keeping one.
pub async fn revoke_user_sessions<C: ConnectionTrait>(
    db: &C,
    user_id: UserId,
    keep: Option<Uuid>,
    reason: RevokeReason,
) -> Result<Vec<Uuid>, DbErr> {
    let mut filter = session::Column::UserId.eq(user_id);
    if let Some(keep) = keep {
        filter = filter.and(session::Column::Id.ne(keep));
    }
    revoke_where(db, filter, reason).await
}

/// Makes committed revocations effective: this instance at once, the others through Redis.
pub async fn announce(state: &AppState, ids: &[Uuid]) {
    if ids.is_empty() {
        return;
    }
    state.auth.revocations.insert_local(ids);
    if let Some(redis) = &state.redis {
        super::revocation::publish(redis, ids).await;
    }
}

/// Revokes the sessions `filter` matches and writes the audit row `entry`, in one transaction,
/// unless `check` refuses the revoked ids first (nothing is written then). Returns the ids, for
/// [`announce`].
pub(super) async fn end(
    state: &AppState,
    filter: SimpleExpr,
    reason: RevokeReason,
    entry: Entry,
    check: impl FnOnce(&[Uuid]) -> Result<(), AuthError>,
) -> Result<Vec<Uuid>, AuthError> {
    let txn = state.db.begin_write().await?;
    let ids = revoke_where(&txn, filter, reason).await?;
    check(&ids)?;
    audit::record(&txn, entry).await?;
    txn.commit().await?;
    Ok(ids)
}

/// Ends one of the caller's sessions. Scoped to the caller: another user's session id is simply
/// not found.
pub async fn delete(state: &AppState, me: &AuthUser, id: Uuid, client: &ClientMeta) -> Result<(), AuthError> {
    let filter = session::Column::Id.eq(id).and(session::Column::UserId.eq(me.user_id));
    let entry = Entry::new("auth.session_deleted").by(Some(me.user_id)).on("session", id).client(client);
    let found = |ids: &[Uuid]| if ids.is_empty() { Err(AuthError::SessionNotFound) } else { Ok(()) };
    let ids = end(state, filter, RevokeReason::Deleted, entry, found).await?;
    announce(state, &ids).await;
    Ok(())
}

/// The caller's live sessions, newest first, with the device each is on.
pub async fn list(state: &AppState, me: &AuthUser) -> Result<Vec<SessionOut>, AuthError> {
    let rows = session::Entity::find()
        .filter(session::Column::UserId.eq(me.user_id))
        .filter(session::Column::RevokedAt.is_null())
        .filter(session::Column::ExpiresAt.gt(Utc::now()))
        .order_by_desc(session::Column::CreatedAt)
        .all(&state.db)
        .await?;
    let device_ids: Vec<Uuid> = rows.iter().filter_map(|s| s.user_device_id).collect();
    let devices: std::collections::HashMap<Uuid, user_device::Model> = if device_ids.is_empty() {
        Default::default()
    } else {
        user_device::Entity::find()
            .filter(user_device::Column::Id.is_in(device_ids))
            .all(&state.db)
            .await?
            .into_iter()
            .map(|d| (d.id, d))
            .collect()
    };
    let data = rows.into_iter().map(|s| {
        let d = s.user_device_id.and_then(|id| devices.get(&id));
        SessionOut {
            id: s.id,
            device_id: d.map(|d| d.device_id.clone()),
            device_name: d.and_then(|d| d.device_name.clone()),
            ip_address: s.ip_address,
            user_agent: s.user_agent,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            current: s.id == me.session_id,
        }
    });
    Ok(data.collect())
}
