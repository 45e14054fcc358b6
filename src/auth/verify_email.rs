//! Address verification: the link from the sign-up mail confirms the address; a signed-in user
//! whose address is not confirmed yet can ask for a new link.

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

use super::{
    AuthError, AuthUser, ClientMeta,
    email::{self, Purpose},
};
use crate::{
    audit::{self, Entry},
    state::AppState,
    users::{entity::user, load_signed_in},
};

/// Confirms the address the verification `token` was mailed to.
pub async fn verify_email(state: &AppState, token: &str, client: &ClientMeta) -> Result<(), AuthError> {
    let txn = state.db.begin_write().await?;
    let user_id = email::consume(&txn, token, Purpose::EmailVerify).await?;
    user::Entity::update_many()
        .col_expr(user::Column::EmailVerified, Expr::value(true))
        .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(user::Column::Id.eq(user_id))
        .exec(&txn)
        .await?;
    audit::record(&txn, Entry::new("user.email_verified").by(Some(user_id)).on("user", user_id).client(client)).await?;
    txn.commit().await?;
    Ok(())
}

/// Mails the caller a new verification link; a conflict when the address is verified already.
pub async fn resend(state: &AppState, me: &AuthUser, client: &ClientMeta) -> Result<(), AuthError> {
    state.auth.abuse.check_client(state.redis.as_ref(), client).await?;
    let u = load_signed_in(&state.db, me).await?;
    if u.email_verified {
        return Err(AuthError::EmailAlreadyVerified);
    }
    let txn = state.db.begin_write().await?;
    email::issue(&txn, state, &u, Purpose::EmailVerify).await?;
    txn.commit().await?;
    state.jobs.wake();
    Ok(())
}
