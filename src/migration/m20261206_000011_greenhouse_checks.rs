//! Closed sets of the greenhouse tables, enforced by the database: `grower_members.role` is
//! `OWNER` or `MEMBER` (`greenhouse::MemberRole`), so no other value can be stored whatever
//! writes the row. Existing rows already hold only these values; nothing is rewritten.
//!
//! PostgreSQL gets a CHECK constraint. SQLite cannot add a constraint to an existing table, so
//! there `BEFORE INSERT` and `BEFORE UPDATE OF role` triggers refuse the row, as the audit-log
//! triggers do.

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_000011_greenhouse_checks"
    }
}

const PG_UP: &[&str] = &["ALTER TABLE grower_members ADD CONSTRAINT ck_grower_members_role \
     CHECK (role IN ('OWNER', 'MEMBER'))"];

const PG_DOWN: &[&str] = &["ALTER TABLE grower_members DROP CONSTRAINT IF EXISTS ck_grower_members_role"];

const SQLITE_UP: &[&str] = &[
    "CREATE TRIGGER trg_grower_members_role_insert BEFORE INSERT ON grower_members \
     WHEN NEW.role NOT IN ('OWNER', 'MEMBER') \
     BEGIN SELECT RAISE(ABORT, 'grower_members.role must be OWNER or MEMBER'); END",
    "CREATE TRIGGER trg_grower_members_role_update BEFORE UPDATE OF role ON grower_members \
     WHEN NEW.role NOT IN ('OWNER', 'MEMBER') \
     BEGIN SELECT RAISE(ABORT, 'grower_members.role must be OWNER or MEMBER'); END",
];

const SQLITE_DOWN: &[&str] =
    &["DROP TRIGGER IF EXISTS trg_grower_members_role_insert", "DROP TRIGGER IF EXISTS trg_grower_members_role_update"];

async fn run(m: &SchemaManager<'_>, pg: &[&str], sqlite: &[&str]) -> Result<(), DbErr> {
    let db = m.get_connection();
    let statements = match db.get_database_backend() {
        DatabaseBackend::Postgres => pg,
        _ => sqlite,
    };
    for sql in statements {
        db.execute_unprepared(sql).await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, PG_UP, SQLITE_UP).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        run(m, PG_DOWN, SQLITE_DOWN).await
    }
}
