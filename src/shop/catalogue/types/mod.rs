//! The catalogue's wire types.

mod categories;
mod products;

pub use categories::{CategoryIn, CategoryOut, CategoryPatch};
pub use products::{CategoryRef, MAX_STOCK, OrderBy, ProductFilter, ProductIn, ProductOut, ProductPatch, ProductQuery};
