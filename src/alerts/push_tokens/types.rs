//! Wire types of `/push-tokens`: [`PushTokenIn`], [`PushTokenOut`].

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::alerts::entity::{Platform, push_token};

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PushTokenIn {
    /// The FCM registration token of the app install.
    pub token: String,
    pub platform: Platform,
}

/// A registered push target. The token itself is not echoed back.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PushTokenOut {
    pub id: Uuid,
    #[schema(value_type = String)]
    pub platform: Platform,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<&push_token::Model> for PushTokenOut {
    fn from(t: &push_token::Model) -> Self {
        Self { id: t.id, platform: t.platform, created_at: t.created_at, updated_at: t.updated_at }
    }
}
