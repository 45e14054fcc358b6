//! The closed sets of the job queue and alerting, enforced by the database: a job's `status`,
//! a rule's `kind`, `op` and `severity`, an alert's `severity` and `status`, a delivery's
//! `channel` and `status`, a push token's `platform`. The columns keep their text type and
//! their stored strings; only a value outside the set can no longer be written.
//!
//! PostgreSQL gets `CHECK` constraints. SQLite cannot add a constraint to an existing table, so
//! there each column gets a `BEFORE INSERT` and a `BEFORE UPDATE OF <column>` trigger that
//! aborts the statement (as the audit log's append-only triggers do). `NULL` passes either way
//! (`op` is optional; the other columns are `NOT NULL` already).

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000010_alerts_jobs_checks"
    }
}

/// One column and the values it may hold.
struct Check {
    table: &'static str,
    column: &'static str,
    values: &'static [&'static str],
}

/// The values as of this migration (a test below keeps them equal to the Rust enums).
const CHECKS: &[Check] = &[
    Check { table: "background_jobs", column: "status", values: &["queued", "running", "dead"] },
    Check { table: "alert_rules", column: "kind", values: &["threshold", "rate", "stale", "anomaly"] },
    Check { table: "alert_rules", column: "op", values: &["gt", "lt", "outside"] },
    Check { table: "alert_rules", column: "severity", values: &["info", "warning", "critical"] },
    Check { table: "alerts", column: "severity", values: &["info", "warning", "critical"] },
    Check { table: "alerts", column: "status", values: &["active", "acknowledged", "resolved"] },
    Check { table: "notification_deliveries", column: "channel", values: &["realtime", "push", "email", "webhook"] },
    Check {
        table: "notification_deliveries",
        column: "status",
        values: &["sent", "logged", "failed", "unregistered", "skipped"],
    },
    Check { table: "push_tokens", column: "platform", values: &["ios", "android", "web"] },
];

impl Check {
    fn name(&self) -> String {
        format!("ck_{}_{}", self.table, self.column)
    }

    /// `'a', 'b', 'c'` (the values are fixed identifiers above, never input).
    fn list(&self) -> String {
        self.values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ")
    }

    fn up(&self, backend: DatabaseBackend) -> Vec<String> {
        let (table, column, name, list) = (self.table, self.column, self.name(), self.list());
        match backend {
            DatabaseBackend::Postgres => {
                vec![format!("ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ({column} IN ({list}))")]
            }
            DatabaseBackend::Sqlite => [("insert", "INSERT".to_string()), ("update", format!("UPDATE OF {column}"))]
                .into_iter()
                .map(|(suffix, event)| {
                    format!(
                        "CREATE TRIGGER {name}_{suffix} BEFORE {event} ON {table} \
                         WHEN NEW.{column} NOT IN ({list}) \
                         BEGIN SELECT RAISE(ABORT, '{table}.{column} must be one of {}'); END",
                        self.values.join(", ")
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    fn down(&self, backend: DatabaseBackend) -> Vec<String> {
        let (table, name) = (self.table, self.name());
        match backend {
            DatabaseBackend::Postgres => vec![format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")],
            DatabaseBackend::Sqlite => {
                ["insert", "update"].iter().map(|suffix| format!("DROP TRIGGER IF EXISTS {name}_{suffix}")).collect()
            }
            _ => Vec::new(),
        }
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for stmt in CHECKS.iter().flat_map(|c| c.up(db.get_database_backend())) {
            db.execute_unprepared(&stmt).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for stmt in CHECKS.iter().flat_map(|c| c.down(db.get_database_backend())) {
            db.execute_unprepared(&stmt).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    use super::CHECKS;
    use crate::{alerts::entity as alerts, jobs::JobStatus};

    fn values<E: ActiveEnum<Value = String> + Iterable>() -> Vec<String> {
        E::iter().map(|v| v.to_value()).collect()
    }

    #[test]
    fn the_checks_allow_exactly_what_the_enums_store() {
        for check in CHECKS {
            let want = match (check.table, check.column) {
                ("background_jobs", "status") => values::<JobStatus>(),
                ("alert_rules", "kind") => values::<alerts::Kind>(),
                ("alert_rules", "op") => values::<alerts::Op>(),
                ("alert_rules" | "alerts", "severity") => values::<alerts::Severity>(),
                ("alerts", "status") => values::<alerts::AlertStatus>(),
                ("notification_deliveries", "channel") => values::<alerts::Channel>(),
                ("notification_deliveries", "status") => values::<alerts::DeliveryStatus>(),
                ("push_tokens", "platform") => values::<alerts::Platform>(),
                (t, c) => panic!("no enum for {t}.{c}"),
            };
            assert_eq!(check.values, want, "{}.{}", check.table, check.column);
        }
    }
}
