//! Reading products, served from the catalogue cache: the serialized response is cached under
//! the generation it was read under (see `shop::cache`), so a read never shows a price or stock
//! older than a committed write on this instance.

use std::collections::HashMap;

use axum::body::Bytes;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect};
use serde::Serialize;
use uuid::Uuid;

use super::{CatalogueError, ProductFilter, ProductOut, products, search};
use crate::{
    http::{Page, PageRequest},
    ids::ProductId,
    shop::entity::category,
    state::AppState,
};

/// The JSON of one page of products matching `filter`.
pub async fn product_page(
    state: &AppState,
    filter: &ProductFilter,
    page: &PageRequest,
) -> Result<Bytes, CatalogueError> {
    let key = format!("l:{}", serde_json::to_string(filter)?);
    cached(state, key, async || {
        let query = search::filtered(state.db.backend(), filter);
        let (rows, total) = page.fetch(&state.db, query, |q| search::sorted(q, filter)).await?;
        let names = category_names(&state.db, rows.iter().map(|p| p.category_id)).await?;
        let currency = &state.config.shop.currency;
        let data: Vec<ProductOut> =
            rows.iter().map(|p| ProductOut::new(p, category_name(&names, p.category_id), currency)).collect();
        Ok(Page::new(data, page, total))
    })
    .await
}

/// The JSON of one live product.
pub async fn product(state: &AppState, id: ProductId) -> Result<Bytes, CatalogueError> {
    cached(state, format!("p:{id}"), async || {
        let p = products::load(&state.db, id).await?;
        let names = category_names(&state.db, [p.category_id]).await?;
        Ok(ProductOut::new(&p, category_name(&names, p.category_id), &state.config.shop.currency))
    })
    .await
}

/// The cached JSON under `key`, or what `read` returns, serialized and cached. The generation is
/// taken *before* reading the database.
async fn cached<T: Serialize>(
    state: &AppState,
    key: String,
    read: impl AsyncFnOnce() -> Result<T, CatalogueError>,
) -> Result<Bytes, CatalogueError> {
    let cache = &state.shop.cache;
    let generation = cache.generation();
    if let Some(hit) = cache.get(generation, &key) {
        return Ok(hit);
    }
    let body = Bytes::from(serde_json::to_vec(&read().await?)?);
    cache.put(generation, key, body.clone());
    Ok(body)
}

/// A category's name from what [`category_names`] returned.
pub(super) fn category_name(names: &HashMap<Uuid, String>, id: Uuid) -> &str {
    names.get(&id).map(String::as_str).unwrap_or_default()
}

/// Category names for a set of products, in one query.
pub(super) async fn category_names<C: ConnectionTrait>(
    db: &C,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<HashMap<Uuid, String>, DbErr> {
    let mut ids: Vec<Uuid> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    Ok(category::Entity::find()
        .select_only()
        .columns([category::Column::Id, category::Column::Name])
        .filter(category::Column::Id.is_in(ids))
        .into_tuple::<(Uuid, String)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}
