//! `/devices`: the registry (provisioning with a one-time token, rotation, presence), live
//! state, and desired/reported state, from both sides: people (`Bearer`) and the device
//! itself (`Device`).

use std::collections::BTreeMap;

use axum::{extract::State, http::StatusCode};
use chrono::{DateTime, Utc};
use garde::Validate;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;

use crate::routes;
use uuid::Uuid;

use super::{
    DeviceStatus,
    access::{self, Need},
    device_auth::{self, DeviceAuth},
    entity::{chamber, device},
};
use crate::{
    audit::{self, Entry},
    auth::{AuthUser, ClientMeta},
    http::{AppError, Json, ListParams, Page, Path, Query, Valid},
    state::AppState,
    users::not_blank,
};

/// The grower of each live (not deleted) device matching `filter`.
pub async fn live_growers<C: ConnectionTrait>(
    db: &C,
    filter: impl sea_orm::sea_query::IntoCondition,
) -> Result<std::collections::HashMap<Uuid, Uuid>, sea_orm::DbErr> {
    Ok(device::Entity::find()
        .select_only()
        .columns([device::Column::Id, device::Column::GrowerId])
        .filter(filter)
        .filter(device::Column::DeletedAt.is_null())
        .into_tuple::<(Uuid, Uuid)>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_device, list_devices))
        .routes(routes!(get_own_device))
        .routes(routes!(get_own_desired))
        .routes(routes!(post_reported))
        .routes(routes!(get_device, patch_device, delete_device))
        .routes(routes!(rotate_token))
        .routes(routes!(get_state))
        .routes(routes!(put_desired))
}

/// JSON documents kept on a device (metadata, desired and reported state) are objects of at
/// most this many bytes.
const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

/// A device as the API shows it. The token is never part of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceOut {
    pub id: Uuid,
    pub grower_id: Uuid,
    pub chamber_id: Option<Uuid>,
    pub name: String,
    pub kind: Option<String>,
    pub metadata: Option<Value>,
    /// `online` while the last contact is within `DEVICE_OFFLINE_AFTER_SECS`.
    pub status: DeviceStatus,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub desired_version: i64,
    pub token_rotated_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub fn device_out(state: &AppState, d: &device::Model) -> DeviceOut {
    DeviceOut {
        id: d.id,
        grower_id: d.grower_id,
        chamber_id: d.chamber_id,
        name: d.name.clone(),
        kind: d.kind.clone(),
        metadata: d.metadata.clone(),
        status: state.greenhouse.status(d.last_seen_at),
        last_seen_at: d.last_seen_at,
        desired_version: d.desired_version,
        token_rotated_at: d.token_rotated_at,
        created_at: d.created_at,
        updated_at: d.updated_at,
    }
}

/// A device and its token. The token is shown only in this answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceWithToken {
    pub device: DeviceOut,
    /// Send as `Authorization: Device <token>` (and as the MQTT password). Shown once.
    pub device_token: String,
}

