//! How each path's snapshot is read (the `snapshot` of its entry in [`super::PATHS`]), and the
//! data its events carry where a writer publishes the same shape.

use std::collections::BTreeMap;

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use uuid::Uuid;

use super::Snapshot;
use crate::{
    alerts::{AlertOut, entity::alert},
    greenhouse::{
        access,
        devices::{LatestValue, in_sync},
        entity::device,
    },
    http::AppError,
    shop::{entity::order, orders},
    state::AppState,
};

fn plain(data: Value) -> Snapshot {
    Snapshot { data, version: None, changed_at: None }
}

async fn live_device(state: &AppState, id: Uuid) -> Result<device::Model, AppError> {
    access::find_live_device(&state.db, id).await?.ok_or_else(|| AppError::NotFound("device not found".into()))
}

pub async fn live_sensors(state: &AppState, id: Uuid) -> Result<Snapshot, AppError> {
    let latest = crate::telemetry::store::latest(&state.db, id).await?;
    let reported: BTreeMap<String, LatestValue> =
        latest.into_iter().map(|(metric, value, ts)| (metric, LatestValue { value, ts })).collect();
    Ok(plain(json!({ "deviceId": id, "reported": reported })))
}

/// `{deviceId, desired, desiredVersion}`: the snapshot and every event of `/controls/{id}/desired`.
pub fn desired_data(id: Uuid, desired: &Value, version: i64) -> Value {
    json!({ "deviceId": id, "desired": desired, "desiredVersion": version })
}

pub async fn desired(state: &AppState, id: Uuid) -> Result<Snapshot, AppError> {
    let d = live_device(state, id).await?;
    Ok(Snapshot {
        data: desired_data(id, &d.desired, d.desired_version),
        version: Some(d.desired_version),
        changed_at: d.desired_updated_at,
    })
}

/// The snapshot and every event of `/controls/{id}/reported`.
pub fn reported_data(d: &device::Model) -> Value {
    json!({
        "deviceId": d.id,
        "reported": d.reported_state,
        "reportedVersion": d.reported_version,
        "reportedAt": d.reported_at,
        "inSync": in_sync(d),
    })
}

pub async fn reported(state: &AppState, id: Uuid) -> Result<Snapshot, AppError> {
    Ok(plain(reported_data(&live_device(state, id).await?)))
}

pub async fn open_alerts(state: &AppState, grower_id: Uuid) -> Result<Snapshot, AppError> {
    let alerts: Vec<AlertOut> = alert::Entity::find()
        .filter(alert::Column::GrowerId.eq(grower_id))
        .filter(alert::Column::Status.ne(alert::AlertStatus::Resolved))
        .order_by_asc(alert::Column::CreatedAt)
        .order_by_asc(alert::Column::Id)
        .all(&state.db)
        .await?
        .iter()
        .map(AlertOut::from)
        .collect();
    Ok(plain(json!({ "alerts": alerts })))
}

pub async fn open_orders(state: &AppState, user_id: Uuid) -> Result<Snapshot, AppError> {
    let open = [orders::OrderStatus::Pending, orders::OrderStatus::Paid];
    let rows = order::Entity::find()
        .filter(order::Column::UserId.eq(user_id))
        .filter(order::Column::Status.is_in(open))
        .order_by_asc(order::Column::CreatedAt)
        .order_by_asc(order::Column::Id)
        .all(&state.db)
        .await?;
    let orders = orders::orders_out(&state.db, &rows).await?;
    Ok(plain(json!({ "orders": orders })))
}
