//! `/categories` and `/products`: the catalogue. Reading needs no token and is served from the
//! catalogue cache; writing needs `WriteCatalog` (ADMIN or VENDOR; a vendor only its own products).

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use garde::Validate;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, Condition, DatabaseBackend, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, Select,
    sea_query::{Expr, ExprTrait},
};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::entity::{category, product};
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, Authorized, ClientMeta, perm},
    http::{AppError, Json, ListParams, Page, PageRequest, Path, Query, Valid},
    money::Money,
    state::AppState,
    users::not_blank,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_categories, create_category))
        .routes(routes!(get_category, patch_category, delete_category))
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, patch_product, delete_product))
}

// ---------------------------------------------------------------------------------------------
// Categories
// ---------------------------------------------------------------------------------------------

/// A product category.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoryOut {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&category::Model> for CategoryOut {
    fn from(c: &category::Model) -> Self {
        Self {
            id: c.id,
            name: c.name.clone(),
            description: c.description.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CategoryIn {
    #[garde(length(chars, min = 1, max = 120), custom(not_blank))]
    pub name: String,
    #[garde(inner(length(chars, max = 2000)))]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CategoryPatch {
    #[garde(inner(length(chars, min = 1, max = 120), custom(not_blank)))]
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<String>)]
    #[garde(inner(inner(length(chars, max = 2000))))]
    pub description: Option<Option<String>>,
}

fn live_category(id: Uuid) -> Select<category::Entity> {
    category::Entity::find_by_id(id).filter(category::Column::DeletedAt.is_null())
}

/// The categories, by name. Public.
#[utoipa::path(get, path = "/categories", tag = "shop", params(ListParams),
    responses((status = 200, body = Page<CategoryOut>), (status = 400)))]
#[tracing::instrument(skip_all)]
async fn list_categories(
    State(state): State<AppState>,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<CategoryOut>>, AppError> {
    let page = q.validate()?;
    let query = category::Entity::find().filter(category::Column::DeletedAt.is_null());
    let (rows, total) = page
        .fetch(&state.db, query, |q| q.order_by_asc(category::Column::Name).order_by_asc(category::Column::Id))
        .await?;
    Ok(Json(Page::new(rows.iter().map(CategoryOut::from).collect(), &page, total)))
}

/// Creates a category (ADMIN or VENDOR). Names are unique.
#[utoipa::path(post, path = "/categories", tag = "shop", security(("bearer" = [])), request_body = CategoryIn,
    responses((status = 201, body = CategoryOut), (status = 400), (status = 401), (status = 403), (status = 409)))]
#[tracing::instrument(skip_all)]
async fn create_category(
    State(state): State<AppState>,
    me: Authorized<perm::WriteCatalog>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<CategoryIn>>,
) -> Result<(StatusCode, Json<CategoryOut>), AppError> {
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let c = category::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(input.name.trim().to_string()),
        description: Set(input.description.map(|d| d.trim().to_string()).filter(|d| !d.is_empty())),
        deleted_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await
    .map_err(|e| name_taken(e, "a category with this name already exists"))?;
    audit::record(
        &txn,
        Entry::new("category.created")
            .by(Some(me.user_id))
            .on("category", c.id)
            .details(serde_json::json!({"name": c.name}))
            .client(&client),
    )
    .await?;
    txn.commit().await?;
    state.shop.cache.invalidate(state.redis.as_ref()).await;
    Ok((StatusCode::CREATED, Json(CategoryOut::from(&c))))
}

/// A unique violation becomes a 409 with a message that says what clashed.
fn name_taken(e: sea_orm::DbErr, message: &str) -> AppError {
    match AppError::from(e) {
        AppError::Conflict(_) => AppError::Conflict(message.into()),
        other => other,
    }
}

/// One category. Public.
#[utoipa::path(get, path = "/categories/{id}", tag = "shop", params(("id" = Uuid, Path)),
    responses((status = 200, body = CategoryOut), (status = 404)))]
