//! The shop's closed sets of strings, enforced by the database: `orders.status`,
//! `payments.status`, `payments.provider`, `payments.type` and `webhook_events.provider` may
//! only hold the values of their Rust enums (`OrderStatus`, `PaymentStatus`, `PaymentProvider`,
//! `PaymentKind`), so a bad value cannot be stored by any path. The columns keep their type and
//! their stored strings.
//!
//! PostgreSQL: `CHECK (col IN (…))` constraints. SQLite cannot add a constraint to a table, so
//! there a `BEFORE INSERT` and a `BEFORE UPDATE OF col` trigger per column `RAISE(ABORT, …)`.
//!
//! The value lists are written out here, not read from the enums: a migration is history, and
//! must not change when an enum later does (a new variant needs a new migration; the test below
//! notices).

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000009_shop_status_checks"
    }
}

/// `(table, column, allowed values)`.
const CHECKS: &[(&str, &str, &[&str])] = &[
    ("orders", "status", &["pending", "paid", "fulfilled", "cancelled", "refunded"]),
    ("payments", "status", &["pending", "processing", "completed", "failed", "cancelled", "refunded"]),
    ("payments", "provider", &["sandbox", "stripe"]),
    ("payments", "type", &["payment"]),
    ("webhook_events", "provider", &["sandbox", "stripe"]),
];

/// The statements that add one check and those that remove it. The one place the backends
/// differ: PostgreSQL has table constraints, SQLite (which cannot add one to a table) triggers.
fn check(backend: DatabaseBackend, table: &str, column: &str, values: &[&str]) -> (Vec<String>, Vec<String>) {
    let name = format!("ck_{table}_{column}");
    let list = values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
    if backend == DatabaseBackend::Postgres {
        let up = format!(r#"ALTER TABLE {table} ADD CONSTRAINT {name} CHECK ("{column}" IN ({list}))"#);
        return (vec![up], vec![format!("ALTER TABLE {table} DROP CONSTRAINT {name}")]);
    }
    let refuse = format!("SELECT RAISE(ABORT, '{table}.{column} must be one of {}');", values.join(", "));
    let trigger = |when: &str, suffix: &str| {
        format!(
            r#"CREATE TRIGGER {name}_{suffix} BEFORE {when} ON {table} WHEN NEW."{column}" NOT IN ({list}) BEGIN {refuse} END"#
        )
    };
    let up = vec![trigger("INSERT", "insert"), trigger(&format!(r#"UPDATE OF "{column}""#), "update")];
    (up, vec![format!("DROP TRIGGER {name}_update"), format!("DROP TRIGGER {name}_insert")])
}

async fn run(m: &SchemaManager<'_>, pick: impl Fn((Vec<String>, Vec<String>)) -> Vec<String>) -> Result<(), DbErr> {
    let db = m.get_connection();
    for &(table, column, values) in CHECKS {
        for sql in pick(check(db.get_database_backend(), table, column, values)) {
            db.execute_unprepared(&sql).await?;
        }
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, |(up, _)| up).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, |(_, down)| down).await
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    use super::CHECKS;
    use crate::shop::{
        orders::OrderStatus,
        payments::{PaymentKind, PaymentProvider, PaymentStatus},
    };

    fn values<E: ActiveEnum<Value = String> + Iterable>() -> Vec<String> {
        E::iter().map(|v| v.to_value()).collect()
    }

    #[test]
    fn the_checks_allow_exactly_the_enums_values() {
        let checked = |table: &str, column: &str| -> Vec<String> {
            let (_, _, values) = CHECKS.iter().find(|(t, c, _)| (*t, *c) == (table, column)).unwrap();
            values.iter().map(|v| v.to_string()).collect()
        };
        assert_eq!(checked("orders", "status"), values::<OrderStatus>());
        assert_eq!(checked("payments", "status"), values::<PaymentStatus>());
        assert_eq!(checked("payments", "provider"), values::<PaymentProvider>());
        assert_eq!(checked("payments", "type"), values::<PaymentKind>());
        assert_eq!(checked("webhook_events", "provider"), values::<PaymentProvider>());
    }
}
