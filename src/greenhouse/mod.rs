//! Greenhouses: growers (the tenant) and their members, chambers, and devices with their
//! credentials, presence (`online`/`offline` from last contact) and desired/reported state.

use std::time::Duration;

use chrono::Utc;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, sea_query::Expr};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

pub mod access;
pub mod device_auth;
pub mod devices;
pub mod entity;
mod growers;

pub use access::MemberRole;
pub use device_auth::DeviceAuth;
pub use devices::{DeviceOut, NewDevice, device_out, new_device};

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().merge(growers::router()).merge(devices::router())
}

/// Process-wide greenhouse state: presence bookkeeping.
pub struct GreenhouseState {
    /// A device counts as online while its last contact is more recent than this.
    pub offline_after: Duration,
    /// Devices whose `last_seen_at` was written recently; contact within this window does not
    /// write again, so a device sending many batches a second costs one update per window.
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
        let now = Utc::now();
        let res = entity::device::Entity::update_many()
            .col_expr(entity::device::Column::LastSeenAt, Expr::value(now))
            .filter(entity::device::Column::Id.is_in(due.clone()))
            .exec(db)
            .await;
        match res {
            Ok(_) => due.into_iter().for_each(|id| self.recently_seen.insert(id, ())),
            Err(e) => tracing::warn!(error = %e, "could not record device contact"),
        }
    }

    /// `online` when the last contact is within `offline_after`.
    pub fn status(&self, last_seen: Option<chrono::DateTime<Utc>>) -> DeviceStatus {
        match last_seen {
            Some(t) if Utc::now().signed_duration_since(t).to_std().unwrap_or_default() < self.offline_after => {
                DeviceStatus::Online
            }
            _ => DeviceStatus::Offline,
        }
    }

    /// The earliest last contact that still counts as online.
    pub fn online_since(&self) -> chrono::DateTime<Utc> {
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
