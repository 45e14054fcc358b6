//! Alerts: rules over telemetry, evaluated on the job workers; the alert lifecycle (one open
//! alert per (rule, device), acknowledged and resolved by people, resolved by the rule when the
//! condition clears); and delivery of every change (realtime event, FCM push, email, signed
//! webhook), each attempt recorded in `notification_deliveries`.
//!
//! Ingestion only asks [`watched`] which readings some enabled rule looks at (the in-memory
//! index of [`cache`]) and enqueues them, in the batch's own transaction, as one
//! `evaluate_readings` job per grower ([`evaluate`]), on both databases. Batches nothing
//! watches cost one cache lookup.
//!
//! - `/alerts` ([`handlers`]): list ([`list`]), acknowledge and resolve ([`transition`]).
//! - `/alert-rules` ([`rules`]), `/growers/{id}/alert-webhook` ([`webhooks`]), `/push-tokens`
//!   ([`push_tokens`]).
//! - [`engine`]: what each rule kind makes of a reading, without a database.
//! - [`delivery`]: the jobs that announce, push, mail and post each change.

use utoipa_axum::router::OpenApiRouter;

pub mod cache;
pub mod delivery;
pub mod engine;
pub mod entity;
pub mod error;
pub mod evaluate;
pub mod fcm;
pub(crate) mod handlers;
pub mod list;
pub mod push_tokens;
pub mod rules;
pub mod transition;
mod types;
mod watched;
pub mod webhooks;

pub use cache::{AlertsState, GrowerRules, rules_changed, rules_of, spawn_background};
pub use entity::Severity;
pub use error::{AlertError, PushTokenError, RuleError, WebhookError};
pub use types::{AlertOut, AlertQuery, Change};
pub use watched::watched;

use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(rules::router())
        .merge(handlers::router())
        .merge(push_tokens::router())
        .merge(webhooks::router())
}
