//! Why an order action is refused, and the one conversion into the HTTP error.

use sea_orm::DbErr;

use super::OrderStatus;
use crate::{
    http::{AppError, FieldError},
    idempotency::IdempotencyError,
};

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// 400: the same product on two lines, each repeat named.
    #[error("an order lists each product once")]
    RepeatedProducts(Vec<FieldError>),
    /// 400: products that do not exist (or were deleted), each named.
    #[error("the order names products that do not exist")]
    UnknownProducts(Vec<FieldError>),
    /// 409: items short of stock, each named with what is there.
    #[error("not enough stock")]
    NotEnoughStock(Vec<FieldError>),
    /// 422
    #[error("order total is too large")]
    TotalTooLarge,
    /// 404, also for an order that is someone else's.
    #[error("order not found")]
    NotFound,
    /// 409: the status machine does not allow the move.
    #[error("order is {from}; it cannot become {to}")]
    CannotBecome { from: OrderStatus, to: OrderStatus },
    /// 403
    #[error("only admins can list other users' orders")]
    OthersOrders,
    #[error(transparent)]
    Idempotency(#[from] IdempotencyError),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl From<OrderError> for AppError {
    fn from(e: OrderError) -> Self {
        let message = e.to_string();
        match e {
            OrderError::RepeatedProducts(details) | OrderError::UnknownProducts(details) => {
                AppError::BadRequest { message, details }
            }
            OrderError::NotEnoughStock(details) => AppError::ConflictWith { message, details },
            OrderError::TotalTooLarge => AppError::Unprocessable(message),
            OrderError::NotFound => AppError::NotFound(message),
            OrderError::CannotBecome { .. } => AppError::Conflict(message),
            OrderError::OthersOrders => AppError::Forbidden(message),
            OrderError::Idempotency(e) => e.into(),
            OrderError::Db(e) => e.into(),
        }
    }
}
