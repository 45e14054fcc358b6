//! Payments: `payments` and `payment_transactions` (seed 004) behind a provider interface with
//! two implementations, `sandbox` (the default, fully local) and `stripe` (PaymentIntents).
//!
//! - A payment is opened for a pending order by its customer, or the one still open is handed
//!   back ([`Opening`]); the provider sees one intent per order and attempt.
//! - Money moves only through provider events (Stripe webhooks, sandbox confirmations, refunds we
//!   start), each applied once, moving the payment and its order together ([`apply_in`]).
//! - A payment's status only moves as [`PaymentStatus`] allows; every step is noted in
//!   `payment_transactions`.
//! - An order cancelled with payments open cancels them too ([`cancel_open_payments`]); a
//!   payment that still goes through is flagged for refund, and [`Refund`] gives the money back.

mod cancel;
mod confirm;
mod error;
mod events;
mod handlers;
mod open;
mod provider;
mod read;
mod refund;
mod status;
mod steps;
pub mod stripe;
mod types;
mod webhook;

pub use cancel::{OpenPayment, cancel_at_provider, cancel_open_payments};
pub use confirm::confirm;
pub use error::PaymentError;
pub use events::{Outcome, apply, apply_in};
pub use handlers::router;
pub use open::Opening;
pub use provider::{EventKind, Intent, PaymentProvider, Provider, ProviderError, ProviderEvent};
pub use read::with_steps;
pub use refund::{Refund, Refunded};
pub use status::{PaymentKind, PaymentStatus};
pub use types::{PaymentOut, SandboxConfirmIn, SandboxOutcome, TransactionOut, WebhookAck, payment_out};
pub use webhook::receive;
