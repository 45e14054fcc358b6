//! The caller's profile: empty until first set, replaced whole (fields left out become empty),
//! one row per user.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, sea_query::OnConflict};
use uuid::Uuid;

use super::{
    UserError,
    account::load_signed_in,
    entity::profile,
    types::{ProfileIn, ProfileOut},
};
use crate::{auth::AuthUser, state::AppState};

/// The caller's profile (empty fields until set).
pub async fn get(state: &AppState, me: &AuthUser) -> Result<ProfileOut, UserError> {
    let p = profile::Entity::find().filter(profile::Column::UserId.eq(me.user_id)).one(&state.db).await?;
    Ok(ProfileOut::from(p))
}

/// Replaces the caller's profile with `input`.
pub async fn put(state: &AppState, me: &AuthUser, input: ProfileIn) -> Result<ProfileOut, UserError> {
    load_signed_in(&state.db, me).await?;
    let now = Utc::now();
    let row = profile::ActiveModel {
        id: Set(Uuid::now_v7()),
        user_id: Set(me.user_id),
        avatar_url: Set(input.avatar_url),
        phone: Set(input.phone),
        address: Set(input.address),
        bio: Set(input.bio),
        preferences: Set(input.preferences),
        created_at: Set(now),
        updated_at: Set(now),
    };
    use profile::Column as C;
    profile::Entity::insert(row)
        .on_conflict(
            OnConflict::column(C::UserId)
                .update_columns([C::AvatarUrl, C::Phone, C::Address, C::Bio, C::Preferences, C::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(&state.db)
        .await?;
    get(state, me).await
}
