//! Checking a code: a TOTP code of the current step (±1), accepted once, or an unused backup
//! code. Both are claimed with a conditional update, so the same code cannot pass twice, even
//! in two requests at the same moment.

use chrono::Utc;
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr};
use totp_rs::{Algorithm, Builder, Secret, Totp};
use uuid::Uuid;

use super::SecretBox;
use crate::{
    auth::{AuthError, entity::backup_code, secrets},
    users::entity::user,
};

const ISSUER: &str = "Mash";

pub(super) fn totp(secret: Vec<u8>, account: &str) -> anyhow::Result<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(Secret::from(secret))
        .with_issuer(Some(ISSUER))
        .with_account_name(account.replace(':', ""))
        .build()
        .map_err(|e| anyhow::anyhow!("building TOTP: {e:?}"))
}

fn now_secs() -> u64 {
    Utc::now().timestamp().max(0) as u64
}

/// The step a TOTP code matches now (±1 step), if any.
pub(super) fn matching_step(secret: Vec<u8>, account: &str, code: &str) -> anyhow::Result<Option<u64>> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    Ok(totp(secret, account)?.check(code, now_secs()))
}

/// Accepts a TOTP code once: the step is recorded with a conditional update, so the same
/// code (or an older one) cannot be used again, even by two requests at the same moment.
async fn accept_totp<C: ConnectionTrait>(
    db: &C,
    boxed: &SecretBox,
    u: &user::Model,
    code: &str,
) -> Result<bool, AuthError> {
    let Some(sealed) = u.totp_secret_enc.as_deref() else { return Ok(false) };
    let Some(step) = matching_step(boxed.open(u.id, sealed)?, &u.email, code)? else { return Ok(false) };
    let step = step as i64;
    let res = user::Entity::update_many()
        .col_expr(user::Column::TotpLastStep, Expr::value(step))
        .filter(user::Column::Id.eq(u.id))
        .filter(Condition::any().add(user::Column::TotpLastStep.is_null()).add(user::Column::TotpLastStep.lt(step)))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Accepts a backup code once (conditional update on `used_at`).
async fn accept_backup_code<C: ConnectionTrait>(db: &C, user_id: Uuid, code: &str) -> Result<bool, AuthError> {
    let normalized = secrets::normalize_backup_code(code);
    if normalized.len() != 10 {
        return Ok(false);
    }
    let res = backup_code::Entity::update_many()
        .col_expr(backup_code::Column::UsedAt, Expr::value(Utc::now()))
        .filter(backup_code::Column::UserId.eq(user_id))
        .filter(backup_code::Column::CodeHash.eq(secrets::token_hash(&normalized)))
        .filter(backup_code::Column::UsedAt.is_null())
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// A TOTP code or a backup code.
pub(super) async fn accept_code<C: ConnectionTrait>(
    db: &C,
    boxed: &SecretBox,
    u: &user::Model,
    code: &str,
) -> Result<bool, AuthError> {
    if accept_totp(db, boxed, u, code).await? {
        return Ok(true);
    }
    accept_backup_code(db, u.id, code).await
}
