//! Mash: the greenhouse platform backend. See `docs/architecture.md` for the map.

pub mod admin;
pub mod alerts;
pub mod audit;
pub mod auth;
pub mod background;
pub mod cli;
pub mod clock;
pub mod config;
pub mod db;
pub mod greenhouse;
pub mod health;
pub mod http;
pub mod idempotency;
pub mod ids;
pub mod jobs;
pub mod logging;
pub mod mail;
pub mod metrics;
pub mod migration;
pub mod money;
pub mod pubsub;
pub mod realtime;
pub mod seed;
pub mod shop;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod users;
pub mod util;

pub use config::Config;
pub use startup::Application;
pub use state::AppState;