fn valid_document(v: &Value, _: &()) -> garde::Result {
    if !v.is_object() {
        return Err(garde::Error::new("must be a JSON object"));
    }
    if v.to_string().len() > MAX_DOCUMENT_BYTES {
        return Err(garde::Error::new("must be at most 16 KiB"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeviceIn {
    #[garde(skip)]
    pub grower_id: Uuid,
    #[garde(skip)]
    pub chamber_id: Option<Uuid>,
    #[garde(length(chars, min = 1, max = 200), custom(not_blank))]
    pub name: String,
    /// Free text such as `sensor`, `gateway`, `controller` (at most 64 characters).
    #[garde(length(chars, min = 1, max = 64), inner(custom(not_blank)))]
    pub kind: Option<String>,
    /// Any JSON object up to 16 KiB (firmware, model, location…).
    #[garde(inner(custom(valid_document)))]
    pub metadata: Option<Value>,
}

async fn check_chamber<C: ConnectionTrait>(db: &C, grower_id: Uuid, chamber_id: Option<Uuid>) -> Result<(), AppError> {
    let Some(chamber_id) = chamber_id else { return Ok(()) };
    let found = chamber::Entity::find()
        .filter(Condition::all().add(chamber::Column::Id.eq(chamber_id)).add(chamber::Column::GrowerId.eq(grower_id)))
        .count(db)
        .await?;
    if found == 0 {
        return Err(AppError::Unprocessable("chamberId: no such chamber in this grower".into()));
    }
    Ok(())
}

/// What a new device starts with.
pub struct NewDevice {
    pub grower_id: Uuid,
    pub chamber_id: Option<Uuid>,
    pub name: String,
    pub kind: Option<String>,
    pub metadata: Option<Value>,
    pub desired: Value,
}

/// The row of a new device with a freshly issued token (`desiredVersion` 1 when it starts
/// with a desired state, else 0).
pub fn new_device(new: NewDevice, token: &device_auth::IssuedToken) -> device::ActiveModel {
    let now = Utc::now();
    let has_desired = new.desired.as_object().is_some_and(|o| !o.is_empty());
    device::ActiveModel {
        id: Set(Uuid::now_v7()),
        grower_id: Set(new.grower_id),
        chamber_id: Set(new.chamber_id),
        name: Set(new.name),
        kind: Set(new.kind),
        metadata: Set(new.metadata),
        token_id: Set(token.id.clone()),
        token_hash: Set(token.hash.clone()),
        token_rotated_at: Set(now),
        last_seen_at: Set(None),
        desired: Set(new.desired),
        desired_version: Set(i64::from(has_desired)),
        desired_updated_at: Set(has_desired.then_some(now)),
        reported_state: Set(None),
        reported_version: Set(None),
        reported_at: Set(None),
        deleted_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Provisions a device in a grower (owners and ADMIN). The answer carries its token, once.
#[utoipa::path(post, path = "/devices", tag = "devices", security(("bearer" = [])), request_body = DeviceIn,
    responses((status = 201, body = DeviceWithToken), (status = 400), (status = 401), (status = 403), (status = 404),
        (status = 422)))]
#[tracing::instrument(skip_all)]
async fn create_device(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Valid(Json(input)): Valid<Json<DeviceIn>>,
) -> Result<(StatusCode, Json<DeviceWithToken>), AppError> {
    let txn = state.db.begin_write().await?;
    access::grower(&txn, &me, input.grower_id, Need::Manage).await?;
    check_chamber(&txn, input.grower_id, input.chamber_id).await?;
    let token = device_auth::issue();
    let d = new_device(
        NewDevice {
            grower_id: input.grower_id,
            chamber_id: input.chamber_id,
            name: input.name.trim().to_string(),
            kind: input.kind.map(|k| k.trim().to_string()),
            metadata: input.metadata,
            desired: Value::Object(Map::new()),
        },
        &token,
    )
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        Entry::new("device.created")
            .by(Some(me.user_id))
            .on("device", d.id)
            .details(serde_json::json!({ "growerId": d.grower_id, "name": d.name }))
            .client(&client),
    )
    .await?;
    txn.commit().await?;
    Ok((StatusCode::CREATED, Json(DeviceWithToken { device: device_out(&state, &d), device_token: token.token })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct DeviceListQuery {
    /// Only this grower's devices.
    pub grower_id: Option<String>,
    /// Only devices in this chamber.
    pub chamber_id: Option<String>,
    /// `online` or `offline`.
    pub status: Option<String>,
    /// 1-based page (default 1).
    pub page: Option<String>,
    /// Items per page (default 20, at most 100).
    pub limit: Option<String>,
}

/// The devices the caller can see, newest first.
#[utoipa::path(get, path = "/devices", tag = "devices", security(("bearer" = [])), params(DeviceListQuery),
    responses((status = 200, body = Page<DeviceOut>), (status = 400), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all)]
async fn list_devices(
    State(state): State<AppState>,
    me: AuthUser,
    Query(q): Query<DeviceListQuery>,
) -> Result<Json<Page<DeviceOut>>, AppError> {
    let page = ListParams { page: q.page.clone(), limit: q.limit.clone(), cursor: None }.validate()?;
    let grower_id = crate::http::uuid_param("growerId", q.grower_id.as_deref())?;
    let chamber_id = crate::http::uuid_param("chamberId", q.chamber_id.as_deref())?;
    let status = match q.status.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some("online") => Some(DeviceStatus::Online),
        Some("offline") => Some(DeviceStatus::Offline),
        Some(_) => return Err(AppError::invalid_field("status", "must be online or offline")),
    };
    let mut cond = Condition::all().add(device::Column::DeletedAt.is_null());
    match grower_id {
        Some(g) => {
            access::grower(&state.db, &me, g, Need::Read).await?;
            cond = cond.add(device::Column::GrowerId.eq(g));
        }
        None => {
            if let Some(ids) = access::visible_growers(&state.db, &me).await? {
                cond = cond.add(device::Column::GrowerId.is_in(ids));
            }
        }
    }
    if let Some(c) = chamber_id {
        cond = cond.add(device::Column::ChamberId.eq(c));
    }
    let since = state.greenhouse.online_since();
    match status {
        Some(DeviceStatus::Online) => cond = cond.add(device::Column::LastSeenAt.gte(since)),
        Some(DeviceStatus::Offline) => {
            cond = cond.add(
                Condition::any().add(device::Column::LastSeenAt.is_null()).add(device::Column::LastSeenAt.lt(since)),
            )
        }
        None => {}
    }
    let (rows, total) = page
        .fetch(&state.db, device::Entity::find().filter(cond), |q| {
            q.order_by_desc(device::Column::CreatedAt).order_by_desc(device::Column::Id)
        })
        .await?;
    Ok(Json(Page::new(rows.iter().map(|d| device_out(&state, d)).collect(), &page, total)))
}

/// One device.
#[utoipa::path(get, path = "/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
async fn get_device(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceOut>, AppError> {
    let d = access::device(&state.db, &me, id, Need::Read).await?;
    Ok(Json(device_out(&state, &d)))
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevicePatch {
    #[garde(length(chars, min = 1, max = 200), inner(custom(not_blank)))]
    pub name: Option<String>,
    /// A chamber of the same grower, or `null` to take the device out of its chamber.
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<Uuid>)]
    #[garde(skip)]
    pub chamber_id: Option<Option<Uuid>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<String>)]
    #[garde(inner(inner(length(chars, min = 1, max = 64), custom(not_blank))))]
    pub kind: Option<Option<String>>,
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<Object>)]
    #[garde(inner(inner(custom(valid_document))))]
    pub metadata: Option<Option<Value>>,
}

