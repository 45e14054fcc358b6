//! The `/products` routes: extract, call the domain, shape the response.

use axum::{
    body::Bytes,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use uuid::Uuid;

use crate::{
    auth::{Authorized, ClientMeta, perm},
    http::{AppError, Json, Page, Path, Query, Valid},
    shop::catalogue::{self, ProductIn, ProductOut, ProductPatch, ProductQuery},
    state::AppState,
};

/// Cached JSON, as it was serialized.
fn json_bytes(body: Bytes) -> Response {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
}

/// Products, filtered, sorted and paged. Public; served from the catalogue cache.
#[utoipa::path(get, path = "/products", tag = "shop", params(ProductQuery),
    responses((status = 200, body = Page<ProductOut>), (status = 400)))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_products(
    State(state): State<AppState>,
    Query(q): Query<ProductQuery>,
) -> Result<Response, AppError> {
    let (filter, page) = q.validate()?;
    Ok(json_bytes(catalogue::product_page(&state, &filter, &page).await?))
}

/// One product. Public; served from the catalogue cache.
#[utoipa::path(get, path = "/products/{id}", tag = "shop", params(("id" = Uuid, Path)),
    responses((status = 200, body = ProductOut), (status = 404)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub(super) async fn get_product(State(state): State<AppState>, Path(id): Path<Uuid>) -> Result<Response, AppError> {
    Ok(json_bytes(catalogue::product(&state, id.into()).await?))
}

/// Creates a product (ADMIN or VENDOR; a vendor's product is its own).
#[utoipa::path(post, path = "/products", tag = "shop", security(("bearer" = [])), request_body = ProductIn,
    responses((status = 201, body = ProductOut), (status = 400), (status = 401), (status = 403), (status = 409)))]
#[tracing::instrument(skip_all)]
pub(super) async fn create_product(
    State(state): State<AppState>,
    me: Authorized<perm::WriteCatalog>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<ProductIn>>,
) -> Result<(StatusCode, Json<ProductOut>), AppError> {
    let p = catalogue::create_product(&state, &me, &client, input).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// Changes a product (ADMIN, or the vendor who owns it). Stock can be set (`stock`) or adjusted
/// atomically (`stockAdjustment`).
#[utoipa::path(patch, path = "/products/{id}", tag = "shop", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = ProductPatch,
    responses((status = 200, body = ProductOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub(super) async fn patch_product(
    State(state): State<AppState>,
    me: Authorized<perm::WriteCatalog>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<ProductPatch>>,
) -> Result<Json<ProductOut>, AppError> {
    Ok(Json(catalogue::update_product(&state, &me, &client, id.into(), input).await?))
}

/// Deletes a product (soft: orders that contain it keep their items). ADMIN, or its vendor.
#[utoipa::path(delete, path = "/products/{id}", tag = "shop", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub(super) async fn delete_product(
    State(state): State<AppState>,
    me: Authorized<perm::WriteCatalog>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    catalogue::delete_product(&state, &me, &client, id.into()).await?;
    Ok(StatusCode::NO_CONTENT)
}
