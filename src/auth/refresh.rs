//! Refresh tokens: every use rotates the token; presenting one that was already rotated is
//! treated as theft and revokes the whole session (every token descended from that login).
//! Logout ends the session of a refresh token.

use chrono::Utc;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};

use super::{
    AuthError,
    entity::{refresh_token, session},
    extract::ClientMeta,
    secrets,
    sessions::{self, RevokeReason, is_active},
    types::TokenPair,
};
use crate::{audit::Entry, state::AppState, users::entity::user};

/// The stored refresh token `presented` stands for; 401 when there is none.
async fn find(state: &AppState, presented: &str) -> Result<refresh_token::Model, AuthError> {
    let hash = secrets::token_hash(presented);
    refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(hash))
        .one(&state.db)
        .await?
        .ok_or(AuthError::InvalidRefreshToken)
}

/// Exchanges a refresh token for a new pair. The presented token stops working; presenting
/// an already-rotated token again revokes the whole session.
pub async fn refresh(state: &AppState, presented: &str, client: &ClientMeta) -> Result<TokenPair, AuthError> {
    let rt = find(state, presented).await?;
    if rt.used_at.is_some() {
        return Err(reuse_detected(state, &rt, client).await);
    }
    let now = Utc::now();
    let Some(sess) = session::Entity::find_by_id(rt.session_id).one(&state.db).await? else {
        return Err(AuthError::InvalidRefreshToken);
    };
    if sess.revoked_at.is_some() || sess.expires_at <= now || rt.expires_at <= now {
        return Err(AuthError::InvalidRefreshToken);
    }
    let Some(u) = user::Entity::find_by_id(rt.user_id).one(&state.db).await? else {
        return Err(AuthError::InvalidRefreshToken);
    };
    if !is_active(&u) {
        return Err(AuthError::InvalidRefreshToken);
    }

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
    let (new_refresh, insert) = sessions::new_refresh(state, sess.id, u.id.into());
    txn.execute(&insert).await?;
    session::Entity::update_many()
        .col_expr(session::Column::LastUsedAt, Expr::value(now))
        .col_expr(session::Column::ExpiresAt, Expr::value(sessions::refresh_expiry(state)))
        .filter(session::Column::Id.eq(sess.id))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    sessions::pair(state, u.id.into(), sess.id, u.role, new_refresh)
}

/// Revokes the session of a reused token; the error to answer with (401, or what made the
/// revocation fail).
async fn reuse_detected(state: &AppState, rt: &refresh_token::Model, client: &ClientMeta) -> AuthError {
    tracing::warn!(session_id = %rt.session_id, user_id = %rt.user_id, "refresh token reuse: revoking the session");
    let entry = Entry::new("auth.refresh_reuse").by(Some(rt.user_id)).on("session", rt.session_id).client(client);
    let filter = session::Column::Id.eq(rt.session_id);
    match sessions::end(state, filter, RevokeReason::RefreshReuse, entry, |_| Ok(())).await {
        Ok(_) => sessions::announce(state, &[rt.session_id]).await,
        Err(e) => return e,
    }
    AuthError::InvalidRefreshToken
}

/// Ends the session of this refresh token: its refresh and access tokens stop working at once.
pub async fn logout(state: &AppState, presented: &str, client: &ClientMeta) -> Result<(), AuthError> {
    let rt = find(state, presented).await?;
    let entry = Entry::new("auth.logout").by(Some(rt.user_id)).on("session", rt.session_id).client(client);
    let filter = session::Column::Id.eq(rt.session_id);
    let ids = sessions::end(state, filter, RevokeReason::Logout, entry, |_| Ok(())).await?;
    sessions::announce(state, &ids).await;
    Ok(())
}
