//! Products: created by ADMIN or a vendor (a vendor's product is its own), changed or deleted by
//! ADMIN or the vendor who owns it. SKUs are unique among live products; deletes are soft, so
//! orders keep their items and a deleted product's SKU can be used again.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, sea_query::Expr,
};
use uuid::Uuid;

use super::{CatalogueError, ProductIn, ProductOut, categories};
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, ClientMeta},
    ids::ProductId,
    money::Money,
    shop::entity::product,
    state::AppState,
};

/// A live product.
pub(super) async fn load<C: ConnectionTrait>(db: &C, id: ProductId) -> Result<product::Model, CatalogueError> {
    product::Entity::find_by_id(id.0)
        .filter(product::Column::DeletedAt.is_null())
        .one(db)
        .await?
        .ok_or(CatalogueError::ProductNotFound)
}

/// The product, when `me` may change it: ADMIN any, a vendor only its own.
pub(super) async fn writable<C: ConnectionTrait>(
    db: &C,
    me: &AuthUser,
    id: ProductId,
) -> Result<product::Model, CatalogueError> {
    let p = load(db, id).await?;
    if !me.is_admin() && p.vendor_id != Some(me.user_id) {
        return Err(CatalogueError::NotYourProduct);
    }
    Ok(p)
}

/// Creates a product for `me` (ADMIN: nobody's; a vendor: its own) in a live category.
pub async fn create_product(
    state: &AppState,
    me: &AuthUser,
    client: &ClientMeta,
    input: ProductIn,
) -> Result<ProductOut, CatalogueError> {
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let c = categories::category_for(&txn, input.category_id).await?;
    let p = product::ActiveModel {
        id: Set(Uuid::now_v7()),
        sku: Set(input.sku.clone()),
        name: Set(input.name.trim().to_string()),
        description: Set(categories::description(input.description.as_deref())),
        price_minor: Set(input.price.minor()),
        stock: Set(input.stock),
        category_id: Set(c.id),
        vendor_id: Set((!me.is_admin()).then_some(me.user_id)),
        deleted_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| CatalogueError::or_clash(e, CatalogueError::SkuTaken))?;
    let details = serde_json::json!({"sku": p.sku, "price": Money(p.price_minor), "stock": p.stock});
    let entry = Entry::new("product.created").by(Some(me.user_id)).on("product", p.id).details(details);
    audit::record(&txn, entry.client(client)).await?;
    txn.commit().await?;
    crate::shop::catalogue_changed(state).await;
    Ok(ProductOut::new(&p, &c.name, &state.config.shop.currency))
}

/// Deletes product `id` (soft) when `me` may change it.
pub async fn delete_product(
    state: &AppState,
    me: &AuthUser,
    client: &ClientMeta,
    id: ProductId,
) -> Result<(), CatalogueError> {
    let txn = state.db.begin_write().await?;
    writable(&txn, me, id).await?;
    let now = Utc::now();
    let res = product::Entity::update_many()
        .col_expr(product::Column::DeletedAt, Expr::value(now))
        .col_expr(product::Column::UpdatedAt, Expr::value(now))
        .filter(product::Column::Id.eq(id))
        .filter(product::Column::DeletedAt.is_null())
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(CatalogueError::ProductNotFound);
    }
    audit::record(&txn, Entry::new("product.deleted").by(Some(me.user_id)).on("product", id).client(client)).await?;
    txn.commit().await?;
    crate::shop::catalogue_changed(state).await;
    Ok(())
}
