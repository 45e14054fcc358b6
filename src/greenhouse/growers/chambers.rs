//! Chambers of a grower: created, renamed and deleted by owners (and ADMIN), listed by any
//! member. Names are unique within a grower; a deleted chamber's devices stay, without one.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    SqlErr,
};
use uuid::Uuid;

use crate::{
    auth::AuthUser,
    db::Db,
    greenhouse::{
        GreenhouseError,
        access::{self, Need},
        entity::chamber,
    },
    http::PageRequest,
    ids::{ChamberId, GrowerId},
};

/// Creates a chamber (owners and ADMIN); 409 when the grower has one of that name.
pub async fn create(
    db: &Db,
    me: &AuthUser,
    grower_id: GrowerId,
    name: &str,
) -> Result<chamber::Model, GreenhouseError> {
    access::grower(db, me, grower_id.0, Need::Manage).await?;
    let now = Utc::now();
    chamber::ActiveModel {
        id: Set(Uuid::now_v7()),
        grower_id: Set(grower_id.0),
        name: Set(name.trim().to_string()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
    .map_err(name_taken)
}

/// The chambers of a grower (any member, or ADMIN), by name, one page.
pub async fn list(
    db: &Db,
    me: &AuthUser,
    grower_id: GrowerId,
    page: &PageRequest,
) -> Result<(Vec<chamber::Model>, u64), GreenhouseError> {
    access::grower(db, me, grower_id.0, Need::Read).await?;
    let query = chamber::Entity::find().filter(chamber::Column::GrowerId.eq(grower_id.0));
    Ok(page.fetch(db, query, |q| q.order_by_asc(chamber::Column::Name).order_by_asc(chamber::Column::Id)).await?)
}

/// Renames a chamber (owners and ADMIN); 409 when the grower has another of that name.
pub async fn rename(
    db: &Db,
    me: &AuthUser,
    grower_id: GrowerId,
    chamber_id: ChamberId,
    name: &str,
) -> Result<chamber::Model, GreenhouseError> {
    access::grower(db, me, grower_id.0, Need::Manage).await?;
    let mut active: chamber::ActiveModel = find(db, grower_id, chamber_id).await?.into();
    active.name = Set(name.trim().to_string());
    active.updated_at = Set(Utc::now());
    active.update(db).await.map_err(name_taken)
}

/// Deletes a chamber (owners and ADMIN). Its devices stay, without a chamber.
pub async fn delete(db: &Db, me: &AuthUser, grower_id: GrowerId, chamber_id: ChamberId) -> Result<(), GreenhouseError> {
    access::grower(db, me, grower_id.0, Need::Manage).await?;
    find(db, grower_id, chamber_id).await?;
    chamber::Entity::delete_by_id(chamber_id.0).exec(db).await?;
    Ok(())
}

/// A chamber of this grower.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    grower_id: GrowerId,
    chamber_id: ChamberId,
) -> Result<chamber::Model, GreenhouseError> {
    find_in(db, grower_id, chamber_id).await?.ok_or(GreenhouseError::NotFound("chamber"))
}

/// A chamber of this grower, if it has it.
pub async fn find_in<C: ConnectionTrait>(
    db: &C,
    grower_id: GrowerId,
    chamber_id: ChamberId,
) -> Result<Option<chamber::Model>, DbErr> {
    chamber::Entity::find()
        .filter(chamber::Column::Id.eq(chamber_id.0))
        .filter(chamber::Column::GrowerId.eq(grower_id.0))
        .one(db)
        .await
}

fn name_taken(e: DbErr) -> GreenhouseError {
    match e.sql_err() {
        Some(SqlErr::UniqueConstraintViolation(_)) => GreenhouseError::ChamberNameTaken,
        _ => GreenhouseError::Db(e),
    }
}
