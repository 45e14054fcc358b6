//! The one integration test binary. Each test starts the real application against a fresh
//! database: SQLite by default, PostgreSQL when `MASH_TEST_DATABASE_URL` is set.

mod binary;
mod conventions;
mod health;
mod helpers;
mod migrations;
mod probe;
