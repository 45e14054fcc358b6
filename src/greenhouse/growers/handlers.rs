//! The `/growers` routes: extract, call one function of `tenant`, `members` or `chambers`,
//! shape the answer.

use axum::{extract::State, http::StatusCode};
use uuid::Uuid;

use super::{
    chambers, members, tenant,
    types::{ChamberOut, GrowerIn, GrowerOut, MemberIn, MemberOut, MemberPatch},
};
use crate::{
    auth::{AuthUser, Authorized, ClientMeta, perm},
    http::{AppError, Json, ListParams, Page, Path, Query, Valid},
    ids::{ChamberId, GrowerId, UserId},
    state::AppState,
};

/// Creates a grower (ADMIN). Add its owners with `POST /growers/{id}/members`.
#[utoipa::path(post, path = "/growers", tag = "growers", security(("bearer" = [])), request_body = GrowerIn,
    responses((status = 201, body = GrowerOut), (status = 400), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
pub async fn create_grower(
    State(state): State<AppState>,
    admin: Authorized<perm::ManageGrowers>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<GrowerIn>>,
) -> Result<(StatusCode, Json<GrowerOut>), AppError> {
    let g = tenant::create(&state.db, &admin, &client, &input.name).await?;
    Ok((StatusCode::CREATED, Json(GrowerOut::new(&g, None))))
}

/// The growers the caller belongs to (every grower for ADMIN), by name.
#[utoipa::path(get, path = "/growers", tag = "growers", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<GrowerOut>), (status = 400), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
pub async fn list_growers(
    State(state): State<AppState>,
    me: AuthUser,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<GrowerOut>>, AppError> {
    let page = q.validate()?;
    let (rows, total) = tenant::list(&state.db, &me, &page).await?;
    Ok(Json(Page::new(rows.iter().map(|(g, role)| GrowerOut::new(g, *role)).collect(), &page, total)))
}

/// One grower.
#[utoipa::path(get, path = "/growers/{id}", tag = "growers", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = GrowerOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn get_grower(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<GrowerOut>, AppError> {
    let (g, role) = tenant::get(&state.db, &me, id).await?;
    Ok(Json(GrowerOut::new(&g, role)))
}

/// Renames a grower (owners and ADMIN).
#[utoipa::path(patch, path = "/growers/{id}", tag = "growers", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = GrowerIn,
    responses((status = 200, body = GrowerOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn patch_grower(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<GrowerIn>>,
) -> Result<Json<GrowerOut>, AppError> {
    let (g, role) = tenant::rename(&state.db, &me, &client, id, &input.name).await?;
    Ok(Json(GrowerOut::new(&g, role)))
}

/// Adds a user to a grower (owners and ADMIN). The user must have the GROWER role
/// (or be an ADMIN); a user who already is a member is a 409 (change roles with PATCH).
#[utoipa::path(post, path = "/growers/{id}/members", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = MemberIn,
    responses((status = 201, body = MemberOut), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 409), (status = 422)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn add_member(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<MemberIn>>,
) -> Result<(StatusCode, Json<MemberOut>), AppError> {
    let (m, u) = members::add(&state.db, &me, &client, GrowerId(id), UserId(input.user_id), input.role).await?;
    Ok((StatusCode::CREATED, Json(MemberOut::new(&m, &u))))
}

/// The members of a grower (any member, or ADMIN).
#[utoipa::path(get, path = "/growers/{id}/members", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ListParams),
    responses((status = 200, body = Page<MemberOut>), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn list_members(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<MemberOut>>, AppError> {
    let page = q.validate()?;
    let (rows, total) = members::list(&state.db, &me, GrowerId(id), &page).await?;
    Ok(Json(Page::new(rows.iter().map(|(m, u)| MemberOut::new(m, u)).collect(), &page, total)))
}

/// Changes a member's role (owners and ADMIN). The last owner cannot be demoted.
#[utoipa::path(patch, path = "/growers/{id}/members/{userId}", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("userId" = Uuid, Path)), request_body = MemberPatch,
    responses((status = 200, body = MemberOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn patch_member(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    Valid(Json(input)): Valid<Json<MemberPatch>>,
) -> Result<Json<MemberOut>, AppError> {
    let (m, u) = members::change_role(&state.db, &me, &client, GrowerId(id), UserId(user_id), input.role).await?;
    Ok(Json(MemberOut::new(&m, &u)))
}

/// Removes a member (owners and ADMIN). The last owner cannot be removed.
#[utoipa::path(delete, path = "/growers/{id}/members/{userId}", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn remove_member(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, AppError> {
    members::remove(&state.db, &me, &client, GrowerId(id), UserId(user_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Creates a chamber (owners and ADMIN). Names are unique within a grower (409).
#[utoipa::path(post, path = "/growers/{id}/chambers", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = GrowerIn,
    responses((status = 201, body = ChamberOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn create_chamber(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<GrowerIn>>,
) -> Result<(StatusCode, Json<ChamberOut>), AppError> {
    let c = chambers::create(&state.db, &me, GrowerId(id), &input.name).await?;
    Ok((StatusCode::CREATED, Json(ChamberOut::from(&c))))
}

/// The chambers of a grower, by name (any member, or ADMIN).
#[utoipa::path(get, path = "/growers/{id}/chambers", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ListParams),
    responses((status = 200, body = Page<ChamberOut>), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn list_chambers(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<ChamberOut>>, AppError> {
    let page = q.validate()?;
    let (rows, total) = chambers::list(&state.db, &me, GrowerId(id), &page).await?;
    Ok(Json(Page::new(rows.iter().map(ChamberOut::from).collect(), &page, total)))
}

/// Renames a chamber (owners and ADMIN).
#[utoipa::path(patch, path = "/growers/{id}/chambers/{chamberId}", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("chamberId" = Uuid, Path)), request_body = GrowerIn,
    responses((status = 200, body = ChamberOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn patch_chamber(
    State(state): State<AppState>,
    me: AuthUser,
    Path((id, chamber_id)): Path<(Uuid, Uuid)>,
    Valid(Json(input)): Valid<Json<GrowerIn>>,
) -> Result<Json<ChamberOut>, AppError> {
    let c = chambers::rename(&state.db, &me, GrowerId(id), ChamberId(chamber_id), &input.name).await?;
    Ok(Json(ChamberOut::from(&c)))
}

/// Deletes a chamber (owners and ADMIN). Its devices stay, without a chamber.
#[utoipa::path(delete, path = "/growers/{id}/chambers/{chamberId}", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("chamberId" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
pub async fn delete_chamber(
    State(state): State<AppState>,
    me: AuthUser,
    Path((id, chamber_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, AppError> {
    chambers::delete(&state.db, &me, GrowerId(id), ChamberId(chamber_id)).await?;
    Ok(StatusCode::NO_CONTENT)
}
