//! Email flows: address verification and password reset. Their tokens are single-use,
//! expire, and are stored only as hashes; the mail goes to the outbox in the same transaction
//! as the token, so a token never exists without its mail (or the reverse).

use axum::{extract::State, http::StatusCode};
use chrono::Utc;
use garde::Validate;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{AuthUser, ClientMeta, entity::one_time_token, secrets, sessions::RevokeReason};
use crate::{
    audit::{self, Entry},
    http::{AppError, Json, Valid},
    mail::{self, Mail},
    state::AppState,
    users::{entity::user, normalize_email},
};

pub const VERIFY_TTL: chrono::Duration = chrono::Duration::hours(48);
pub const RESET_TTL: chrono::Duration = chrono::Duration::hours(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    EmailVerify,
    PasswordReset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::EmailVerify => "email_verify",
            Purpose::PasswordReset => "password_reset",
        }
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(forgot))
        .routes(routes!(reset))
        .routes(routes!(verify_email))
        .routes(routes!(resend_verification))
}

/// Creates a token and queues its mail, inside the caller's transaction.
async fn issue<C: ConnectionTrait>(
    db: &C,
    state: &AppState,
    u: &user::Model,
    purpose: Purpose,
) -> Result<(), AppError> {
    let token = secrets::random_token();
    let now = Utc::now();
    let ttl = match purpose {
        Purpose::EmailVerify => VERIFY_TTL,
        Purpose::PasswordReset => RESET_TTL,
    };
    one_time_token::Entity::insert(one_time_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(u.id),
        purpose: Set(purpose.as_str().to_string()),
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
pub async fn queue_verification<C: ConnectionTrait>(db: &C, state: &AppState, u: &user::Model) -> Result<(), AppError> {
    issue(db, state, u, Purpose::EmailVerify).await
}

/// Consumes a token of `purpose`: exactly once, before it expires. Returns the user id.
async fn consume<C: ConnectionTrait>(db: &C, presented: &str, purpose: Purpose) -> Result<Uuid, AppError> {
    let invalid = || AppError::invalid_field("token", "is invalid, expired or already used");
    let row = one_time_token::Entity::find()
        .filter(one_time_token::Column::TokenHash.eq(secrets::token_hash(presented)))
        .filter(one_time_token::Column::Purpose.eq(purpose.as_str()))
        .one(db)
        .await?
        .ok_or_else(invalid)?;
    let now = Utc::now();
    if row.used_at.is_some() || row.expires_at <= now {
        return Err(invalid());
    }
    let claimed = one_time_token::Entity::update_many()
        .col_expr(one_time_token::Column::UsedAt, Expr::value(now))
        .filter(one_time_token::Column::Id.eq(row.id))
        .filter(one_time_token::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    if claimed.rows_affected != 1 {
        return Err(invalid());
    }
    Ok(row.user_id)
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct ForgotIn {
    #[garde(length(min = 1, max = 320))]
    pub email: String,
}

/// Sends a reset link when the address belongs to an account. Always 202, so the answer does
/// not tell whether an address is registered.
#[utoipa::path(post, path = "/auth/password/forgot", tag = "auth", request_body = ForgotIn,
    responses((status = 202), (status = 400), (status = 429)))]
#[tracing::instrument(skip_all)]
async fn forgot(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<ForgotIn>>,
) -> Result<StatusCode, AppError> {
    state.auth.abuse.check_client(state.redis.as_ref(), &client).await?;
    let email = normalize_email(&input.email);
    let found = user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .filter(user::Column::DeletedAt.is_null())
        .filter(user::Column::DisabledAt.is_null())
        .one(&state.db)
        .await?;
    if let Some(u) = found {
        let txn = state.db.begin_write().await?;
        issue(&txn, &state, &u, Purpose::PasswordReset).await?;
        audit::record(
            &txn,
            Entry::new("user.password_reset_requested").by(Some(u.id)).on("user", u.id).client(&client),
        )
        .await?;
        txn.commit().await?;
        state.jobs.wake();
    }
    Ok(StatusCode::ACCEPTED)
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResetIn {
    #[garde(length(min = 1, max = 256))]
    pub token: String,
    #[garde(skip)]
    pub new_password: String,
}

/// Sets a new password with a reset token. Every session of the account ends.
#[utoipa::path(post, path = "/auth/password/reset", tag = "auth", request_body = ResetIn,
    responses((status = 204), (status = 400)))]
#[tracing::instrument(skip_all)]
async fn reset(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<ResetIn>>,
) -> Result<StatusCode, AppError> {
    state.auth.passwords.check_policy("newPassword", &input.new_password)?;
    let hash = state.auth.passwords.hash(&input.new_password).await?;
    let txn = state.db.begin_write().await?;
    let user_id = consume(&txn, &input.token, Purpose::PasswordReset).await?;
    crate::users::replace_password(
        &state,
        txn,
        user_id,
        hash,
        None,
        RevokeReason::PasswordReset,
        "user.password_reset",
        &client,
    )
    .await
    .map_err(|e| match e {
        AppError::Unauthorized(_) => AppError::invalid_field("token", "is invalid, expired or already used"),
        other => other,
    })?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
pub struct VerifyEmailIn {
    #[garde(length(min = 1, max = 256))]
    pub token: String,
}

/// Confirms the email address with the token from the verification mail.
#[utoipa::path(post, path = "/auth/email/verify", tag = "auth", request_body = VerifyEmailIn,
    responses((status = 204), (status = 400)))]
#[tracing::instrument(skip_all)]
async fn verify_email(
    State(state): State<AppState>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<VerifyEmailIn>>,
) -> Result<StatusCode, AppError> {
    let txn = state.db.begin_write().await?;
    let user_id = consume(&txn, &input.token, Purpose::EmailVerify).await?;
    user::Entity::update_many()
        .col_expr(user::Column::EmailVerified, Expr::value(true))
        .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(user::Column::Id.eq(user_id))
        .exec(&txn)
        .await?;
    audit::record(&txn, Entry::new("user.email_verified").by(Some(user_id)).on("user", user_id).client(&client))
        .await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a new verification mail to the signed-in user (202; 409 when already verified).
#[utoipa::path(post, path = "/auth/email/verify/resend", tag = "auth", security(("bearer" = [])),
    responses((status = 202), (status = 401), (status = 409), (status = 429)))]
#[tracing::instrument(skip_all)]
async fn resend_verification(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
) -> Result<StatusCode, AppError> {
    state.auth.abuse.check_client(state.redis.as_ref(), &client).await?;
    let u = crate::users::load_signed_in(&state.db, &me).await?;
    if u.email_verified {
        return Err(AppError::Conflict("email address already verified".into()));
    }
    let txn = state.db.begin_write().await?;
    issue(&txn, &state, &u, Purpose::EmailVerify).await?;
    txn.commit().await?;
    state.jobs.wake();
    Ok(StatusCode::ACCEPTED)
}
