//! Wire types of `/devices`: a device as shown (`DeviceOut`, never with its token), as sent
//! (`DeviceIn`, `DevicePatch`, `DeviceListQuery`), and its state (`DeviceStateOut`, `DesiredOut`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::{desired::Desired, live::LiveState, registry::DeviceFilter};
use crate::{
    greenhouse::{DeviceStatus, GreenhouseError, GreenhouseState, NewDevice, entity::device},
    ids::{ChamberId, GrowerId},
    users::not_blank,
};

/// JSON documents kept on a device (metadata, desired and reported state) are objects of at
/// most this many bytes.
pub const MAX_DOCUMENT_BYTES: usize = 16 * 1024;

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

impl DeviceOut {
    pub fn new(d: &device::Model, presence: &GreenhouseState) -> Self {
        DeviceOut {
            id: d.id,
            grower_id: d.grower_id,
            chamber_id: d.chamber_id,
            name: d.name.clone(),
            kind: d.kind.clone(),
            metadata: d.metadata.clone(),
            status: presence.status(d.last_seen_at),
            last_seen_at: d.last_seen_at,
            desired_version: d.desired_version,
            token_rotated_at: d.token_rotated_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
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

/// A device provisioned through the API starts with an empty desired state.
impl From<DeviceIn> for NewDevice {
    fn from(input: DeviceIn) -> Self {
        NewDevice {
            grower_id: input.grower_id,
            chamber_id: input.chamber_id,
            name: input.name.trim().to_string(),
            kind: input.kind.map(|k| k.trim().to_string()),
            metadata: input.metadata,
            desired: Value::Object(Map::new()),
        }
    }
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

impl DeviceListQuery {
    /// The filter these parameters ask for; 400 naming the first bad one.
    pub fn filter(&self) -> Result<DeviceFilter, GreenhouseError> {
        let grower_id = uuid_param("growerId", &self.grower_id)?.map(GrowerId);
        let chamber_id = uuid_param("chamberId", &self.chamber_id)?.map(ChamberId);
        let status = match present(&self.status) {
            None => None,
            Some("online") => Some(DeviceStatus::Online),
            Some("offline") => Some(DeviceStatus::Offline),
            Some(_) => return Err(GreenhouseError::Invalid { field: "status", message: "must be online or offline" }),
        };
        Ok(DeviceFilter { grower_id, chamber_id, status })
    }
}

fn present(raw: &Option<String>) -> Option<&str> {
    raw.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn uuid_param(field: &'static str, raw: &Option<String>) -> Result<Option<Uuid>, GreenhouseError> {
    present(raw)
        .map(|s| Uuid::parse_str(s).map_err(|_| GreenhouseError::Invalid { field, message: "must be a UUID" }))
        .transpose()
}

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

impl DeviceStateOut {
    pub fn new(s: LiveState, presence: &GreenhouseState) -> Self {
        let d = s.device;
        DeviceStateOut {
            device_id: d.id,
            reported: s.latest.into_iter().map(|(metric, value, ts)| (metric, LatestValue { value, ts })).collect(),
            in_sync: super::live::in_sync(&d),
            status: presence.status(d.last_seen_at),
            desired: d.desired,
            desired_version: d.desired_version,
            desired_updated_at: d.desired_updated_at,
            reported_state: d.reported_state,
            reported_version: d.reported_version,
            reported_at: d.reported_at,
            last_seen_at: d.last_seen_at,
        }
    }
}

/// The desired state and its version.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DesiredOut {
    #[schema(value_type = Object)]
    pub desired: Value,
    pub desired_version: i64,
}

impl From<Desired> for DesiredOut {
    fn from(d: Desired) -> Self {
        DesiredOut { desired: d.document, desired_version: d.version }
    }
}
