//! The cross-cutting tables of seed 004: `audit_logs` (append-only) and `system_config`.

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_core"
    }
}

#[derive(DeriveIden)]
enum AuditLogs {
    Table,
    Id,
    UserId,
    Action,
    ResourceType,
    ResourceId,
    Details,
    IpAddress,
    UserAgent,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SystemConfig {
    Table,
    Key,
    Value,
    Description,
    UpdatedAt,
    UpdatedBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLogs::Table)
                    .col(uuid(AuditLogs::Id).primary_key())
                    .col(uuid_null(AuditLogs::UserId))
                    .col(string_len(AuditLogs::Action, 64))
                    .col(string_len_null(AuditLogs::ResourceType, 64))
                    .col(string_len_null(AuditLogs::ResourceId, 128))
                    .col(json_binary_null(AuditLogs::Details))
                    .col(string_len_null(AuditLogs::IpAddress, 64))
                    .col(string_len_null(AuditLogs::UserAgent, 512))
                    .col(timestamp_with_time_zone(AuditLogs::CreatedAt).default(Expr::current_timestamp()))
                    .to_owned(),
            )
            .await?;
        for (name, col) in [
            ("idx_audit_logs_user_id", AuditLogs::UserId),
            ("idx_audit_logs_created_at", AuditLogs::CreatedAt),
            ("idx_audit_logs_action", AuditLogs::Action),
        ] {
            manager.create_index(Index::create().name(name).table(AuditLogs::Table).col(col).to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(SystemConfig::Table)
                    .col(string_len(SystemConfig::Key, 128).primary_key())
                    .col(json_binary(SystemConfig::Value))
                    .col(text_null(SystemConfig::Description))
                    .col(timestamp_with_time_zone(SystemConfig::UpdatedAt).default(Expr::current_timestamp()))
                    .col(uuid_null(SystemConfig::UpdatedBy))
                    .to_owned(),
            )
            .await?;

        // Audit rows are evidence: the database itself refuses to change or delete them.
        let db = manager.get_connection();
        for stmt in append_only_guard(db.get_database_backend()) {
            db.execute_unprepared(stmt).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DatabaseBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION IF EXISTS audit_logs_append_only() CASCADE").await?;
        }
        manager.drop_table(Table::drop().table(SystemConfig::Table).to_owned()).await?;
        // Dropping the table drops its SQLite triggers with it.
        manager.drop_table(Table::drop().table(AuditLogs::Table).to_owned()).await?;
        Ok(())
    }
}

fn append_only_guard(backend: DatabaseBackend) -> Vec<&'static str> {
    match backend {
        DatabaseBackend::Postgres => vec![
            r#"CREATE FUNCTION audit_logs_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN RAISE EXCEPTION 'audit_logs is append-only'; END $$"#,
            "CREATE TRIGGER trg_audit_logs_no_update BEFORE UPDATE OR DELETE ON audit_logs \
             FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only()",
        ],
        DatabaseBackend::Sqlite => vec![
            "CREATE TRIGGER trg_audit_logs_no_update BEFORE UPDATE ON audit_logs \
             BEGIN SELECT RAISE(ABORT, 'audit_logs is append-only'); END",
            "CREATE TRIGGER trg_audit_logs_no_delete BEFORE DELETE ON audit_logs \
             BEGIN SELECT RAISE(ABORT, 'audit_logs is append-only'); END",
        ],
        _ => vec![],
    }
}
