//! Identity's closed sets, enforced by the database: `users.role`, `sessions.revoked_reason` and
//! `one_time_tokens.purpose` can hold only the values of their Rust enums (`auth::Role`,
//! `auth::entity::RevokeReason`, `auth::entity::Purpose`). The columns keep their type and their
//! stored strings.
//!
//! PostgreSQL gets a `CHECK` constraint per column. SQLite cannot add a constraint to an
//! existing table, so there a `BEFORE INSERT` and a `BEFORE UPDATE OF <column>` trigger refuse a
//! value outside the set (as the audit-log triggers of the first migration do). `down` removes
//! them. The value lists are written out here, frozen with the migration; a test checks they
//! are the enums' values.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DatabaseBackend},
};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000008_identity_checks"
    }
}

/// A text column that may hold only `values` (or NULL, when `nullable`).
struct Check {
    table: &'static str,
    column: &'static str,
    nullable: bool,
    values: &'static [&'static str],
}

const CHECKS: &[Check] = &[
    Check { table: "users", column: "role", nullable: false, values: &["ADMIN", "GROWER", "CUSTOMER", "VENDOR"] },
    Check {
        table: "sessions",
        column: "revoked_reason",
        nullable: true,
        values: &[
            "logout",
            "deleted",
            "password_changed",
            "password_reset",
            "disabled",
            "role_changed",
            "refresh_reuse",
            "user_deleted",
        ],
    },
    Check { table: "one_time_tokens", column: "purpose", nullable: false, values: &["email_verify", "password_reset"] },
];

impl Check {
    fn name(&self) -> String {
        format!("ck_{}_{}", self.table, self.column)
    }

    /// The condition a row must meet, in SQL both databases read alike.
    fn condition(&self, row: &str) -> String {
        let list = self.values.iter().map(|v| format!("'{v}'")).collect::<Vec<_>>().join(", ");
        let col = format!("{row}{}", self.column);
        if self.nullable { format!("({col} IS NULL OR {col} IN ({list}))") } else { format!("({col} IN ({list}))") }
    }

    fn up(&self, backend: DatabaseBackend) -> Vec<String> {
        let (table, column, name) = (self.table, self.column, self.name());
        match backend {
            DatabaseBackend::Postgres => {
                vec![format!("ALTER TABLE {table} ADD CONSTRAINT {name} CHECK {}", self.condition(""))]
            }
            _ => {
                let refuse = format!(
                    "WHEN NOT {} BEGIN SELECT RAISE(ABORT, '{table}.{column} must be one of {}'); END",
                    self.condition("NEW."),
                    self.values.join(", ")
                );
                vec![
                    format!("CREATE TRIGGER {name}_insert BEFORE INSERT ON {table} FOR EACH ROW {refuse}"),
                    format!("CREATE TRIGGER {name}_update BEFORE UPDATE OF {column} ON {table} FOR EACH ROW {refuse}"),
                ]
            }
        }
    }

    fn down(&self, backend: DatabaseBackend) -> Vec<String> {
        let (table, name) = (self.table, self.name());
        match backend {
            DatabaseBackend::Postgres => vec![format!("ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")],
            _ => vec![format!("DROP TRIGGER IF EXISTS {name}_insert"), format!("DROP TRIGGER IF EXISTS {name}_update")],
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
        for stmt in CHECKS.iter().rev().flat_map(|c| c.down(db.get_database_backend())) {
            db.execute_unprepared(&stmt).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use sea_orm_migration::sea_orm::{ActiveEnum, Iterable};

    use super::*;
    use crate::auth::{
        Role,
        entity::{Purpose, RevokeReason},
    };

    fn values<E: ActiveEnum<Value = String> + Iterable>() -> Vec<String> {
        E::iter().map(|e| e.to_value()).collect()
    }

    #[test]
    fn the_frozen_lists_are_the_enums_values() {
        let of = |column: &str| CHECKS.iter().find(|c| c.column == column).unwrap().values.to_vec();
        assert_eq!(of("role"), values::<Role>());
        assert_eq!(of("revoked_reason"), values::<RevokeReason>());
        assert_eq!(of("purpose"), values::<Purpose>());
    }

    #[test]
    fn statements() {
        let role = &CHECKS[0];
        assert_eq!(
            role.up(DatabaseBackend::Postgres),
            [
                "ALTER TABLE users ADD CONSTRAINT ck_users_role CHECK (role IN ('ADMIN', 'GROWER', 'CUSTOMER', 'VENDOR'))"
            ]
        );
        assert_eq!(
            CHECKS[1].condition("NEW."),
            "(NEW.revoked_reason IS NULL OR NEW.revoked_reason IN ('logout', 'deleted', 'password_changed', \
             'password_reset', 'disabled', 'role_changed', 'refresh_reuse', 'user_deleted'))"
        );
    }
}