#[tracing::instrument(skip_all, fields(category_id = %id))]
async fn get_category(State(state): State<AppState>, Path(id): Path<Uuid>) -> Result<Json<CategoryOut>, AppError> {
    let c = live_category(id).one(&state.db).await?.ok_or_else(|| AppError::NotFound("category not found".into()))?;
    Ok(Json(CategoryOut::from(&c)))
}

/// Renames or re-describes a category (ADMIN: categories are shared by every vendor).
#[utoipa::path(patch, path = "/categories/{id}", tag = "shop", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = CategoryPatch,
    responses((status = 200, body = CategoryOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(category_id = %id))]
async fn patch_category(
    State(state): State<AppState>,
    me: Authorized<perm::ManageCategories>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<CategoryPatch>>,
) -> Result<Json<CategoryOut>, AppError> {
    let txn = state.db.begin_write().await?;
    let c = live_category(id).one(&txn).await?.ok_or_else(|| AppError::NotFound("category not found".into()))?;
    let mut am: category::ActiveModel = c.into();
    if let Some(name) = &input.name {
        am.name = Set(name.trim().to_string());
    }
    if let Some(description) = input.description {
        am.description = Set(description.map(|d| d.trim().to_string()).filter(|d| !d.is_empty()));
    }
    am.updated_at = Set(Utc::now());
    let c = am.update(&txn).await.map_err(|e| name_taken(e, "a category with this name already exists"))?;
    audit::record(&txn, Entry::new("category.updated").by(Some(me.user_id)).on("category", id).client(&client)).await?;
    txn.commit().await?;
    state.shop.cache.invalidate(state.redis.as_ref()).await;
    Ok(Json(CategoryOut::from(&c)))
}

/// Deletes a category (ADMIN). A category that still has products is 409: move or delete them first.
#[utoipa::path(delete, path = "/categories/{id}", tag = "shop", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(category_id = %id))]
async fn delete_category(
    State(state): State<AppState>,
    me: Authorized<perm::ManageCategories>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let txn = state.db.begin_write().await?;
    // Locks the category row: a product being created in it concurrently (which share-locks
    // the row in `category_for`) either commits first and is counted below, or waits and
    // then finds the category deleted.
    crate::db::for_update(live_category(id))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::NotFound("category not found".into()))?;
    let products = product::Entity::find()
        .filter(product::Column::CategoryId.eq(id))
        .filter(product::Column::DeletedAt.is_null())
        .count(&txn)
        .await?;
    if products > 0 {
        return Err(AppError::Conflict(format!("category still has {products} product(s); move or delete them first")));
    }
    let now = Utc::now();
    category::Entity::update_many()
        .col_expr(category::Column::DeletedAt, Expr::value(now))
        .col_expr(category::Column::UpdatedAt, Expr::value(now))
        .filter(category::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    audit::record(&txn, Entry::new("category.deleted").by(Some(me.user_id)).on("category", id).client(&client)).await?;
    txn.commit().await?;
    state.shop.cache.invalidate(state.redis.as_ref()).await;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Products
// ---------------------------------------------------------------------------------------------

/// `{id, name}` of a product's category.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CategoryRef {
    pub id: Uuid,
    pub name: String,
}

/// A product. `price` is a decimal string in `currency`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProductOut {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: Option<String>,
    pub price: Money,
    pub currency: String,
    pub stock: i64,
    pub in_stock: bool,
    pub category_id: Uuid,
    pub category: CategoryRef,
    /// The vendor who owns it (absent for products an admin created).
    pub vendor_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn product_out(state: &AppState, p: &product::Model, category_name: &str) -> ProductOut {
    ProductOut {
        id: p.id,
        sku: p.sku.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        price: Money(p.price_minor),
        currency: state.config.shop.currency.clone(),
        stock: p.stock,
        in_stock: p.stock > 0,
        category_id: p.category_id,
        category: CategoryRef { id: p.category_id, name: category_name.to_string() },
        vendor_id: p.vendor_id,
        created_at: p.created_at,
        updated_at: p.updated_at,
    }
}

