//! CONTRACT.md "Shop": the catalogue, orders, and payments.

mod catalogue;
mod orders;
mod payments;
