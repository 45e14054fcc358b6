//! CONTRACT.md "Shop": the catalogue, orders and payments, and the shop's domain functions
//! called without HTTP.

mod catalogue;
mod domain;
mod orders;
mod payments;
