//! The `/categories` routes: extract, call the domain, shape the response.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use crate::{
    auth::{Authorized, ClientMeta, perm},
    http::{AppError, Json, ListParams, Page, Path, Query, Valid},
    shop::catalogue::{self, CategoryIn, CategoryOut, CategoryPatch},
    state::AppState,
};

/// The categories, by name. Public.
#[utoipa::path(get, path = "/categories", tag = "shop", params(ListParams),
    responses((status = 200, body = Page<CategoryOut>), (status = 400)))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_categories(
    State(state): State<AppState>,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<CategoryOut>>, AppError> {
    let page = q.validate()?;
    let (data, total) = catalogue::categories(&state.db, &page).await?;
    Ok(Json(Page::new(data, &page, total)))
}

/// Creates a category (ADMIN or VENDOR). Names are unique.
#[utoipa::path(post, path = "/categories", tag = "shop", security(("bearer" = [])), request_body = CategoryIn,
    responses((status = 201, body = CategoryOut), (status = 400), (status = 401), (status = 403), (status = 409)))]
#[tracing::instrument(skip_all)]
pub(super) async fn create_category(
    State(state): State<AppState>,
    me: Authorized<perm::WriteCatalog>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<CategoryIn>>,
) -> Result<(StatusCode, Json<CategoryOut>), AppError> {
    let c = catalogue::create_category(&state, me.user_id.into(), &client, input).await?;
    Ok((StatusCode::CREATED, Json(c)))
}

/// One category. Public.
#[utoipa::path(get, path = "/categories/{id}", tag = "shop", params(("id" = Uuid, Path)),
    responses((status = 200, body = CategoryOut), (status = 404)))]
#[tracing::instrument(skip_all, fields(category_id = %id))]
pub(super) async fn get_category(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<CategoryOut>, AppError> {
    Ok(Json(catalogue::category(&state.db, id).await?))
}

/// Renames or re-describes a category (ADMIN: categories are shared by every vendor).
#[utoipa::path(patch, path = "/categories/{id}", tag = "shop", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = CategoryPatch,
    responses((status = 200, body = CategoryOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(category_id = %id))]
pub(super) async fn patch_category(
    State(state): State<AppState>,
    me: Authorized<perm::ManageCategories>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<CategoryPatch>>,
) -> Result<Json<CategoryOut>, AppError> {
    Ok(Json(catalogue::update_category(&state, me.user_id.into(), &client, id, input).await?))
}

/// Deletes a category (ADMIN). A category that still has products is 409: move or delete them first.
#[utoipa::path(delete, path = "/categories/{id}", tag = "shop", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(category_id = %id))]
pub(super) async fn delete_category(
    State(state): State<AppState>,
    me: Authorized<perm::ManageCategories>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    catalogue::delete_category(&state, me.user_id.into(), &client, id).await?;
    Ok(StatusCode::NO_CONTENT)
}
