//! Desired state: what people (any member, or ADMIN) ask a device to reach.
//!
//! - A new document replaces the previous one; `desiredVersion` goes up by one when the
//!   document changes (the same document again changes nothing).
//! - With `ifVersion`, the change applies only if that is still the current version (409
//!   otherwise, and nothing changes). Without it, writers queue on the device's row, so a write
//!   always applies on top of the latest version.
//! - The change is published (realtime `/controls/{id}/desired`, MQTT) only after it commits.

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::types::MAX_DOCUMENT_BYTES;
use crate::{
    auth::{AuthUser, ClientMeta},
    greenhouse::{
        GreenhouseError,
        access::{self, Need},
        audit,
        entity::device,
    },
    state::AppState,
};

/// A desired state and its version.
#[derive(Debug, Clone)]
pub struct Desired {
    pub document: Value,
    pub version: i64,
}

/// Replaces the desired state of device `id` with `body` (less its `ifVersion`, which, when
/// given, must be the current version).
pub async fn replace(
    state: &AppState,
    me: &AuthUser,
    client: &ClientMeta,
    id: Uuid,
    body: Map<String, Value>,
) -> Result<Desired, GreenhouseError> {
    let (document, if_version) = split_body(body)?;
    let document = Value::Object(document);
    let txn = state.db.begin_write().await?;
    access::device(&txn, me, id, Need::Write).await?;
    let d = crate::db::for_update(device::Entity::find_by_id(id))
        .one(&txn)
        .await?
        .ok_or(GreenhouseError::NotFound("device"))?;
    if let Some(expected) = if_version
        && expected != d.desired_version
    {
        return Err(GreenhouseError::VersionMismatch { current: d.desired_version, expected });
    }
    if crate::util::json_eq(&d.desired, &document) {
        return Ok(Desired { document, version: d.desired_version });
    }
    let version = d.desired_version + 1;
    let now = Utc::now();
    // Conditional on the version read above, so two writers can never both win.
    let res = device::Entity::update_many()
        .col_expr(device::Column::Desired, Expr::value(document.clone()))
        .col_expr(device::Column::DesiredVersion, Expr::value(version))
        .col_expr(device::Column::DesiredUpdatedAt, Expr::value(now))
        .col_expr(device::Column::UpdatedAt, Expr::value(now))
        .filter(device::Column::Id.eq(id))
        .filter(device::Column::DesiredVersion.eq(d.desired_version))
        .exec(&txn)
        .await?;
    if res.rows_affected != 1 {
        return Err(GreenhouseError::ChangedMeanwhile);
    }
    let details = serde_json::json!({ "desiredVersion": version });
    audit::record(&txn, me, client, "device.desired_changed", ("device", id), Some(details)).await?;
    txn.commit().await?;
    publish(state, id, &document, version).await;
    Ok(Desired { document, version })
}

/// Tells subscribers and the device about a committed change.
async fn publish(state: &AppState, id: Uuid, document: &Value, version: i64) {
    state.realtime.publish(
        &format!("/controls/{id}/desired"),
        Some(version),
        &crate::realtime::paths::desired_data(id, document, version),
    );
    crate::telemetry::desired_changed(state, id, document, version).await;
}

/// Splits `ifVersion` off a desired-state body and checks the rest.
fn split_body(mut body: Map<String, Value>) -> Result<(Map<String, Value>, Option<i64>), GreenhouseError> {
    let if_version = version_field(body.remove("ifVersion"), "ifVersion")?;
    if serde_json::to_vec(&body).map(|b| b.len()).unwrap_or(usize::MAX) > MAX_DOCUMENT_BYTES {
        return Err(GreenhouseError::Invalid { field: "desired", message: "must be at most 16 KiB" });
    }
    Ok((body, if_version))
}

/// A version number field: absent or `null`, or a non-negative integer (400 naming `field`).
pub fn version_field(v: Option<Value>, field: &'static str) -> Result<Option<i64>, GreenhouseError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 0 => Ok(Some(n)),
            _ => Err(GreenhouseError::Invalid { field, message: "must be a non-negative integer" }),
        },
    }
}
