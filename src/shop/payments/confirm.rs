//! Sandbox only: completing (or failing) a payment the way a card payment confirmed with the
//! client secret would, through the same event path as a provider webhook.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use super::{
    EventKind, PaymentError, PaymentOut, PaymentProvider, ProviderEvent, SandboxOutcome, events::apply, payment_out,
};
use crate::{
    ids::{PaymentId, UserId},
    shop::entity::payment,
    state::AppState,
};

/// Confirms sandbox payment `id` of `customer` with its client `secret`: 404 for any payment
/// that is not theirs or not a sandbox one, 400 for a wrong secret, 409 once it is no longer
/// open. Returns the payment as it now is.
pub async fn confirm(
    state: &AppState,
    customer: UserId,
    id: PaymentId,
    secret: &str,
    outcome: SandboxOutcome,
) -> Result<PaymentOut, PaymentError> {
    let p = payment::Entity::find_by_id(id.0)
        .filter(payment::Column::Provider.eq(PaymentProvider::Sandbox))
        .one(&state.db)
        .await?
        .filter(|p| p.user_id == customer.0)
        .ok_or(PaymentError::NotFound)?;
    let expected = p.client_secret.as_deref().unwrap_or_default();
    if !crate::util::constant_time_eq(expected.as_bytes(), secret.as_bytes()) {
        return Err(PaymentError::WrongSecret);
    }
    if !p.status.is_open() {
        return Err(PaymentError::NotConfirmable(p.status));
    }
    let (kind, event_type) = match outcome {
        SandboxOutcome::Succeeded => (EventKind::Succeeded, "payment_intent.succeeded"),
        SandboxOutcome::Failed => (EventKind::Failed, "payment_intent.payment_failed"),
    };
    let event = ProviderEvent {
        id: format!("sb_evt_{}", Uuid::now_v7().simple()),
        event_type: event_type.into(),
        kind,
        provider_ref: p.provider_ref.clone(),
        amount_minor: Some(p.amount_minor),
        currency: Some(p.currency.clone()),
        detail: matches!(outcome, SandboxOutcome::Failed).then(|| "sandbox card declined".to_string()),
    };
    apply(state, PaymentProvider::Sandbox, &event).await?;
    let p =
        payment::Entity::find_by_id(id.0).one(&state.db).await?.ok_or(PaymentError::Vanished("payment vanished"))?;
    Ok(payment_out(&p, true))
}