/// Changes a device's name, chamber, kind or metadata (owners and ADMIN).
#[utoipa::path(patch, path = "/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = Uuid, Path)),
    request_body = DevicePatch,
    responses((status = 200, body = DeviceOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 422)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
async fn patch_device(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
    Valid(Json(input)): Valid<Json<DevicePatch>>,
) -> Result<Json<DeviceOut>, AppError> {
    let txn = state.db.begin_write().await?;
    let d = access::device(&txn, &me, id, Need::Manage).await?;
    let grower_id = d.grower_id;
    let mut active: device::ActiveModel = d.into();
    if let Some(name) = input.name {
        active.name = Set(name.trim().to_string());
    }
    if let Some(chamber_id) = input.chamber_id {
        check_chamber(&txn, grower_id, chamber_id).await?;
        active.chamber_id = Set(chamber_id);
    }
    if let Some(kind) = input.kind {
        active.kind = Set(kind.map(|k| k.trim().to_string()));
    }
    if let Some(metadata) = input.metadata {
        active.metadata = Set(metadata);
    }
    active.updated_at = Set(Utc::now());
    let d = active.update(&txn).await?;
    txn.commit().await?;
    Ok(Json(device_out(&state, &d)))
}

/// Deletes a device (owners and ADMIN): its token stops working at once and it leaves every
/// list. Its readings stay until retention removes them.
#[utoipa::path(delete, path = "/devices/{id}", tag = "devices", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
async fn delete_device(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, AppError> {
    let txn = state.db.begin_write().await?;
    let d = access::device(&txn, &me, id, Need::Manage).await?;
    let now = Utc::now();
    device::Entity::update_many()
        .col_expr(device::Column::DeletedAt, Expr::value(now))
        .col_expr(device::Column::UpdatedAt, Expr::value(now))
        .filter(device::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    audit::record(
        &txn,
        Entry::new("device.deleted")
            .by(Some(me.user_id))
            .on("device", id)
            .details(serde_json::json!({ "growerId": d.grower_id, "name": d.name }))
            .client(&client),
    )
    .await?;
    txn.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Issues a new token (owners and ADMIN). The old one stops working at once.
#[utoipa::path(post, path = "/devices/{id}/rotate-token", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceWithToken), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
async fn rotate_token(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceWithToken>, AppError> {
    let txn = state.db.begin_write().await?;
    let d = access::device(&txn, &me, id, Need::Manage).await?;
    let token = device_auth::issue();
    let now = Utc::now();
    let mut active: device::ActiveModel = d.into();
    active.token_id = Set(token.id);
    active.token_hash = Set(token.hash);
    active.token_rotated_at = Set(now);
    active.updated_at = Set(now);
    let d = active.update(&txn).await?;
    audit::record(&txn, Entry::new("device.token_rotated").by(Some(me.user_id)).on("device", id).client(&client))
        .await?;
    txn.commit().await?;
    Ok(Json(DeviceWithToken { device: device_out(&state, &d), device_token: token.token }))
}

// ---------------------------------------------------------------------------------------------
// Live, desired and reported state
// ---------------------------------------------------------------------------------------------

/// The latest reading of one metric.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LatestValue {
    pub value: f64,
    pub ts: DateTime<Utc>,
}

/// Both sides of a device's state: what it measures and reports, and what it is asked to do.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceStateOut {
    pub device_id: Uuid,
    /// The latest reading per metric (an older reading never replaces a newer one).
    pub reported: BTreeMap<String, LatestValue>,
    /// What the device is asked to reach (`PUT /devices/{id}/desired`).
    #[schema(value_type = Object)]
    pub desired: Value,
    /// Goes up by one on every change of `desired`.
    pub desired_version: i64,
    pub desired_updated_at: Option<DateTime<Utc>>,
    /// The last document the device sent to `POST /devices/me/reported`.
    #[schema(value_type = Option<Object>)]
    pub reported_state: Option<Value>,
    /// The `desiredVersion` the device said it applied, if it said one.
    pub reported_version: Option<i64>,
    pub reported_at: Option<DateTime<Utc>>,
    /// Whether the device has caught up with `desired`: it reported a `desiredVersion` at
    /// least the current one, or (when it reports no version) every desired key has the same
    /// value in its reported state.
    pub in_sync: bool,
    pub status: DeviceStatus,
    pub last_seen_at: Option<DateTime<Utc>>,
}

pub fn in_sync(d: &device::Model) -> bool {
    if let Some(v) = d.reported_version {
        return v >= d.desired_version;
    }
    if d.desired_version == 0 {
        return true;
    }
    let (Some(desired), Some(reported)) = (d.desired.as_object(), d.reported_state.as_ref().and_then(Value::as_object))
    else {
        return false;
    };
    desired.iter().all(|(k, v)| reported.get(k) == Some(v))
}

async fn state_out(state: &AppState, d: &device::Model) -> Result<DeviceStateOut, AppError> {
    let latest = crate::telemetry::store::latest(&state.db, d.id).await?;
    Ok(DeviceStateOut {
        device_id: d.id,
        reported: latest.into_iter().map(|(metric, value, ts)| (metric, LatestValue { value, ts })).collect(),
        desired: d.desired.clone(),
        desired_version: d.desired_version,
        desired_updated_at: d.desired_updated_at,
        reported_state: d.reported_state.clone(),
        reported_version: d.reported_version,
        reported_at: d.reported_at,
        in_sync: in_sync(d),
        status: state.greenhouse.status(d.last_seen_at),
        last_seen_at: d.last_seen_at,
    })
}

/// A device's live state: latest values, desired and reported state.
#[utoipa::path(get, path = "/devices/{id}/state", tag = "devices", security(("bearer" = [])), params(("id" = Uuid, Path)),
    responses((status = 200, body = DeviceStateOut), (status = 401), (status = 403), (status = 404)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
async fn get_state(
    State(state): State<AppState>,
    me: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<DeviceStateOut>, AppError> {
    let d = access::device(&state.db, &me, id, Need::Read).await?;
    Ok(Json(state_out(&state, &d).await?))
}

/// The desired state and its version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredOut {
    #[schema(value_type = Object)]
    pub desired: Value,
    pub desired_version: i64,
}

/// Splits `ifVersion` off a desired-state body and checks the rest.
fn desired_body(mut body: Map<String, Value>) -> Result<(Map<String, Value>, Option<i64>), AppError> {
    let if_version = match body.remove("ifVersion") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(n),
            _ => return Err(AppError::invalid_field("ifVersion", "must be a non-negative integer")),
        },
    };
    if serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_DOCUMENT_BYTES {
        return Err(AppError::invalid_field("desired", "must be at most 16 KiB"));
    }
    Ok((body, if_version))
}

/// Replaces the desired state (any member, or ADMIN). `desiredVersion` goes up by one when the
/// document changes (the same document again changes nothing). With `ifVersion`, the change
/// applies only if that is still the current version; otherwise 409 and nothing changes.
#[utoipa::path(put, path = "/devices/{id}/desired", tag = "devices", security(("bearer" = [])),
    params(("id" = Uuid, Path)), request_body(content = Object, description = "The new desired state, plus an optional `ifVersion`"),
    responses((status = 200, body = DesiredOut), (status = 400), (status = 401), (status = 403), (status = 404), (status = 409)))]
