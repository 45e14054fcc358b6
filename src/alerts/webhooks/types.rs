//! Wire types of `/growers/{id}/alert-webhook`: [`WebhookIn`], [`WebhookOut`].

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::alerts::entity::webhook;

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookIn {
    /// Where alert events are POSTed.
    #[garde(length(min = 1, max = 2048))]
    pub url: String,
    /// Defaults to true.
    #[garde(skip)]
    pub enabled: Option<bool>,
    /// Issue a new signing secret (the old one stops working at once).
    #[garde(skip)]
    pub rotate_secret: Option<bool>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookOut {
    pub grower_id: Uuid,
    pub url: String,
    pub enabled: bool,
    /// Shown only when the webhook is created or its secret rotated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl WebhookOut {
    /// A webhook as shown, with its secret when it was just issued.
    pub fn of(h: &webhook::Model, secret: Option<String>) -> Self {
        Self {
            grower_id: h.grower_id,
            url: h.url.clone(),
            enabled: h.enabled,
            secret,
            created_at: h.created_at,
            updated_at: h.updated_at,
        }
    }
}

/// What the grower asked for, defaults applied.
impl From<WebhookIn> for super::set::WebhookSetting {
    fn from(input: WebhookIn) -> Self {
        Self {
            url: input.url,
            enabled: input.enabled.unwrap_or(true),
            rotate_secret: input.rotate_secret == Some(true),
        }
    }
}
