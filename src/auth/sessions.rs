//! Sessions and refresh tokens: start a session at login, rotate its refresh token on every
//! use, treat reuse of a rotated token as theft (revoke the whole session), and revoke.

use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::{Expr, ExprTrait, InsertStatement, OnConflict},
};
use serde::Serialize;
use uuid::Uuid;

use super::{
    entity::{refresh_token, session, user_device},
    extract::ClientMeta,
    roles::Role,
    secrets, tokens,
};
use crate::{
    audit::{self, Entry},
    http::AppError,
    state::AppState,
    users::entity::user,
};

/// What a client receives after login, refresh or MFA verification.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
}

/// The login device a session is for (optional, from the client).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceInfo {
    pub device_id: Option<String>,
    pub device_name: Option<String>,
}

/// Why a session ended, kept in `sessions.revoked_reason`.
#[derive(Debug, Clone, Copy)]
pub enum RevokeReason {
    Logout,
    Deleted,
    PasswordChanged,
    PasswordReset,
    Disabled,
    RoleChanged,
    RefreshReuse,
    UserDeleted,
}

impl RevokeReason {
    fn as_str(self) -> &'static str {
        match self {
            RevokeReason::Logout => "logout",
            RevokeReason::Deleted => "deleted",
            RevokeReason::PasswordChanged => "password_changed",
            RevokeReason::PasswordReset => "password_reset",
            RevokeReason::Disabled => "disabled",
            RevokeReason::RoleChanged => "role_changed",
            RevokeReason::RefreshReuse => "refresh_reuse",
            RevokeReason::UserDeleted => "user_deleted",
        }
    }
}

/// Whether a user may hold a session right now.
pub fn is_active(u: &user::Model) -> bool {
    u.disabled_at.is_none() && u.deleted_at.is_none()
}

pub fn role_of(u: &user::Model) -> Result<Role, AppError> {
    Role::parse(&u.role)
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("user {} has unknown role {:?}", u.id, u.role)))
}

async fn upsert_device<C: ConnectionTrait>(db: &C, user_id: Uuid, info: &DeviceInfo) -> Result<Option<Uuid>, AppError> {
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

/// A new refresh token for `session_id`, and the insert that stores its hash.
fn new_refresh(state: &AppState, session_id: Uuid, user_id: Uuid) -> (String, InsertStatement) {
    let token = secrets::random_token();
    let now = Utc::now();
    let insert = refresh_token::Entity::insert(refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        session_id: Set(session_id),
        user_id: Set(user_id),
        token_hash: Set(secrets::token_hash(&token)),
        created_at: Set(now),
        expires_at: Set(now + chrono::Duration::from_std(state.config.auth.refresh_ttl).unwrap_or_default()),
        used_at: Set(None),
    })
    .into_query();
    (token, insert)
}

fn pair(state: &AppState, user_id: Uuid, session_id: Uuid, role: Role, refresh: String) -> Result<TokenPair, AppError> {
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
) -> Result<TokenPair, AppError> {
    let role = role_of(u)?;
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
        expires_at: Set(now + chrono::Duration::from_std(state.config.auth.refresh_ttl).unwrap_or_default()),
        revoked_at: Set(None),
        revoked_reason: Set(None),
    })
    .into_query();
    let (refresh, refresh_row) = new_refresh(state, session_id, u.id);
    let (_, audit_row) = audit::insert(
        Entry::new("auth.login")
            .by(Some(u.id))
            .on("session", session_id)
            .details(serde_json::json!({ "method": how }))
            .client(client),
    );
    state.db.insert_together(vec![session, refresh_row, audit_row]).await?;
    pair(state, u.id, session_id, role, refresh)
}

fn invalid_refresh() -> AppError {
    AppError::Unauthorized("invalid refresh token".into())
}

/// Exchanges a refresh token for a new pair. The presented token stops working; presenting
/// an already-rotated token again revokes the whole session.
pub async fn refresh(state: &AppState, presented: &str, client: &ClientMeta) -> Result<TokenPair, AppError> {
    let hash = secrets::token_hash(presented);
    let Some(rt) =
        refresh_token::Entity::find().filter(refresh_token::Column::TokenHash.eq(hash)).one(&state.db).await?
    else {
        return Err(invalid_refresh());
    };
    if rt.used_at.is_some() {
        return Err(reuse_detected(state, &rt, client).await);
    }
    let now = Utc::now();
    let Some(sess) = session::Entity::find_by_id(rt.session_id).one(&state.db).await? else {
        return Err(invalid_refresh());
    };
    if sess.revoked_at.is_some() || sess.expires_at <= now || rt.expires_at <= now {
        return Err(invalid_refresh());
    }
    let Some(u) = user::Entity::find_by_id(rt.user_id).one(&state.db).await? else {
        return Err(invalid_refresh());
    };
    if !is_active(&u) {
        return Err(invalid_refresh());
    }
    let role = role_of(&u)?;

    let txn = state.db.begin_write().await?;
    // Conditional update: of two concurrent uses of one token, exactly one wins.
    let claimed = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(rt.id))
        .filter(refresh_token::Column::UsedAt.is_null())
        .exec(&txn)
        .await?;
    if claimed.rows_affected != 1 {
        txn.rollback().await?;
        return Err(reuse_detected(state, &rt, client).await);
    }
    let (new_refresh, insert) = new_refresh(state, sess.id, u.id);
    txn.execute(&insert).await?;
    session::Entity::update_many()
        .col_expr(session::Column::LastUsedAt, Expr::value(now))
        .col_expr(
            session::Column::ExpiresAt,
            Expr::value(now + chrono::Duration::from_std(state.config.auth.refresh_ttl).unwrap_or_default()),
        )
        .filter(session::Column::Id.eq(sess.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    pair(state, u.id, sess.id, role, new_refresh)
}

async fn reuse_detected(state: &AppState, rt: &refresh_token::Model, client: &ClientMeta) -> AppError {
    tracing::warn!(session_id = %rt.session_id, user_id = %rt.user_id, "refresh token reuse: revoking the session");
    let result = async {
        let txn = state.db.begin_write().await?;
        let ids = revoke_where(&txn, session::Column::Id.eq(rt.session_id), RevokeReason::RefreshReuse).await?;
        audit::record(
            &txn,
            Entry::new("auth.refresh_reuse").by(Some(rt.user_id)).on("session", rt.session_id).client(client),
        )
        .await?;
        txn.commit().await?;
        Ok::<_, AppError>(ids)
    }
    .await;
    match result {
        Ok(_) => announce(state, &[rt.session_id]).await,
        Err(e) => return e,
    }
    invalid_refresh()
}

/// Marks the matching live sessions revoked; returns their ids. Call [`announce`] after the
/// surrounding transaction commits.
pub async fn revoke_where<C: ConnectionTrait>(
    db: &C,
    filter: sea_orm::sea_query::SimpleExpr,
    reason: RevokeReason,
) -> Result<Vec<Uuid>, AppError> {
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
        .col_expr(session::Column::RevokedReason, Expr::value(reason.as_str()))
        .filter(session::Column::Id.is_in(ids.clone()))
        .filter(session::Column::RevokedAt.is_null())
        .exec(db)
        .await?;
    Ok(ids)
}

/// All live sessions of a user, optionally keeping one.
pub async fn revoke_user_sessions<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    keep: Option<Uuid>,
    reason: RevokeReason,
) -> Result<Vec<Uuid>, AppError> {
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
