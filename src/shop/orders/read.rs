//! Reading orders: who may see which, and orders with their items as clients see them.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{OrderError, OrderFilter, OrderOut, order_out};
use crate::{
    auth::{AuthUser, Permission},
    ids::{OrderId, UserId},
    shop::entity::{order, order_item},
};

/// Whose orders `me` may list when asking for `asked`'s (`None`: their own). `Ok(None)` is
/// everyone's, for ADMIN; anyone else sees only their own, and asking for another user's (even
/// naming oneself) is [`OrderError::OthersOrders`].
pub fn whose(me: &AuthUser, asked: Option<UserId>) -> Result<Option<UserId>, OrderError> {
    match (me.role.can(Permission::ManageAllOrders), asked) {
        (true, asked) => Ok(asked),
        (false, None) => Ok(Some(me.user_id.into())),
        (false, Some(_)) => Err(OrderError::OthersOrders),
    }
}

/// One page of orders, newest first, and how many match.
pub async fn list<C: ConnectionTrait>(db: &C, filter: &OrderFilter) -> Result<(Vec<OrderOut>, u64), DbErr> {
    let mut query = order::Entity::find();
    if let Some(user_id) = filter.user_id {
        query = query.filter(order::Column::UserId.eq(user_id));
    }
    if let Some(status) = filter.status {
        query = query.filter(order::Column::Status.eq(status));
    }
    let (rows, total) = filter
        .page
        .fetch(db, query, |q| q.order_by_desc(order::Column::CreatedAt).order_by_desc(order::Column::Id))
        .await?;
    Ok((orders_out(db, &rows).await?, total))
}

/// Loads one order for `me`: its owner or an ADMIN. Anyone else gets [`OrderError::NotFound`],
/// exactly like an order that does not exist.
pub async fn visible_order<C: ConnectionTrait>(db: &C, me: &AuthUser, id: OrderId) -> Result<order::Model, OrderError> {
    match order::Entity::find_by_id(id.0).one(db).await? {
        Some(o) if o.user_id == me.user_id || me.role.can(Permission::ManageAllOrders) => Ok(o),
        _ => Err(OrderError::NotFound),
    }
}

/// One order as clients see it, items included.
pub async fn full_order<C: ConnectionTrait>(db: &C, o: &order::Model) -> Result<OrderOut, DbErr> {
    let items = items_of(db, &[o.id]).await?.remove(&o.id).unwrap_or_default();
    Ok(order_out(o, &items))
}

/// Orders as clients see them, items included, in the order given.
pub async fn orders_out<C: ConnectionTrait>(db: &C, rows: &[order::Model]) -> Result<Vec<OrderOut>, DbErr> {
    let ids: Vec<Uuid> = rows.iter().map(|o| o.id).collect();
    let mut items = items_of(db, &ids).await?;
    Ok(rows.iter().map(|o| order_out(o, &items.remove(&o.id).unwrap_or_default())).collect())
}

async fn items_of<C: ConnectionTrait>(
    db: &C,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<order_item::Model>>, DbErr> {
    let mut by_order: HashMap<Uuid, Vec<order_item::Model>> = HashMap::new();
    let items = order_item::Entity::find()
        .filter(order_item::Column::OrderId.is_in(order_ids.iter().copied()))
        .order_by_asc(order_item::Column::OrderId)
        .order_by_asc(order_item::Column::ProductId)
        .all(db)
        .await?;
    for item in items {
        by_order.entry(item.order_id).or_default().push(item);
    }
    Ok(by_order)
}
