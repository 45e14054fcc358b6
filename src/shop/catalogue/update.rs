//! Changing a product. Stock is either set (`stock`) or adjusted (`stockAdjustment`), never
//! both; an adjustment is relative, in the statement itself (`stock = stock + n` with the bounds
//! in its `WHERE`), so a restock never overwrites orders placed meanwhile.

use chrono::Utc;
use sea_orm::{
    ColumnTrait, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};

use super::{CatalogueError, MAX_STOCK, ProductOut, ProductPatch, categories, products, read::category_names};
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, ClientMeta},
    ids::ProductId,
    money::Money,
    shop::entity::product,
    state::AppState,
};

/// Applies `patch` to product `id` when `me` may change it. [`CatalogueError::StockOutOfRange`]
/// when an adjustment would take the stock below zero or above [`MAX_STOCK`]; nothing changes then.
pub async fn update_product(
    state: &AppState,
    me: &AuthUser,
    client: &ClientMeta,
    id: ProductId,
    patch: ProductPatch,
) -> Result<ProductOut, CatalogueError> {
    if patch.stock.is_some() && patch.stock_adjustment.is_some() {
        return Err(CatalogueError::StockSetAndAdjusted);
    }
    let txn = state.db.begin_write().await?;
    let before = products::writable(&txn, me, id).await?;
    let mut update = product::Entity::update_many()
        .col_expr(product::Column::UpdatedAt, Expr::value(Utc::now()))
        .filter(product::Column::Id.eq(id))
        .filter(product::Column::DeletedAt.is_null());
    if let Some(sku) = &patch.sku {
        update = update.col_expr(product::Column::Sku, Expr::value(sku.clone()));
    }
    if let Some(name) = &patch.name {
        update = update.col_expr(product::Column::Name, Expr::value(name.trim().to_string()));
    }
    if let Some(description) = &patch.description {
        update =
            update.col_expr(product::Column::Description, Expr::value(categories::description(description.as_deref())));
    }
    if let Some(price) = patch.price {
        update = update.col_expr(product::Column::PriceMinor, Expr::value(price.minor()));
    }
    if let Some(stock) = patch.stock {
        update = update.col_expr(product::Column::Stock, Expr::value(stock));
    }
    if let Some(delta) = patch.stock_adjustment {
        let adjusted = || Expr::col(product::Column::Stock).add(delta);
        update = update
            .col_expr(product::Column::Stock, adjusted())
            .filter(adjusted().gte(0))
            .filter(adjusted().lte(MAX_STOCK));
    }
    if let Some(category_id) = patch.category_id {
        categories::category_for(&txn, category_id).await?;
        update = update.col_expr(product::Column::CategoryId, Expr::value(category_id));
    }
    let res = update.exec(&txn).await.map_err(|e| CatalogueError::or_clash(e, CatalogueError::SkuTaken))?;
    if res.rows_affected != 1 {
        return Err(CatalogueError::StockOutOfRange);
    }
    let p = products::load(&txn, id).await?;
    let entry = Entry::new("product.updated").by(Some(me.user_id)).on("product", id).details(changes(&before, &p));
    audit::record(&txn, entry.client(client)).await?;
    let names = category_names(&txn, [p.category_id]).await?;
    txn.commit().await?;
    crate::shop::catalogue_changed(state).await;
    Ok(ProductOut::new(&p, super::read::category_name(&names, p.category_id), &state.config.shop.currency))
}

/// What the audit log keeps of a change: the price and the stock, from and to.
fn changes(before: &product::Model, after: &product::Model) -> serde_json::Value {
    let mut changes = serde_json::Map::new();
    if before.price_minor != after.price_minor {
        let price = serde_json::json!({"from": Money(before.price_minor), "to": Money(after.price_minor)});
        changes.insert("price".into(), price);
    }
    if before.stock != after.stock {
        changes.insert("stock".into(), serde_json::json!({"from": before.stock, "to": after.stock}));
    }
    changes.into()
}
