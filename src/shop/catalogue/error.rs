//! Why a catalogue action is refused, and the one conversion into the HTTP error.

use sea_orm::{DbErr, SqlErr};

use crate::http::AppError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    /// 404
    #[error("category not found")]
    CategoryNotFound,
    /// 404, also for a deleted product.
    #[error("product not found")]
    ProductNotFound,
    /// 409
    #[error("a category with this name already exists")]
    CategoryNameTaken,
    /// 409
    #[error("a product with this SKU already exists")]
    SkuTaken,
    /// 409: products must be moved or deleted first.
    #[error("category still has {0} product(s); move or delete them first")]
    CategoryInUse(u64),
    /// 400 naming `categoryId`: a product must go into a live category.
    #[error("no such category")]
    NoSuchCategory,
    /// 403: a vendor changes only its own products.
    #[error("you can only change your own products")]
    NotYourProduct,
    /// 400 naming `stockAdjustment`.
    #[error("cannot be combined with stock")]
    StockSetAndAdjusted,
    /// 409
    #[error("stock adjustment would take the stock below zero (or above the maximum)")]
    StockOutOfRange,
    /// A response that does not serialize: a bug, 500.
    #[error("serialize: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error(transparent)]
    Db(#[from] DbErr),
}

impl CatalogueError {
    /// `clash` when the database refused a write as a duplicate (a unique or foreign-key
    /// violation: a 409 either way), the database error otherwise.
    pub(super) fn or_clash(e: DbErr, clash: CatalogueError) -> CatalogueError {
        match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_) | SqlErr::ForeignKeyConstraintViolation(_)) => clash,
            _ => CatalogueError::Db(e),
        }
    }
}

impl From<CatalogueError> for AppError {
    fn from(e: CatalogueError) -> Self {
        let message = e.to_string();
        match e {
            CatalogueError::CategoryNotFound | CatalogueError::ProductNotFound => AppError::NotFound(message),
            CatalogueError::CategoryNameTaken
            | CatalogueError::SkuTaken
            | CatalogueError::CategoryInUse(_)
            | CatalogueError::StockOutOfRange => AppError::Conflict(message),
            CatalogueError::NoSuchCategory => AppError::invalid_field("categoryId", message),
            CatalogueError::NotYourProduct => AppError::Forbidden(message),
            CatalogueError::StockSetAndAdjusted => AppError::invalid_field("stockAdjustment", message),
            CatalogueError::Serialize(_) => AppError::Internal(anyhow::anyhow!(message)),
            CatalogueError::Db(e) => e.into(),
        }
    }
}