#[tracing::instrument(skip_all, fields(device_id = %id))]
async fn put_desired(
    State(state): State<AppState>,
    me: AuthUser,
    client: ClientMeta,
    Path(id): Path<Uuid>,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<DesiredOut>, AppError> {
    let (desired, if_version) = desired_body(body)?;
    let desired = Value::Object(desired);
    let txn = state.db.begin_write().await?;
    access::device(&txn, &me, id, Need::Write).await?;
    // Writers queue on the row, so a write without `ifVersion` always applies on top of the
    // latest version, never 409s.
    let d = crate::db::for_update(device::Entity::find_by_id(id))
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::NotFound("device not found".into()))?;
    if let Some(expected) = if_version
        && expected != d.desired_version
    {
        return Err(AppError::Conflict(format!(
            "desired state is at version {}, not {expected}; read it again and retry",
            d.desired_version
        )));
    }
    if crate::util::json_eq(&d.desired, &desired) {
        return Ok(Json(DesiredOut { desired, desired_version: d.desired_version }));
    }
    let version = d.desired_version + 1;
    let now = Utc::now();
    // Conditional on the version read above, so two writers can never both win.
    let res = device::Entity::update_many()
        .col_expr(device::Column::Desired, Expr::value(desired.clone()))
        .col_expr(device::Column::DesiredVersion, Expr::value(version))
        .col_expr(device::Column::DesiredUpdatedAt, Expr::value(now))
        .col_expr(device::Column::UpdatedAt, Expr::value(now))
        .filter(device::Column::Id.eq(id))
        .filter(device::Column::DesiredVersion.eq(d.desired_version))
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(AppError::Conflict("desired state changed meanwhile; read it again and retry".into()));
    }
    audit::record(
        &txn,
        Entry::new("device.desired_changed")
            .by(Some(me.user_id))
            .on("device", id)
            .details(serde_json::json!({ "desiredVersion": version }))
            .client(&client),
    )
    .await?;
    txn.commit().await?;
    let out = DesiredOut { desired, desired_version: version };
    state.realtime.publish(
        &format!("/controls/{id}/desired"),
        Some(version),
        &crate::realtime::paths::desired_data(id, &out.desired, version),
    );
    crate::telemetry::desired_changed(&state, id, &out.desired, version).await;
    Ok(Json(out))
}

