//! Presence: a device is `online` while its last contact is more recent than
//! `DEVICE_OFFLINE_AFTER_SECS`. Contact is written at most once per short window per device, so
//! a device sending many batches a second costs one update per window.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr};
use uuid::Uuid;

use super::entity::device;

/// Process-wide greenhouse state: presence bookkeeping.
pub struct GreenhouseState {
    /// A device counts as online while its last contact is more recent than this.
    pub offline_after: Duration,
    /// Devices whose `last_seen_at` was written recently; contact within this window does not
    /// write again.
    recently_seen: moka::sync::Cache<Uuid, ()>,
}

impl GreenhouseState {
    pub fn new(offline_after: Duration) -> Self {
        let window = (offline_after / 10).clamp(Duration::from_millis(100), Duration::from_secs(10));
        Self { offline_after, recently_seen: moka::sync::Cache::builder().time_to_live(window).build() }
    }

    /// Records contact from these devices (best effort: a failure is logged, never fatal).
    pub async fn seen(&self, db: &DatabaseConnection, ids: &[Uuid]) {
        let due: Vec<Uuid> = ids.iter().copied().filter(|id| !self.recently_seen.contains_key(id)).collect();
        if due.is_empty() {
            return;
        }
        let res = device::Entity::update_many()
            .col_expr(device::Column::LastSeenAt, Expr::value(Utc::now()))
            .filter(device::Column::Id.is_in(due.clone()))
            .exec(db)
            .await;
        match res {
            Ok(_) => due.into_iter().for_each(|id| self.recently_seen.insert(id, ())),
            Err(e) => tracing::warn!(error = %e, "could not record device contact"),
        }
    }

    /// `online` when the last contact is within `offline_after`.
    pub fn status(&self, last_seen: Option<DateTime<Utc>>) -> DeviceStatus {
        match last_seen {
            Some(t) if Utc::now().signed_duration_since(t).to_std().unwrap_or_default() < self.offline_after => {
                DeviceStatus::Online
            }
            _ => DeviceStatus::Offline,
        }
    }

    /// The earliest last contact that still counts as online.
    pub fn online_since(&self) -> DateTime<Utc> {
        Utc::now() - chrono::Duration::from_std(self.offline_after).unwrap_or_default()
    }
}

/// Presence of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    Online,
    Offline,
}
