//! The one integration test binary. Each test starts the real application against a fresh
//! database: SQLite by default, PostgreSQL when `MASH_TEST_DATABASE_URL` is set.

mod auth;
mod binary;
mod conventions;
mod health;
mod helpers;
mod identity_flows;
mod mfa;
mod migrations;
mod probe;
mod users;