// ---------------------------------------------------------------------------------------------
// The device's side
// ---------------------------------------------------------------------------------------------

async fn own_device(state: &AppState, auth: &DeviceAuth) -> Result<device::Model, AppError> {
    access::find_live_device(&state.db, auth.device_id)
        .await?
        .ok_or_else(|| AppError::Unauthorized("invalid device token".into()))
}

/// The calling device's own record (`Device` auth).
#[utoipa::path(get, path = "/devices/me", tag = "devices", security(("device" = [])),
    responses((status = 200, body = DeviceOut), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn get_own_device(State(state): State<AppState>, auth: DeviceAuth) -> Result<Json<DeviceOut>, AppError> {
    Ok(Json(device_out(&state, &own_device(&state, &auth).await?)))
}

/// What the calling device is asked to reach (`Device` auth).
#[utoipa::path(get, path = "/devices/me/desired", tag = "devices", security(("device" = [])),
    responses((status = 200, body = DesiredOut), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn get_own_desired(State(state): State<AppState>, auth: DeviceAuth) -> Result<Json<DesiredOut>, AppError> {
    let d = own_device(&state, &auth).await?;
    Ok(Json(DesiredOut { desired: d.desired, desired_version: d.desired_version }))
}

/// The calling device reports its actual state (`Device` auth): any JSON object up to 16 KiB.
/// A `desiredVersion` integer in it says which desired version the device has applied.
#[utoipa::path(post, path = "/devices/me/reported", tag = "devices", security(("device" = [])),
    request_body(content = Object, description = "The device's actual state; `desiredVersion` names the applied desired version"),
    responses((status = 200, body = DeviceStateOut), (status = 400), (status = 401)))]
