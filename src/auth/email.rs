//! Email-link tokens (address verification, password reset): single use, expiring, stored only
//! as hashes. The mail goes to the job queue in the same transaction as the token, so a token
//! never exists without its mail (or the reverse). The flows are `verify_email.rs` and
//! `password_reset.rs`.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

pub use super::entity::Purpose;
use super::{AuthError, entity::one_time_token, secrets};
use crate::{
    mail::{self, Mail},
    state::AppState,
    users::entity::user,
};

pub const VERIFY_TTL: chrono::Duration = chrono::Duration::hours(48);
pub const RESET_TTL: chrono::Duration = chrono::Duration::hours(1);

/// Creates a token and queues its mail, inside the caller's transaction.
pub(super) async fn issue<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    u: &user::Model,
    purpose: Purpose,
) -> Result<(), AuthError> {
    let token = secrets::random_token();
    let now = Utc::now();
    let ttl = match purpose {
        Purpose::EmailVerify => VERIFY_TTL,
        Purpose::PasswordReset => RESET_TTL,
    };
    one_time_token::Entity::insert(one_time_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(u.id),
        purpose: Set(purpose),
        token_hash: Set(secrets::token_hash(&token)),
        created_at: Set(now),
        expires_at: Set(now + ttl),
        used_at: Set(None),
    })
    .exec_without_returning(db)
    .await?;
    let base = &state.config.auth.public_url;
    let mail = match purpose {
        Purpose::EmailVerify => Mail {
            to: u.email.clone(),
            subject: "Confirm your email address".into(),
            body: format!(
                "Hello {},\n\nconfirm your email address by opening this link within 48 hours:\n\n{base}/verify-email?token={token}\n\nIf you did not create an account, ignore this message.\n",
                u.name
            ),
        },
        Purpose::PasswordReset => Mail {
            to: u.email.clone(),
            subject: "Reset your password".into(),
            body: format!(
                "Hello {},\n\nset a new password by opening this link within one hour:\n\n{base}/reset-password?token={token}\n\nIf you did not ask for this, ignore this message; your password stays as it is.\n",
                u.name
            ),
        },
    };
    mail::enqueue(db, mail).await?;
    Ok(())
}

/// Queues the verification mail for a new account (call inside the registration transaction).
pub async fn queue_verification<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    u: &user::Model,
) -> Result<(), AuthError> {
    issue(db, state, u, Purpose::EmailVerify).await
}

/// Consumes a token of `purpose`: exactly once, before it expires. Returns the user id.
pub(super) async fn consume<C: ConnectionTrait>(db: &C, presented: &str, purpose: Purpose) -> Result<Uuid, AuthError> {
    let row = one_time_token::Entity::find()
        .filter(one_time_token::Column::TokenHash.eq(secrets::token_hash(presented)))
        .filter(one_time_token::Column::Purpose.eq(purpose))
        .one(db)
        .await?
        .ok_or(AuthError::InvalidEmailToken)?;
    let now = Utc::now();
    if row.used_at.is_some() || row.expires_at <= now {
        return Err(AuthError::InvalidEmailToken);
    }
    let claimed = one_time_token::Entity::update_many()
        .col_expr(one_time_token::Column::UsedAt, Expr::value(now))
        .filter(one_time_token::Column::Id.eq(row.id))
        .filter(one_time_token::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    if claimed.rows_affected != 1 {
        return Err(AuthError::InvalidEmailToken);
    }
    Ok(row.user_id)
}