/// The largest stock a product can hold.
const MAX_STOCK: i64 = 1_000_000_000;

fn valid_sku(value: &str, _: &()) -> garde::Result {
    if value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/')) {
        Ok(())
    } else {
        Err(garde::Error::new("may contain only letters, digits and - _ . /"))
    }
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductIn {
    /// Unique among products that are not deleted.
    #[garde(length(min = 1, max = 64), custom(valid_sku))]
    pub sku: String,
    #[garde(length(chars, min = 1, max = 200), custom(not_blank))]
    pub name: String,
    #[garde(inner(length(chars, max = 5000)))]
    pub description: Option<String>,
    #[garde(skip)]
    pub price: Money,
    #[garde(range(min = 0, max = MAX_STOCK))]
    pub stock: i64,
    #[garde(skip)]
    pub category_id: Uuid,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductPatch {
    #[garde(inner(length(min = 1, max = 64), custom(valid_sku)))]
    pub sku: Option<String>,
    #[garde(inner(length(chars, min = 1, max = 200), custom(not_blank)))]
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<String>)]
    #[garde(inner(inner(length(chars, max = 5000))))]
    pub description: Option<Option<String>>,
    #[garde(skip)]
    pub price: Option<Money>,
    /// Sets the stock to this value.
    #[garde(inner(range(min = 0, max = MAX_STOCK)))]
    pub stock: Option<i64>,
    /// Adds to (or, negative, takes from) the current stock atomically, without racing orders
    /// placed meanwhile. 409 when it would go below zero. Not together with `stock`.
    #[garde(inner(range(min = -MAX_STOCK, max = MAX_STOCK)))]
    pub stock_adjustment: Option<i64>,
    #[garde(skip)]
    pub category_id: Option<Uuid>,
}

/// The parameters of `GET /products`, as sent (each is checked and named in a 400).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ProductQuery {
    /// Case-insensitive substring of the name or the description (at most 100 characters).
    pub search: Option<String>,
    pub category_id: Option<String>,
    /// Inclusive lower bound of the price, a decimal string.
    pub min_price: Option<String>,
    /// Inclusive upper bound of the price, a decimal string.
    pub max_price: Option<String>,
    /// `true` keeps products with stock > 0, `false` those with stock = 0.
    pub in_stock: Option<String>,
    /// `id`, `name`, `price` or `createdAt`. Without `orderBy` and `order`, newest first.
    pub order_by: Option<String>,
    /// `asc` (the default once `orderBy` is given) or `desc`.
    pub order: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<String>,
    /// Items per page (default 20, at most 100).
    pub limit: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
enum OrderBy {
    Id,
    Name,
    Price,
    CreatedAt,
}

/// `GET /products` after validation; also the cache key.
#[derive(Debug, Serialize)]
struct ProductFilter {
    search: Option<String>,
    category_id: Option<Uuid>,
    min_price: Option<i64>,
    max_price: Option<i64>,
    in_stock: Option<bool>,
    order_by: OrderBy,
    desc: bool,
    page: u64,
    limit: u64,
}

