//! Finding rules: one live rule by id, and the page of a list behind `GET /alert-rules`.

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, sea_query::ExprTrait};
use uuid::Uuid;

use crate::{
    alerts::{entity::rule, error::RuleError},
    http::PageRequest,
    ids::RuleId,
};

/// The live (not deleted) rule with this id.
pub async fn find<C: ConnectionTrait>(db: &C, id: RuleId) -> Result<rule::Model, RuleError> {
    let found = rule::Entity::find_by_id(id).filter(rule::Column::DeletedAt.is_null()).one(db).await?;
    found.ok_or(RuleError::NotFound)
}

/// One page of the live rules of `growers` (`None`: every grower's), of `device_id` when given
/// (rules for all devices included), oldest first; and how many there are in all.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    growers: Option<&[Uuid]>,
    device_id: Option<Uuid>,
    page: &PageRequest,
) -> Result<(Vec<rule::Model>, u64), DbErr> {
    let mut query = rule::Entity::find().filter(rule::Column::DeletedAt.is_null());
    if let Some(growers) = growers {
        query = query.filter(rule::Column::GrowerId.is_in(growers.iter().copied()));
    }
    if let Some(d) = device_id {
        query = query.filter(rule::Column::DeviceId.eq(d).or(rule::Column::DeviceId.is_null()));
    }
    page.fetch(db, query, |q| q.order_by_asc(rule::Column::CreatedAt).order_by_asc(rule::Column::Id)).await
}
