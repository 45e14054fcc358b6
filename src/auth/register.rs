//! Sign-up: a new account is always a CUSTOMER with an unverified email, created and signed in
//! at once; its verification mail is queued in the same transaction. A taken email is a clean
//! conflict, never a race between a check and the insert.

use sea_orm::{EntityTrait, sea_query::OnConflict};
use uuid::Uuid;

use super::{
    AuthError, ClientMeta, Role, sessions,
    types::{RegisterIn, TokenPair},
};
use crate::{
    audit::{self, Entry},
    state::AppState,
    users::{NewUser, entity::user, normalize_email},
};

/// Creates the account of `input` and its first session.
pub async fn register(
    state: &AppState,
    input: &RegisterIn,
    client: &ClientMeta,
) -> Result<(user::Model, TokenPair), AuthError> {
    state.auth.abuse.check_client(state.redis.as_ref(), client).await?;
    state.auth.passwords.check_policy("password", &input.password)?;
    let hash = state.auth.passwords.hash(&input.password).await?;
    let id = Uuid::now_v7();
    let row = NewUser {
        email: normalize_email(&input.email),
        name: &input.name,
        role: Role::Customer,
        password_hash: Some(hash),
        email_verified: false,
        external: None,
    }
    .into_active(id);
    let txn = state.db.begin_write().await?;
    // ON CONFLICT DO NOTHING: a duplicate email is a clean 409, never a race between check and insert.
    let inserted = user::Entity::insert(row)
        .on_conflict(OnConflict::column(user::Column::Email).do_nothing().to_owned())
        .exec_without_returning(&txn)
        .await?;
    if inserted == 0 {
        return Err(AuthError::EmailTaken);
    }
    audit::record(&txn, Entry::new("user.register").by(Some(id)).on("user", id).client(client)).await?;
    let u = user::Entity::find_by_id(id).one(&txn).await?.ok_or_else(|| anyhow::anyhow!("user vanished"))?;
    super::email::queue_verification(&txn, state, &u).await?;
    txn.commit().await?;
    state.jobs.wake();
    let tokens = sessions::start(state, &u, &input.device(), client, "register").await?;
    Ok((u, tokens))
}
