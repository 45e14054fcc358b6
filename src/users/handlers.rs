//! Every `/users/*` route, thin: extract, call the one domain function, shape the answer.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use super::{
    UserError, UserOut, account, admin, password, profile,
    types::{MePatch, PasswordChangeIn, ProfileIn, ProfileOut, UserListQuery, UserPatch},
};
use crate::{
    auth::{AuthUser, Authorized, ClientMeta, perm},
    http::{AppError, Json, ListParams, Page, Path, Query, Valid},
    state::AppState,
};

/// The signed-in user.
#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserOut), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(super) async fn get_me(State(state): State<AppState>, me: AuthUser) -> Result<Json<UserOut>, AppError> {
    let me = state.user_views.get(me.user_id).await?;
    Ok(Json(me.ok_or(UserError::AccountGone)?))
}

/// Changes the caller's own name.
#[utoipa::path(patch, path = "/users/me", tag = "users", security(("bearer" = [])), request_body = MePatch,
    responses((status = 200, body = UserOut), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(super) async fn patch_me(
    State(state): State<AppState>,
    me: AuthUser,
    Valid(Json(input)): Valid<Json<MePatch>>,
) -> Result<Json<UserOut>, AppError> {
    Ok(Json(account::update_me(&state, &me, input).await?))
}

/// The caller's profile (empty fields until set).
#[utoipa::path(get, path = "/users/me/profile", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = ProfileOut), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(super) async fn get_profile(State(state): State<AppState>, me: AuthUser) -> Result<Json<ProfileOut>, AppError> {
    Ok(Json(profile::get(&state, &me).await?))
}

/// Replaces the caller's profile (fields left out become empty).
#[utoipa::path(put, path = "/users/me/profile", tag = "users", security(("bearer" = [])), request_body = ProfileIn,
    responses((status = 200, body = ProfileOut), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(super) async fn put_profile(
    State(state): State<AppState>,
    me: AuthUser,
    Valid(Json(input)): Valid<Json<ProfileIn>>,
) -> Result<Json<ProfileOut>, AppError> {
    Ok(Json(profile::put(&state, &me, input).await?))
}

/// Changes the password. Every other session of the user ends at once; this one stays.
#[utoipa::path(post, path = "/users/me/password", tag = "users", security(("bearer" = [])), request_body = PasswordChangeIn,
    responses((status = 204), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
pub(super) async fn change_password(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<PasswordChangeIn>>,
) -> Result<StatusCode, AppError> {
    password::change(&state, &me, &input.current_password, &input.new_password, &client).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Users, newest first (ADMIN).
#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])), params(UserListQuery),
    responses((status = 200, body = Page<UserOut>), (status = 400), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
pub(super) async fn list_users(
    State(state): State<AppState>,
    _admin: Authorized<perm::ManageUsers>,
    Query(q): Query<UserListQuery>,
) -> Result<Json<Page<UserOut>>, AppError> {
    let page = ListParams { page: q.page.clone(), limit: q.limit.clone(), cursor: None }.validate()?;
    let (rows, total) = admin::list(&state, &q, &page).await?;
    Ok(Json(Page::new(rows, &page, total)))
}

/// One user (ADMIN).
#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = UserOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub(super) async fn get_user(
    State(state): State<AppState>,
    _admin: Authorized<perm::ManageUsers>,
    Path(id): Path<Uuid>,
) -> Result<Json<UserOut>, AppError> {
    Ok(Json(state.user_views.get(id).await?.ok_or(UserError::NotFound)?))
}

/// Changes a user's role, name or disabled state (ADMIN). A role change or a disable ends the
/// user's sessions at once, so no token keeps old rights.
#[utoipa::path(patch, path = "/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = UserPatch,
    responses((status = 200, body = UserOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub(super) async fn patch_user(
    State(state): State<AppState>,
    admin: Authorized<perm::ManageUsers>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<UserPatch>>,
) -> Result<Json<UserOut>, AppError> {
    Ok(Json(admin::update(&state, &admin, id.into(), &input, &client).await?))
}

/// Soft-deletes a user (ADMIN): they disappear from lists and cannot sign in; their sessions
/// end at once. The email stays reserved.
#[utoipa::path(delete, path = "/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(user_id = %id))]
pub(super) async fn delete_user(
    State(state): State<AppState>,
    admin: Authorized<perm::ManageUsers>,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    admin::delete(&state, &admin, id.into(), &client).await?;
    Ok(StatusCode::NO_CONTENT)
}
