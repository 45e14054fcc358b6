//! A grower's alert webhook: `PUT|GET|DELETE /growers/{id}/alert-webhook` (owners and ADMIN),
//! and the signed POSTs.
//!
//! Each POST carries `Mash-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`, keyed
//! with the webhook's secret (shown once, when the webhook is created or its secret rotated),
//! in the style of `Stripe-Signature`: a receiver recomputes it, compares in constant time and
//! refuses timestamps older than a few minutes. `Mash-Event-Id` is stable across retries.
//!
//! Targets must be public addresses unless `WEBHOOK_ALLOW_PRIVATE_NETWORKS=true` ([`sender`]).

use utoipa_axum::router::OpenApiRouter;

mod handlers;
mod sender;
pub mod set;
mod types;

pub use sender::{Sender, sign};
pub use set::{WebhookSetting, open_secret};
pub use types::{WebhookIn, WebhookOut};

use crate::{routes, state::AppState};

pub fn router() -> OpenApiRouter<AppState> {
    use handlers::*;
    OpenApiRouter::new().routes(routes!(put_webhook, get_webhook, delete_webhook))
}
