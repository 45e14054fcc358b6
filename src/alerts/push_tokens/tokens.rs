//! A user's push targets: registered (a token moves to the account that registers it last),
//! listed, removed.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, sea_query::OnConflict,
};
use uuid::Uuid;

use crate::{
    alerts::{
        entity::{Platform, push_token},
        error::PushTokenError,
    },
    ids::UserId,
    state::AppState,
};

/// Whether a registration made a new push target or moved a known one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    New,
    Known,
}

/// Registers `token` (surrounding blanks ignored) as `user`'s, on `platform`.
pub async fn register(
    state: &AppState,
    user: UserId,
    token: &str,
    platform: Platform,
) -> Result<(push_token::Model, Registered), PushTokenError> {
    let token = token.trim();
    if token.is_empty() || token.len() > 4096 || token.chars().any(char::is_control) {
        return Err(PushTokenError::InvalidToken);
    }
    let now = state.clock.now();
    let txn = state.db.begin_write().await?;
    let existing = push_token::Entity::find().filter(push_token::Column::Token.eq(token)).one(&txn).await?;
    push_token::Entity::insert(push_token::ActiveModel {
        id: Set(existing.as_ref().map_or_else(Uuid::now_v7, |t| t.id)),
        user_id: Set(user.into()),
        token: Set(token.to_string()),
        platform: Set(platform),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(push_token::Column::Token)
            .update_columns([push_token::Column::UserId, push_token::Column::Platform, push_token::Column::UpdatedAt])
            .to_owned(),
    )
    .exec_without_returning(&txn)
    .await?;
    let row = push_token::Entity::find()
        .filter(push_token::Column::Token.eq(token))
        .one(&txn)
        .await?
        .ok_or(PushTokenError::Vanished)?;
    txn.commit().await?;
    Ok((row, if existing.is_some() { Registered::Known } else { Registered::New }))
}

/// `user`'s push targets, oldest first.
pub async fn of_user<C: ConnectionTrait>(db: &C, user: UserId) -> Result<Vec<push_token::Model>, DbErr> {
    push_token::Entity::find()
        .filter(push_token::Column::UserId.eq(user))
        .order_by_asc(push_token::Column::CreatedAt)
        .all(db)
        .await
}

/// Removes one of `user`'s push targets; another user's is not found.
pub async fn unregister<C: ConnectionTrait>(db: &C, user: UserId, id: Uuid) -> Result<(), PushTokenError> {
    let gone = push_token::Entity::delete_many()
        .filter(push_token::Column::Id.eq(id))
        .filter(push_token::Column::UserId.eq(user))
        .exec(db)
        .await?
        .rows_affected;
    if gone == 0 {
        return Err(PushTokenError::NotFound);
    }
    Ok(())
}
