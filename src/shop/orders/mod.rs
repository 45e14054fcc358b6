//! Orders: creation that never oversells, the status machine, cancel with restock.
//!
//! - An order takes its stock and its prices from the catalogue in the transaction that
//!   creates it ([`place`]); concurrent orders never oversell and cannot deadlock ([`stock`]).
//! - Its status only moves as the machine allows ([`OrderStatus`], [`transition`]): by a
//!   cancel ([`cancel`]), a payment or a refund (`shop::payments`), or fulfilment ([`fulfil`]).
//! - Its owner sees it, and ADMIN sees every order; to anyone else it does not exist
//!   ([`visible_order`], [`whose`]).
//! - Every change is announced to the owner on `/orders/{userId}` after it commits
//!   ([`publish_change`]).

mod cancel;
mod error;
mod events;
mod fulfil;
mod handlers;
mod place;
mod read;
mod status;
mod stock;
mod types;

pub use cancel::{Cancelled, cancel};
pub use error::OrderError;
pub use events::{OrderChange, publish_change};
pub use fulfil::fulfil;
pub use handlers::router;
pub use place::{Basket, Placed, place};
pub use read::{full_order, list, orders_out, visible_order, whose};
pub use status::{OrderStatus, transition};
pub use stock::restock;
pub use types::{OrderFilter, OrderIn, OrderItemIn, OrderItemOut, OrderOut, OrderQuery, order_out};
