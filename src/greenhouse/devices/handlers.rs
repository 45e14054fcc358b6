//! The `/devices` routes, for people (`Bearer`) and for the device itself (`Device`): extract,
//! call one domain function, shape the answer.

use axum::{extract::State, http::StatusCode};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{
    desired, live, registry, reported,
    tokens::{self, DeviceAuth},
    types::{DesiredOut, DeviceIn, DeviceListQuery, DeviceOut, DevicePatch, DeviceStateOut, DeviceWithToken},
};
use crate::{
    auth::{AuthUser, ClientMeta},
    greenhouse::access::{self, Need},
    http::{AppError, Json, ListParams, Page, Path, Query, Valid},
    state::AppState,
};

/// Provisions a device in a grower (owners and ADMIN). The answer carries its token, once.
#[utoipa::path(post, path = "/devices", tag = "devices", security(("bearer" = [])), request_body = DeviceIn,
    responses((status = 201, body = DeviceWithToken), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 422)))]
#[tracing::instrument(skip_all)]
pub async fn create_device(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<DeviceIn>>,
) -> Result<(StatusCode, Json<DeviceWithToken>), AppError> {
    let (d, token) = registry::provision(&state.db, &me, &client, input.into()).await?;
    let device = DeviceOut::new(&d, &state.greenhouse);
    Ok((StatusCode::CREATED, Json(DeviceWithToken { device, device_token: token.token })))
}

/// The devices the caller can see, newest first.
#[utoipa::path(get, path = "/devices", tag = "devices", security(("bearer" = [])), params(DeviceListQuery),
    responses((status = 200, body = Page<DeviceOut>), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
pub async fn list_devices(
    State(state): State<AppState>,
    me: AuthUser,
    Query(q): Query<DeviceListQuery>,
) -> Result<Json<Page<DeviceOut>>, AppError> {
    let page = ListParams { page: q.page.clone(), limit: q.limit.clone(), cursor: None }.validate()?;
    let filter = q.filter()?;
    let (rows, total) = registry::list(&state.db, &state.greenhouse, &me, &filter, &page).await?;
    Ok(Json(Page::new(rows.iter().map(|d| DeviceOut::new(d, &state.greenhouse)).collect(), &page, total)))
}

/// One device.
#[utoipa::path(get, path = "/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
pub async fn get_device(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceOut>, AppError> {
    let d = access::device(&state.db, &me, id, Need::Read).await?;
    Ok(Json(DeviceOut::new(&d, &state.greenhouse)))
}

/// Changes a device's name, chamber, kind or metadata (owners and ADMIN).
#[utoipa::path(patch, path = "/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = DevicePatch,
    responses((status = 200, body = DeviceOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
pub async fn patch_device(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<DevicePatch>>,
) -> Result<Json<DeviceOut>, AppError> {
    let d = registry::update(&state.db, &me, id, input).await?;
    Ok(Json(DeviceOut::new(&d, &state.greenhouse)))
}

/// Deletes a device (owners and ADMIN): its token stops working at once and it leaves every
/// list. Its readings stay until retention removes them.
#[utoipa::path(delete, path = "/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
pub async fn delete_device(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    registry::delete(&state.db, &me, &client, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a new token (owners and ADMIN). The old one stops working at once.
#[utoipa::path(post, path = "/devices/{id}/rotate-token", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceWithToken), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
pub async fn rotate_token(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceWithToken>, AppError> {
    let (d, token) = tokens::rotate(&state.db, &me, &client, id).await?;
    Ok(Json(DeviceWithToken { device: DeviceOut::new(&d, &state.greenhouse), device_token: token.token }))
}

/// A device's live state: latest values, desired and reported state.
#[utoipa::path(get, path = "/devices/{id}/state", tag = "devices", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceStateOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
pub async fn get_state(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceStateOut>, AppError> {
    let live = live::read(&state.db, &me, id).await?;
    Ok(Json(DeviceStateOut::new(live, &state.greenhouse)))
}

/// Replaces the desired state (any member, or ADMIN). `desiredVersion` goes up by one when the
/// document changes (the same document again changes nothing). With `ifVersion`, the change
/// applies only if that is still the current version; otherwise 409 and nothing changes.
#[utoipa::path(put, path = "/devices/{id}/desired", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body(content = Object, description = "The new desired state, plus an optional `ifVersion`"),
    responses((status = 200, body = DesiredOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
pub async fn put_desired(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<DesiredOut>, AppError> {
    Ok(Json(desired::replace(&state, &me, &client, id, body).await?.into()))
}

/// The calling device's own record (`Device` auth).
#[utoipa::path(get, path = "/devices/me", tag = "devices", security(("device" = [])),
    responses((status = 200, body = DeviceOut), (status = 401)))]
#[tracing::instrument(skip_all)]
pub async fn get_own_device(State(state): State<AppState>, auth: DeviceAuth) -> Result<Json<DeviceOut>, AppError> {
    let d = reported::own_device(&state.db, &auth).await?;
    Ok(Json(DeviceOut::new(&d, &state.greenhouse)))
}

/// What the calling device is asked to reach (`Device` auth).
#[utoipa::path(get, path = "/devices/me/desired", tag = "devices", security(("device" = [])),
    responses((status = 200, body = DesiredOut), (status = 401)))]
#[tracing::instrument(skip_all)]
pub async fn get_own_desired(State(state): State<AppState>, auth: DeviceAuth) -> Result<Json<DesiredOut>, AppError> {
    let d = reported::own_device(&state.db, &auth).await?;
    Ok(Json(DesiredOut { desired: d.desired, desired_version: d.desired_version }))
}

/// The calling device reports its actual state (`Device` auth): any JSON object up to 16 KiB.
/// A `desiredVersion` integer in it says which desired version the device has applied.
#[utoipa::path(post, path = "/devices/me/reported", tag = "devices", security(("device" = [])),
    request_body(content = Object, description = "The device's actual state; `desiredVersion` names the applied desired version"),
    responses((status = 200, body = DeviceStateOut), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
pub async fn post_reported(
    State(state): State<AppState>,
    auth: DeviceAuth,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<DeviceStateOut>, AppError> {
    let live = reported::report(&state, &auth, body).await?;
    Ok(Json(DeviceStateOut::new(live, &state.greenhouse)))
}