impl ProductQuery {
    fn validate(&self) -> Result<(ProductFilter, PageRequest), AppError> {
        let page = ListParams { page: self.page.clone(), limit: self.limit.clone(), cursor: None }.validate()?;
        let given = |v: &Option<String>| v.as_deref().map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned);
        let search = given(&self.search);
        if let Some(s) = &search
            && s.chars().count() > 100
        {
            return Err(AppError::invalid_field("search", "must be at most 100 characters"));
        }
        if let Some(s) = &search
            && s.chars().any(char::is_control)
        {
            return Err(AppError::invalid_field("search", "must not contain control characters"));
        }
        let category_id = crate::http::uuid_param("categoryId", self.category_id.as_deref())?;
        let price = |name: &str, v: &Option<String>| {
            given(v)
                .map(|s| Money::parse(&s).map(Money::minor).map_err(|m| AppError::invalid_field(name, m)))
                .transpose()
        };
        let (min_price, max_price) = (price("minPrice", &self.min_price)?, price("maxPrice", &self.max_price)?);
        if let (Some(lo), Some(hi)) = (min_price, max_price)
            && lo > hi
        {
            return Err(AppError::invalid_field("minPrice", "must not exceed maxPrice"));
        }
        let in_stock = match given(&self.in_stock).as_deref() {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(_) => return Err(AppError::invalid_field("inStock", "must be true or false")),
        };
        let order_by = match given(&self.order_by).as_deref() {
            None => None,
            Some("id") => Some(OrderBy::Id),
            Some("name") => Some(OrderBy::Name),
            Some("price") => Some(OrderBy::Price),
            Some("createdAt") => Some(OrderBy::CreatedAt),
            Some(_) => return Err(AppError::invalid_field("orderBy", "must be one of id, name, price, createdAt")),
        };
        let desc = match given(&self.order).as_deref() {
            None => order_by.is_none(),
            Some("asc") => false,
            Some("desc") => true,
            Some(_) => return Err(AppError::invalid_field("order", "must be asc or desc")),
        };
        let filter = ProductFilter {
            search,
            category_id,
            min_price,
            max_price,
            in_stock,
            order_by: order_by.unwrap_or(OrderBy::CreatedAt),
            desc,
            page: page.page,
            limit: page.limit,
        };
        Ok((filter, page))
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_pattern(term: &str) -> String {
    let mut out = String::with_capacity(term.len() + 2);
    out.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// The search condition, one function per backend:
/// - PostgreSQL: `LIKE` on the generated `search_text` (name and description, lower-cased by the
///   database), served by its `pg_trgm` GIN index; the pattern is lower-cased by the same
///   `lower()`, so case folding is the database's on both sides. Name and description are joined
///   by a newline, and a term cannot contain one, so a match never spans the two.
/// - SQLite: an FTS5 trigram phrase query (a case-insensitive substring match served by the
///   index) for terms of 3 characters or more; shorter terms, which trigrams cannot index, scan
///   with `LIKE` (case-insensitive for ASCII letters).
pub fn search_condition(backend: DatabaseBackend, term: &str) -> Condition {
    let pattern = like_pattern(term);
    match backend {
        DatabaseBackend::Postgres => {
            Condition::all().add(Expr::cust_with_values(r"products.search_text LIKE lower($1) ESCAPE '\'", [pattern]))
        }
        _ if term.chars().count() >= 3 => {
            let phrase = format!("\"{}\"", term.replace('"', "\"\""));
            Condition::all().add(Expr::cust_with_values(
                "products.id IN (SELECT product_id FROM products_fts WHERE products_fts MATCH ?)",
                [phrase],
            ))
        }
        _ => Condition::all().add(Expr::cust_with_values(
            r"(products.name LIKE ? ESCAPE '\' OR products.description LIKE ? ESCAPE '\')",
            [pattern.clone(), pattern],
        )),
    }
}

fn filtered(backend: DatabaseBackend, f: &ProductFilter) -> Select<product::Entity> {
    let mut q = product::Entity::find().filter(product::Column::DeletedAt.is_null());
    if let Some(term) = &f.search {
        q = q.filter(search_condition(backend, term));
    }
    if let Some(c) = f.category_id {
        q = q.filter(product::Column::CategoryId.eq(c));
    }
    if let Some(lo) = f.min_price {
        q = q.filter(product::Column::PriceMinor.gte(lo));
    }
    if let Some(hi) = f.max_price {
        q = q.filter(product::Column::PriceMinor.lte(hi));
    }
    match f.in_stock {
        Some(true) => q = q.filter(product::Column::Stock.gt(0)),
        Some(false) => q = q.filter(product::Column::Stock.eq(0)),
        None => {}
    }
    q
}

fn sorted(q: Select<product::Entity>, f: &ProductFilter) -> Select<product::Entity> {
    let order = if f.desc { sea_orm::Order::Desc } else { sea_orm::Order::Asc };
    let q = match f.order_by {
        OrderBy::Id => q,
        OrderBy::Name => q.order_by(product::Column::Name, order.clone()),
        OrderBy::Price => q.order_by(product::Column::PriceMinor, order.clone()),
        OrderBy::CreatedAt => q.order_by(product::Column::CreatedAt, order.clone()),
    };
    q.order_by(product::Column::Id, order)
}

/// A category's name from what [`category_names`] returned.
fn category_name(names: &std::collections::HashMap<Uuid, String>, id: Uuid) -> &str {
    names.get(&id).map(String::as_str).unwrap_or_default()
}

/// Category names for a set of products, in one query.
async fn category_names<C: sea_orm::ConnectionTrait>(
    db: &C,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<std::collections::HashMap<Uuid, String>, sea_orm::DbErr> {
    use sea_orm::QuerySelect;
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

fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

fn to_bytes<T: Serialize>(value: &T) -> Result<Bytes, AppError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|e| AppError::Internal(anyhow::anyhow!("serialize: {e}")))
}

/// Products, filtered, sorted and paged. Public; served from the catalogue cache.
#[utoipa::path(get, path = "/products", tag = "shop", params(ProductQuery),
    responses((status = 200, body = Page<ProductOut>), (status = 400)))]
