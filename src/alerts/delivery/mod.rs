//! Turning alert changes into delivery jobs ([`notify`]), and the jobs themselves.
//!
//! Every change gets a realtime event on `/alerts/{growerId}` ([`publish`]). A *new* alert at
//! or above `ALERT_PUSH_MIN_SEVERITY` (critical by default) is pushed to each push token of the
//! grower's members, one job per token ([`push`]); at or above `ALERT_EMAIL_MIN_SEVERITY` it is
//! mailed to each member (`crate::mail`). Created, acknowledged and resolved alerts go to the
//! grower's webhook, when it has one ([`webhook`]; repeats of an open alert do not). The jobs
//! are enqueued in the transaction that made the change, so a change and its notifications
//! commit together. Every attempt is recorded ([`record_delivery`]).

mod notify;
mod publish;
mod push;
mod record;
mod webhook;

pub use notify::notify;
pub use publish::{AlertEvent, PublishAlertEvents};
pub use push::SendPush;
pub use record::record_delivery;
pub use webhook::DeliverWebhook;