#[tracing::instrument(skip_all)]
async fn post_reported(
    State(state): State<AppState>,
    auth: DeviceAuth,
    Json(body): Json<Map<String, Value>>,
) -> Result<Json<DeviceStateOut>, AppError> {
    let reported_version = match body.get("desiredVersion") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Some(n),
            _ => return Err(AppError::invalid_field("desiredVersion", "must be a non-negative integer")),
        },
    };
    let body = Value::Object(body);
    if body.to_string().len() > MAX_DOCUMENT_BYTES {
        return Err(AppError::BadRequest { message: "reported state must be at most 16 KiB".into(), details: vec![] });
    }
    let now = Utc::now();
    device::Entity::update_many()
        .col_expr(device::Column::ReportedState, Expr::value(body))
        .col_expr(device::Column::ReportedVersion, Expr::value(reported_version))
        .col_expr(device::Column::ReportedAt, Expr::value(now))
        .col_expr(device::Column::LastSeenAt, Expr::value(now))
        .filter(device::Column::Id.eq(auth.device_id))
        .filter(device::Column::DeletedAt.is_null())
        .exec(&state.db)
        .await?;
    let d = own_device(&state, &auth).await?;
    // Versioned by the report's time, so two reports racing here never end on the older one.
    let version = d.reported_at.map(|t| t.timestamp_micros());
    state.realtime.publish(
        &format!("/controls/{}/reported", d.id),
        version,
        &crate::realtime::paths::reported_data(&d),
    );
    Ok(Json(state_out(&state, &d).await?))
}