#[tracing::instrument(skip_all)]
async fn list_products(State(state): State<AppState>, Query(q): Query<ProductQuery>) -> Result<Response, AppError> {
    let (filter, page) = q.validate()?;
    let key = format!("l:{}", serde_json::to_string(&filter).unwrap_or_default());
    let cache = &state.shop.cache;
    let generation = cache.generation();
    if let Some(hit) = cache.get(generation, &key) {
        return Ok(json_bytes(hit));
    }
    let query = filtered(crate::db::backend(&state.db), &filter);
    let (rows, total) = page.fetch(&state.db, query, |q| sorted(q, &filter)).await?;
    let names = category_names(&state.db, rows.iter().map(|p| p.category_id)).await?;
    let data: Vec<ProductOut> =
        rows.iter().map(|p| product_out(&state, p, category_name(&names, p.category_id))).collect();
    let body = to_bytes(&Page::new(data, &page, total))?;
    cache.put(generation, key, body.clone());
    Ok(json_bytes(body))
}

async fn load_product<C: sea_orm::ConnectionTrait>(db: &C, id: Uuid) -> Result<product::Model, AppError> {
    product::Entity::find_by_id(id)
        .filter(product::Column::DeletedAt.is_null())
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound("product not found".into()))
}

/// One product. Public; served from the catalogue cache.
#[utoipa::path(get, path = "/products/{id}", tag = "shop", params(("id" = Uuid, Path)),
    responses((status = 200, body = ProductOut), (status = 404)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
async fn get_product(State(state): State<AppState>, Path(id): Path<Uuid>) -> Result<Response, AppError> {
    let key = format!("p:{id}");
    let cache = &state.shop.cache;
    let generation = cache.generation();
    if let Some(hit) = cache.get(generation, &key) {
        return Ok(json_bytes(hit));
    }
    let p = load_product(&state.db, id).await?;
    let names = category_names(&state.db, [p.category_id]).await?;
    let body = to_bytes(&product_out(&state, &p, category_name(&names, p.category_id)))?;
    cache.put(generation, key, body.clone());
    Ok(json_bytes(body))
}

/// The category a product is put in must exist: 400 naming `categoryId` otherwise. The row is
/// share-locked until the product's transaction ends, so a concurrent
/// category delete (which locks it for update, then counts its products) either sees this
/// product, or has committed first and this read finds the category gone. (A soft-deleted
/// category still satisfies the foreign key, so the key alone would not stop it.)
async fn category_for<C: sea_orm::ConnectionTrait>(db: &C, id: Uuid) -> Result<category::Model, AppError> {
    crate::db::for_share(live_category(id))
        .one(db)
        .await?
        .ok_or_else(|| AppError::invalid_field("categoryId", "no such category"))
}

/// Creates a product (ADMIN or VENDOR; a vendor's product is its own).
#[utoipa::path(post, path = "/products", tag = "shop", security(("bearer" = [])), request_body = ProductIn,
    responses((status = 201, body = ProductOut), (status = 400), (status = 401), (status = 403), (status = 409)))]
