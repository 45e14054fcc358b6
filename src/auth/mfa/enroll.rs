//! Turning MFA on and off. Enrolling stores a pending secret and changes nothing for sign-in;
//! activating with a current code turns MFA on and issues ten backup codes (replacing any
//! earlier ones); disabling needs a current code or a backup code.

use chrono::Utc;
use rand::RngCore;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use totp_rs::Secret;
use uuid::Uuid;

use super::codes::{accept_code, matching_step, totp};
use crate::{
    audit::{self, Entry},
    auth::{AuthError, AuthUser, ClientMeta, entity::backup_code, secrets, types::EnrollOut},
    state::AppState,
    users::{entity::user, load_signed_in},
};

const BACKUP_CODES: usize = 10;

/// Starts TOTP enrollment: a new secret, kept sealed as pending until [`activate`].
pub async fn enroll(state: &AppState, me: &AuthUser) -> Result<EnrollOut, AuthError> {
    let u = load_signed_in(&state.db, me).await?;
    if u.mfa_enabled {
        return Err(AuthError::MfaEnabledDisableFirst);
    }
    let mut secret = vec![0u8; 20];
    rand::rng().fill_bytes(&mut secret);
    let otpauth_url = totp(secret.clone(), &u.email)?.to_url().map_err(|e| anyhow::anyhow!("otpauth url: {e:?}"))?;
    let sealed = state.auth.mfa.seal(u.id, &secret)?;
    user::Entity::update_many()
        .col_expr(user::Column::TotpPendingEnc, Expr::value(sealed))
        .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(user::Column::Id.eq(u.id))
        .exec(&state.db)
        .await?;
    Ok(EnrollOut { secret: Secret::from(secret).to_base32(), otpauth_url })
}

/// Confirms enrollment with a current code: MFA is on from now. Returns the backup codes, the
/// only time they are shown.
pub async fn activate(
    state: &AppState,
    me: &AuthUser,
    code: &str,
    client: &ClientMeta,
) -> Result<Vec<String>, AuthError> {
    let u = load_signed_in(&state.db, me).await?;
    if u.mfa_enabled {
        return Err(AuthError::MfaAlreadyEnabled);
    }
    let Some(pending) = u.totp_pending_enc.as_deref() else {
        return Err(AuthError::MfaNotEnrolled);
    };
    let Some(step) = matching_step(state.auth.mfa.open(u.id, pending)?, &u.email, code)? else {
        return Err(AuthError::NotCurrentCode);
    };
    let codes: Vec<String> = (0..BACKUP_CODES).map(|_| secrets::backup_code()).collect();
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let updated = user::Entity::update_many()
        .col_expr(user::Column::MfaEnabled, Expr::value(true))
        .col_expr(user::Column::TotpSecretEnc, Expr::value(pending))
        .col_expr(user::Column::TotpPendingEnc, Expr::value(Option::<String>::None))
        .col_expr(user::Column::TotpLastStep, Expr::value(step as i64))
        .col_expr(user::Column::UpdatedAt, Expr::value(now))
        .filter(user::Column::Id.eq(u.id))
        .filter(user::Column::MfaEnabled.eq(false))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(AuthError::MfaAlreadyEnabled);
    }
    backup_code::Entity::delete_many().filter(backup_code::Column::UserId.eq(u.id)).exec(&txn).await?;
    backup_code::Entity::insert_many(codes.iter().map(|c| backup_code::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(u.id),
        code_hash: Set(secrets::token_hash(&secrets::normalize_backup_code(c))),
        used_at: Set(None),
        created_at: Set(now),
    }))
    .exec_without_returning(&txn)
    .await?;
    audit::record(&txn, Entry::new("mfa.enabled").by(Some(u.id)).on("user", u.id).client(client)).await?;
    txn.commit().await?;
    Ok(codes)
}

/// Turns MFA off (secrets and backup codes go); needs a current TOTP code or a backup code.
pub async fn disable(state: &AppState, me: &AuthUser, code: &str, client: &ClientMeta) -> Result<(), AuthError> {
    let u = load_signed_in(&state.db, me).await?;
    if !u.mfa_enabled {
        return Err(AuthError::MfaNotEnabled);
    }
    let txn = state.db.begin_write().await?;
    if !accept_code(&txn, &state.auth.mfa, &u, code).await? {
        return Err(AuthError::InvalidCode);
    }
    user::Entity::update_many()
        .col_expr(user::Column::MfaEnabled, Expr::value(false))
        .col_expr(user::Column::TotpSecretEnc, Expr::value(Option::<String>::None))
        .col_expr(user::Column::TotpPendingEnc, Expr::value(Option::<String>::None))
        .col_expr(user::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(user::Column::Id.eq(u.id))
        .exec(&txn)
        .await?;
    backup_code::Entity::delete_many().filter(backup_code::Column::UserId.eq(u.id)).exec(&txn).await?;
    audit::record(&txn, Entry::new("mfa.disabled").by(Some(u.id)).on("user", u.id).client(client)).await?;
    txn.commit().await?;
    Ok(())
}
