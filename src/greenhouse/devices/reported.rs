//! The device's own side (`Device` auth): its record, what it is asked to reach, and what it
//! reports back. A report is any JSON object up to 16 KiB; a `desiredVersion` integer in it
//! says which desired version the device has applied. Reporting counts as contact.

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Map, Value};

use super::{
    desired::version_field,
    live::{self, LiveState},
    tokens::DeviceAuth,
    types::MAX_DOCUMENT_BYTES,
};
use crate::{
    db::Db,
    greenhouse::{GreenhouseError, access::find_live_device, entity::device},
    state::AppState,
};

/// The calling device's row; 401 when it was deleted since its token was checked.
pub async fn own_device(db: &Db, auth: &DeviceAuth) -> Result<device::Model, GreenhouseError> {
    find_live_device(db, auth.device_id.0).await?.ok_or(GreenhouseError::UnknownDevice)
}

/// Stores the calling device's report and publishes it (realtime `/controls/{id}/reported`).
pub async fn report(
    state: &AppState,
    auth: &DeviceAuth,
    body: Map<String, Value>,
) -> Result<LiveState, GreenhouseError> {
    let reported_version = version_field(body.get("desiredVersion").cloned(), "desiredVersion")?;
    let body = Value::Object(body);
    if body.to_string().len() > MAX_DOCUMENT_BYTES {
        return Err(GreenhouseError::ReportTooLarge);
    }
    let now = Utc::now();
    device::Entity::update_many()
        .col_expr(device::Column::ReportedState, Expr::value(body))
        .col_expr(device::Column::ReportedVersion, Expr::value(reported_version))
        .col_expr(device::Column::ReportedAt, Expr::value(now))
        .col_expr(device::Column::LastSeenAt, Expr::value(now))
        .filter(device::Column::Id.eq(auth.device_id.0))
        .filter(device::Column::DeletedAt.is_null())
        .exec(&state.db)
        .await?;
    let d = own_device(&state.db, auth).await?;
    // Versioned by the report's time, so two reports racing here never end on the older one.
    let version = d.reported_at.map(|t| t.timestamp_micros());
    state.realtime.publish(
        &format!("/controls/{}/reported", d.id),
        version,
        &crate::realtime::paths::reported_data(&d),
    );
    live::of(&state.db, d).await
}
