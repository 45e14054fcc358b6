//! HTTP conventions shared by every domain: errors, extractors, middleware, lists, routing.

pub mod error;
pub mod extract;
pub mod layers;
pub mod pagination;
pub mod router;
pub mod valid;

pub use error::AppError;
pub use error::FieldError;
pub use extract::{Json, Path, Query};
pub use pagination::{ListParams, Page, PageRequest, uuid_param};
pub use valid::Valid;
