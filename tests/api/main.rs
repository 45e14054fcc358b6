//! The one integration test binary. Each test starts the real application against a fresh
//! database: SQLite by default, PostgreSQL when `MASH_TEST_DATABASE_URL` is set.

mod alerts;
mod auth;
mod binary;
mod conventions;
mod greenhouse;
mod health;
mod helpers;
mod identity_flows;
mod jobs;
mod mfa;
mod migrations;
mod mqtt;
mod notifications;
mod realtime;
mod shop;
mod telemetry;
mod users;
