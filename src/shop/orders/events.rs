//! What an order's owner hears on `/orders/{userId}` when one of their orders changes.

use serde::Serialize;

use super::OrderOut;
use crate::state::AppState;

/// The `change` of an `/orders/{userId}` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderChange {
    Created,
    Paid,
    PaymentFailed,
    Cancelled,
    Fulfilled,
    Refunded,
}

/// Tells the order's owner about a change (call after the commit).
pub fn publish_change(state: &AppState, change: OrderChange, order: &OrderOut) {
    state.realtime.publish(
        &format!("/orders/{}", order.user_id),
        None,
        &serde_json::json!({ "change": change, "order": order }),
    );
}

#[cfg(test)]
mod tests {
    use super::OrderChange;

    #[test]
    fn changes_are_the_contracts_words() {
        let words: Vec<_> = [
            OrderChange::Created,
            OrderChange::Paid,
            OrderChange::PaymentFailed,
            OrderChange::Cancelled,
            OrderChange::Fulfilled,
            OrderChange::Refunded,
        ]
        .iter()
        .map(|c| serde_json::to_value(c).unwrap())
        .collect();
        assert_eq!(words, ["created", "paid", "payment_failed", "cancelled", "fulfilled", "refunded"]);
    }
}
