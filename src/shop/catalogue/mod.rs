//! The catalogue: categories and products. Reading needs no token and is served from the
//! catalogue cache ([`product_page`], [`product`]); writing needs `WriteCatalog` (ADMIN or
//! VENDOR), a vendor changes only its own products, and categories are ADMIN's.
//!
//! - Every write commits, then invalidates the catalogue cache before it answers
//!   (`shop::catalogue_changed`).
//! - SKUs and category names are unique among live rows; deletes are soft, and a category with
//!   live products cannot be deleted.
//! - Stock is set, or adjusted relative to what it is in the statement itself, never below zero
//!   ([`update_product`]).
//! - `search` is a case-insensitive substring of name or description, indexed differently on
//!   each backend ([`search_condition`]).

mod categories;
mod error;
mod handlers;
mod products;
mod read;
mod search;
mod types;
mod update;

pub use categories::{categories, category, create_category, delete_category, update_category};
pub use error::CatalogueError;
pub use handlers::router;
pub use products::{create_product, delete_product};
pub use read::{product, product_page};
pub use search::search_condition;
pub use types::{
    CategoryIn, CategoryOut, CategoryPatch, CategoryRef, MAX_STOCK, OrderBy, ProductFilter, ProductIn, ProductOut,
    ProductPatch, ProductQuery,
};
pub use update::update_product;
