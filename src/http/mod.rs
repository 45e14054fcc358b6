//! HTTP conventions shared by every domain: errors, extractors, middleware, lists, routing.

pub mod error;
pub mod extract;
pub mod layers;
pub mod pagination;
pub mod router;

pub use error::AppError;
pub use error::FieldError;
pub use extract::{Json, Path, Query, Valid};
pub use pagination::{ListParams, Page, PageRequest, uuid_param};
