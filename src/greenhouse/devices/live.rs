//! A device's live state as people read it: the latest reading per metric (from the telemetry
//! store), its desired and reported documents, and whether it has caught up.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    auth::AuthUser,
    db::Db,
    greenhouse::{
        GreenhouseError,
        access::{self, Need},
        entity::device,
    },
};

/// A device and its latest value per metric, by metric name.
pub struct LiveState {
    pub device: device::Model,
    pub latest: Vec<(String, f64, DateTime<Utc>)>,
}

/// The live state of a device `me` may read.
pub async fn read(db: &Db, me: &AuthUser, id: Uuid) -> Result<LiveState, GreenhouseError> {
    let d = access::device(db, me, id, Need::Read).await?;
    of(db, d).await
}

/// The live state of `device`.
pub async fn of(db: &Db, device: device::Model) -> Result<LiveState, GreenhouseError> {
    let latest = crate::telemetry::store::latest(db, device.id).await?;
    Ok(LiveState { device, latest })
}

/// Whether the device has caught up with its desired state: it reported a `desiredVersion` at
/// least the current one, or (when it reports no version) every desired key has the same value
/// in its reported state.
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