#[tracing::instrument(skip_all)]
async fn create_product(
    State(state): State<AppState>,
    me: Authorized<perm::WriteCatalog>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<ProductIn>>,
) -> Result<(StatusCode, Json<ProductOut>), AppError> {
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let c = category_for(&txn, input.category_id).await?;
    let p = product::ActiveModel {
        id: Set(Uuid::now_v7()),
        sku: Set(input.sku.clone()),
        name: Set(input.name.trim().to_string()),
        description: Set(input.description.map(|d| d.trim().to_string()).filter(|d| !d.is_empty())),
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
    .map_err(|e| name_taken(e, "a product with this SKU already exists"))?;
    audit::record(
        &txn,
        Entry::new("product.created")
            .by(Some(me.user_id))
            .on("product", p.id)
            .details(serde_json::json!({"sku": p.sku, "price": Money(p.price_minor), "stock": p.stock}))
            .client(&client),
    )
    .await?;
    txn.commit().await?;
    state.shop.cache.invalidate(state.redis.as_ref()).await;
    Ok((StatusCode::CREATED, Json(product_out(&state, &p, &c.name))))
}

/// The product, when `me` may change it: ADMIN any, a vendor only its own (403 otherwise).
async fn writable_product<C: sea_orm::ConnectionTrait>(
    db: &C,
    me: &AuthUser,
    id: Uuid,
) -> Result<product::Model, AppError> {
    let p = load_product(db, id).await?;
    if !me.is_admin() && p.vendor_id != Some(me.user_id) {
        return Err(AppError::Forbidden("you can only change your own products".into()));
    }
    Ok(p)
}

/// Changes a product (ADMIN, or the vendor who owns it). Stock can be set (`stock`) or adjusted
/// atomically (`stockAdjustment`).
#[utoipa::path(patch, path = "/products/{id}", tag = "shop", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = ProductPatch,
    responses((status = 200, body = ProductOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
async fn patch_product(
    State(state): State<AppState>,
    me: Authorized<perm::WriteCatalog>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<ProductPatch>>,
) -> Result<Json<ProductOut>, AppError> {
    if input.stock.is_some() && input.stock_adjustment.is_some() {
        return Err(AppError::invalid_field("stockAdjustment", "cannot be combined with stock"));
    }
    let txn = state.db.begin_write().await?;
    let current = writable_product(&txn, &me, id).await?;
    let now = Utc::now();
    let mut update = product::Entity::update_many()
        .col_expr(product::Column::UpdatedAt, Expr::value(now))
        .filter(product::Column::Id.eq(id))
        .filter(product::Column::DeletedAt.is_null());
    if let Some(sku) = &input.sku {
        update = update.col_expr(product::Column::Sku, Expr::value(sku.clone()));
    }
    if let Some(name) = &input.name {
        update = update.col_expr(product::Column::Name, Expr::value(name.trim().to_string()));
    }
    if let Some(description) = &input.description {
        let d = description.as_ref().map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
        update = update.col_expr(product::Column::Description, Expr::value(d));
    }
    if let Some(price) = input.price {
        update = update.col_expr(product::Column::PriceMinor, Expr::value(price.minor()));
    }
    if let Some(stock) = input.stock {
        update = update.col_expr(product::Column::Stock, Expr::value(stock));
    }
    if let Some(delta) = input.stock_adjustment {
        // Relative, in the statement itself: an order placed meanwhile is never overwritten.
        update = update
            .col_expr(product::Column::Stock, Expr::col(product::Column::Stock).add(delta))
            .filter(Expr::col(product::Column::Stock).add(delta).gte(0))
            .filter(Expr::col(product::Column::Stock).add(delta).lte(MAX_STOCK));
    }
    if let Some(category_id) = input.category_id {
        category_for(&txn, category_id).await?;
        update = update.col_expr(product::Column::CategoryId, Expr::value(category_id));
    }
    let res = update.exec(&txn).await.map_err(|e| name_taken(e, "a product with this SKU already exists"))?;
    if res.rows_affected != 1 {
        return Err(AppError::Conflict(
            "stock adjustment would take the stock below zero (or above the maximum)".into(),
        ));
    }
    let p = load_product(&txn, id).await?;
    let mut changes = serde_json::Map::new();
    if current.price_minor != p.price_minor {
        changes.insert(
            "price".into(),
            serde_json::json!({"from": Money(current.price_minor), "to": Money(p.price_minor)}),
        );
    }
    if current.stock != p.stock {
        changes.insert("stock".into(), serde_json::json!({"from": current.stock, "to": p.stock}));
    }
    audit::record(
        &txn,
        Entry::new("product.updated").by(Some(me.user_id)).on("product", id).details(changes.into()).client(&client),
    )
    .await?;
    let names = category_names(&txn, [p.category_id]).await?;
    txn.commit().await?;
    state.shop.cache.invalidate(state.redis.as_ref()).await;
    Ok(Json(product_out(&state, &p, category_name(&names, p.category_id))))
}

/// Deletes a product (soft: orders that contain it keep their items). ADMIN, or its vendor.
#[utoipa::path(delete, path = "/products/{id}", tag = "shop", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
async fn delete_product(
    State(state): State<AppState>,
    me: Authorized<perm::WriteCatalog>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let txn = state.db.begin_write().await?;
    writable_product(&txn, &me, id).await?;
    let now = Utc::now();
    let res = product::Entity::update_many()
        .col_expr(product::Column::DeletedAt, Expr::value(now))
        .col_expr(product::Column::UpdatedAt, Expr::value(now))
        .filter(product::Column::Id.eq(id))
        .filter(product::Column::DeletedAt.is_null())
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::NotFound("product not found".into()));
    }
    audit::record(&txn, Entry::new("product.deleted").by(Some(me.user_id)).on("product", id).client(&client)).await?;
    txn.commit().await?;
    state.shop.cache.invalidate(state.redis.as_ref()).await;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("50%_off\\"), r"%50\%\_off\\%");
    }

    #[test]
    fn query_validation_names_the_parameter() {
        let bad = |q: ProductQuery, field: &str| match q.validate() {
            Err(AppError::BadRequest { details, .. }) => assert_eq!(details[0].field, field),
            other => panic!("expected 400 for {field}, got {other:?}"),
        };
        bad(ProductQuery { min_price: Some("1.234".into()), ..Default::default() }, "minPrice");
        bad(
            ProductQuery { min_price: Some("5".into()), max_price: Some("4".into()), ..Default::default() },
            "minPrice",
        );
        bad(ProductQuery { in_stock: Some("yes".into()), ..Default::default() }, "inStock");
        bad(ProductQuery { order_by: Some("stock".into()), ..Default::default() }, "orderBy");
        bad(ProductQuery { order: Some("up".into()), ..Default::default() }, "order");
        bad(ProductQuery { category_id: Some("x".into()), ..Default::default() }, "categoryId");
        let (f, _) = ProductQuery::default().validate().unwrap();
        assert_eq!((f.order_by, f.desc), (OrderBy::CreatedAt, true), "newest first by default");
        let (f, _) = ProductQuery { order_by: Some("price".into()), ..Default::default() }.validate().unwrap();
        assert_eq!((f.order_by, f.desc), (OrderBy::Price, false));
    }
}
