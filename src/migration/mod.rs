//! Schema migrations, written once in SeaQuery so they run on SQLite and PostgreSQL alike.
//! Every migration has a working `down`; tests run up, down and up again on both databases.

use sea_orm_migration::prelude::*;

mod m20261122_000001_core;
mod m20261122_000002_identity;
mod m20261122_000003_greenhouse;
mod m20261122_000004_shop;
mod m20261123_000005_jobs_alerts;
mod m20261124_000006_realtime;
mod m20261125_000007_alert_series;
mod m20261206_000008_identity_checks;
mod m20261206_000009_shop_status_checks;
mod m20261206_000010_alerts_jobs_checks;
mod m20261206_000011_greenhouse_checks;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_core::Migration),
            Box::new(m20261122_000002_identity::Migration),
            Box::new(m20261122_000003_greenhouse::Migration),
            Box::new(m20261122_000004_shop::Migration),
            Box::new(m20261123_000005_jobs_alerts::Migration),
            Box::new(m20261124_000006_realtime::Migration),
            Box::new(m20261125_000007_alert_series::Migration),
            Box::new(m20261206_000008_identity_checks::Migration),
            Box::new(m20261206_000009_shop_status_checks::Migration),
            Box::new(m20261206_000010_alerts_jobs_checks::Migration),
            Box::new(m20261206_000011_greenhouse_checks::Migration),
        ]
    }
}
