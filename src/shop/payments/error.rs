//! Why a payment action is refused, and the one conversion into the HTTP error.

use sea_orm::DbErr;

use super::{PaymentProvider, PaymentStatus, ProviderError, stripe::SignatureError};
use crate::{
    http::AppError,
    idempotency::IdempotencyError,
    shop::orders::{OrderError, OrderStatus},
};

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// 403: an ADMIN may see the order, but only its customer pays for it.
    #[error("only the customer who placed an order can pay for it")]
    NotTheCustomer,
    /// 409
    #[error("order is {0}; only a pending order can be paid")]
    NotPayable(OrderStatus),
    /// 404, also for a payment that is someone else's.
    #[error("payment not found")]
    NotFound,
    /// 400 naming `clientSecret`.
    #[error("does not match this payment")]
    WrongSecret,
    /// 409
    #[error("payment is {0}; it can no longer be confirmed")]
    NotConfirmable(PaymentStatus),
    /// 409
    #[error("order is {0}; only a paid order can be refunded")]
    NotRefundable(OrderStatus),
    /// 409
    #[error("order is {0} and has no completed payment to refund")]
    NothingToRefund(OrderStatus),
    /// 409: the payment went through a provider this instance is not configured for.
    #[error("order was paid with {0}, which is not the configured provider")]
    OtherProvider(PaymentProvider),
    /// 404
    #[error("no webhooks are configured for this provider")]
    NoWebhooks,
    /// 400 naming `Stripe-Signature`.
    #[error(transparent)]
    BadSignature(#[from] SignatureError),
    /// 400: a verified body that is not an event.
    #[error("{0}")]
    BadEvent(String),
    /// 422 when the provider refused, 503 when it could not be reached.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// A row we just wrote or read is gone: a bug, 500.
    #[error("{0}")]
    Vanished(&'static str),
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<PaymentError> for AppError {
    fn from(e: PaymentError) -> Self {
        let message = e.to_string();
        match e {
            PaymentError::NotTheCustomer => AppError::Forbidden(message),
            PaymentError::NotPayable(_)
            | PaymentError::NotConfirmable(_)
            | PaymentError::NotRefundable(_)
            | PaymentError::NothingToRefund(_)
            | PaymentError::OtherProvider(_) => AppError::Conflict(message),
            PaymentError::NotFound | PaymentError::NoWebhooks => AppError::NotFound(message),
            PaymentError::WrongSecret => AppError::invalid_field("clientSecret", message),
            PaymentError::BadSignature(_) => AppError::invalid_field("Stripe-Signature", message),
            PaymentError::BadEvent(_) => AppError::bad_request(message),
            PaymentError::Provider(ProviderError::Rejected(m)) => {
                AppError::Unprocessable(format!("the payment provider refused: {m}"))
            }
            PaymentError::Provider(ProviderError::Unavailable(m)) => {
                tracing::warn!(error = %m, "payment provider unavailable");
                AppError::Unavailable("the payment provider is unavailable; try again".into())
            }
            PaymentError::Vanished(what) => AppError::Internal(anyhow::anyhow!(what)),
            PaymentError::Order(e) => e.into(),
            PaymentError::Idempotency(e) => e.into(),
            PaymentError::Db(e) => e.into(),
        }
    }
}
