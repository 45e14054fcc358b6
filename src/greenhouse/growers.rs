//! `/growers`, their members and chambers.

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use garde::Validate;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    access::{self, MemberRole, Need},
    entity::{chamber, grower, member},
};
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, Authorized, ClientMeta, perm},
    http::{AppError, Json, ListParams, Page, Path, Query, Valid},
    state::AppState,
    users::{entity::user, not_blank},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_grower, list_growers))
        .routes(routes!(get_grower, patch_grower))
        .routes(routes!(add_member, list_members))
        .routes(routes!(patch_member, remove_member))
        .routes(routes!(create_chamber, list_chambers))
        .routes(routes!(patch_chamber, delete_chamber))
}

/// A grower (the tenant: one greenhouse business).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrowerOut {
    pub id: Uuid,
    pub name: String,
    /// The caller's role in this grower (absent for an admin who is not a member).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_role: Option<MemberRole>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

fn grower_out(g: &grower::Model, my_role: Option<MemberRole>) -> GrowerOut {
    GrowerOut { id: g.id, name: g.name.clone(), my_role, created_at: g.created_at, updated_at: g.updated_at }
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrowerIn {
    #[garde(length(chars, min = 1, max = 200), custom(not_blank))]
    pub name: String,
}

/// Creates a grower (ADMIN). Add its owners with `POST /growers/{id}/members`.
#[utoipa::path(post, path = "/growers", tag = "growers", security(("bearer" = [])), request_body = GrowerIn,
    responses((status = 201, body = GrowerOut), (status = 400), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
async fn create_grower(
    State(state): State<AppState>,
    admin: Authorized<perm::ManageGrowers>,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<GrowerIn>>,
) -> Result<(StatusCode, Json<GrowerOut>), AppError> {
    let now = Utc::now();
    let txn = state.db.begin_write().await?;
    let g = grower::ActiveModel {
        id: Set(Uuid::now_v7()),
        name: Set(input.name.trim().to_string()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        Entry::new("grower.created")
            .by(Some(admin.user_id))
            .on("grower", g.id)
            .details(serde_json::json!({ "name": g.name }))
            .client(&client),
    )
    .await?;
    txn.commit().await?;
    Ok((StatusCode::CREATED, Json(grower_out(&g, None))))
}

/// The growers the caller belongs to (every grower for ADMIN), by name.
#[utoipa::path(get, path = "/growers", tag = "growers", security(("bearer" = [])), params(ListParams),
    responses((status = 200, body = Page<GrowerOut>), (status = 400), (status = 401), (status = 403)))]
#[tracing::instrument(skip_all)]
async fn list_growers(
    State(state): State<AppState>,
    me: AuthUser,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<GrowerOut>>, AppError> {
    let page = q.validate()?;
    let mut query = grower::Entity::find();
    if let Some(ids) = access::visible_growers(&state.db, &me).await? {
        query = query.filter(grower::Column::Id.is_in(ids));
    }
    let (rows, total) =
        page.fetch(&state.db, query, |q| q.order_by_asc(grower::Column::Name).order_by_asc(grower::Column::Id)).await?;
    let roles: std::collections::HashMap<Uuid, String> = member::Entity::find()
        .select_only()
        .columns([member::Column::GrowerId, member::Column::Role])
        .filter(member::Column::UserId.eq(me.user_id))
        .filter(member::Column::GrowerId.is_in(rows.iter().map(|g| g.id)))
        .into_tuple::<(Uuid, String)>()
        .all(&state.db)
        .await?
        .into_iter()
        .collect();
    let data =
        rows.iter().map(|g| grower_out(g, roles.get(&g.id).and_then(|r| MemberRole::parse(r)))).collect::<Vec<_>>();
    Ok(Json(Page::new(data, &page, total)))
}

/// One grower.
#[utoipa::path(get, path = "/growers/{id}", tag = "growers", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = GrowerOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn get_grower(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<GrowerOut>, AppError> {
    let standing = access::grower(&state.db, &me, id, Need::Read).await?;
    let g = grower::Entity::find_by_id(id)
        .one(&state.db)
        .await?
        .ok_or_else(|| AppError::NotFound("grower not found".into()))?;
    Ok(Json(grower_out(&g, standing.role)))
}

/// Renames a grower (owners and ADMIN).
#[utoipa::path(patch, path = "/growers/{id}", tag = "growers", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = GrowerIn,
    responses((status = 200, body = GrowerOut), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn patch_grower(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<GrowerIn>>,
) -> Result<Json<GrowerOut>, AppError> {
    let txn = state.db.begin_write().await?;
    let standing = access::grower(&txn, &me, id, Need::Manage).await?;
    let g =
        grower::Entity::find_by_id(id).one(&txn).await?.ok_or_else(|| AppError::NotFound("grower not found".into()))?;
    let mut active: grower::ActiveModel = g.into();
    active.name = Set(input.name.trim().to_string());
    active.updated_at = Set(Utc::now());
    let g = active.update(&txn).await?;
    audit::record(
        &txn,
        Entry::new("grower.updated")
            .by(Some(me.user_id))
            .on("grower", id)
            .details(serde_json::json!({ "name": g.name }))
            .client(&client),
    )
    .await?;
    txn.commit().await?;
    Ok(Json(grower_out(&g, standing.role)))
}

// ---------------------------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------------------------

/// A member of a grower.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberOut {
    pub grower_id: Uuid,
    pub user_id: Uuid,
    pub role: MemberRole,
    pub name: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberIn {
    #[garde(skip)]
    pub user_id: Uuid,
    #[garde(skip)]
    pub role: MemberRole,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    #[garde(skip)]
    pub role: MemberRole,
}

async fn member_out<C: sea_orm::ConnectionTrait>(db: &C, m: &member::Model) -> Result<MemberOut, AppError> {
    let u = user::Entity::find_by_id(m.user_id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound("user not found".into()))?;
    Ok(MemberOut {
        grower_id: m.grower_id,
        user_id: m.user_id,
        role: MemberRole::parse(&m.role).unwrap_or(MemberRole::Member),
        name: u.name,
        email: u.email,
        created_at: m.created_at,
    })
}

/// Fails when `user_id` is the last owner of `grower_id` and the change would leave none
/// (an admin may still do it: admins reach every grower anyway).
async fn keep_an_owner<C: sea_orm::ConnectionTrait>(
    db: &C,
    me: &AuthUser,
    grower_id: Uuid,
    user_id: Uuid,
) -> Result<(), AppError> {
    if me.is_admin() {
        return Ok(());
    }
    // Two owners demoting or removing each other at once must not both see the other as the
    // remaining owner: they queue on the grower's row.
    crate::db::for_update(grower::Entity::find_by_id(grower_id)).one(db).await?;
    let other_owners = member::Entity::find()
        .filter(member::Column::GrowerId.eq(grower_id))
        .filter(member::Column::Role.eq(MemberRole::Owner.as_str()))
        .filter(member::Column::UserId.ne(user_id))
        .count(db)
        .await?;
    if other_owners == 0 {
        return Err(AppError::Unprocessable("a grower must keep at least one owner".into()));
    }
    Ok(())
}

/// Adds a user to a grower (owners and ADMIN). The user must have the GROWER role
/// (or be an ADMIN); a user who already is a member is a 409 (change roles with PATCH).
#[utoipa::path(post, path = "/growers/{id}/members", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = MemberIn,
    responses((status = 201, body = MemberOut), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 409), (status = 422)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn add_member(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<MemberIn>>,
) -> Result<(StatusCode, Json<MemberOut>), AppError> {
    let txn = state.db.begin_write().await?;
    access::grower(&txn, &me, id, Need::Manage).await?;
    let u = crate::users::find_live(&txn, input.user_id)
        .await?
        .ok_or_else(|| AppError::Unprocessable("userId: no such user".into()))?;
    if !u.role.can(crate::auth::Permission::UseGreenhouses) {
        return Err(AppError::Unprocessable("userId: only GROWER (or ADMIN) users can be members of a grower".into()));
    }
    if access::member_role(&txn, id, u.id).await?.is_some() {
        return Err(AppError::Conflict("the user already is a member of this grower".into()));
    }
    let m = member::ActiveModel {
        grower_id: Set(id),
        user_id: Set(u.id),
        role: Set(input.role.as_str().to_string()),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        Entry::new("grower.member_added")
            .by(Some(me.user_id))
            .on("grower", id)
            .details(serde_json::json!({ "userId": u.id, "role": input.role }))
            .client(&client),
    )
    .await?;
    let out = member_out(&txn, &m).await?;
    txn.commit().await?;
    Ok((StatusCode::CREATED, Json(out)))
}

/// The members of a grower (any member, or ADMIN).
#[utoipa::path(get, path = "/growers/{id}/members", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ListParams),
    responses((status = 200, body = Page<MemberOut>), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn list_members(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<MemberOut>>, AppError> {
    let page = q.validate()?;
    access::grower(&state.db, &me, id, Need::Read).await?;
    let query = member::Entity::find().filter(member::Column::GrowerId.eq(id));
    let (rows, total) = page
        .fetch(&state.db, query, |q| q.order_by_asc(member::Column::CreatedAt).order_by_asc(member::Column::UserId))
        .await?;
    let mut data = Vec::with_capacity(rows.len());
    for m in &rows {
        data.push(member_out(&state.db, m).await?);
    }
    Ok(Json(Page::new(data, &page, total)))
}

/// Changes a member's role (owners and ADMIN). The last owner cannot be demoted.
#[utoipa::path(patch, path = "/growers/{id}/members/{userId}", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("userId" = Uuid, Path)), request_body = MemberPatch,
    responses((status = 200, body = MemberOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn patch_member(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
    Valid(Json(input)): Valid<Json<MemberPatch>>,
) -> Result<Json<MemberOut>, AppError> {
    let txn = state.db.begin_write().await?;
    access::grower(&txn, &me, id, Need::Manage).await?;
    let m = member::Entity::find_by_id((id, user_id))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::NotFound("member not found".into()))?;
    if input.role == MemberRole::Member && m.role == MemberRole::Owner.as_str() {
        keep_an_owner(&txn, &me, id, user_id).await?;
    }
    let mut active: member::ActiveModel = m.into();
    active.role = Set(input.role.as_str().to_string());
    let m = active.update(&txn).await?;
    audit::record(
        &txn,
        Entry::new("grower.member_updated")
            .by(Some(me.user_id))
            .on("grower", id)
            .details(serde_json::json!({ "userId": user_id, "role": input.role }))
            .client(&client),
    )
    .await?;
    let out = member_out(&txn, &m).await?;
    txn.commit().await?;
    Ok(Json(out))
}

/// Removes a member (owners and ADMIN). The last owner cannot be removed.
#[utoipa::path(delete, path = "/growers/{id}/members/{userId}", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("userId" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn remove_member(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path((id, user_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, AppError> {
    let txn = state.db.begin_write().await?;
    access::grower(&txn, &me, id, Need::Manage).await?;
    let m = member::Entity::find_by_id((id, user_id))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::NotFound("member not found".into()))?;
    if m.role == MemberRole::Owner.as_str() {
        keep_an_owner(&txn, &me, id, user_id).await?;
    }
    member::Entity::delete_by_id((id, user_id)).exec(&txn).await?;
    audit::record(
        &txn,
        Entry::new("grower.member_removed")
            .by(Some(me.user_id))
            .on("grower", id)
            .details(serde_json::json!({ "userId": user_id }))
            .client(&client),
    )
    .await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------------------------------------------------------------------------------------------
// Chambers
// ---------------------------------------------------------------------------------------------

/// A chamber (a compartment of the greenhouse that devices sit in).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChamberOut {
    pub id: Uuid,
    pub grower_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&chamber::Model> for ChamberOut {
    fn from(c: &chamber::Model) -> Self {
        Self {
            id: c.id,
            grower_id: c.grower_id,
            name: c.name.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// Creates a chamber (owners and ADMIN). Names are unique within a grower (409).
#[utoipa::path(post, path = "/growers/{id}/chambers", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body = GrowerIn,
    responses((status = 201, body = ChamberOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn create_chamber(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<GrowerIn>>,
) -> Result<(StatusCode, Json<ChamberOut>), AppError> {
    access::grower(&state.db, &me, id, Need::Manage).await?;
    let now = Utc::now();
    let c = chamber::ActiveModel {
        id: Set(Uuid::now_v7()),
        grower_id: Set(id),
        name: Set(input.name.trim().to_string()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&state.db)
    .await
    .map_err(chamber_conflict)?;
    Ok((StatusCode::CREATED, Json(ChamberOut::from(&c))))
}

fn chamber_conflict(e: sea_orm::DbErr) -> AppError {
    match AppError::from(e) {
        AppError::Conflict(_) => AppError::Conflict("a chamber with this name already exists in this grower".into()),
        other => other,
    }
}

/// The chambers of a grower, by name (any member, or ADMIN).
#[utoipa::path(get, path = "/growers/{id}/chambers", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ListParams),
    responses((status = 200, body = Page<ChamberOut>), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn list_chambers(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Query(q): Query<ListParams>,
) -> Result<Json<Page<ChamberOut>>, AppError> {
    let page = q.validate()?;
    access::grower(&state.db, &me, id, Need::Read).await?;
    let query = chamber::Entity::find().filter(chamber::Column::GrowerId.eq(id));
    let (rows, total) = page
        .fetch(&state.db, query, |q| q.order_by_asc(chamber::Column::Name).order_by_asc(chamber::Column::Id))
        .await?;
    Ok(Json(Page::new(rows.iter().map(ChamberOut::from).collect(), &page, total)))
}

async fn find_chamber<C: sea_orm::ConnectionTrait>(
    db: &C,
    grower_id: Uuid,
    chamber_id: Uuid,
) -> Result<chamber::Model, AppError> {
    chamber::Entity::find()
        .filter(Condition::all().add(chamber::Column::Id.eq(chamber_id)).add(chamber::Column::GrowerId.eq(grower_id)))
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound("chamber not found".into()))
}

/// Renames a chamber (owners and ADMIN).
#[utoipa::path(patch, path = "/growers/{id}/chambers/{chamberId}", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("chamberId" = Uuid, Path)), request_body = GrowerIn,
    responses((status = 200, body = ChamberOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn patch_chamber(
    State(state): State<AppState>,
    me: AuthUser,
    Path((id, chamber_id)): Path<(Uuid, Uuid)>,
    Valid(Json(input)): Valid<Json<GrowerIn>>,
) -> Result<Json<ChamberOut>, AppError> {
    access::grower(&state.db, &me, id, Need::Manage).await?;
    let c = find_chamber(&state.db, id, chamber_id).await?;
    let mut active: chamber::ActiveModel = c.into();
    active.name = Set(input.name.trim().to_string());
    active.updated_at = Set(Utc::now());
    let c = active.update(&state.db).await.map_err(chamber_conflict)?;
    Ok(Json(ChamberOut::from(&c)))
}

/// Deletes a chamber (owners and ADMIN). Its devices stay, without a chamber.
#[utoipa::path(delete, path = "/growers/{id}/chambers/{chamberId}", tag = "growers", security(("bearer" = [])),
    params(("id" = Uuid, Path), ("chamberId" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(grower_id = %id))]
async fn delete_chamber(
    State(state): State<AppState>,
    me: AuthUser,
    Path((id, chamber_id)): Path<(Uuid, Uuid)>,
) -> Result<StatusCode, AppError> {
    access::grower(&state.db, &me, id, Need::Manage).await?;
    find_chamber(&state.db, id, chamber_id).await?;
    chamber::Entity::delete_by_id(chamber_id).exec(&state.db).await?;
    Ok(StatusCode::NO_CONTENT)
}
