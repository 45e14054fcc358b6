//! Categories: names unique among live ones, shared by every vendor; deletes are soft, and a
//! category that still has products cannot be deleted.

use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, Select, sea_query::Expr,
};
use uuid::Uuid;

use super::{CatalogueError, CategoryIn, CategoryOut, CategoryPatch};
use crate::{
    audit::{self, Entry},
    auth::ClientMeta,
    http::PageRequest,
    ids::UserId,
    shop::entity::{category, product},
    state::AppState,
};

fn live(id: Uuid) -> Select<category::Entity> {
    category::Entity::find_by_id(id).filter(category::Column::DeletedAt.is_null())
}

/// A description as stored: trimmed, and none when blank.
pub(super) fn description(d: Option<&str>) -> Option<String> {
    d.map(str::trim).filter(|d| !d.is_empty()).map(str::to_string)
}

/// The category a product is put in; it must be live ([`CatalogueError::NoSuchCategory`]). The
/// row is share-locked until the product's transaction ends, so a concurrent category delete
/// (which locks it for update, then counts its products) either sees this product, or has
/// committed first and this read finds the category gone. (A soft-deleted category still
/// satisfies the foreign key, so the key alone would not stop it.)
pub(super) async fn category_for<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<category::Model, CatalogueError> {
    crate::db::for_share(live(id)).one(db).await?.ok_or(CatalogueError::NoSuchCategory)
}

/// One page of live categories, by name, and how many there are.
pub async fn categories<C: ConnectionTrait>(
    db: &C,
    page: &PageRequest,
) -> Result<(Vec<CategoryOut>, u64), CatalogueError> {
    let query = category::Entity::find().filter(category::Column::DeletedAt.is_null());
    let (rows, total) =
        page.fetch(db, query, |q| q.order_by_asc(category::Column::Name).order_by_asc(category::Column::Id)).await?;
    Ok((rows.iter().map(CategoryOut::from).collect(), total))
}

/// One live category.
pub async fn category<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<CategoryOut, CatalogueError> {
    let c = live(id).one(db).await?.ok_or(CatalogueError::CategoryNotFound)?;
    Ok(CategoryOut::from(&c))
}

/// Creates a category on behalf of `actor`.
pub async fn create_category(
    state: &AppState,
    actor: UserId,
    client: &ClientMeta,
    input: CategoryIn,
) -> Result<CategoryOut, CatalogueError> {
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let c = category::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(input.name.trim().to_string()),
        description: Set(description(input.description.as_deref())),
        deleted_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| CatalogueError::or_clash(e, CatalogueError::CategoryNameTaken))?;
    let details = serde_json::json!({"name": c.name});
    let entry = Entry::new("category.created").by(Some(actor.0)).on("category", c.id).details(details);
    audit::record(&txn, entry.client(client)).await?;
    txn.commit().await?;
    crate::shop::catalogue_changed(state).await;
    Ok(CategoryOut::from(&c))
}

/// Renames or re-describes category `id` on behalf of `actor`.
pub async fn update_category(
    state: &AppState,
    actor: UserId,
    client: &ClientMeta,
    id: Uuid,
    patch: CategoryPatch,
) -> Result<CategoryOut, CatalogueError> {
    let txn = state.db.begin_write().await?;
    let c = live(id).one(&txn).await?.ok_or(CatalogueError::CategoryNotFound)?;
    let mut am: category::ActiveModel = c.into();
    if let Some(name) = &patch.name {
        am.name = Set(name.trim().to_string());
    }
    if let Some(d) = patch.description {
        am.description = Set(description(d.as_deref()));
    }
    am.updated_at = Set(Utc::now());
    let c = am.update(&txn).await.map_err(|e| CatalogueError::or_clash(e, CatalogueError::CategoryNameTaken))?;
    audit::record(&txn, Entry::new("category.updated").by(Some(actor.0)).on("category", id).client(client)).await?;
    txn.commit().await?;
    crate::shop::catalogue_changed(state).await;
    Ok(CategoryOut::from(&c))
}

/// Deletes category `id` (soft) on behalf of `actor`; [`CatalogueError::CategoryInUse`] while it
/// still has live products.
pub async fn delete_category(
    state: &AppState,
    actor: UserId,
    client: &ClientMeta,
    id: Uuid,
) -> Result<(), CatalogueError> {
    let txn = state.db.begin_write().await?;
    // Locks the category row: a product being created in it concurrently (which share-locks
    // the row in `category_for`) either commits first and is counted below, or waits and
    // then finds the category deleted.
    crate::db::for_update(live(id)).one(&txn).await?.ok_or(CatalogueError::CategoryNotFound)?;
    let products = product::Entity::find()
        .filter(product::Column::CategoryId.eq(id))
        .filter(product::Column::DeletedAt.is_null())
        .count(&txn)
        .await?;
    if products > 0 {
        return Err(CatalogueError::CategoryInUse(products));
    }
    let now = Utc::now();
    category::Entity::update_many()
        .col_expr(category::Column::DeletedAt, Expr::value(now))
        .col_expr(category::Column::UpdatedAt, Expr::value(now))
        .filter(category::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    audit::record(&txn, Entry::new("category.deleted").by(Some(actor.0)).on("category", id).client(client)).await?;
    txn.commit().await?;
    crate::shop::catalogue_changed(state).await;
    Ok(())
}
