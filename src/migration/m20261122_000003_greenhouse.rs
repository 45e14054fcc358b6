//! Greenhouses: growers (the tenant) and their members, chambers, devices with hashed
//! credentials and desired/reported state, the latest value per (device, metric), and the
//! time series itself.
//!
//! `sensor_readings` is the one table whose DDL differs per backend:
//! - PostgreSQL: range-partitioned by `ts` (one partition per UTC day, created ahead by the
//!   maintenance task and on demand), primary key `(device_id, metric, ts)`, which is also the
//!   index for (device, metric, time range) reads. Retention drops whole partitions.
//! - SQLite: a `WITHOUT ROWID` table keyed by `(device_id, metric, ts)`, with `ts` in integer
//!   microseconds since the Unix epoch (compact, and bucket maths is integer division).
//!
//! `device_state.ts` follows the same per-backend type as `sensor_readings.ts`.

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_identity::Users;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000003_greenhouse"
    }
}

#[derive(DeriveIden)]
enum Growers {
    Table,
    Id,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum GrowerMembers {
    Table,
    GrowerId,
    UserId,
    Role,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Chambers {
    Table,
    Id,
    GrowerId,
    Name,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
    GrowerId,
    ChamberId,
    Name,
    Kind,
    Metadata,
    TokenId,
    TokenHash,
    TokenRotatedAt,
    LastSeenAt,
    Desired,
    DesiredVersion,
    DesiredUpdatedAt,
    ReportedState,
    ReportedVersion,
    ReportedAt,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

const PG_READINGS: &str = "
CREATE TABLE sensor_readings (
    device_id uuid NOT NULL,
    metric text NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (device_id, metric, ts)
) PARTITION BY RANGE (ts)";

const PG_STATE: &str = "
CREATE TABLE device_state (
    device_id uuid NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    metric text NOT NULL,
    ts timestamptz NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (device_id, metric)
)";

const SQLITE_READINGS: &str = "
CREATE TABLE sensor_readings (
    device_id blob NOT NULL,
    metric text NOT NULL,
    ts integer NOT NULL,
    value real NOT NULL,
    PRIMARY KEY (device_id, metric, ts)
) WITHOUT ROWID";

const SQLITE_STATE: &str = "
CREATE TABLE device_state (
    device_id blob NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
    metric text NOT NULL,
    ts integer NOT NULL,
    value real NOT NULL,
    PRIMARY KEY (device_id, metric)
) WITHOUT ROWID";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Growers::Table)
                .col(uuid(Growers::Id).primary_key())
                .col(string_len(Growers::Name, 200))
                .col(timestamp_with_time_zone(Growers::CreatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(Growers::UpdatedAt).default(Expr::current_timestamp()))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(GrowerMembers::Table)
                .col(uuid(GrowerMembers::GrowerId))
                .col(uuid(GrowerMembers::UserId))
                .col(string_len(GrowerMembers::Role, 16))
                .col(timestamp_with_time_zone(GrowerMembers::CreatedAt).default(Expr::current_timestamp()))
                .primary_key(Index::create().col(GrowerMembers::GrowerId).col(GrowerMembers::UserId))
                .foreign_key(
                    ForeignKey::create()
                        .from(GrowerMembers::Table, GrowerMembers::GrowerId)
                        .to(Growers::Table, Growers::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(GrowerMembers::Table, GrowerMembers::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_grower_members_user")
                .table(GrowerMembers::Table)
                .col(GrowerMembers::UserId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Chambers::Table)
                .col(uuid(Chambers::Id).primary_key())
                .col(uuid(Chambers::GrowerId))
                .col(string_len(Chambers::Name, 200))
                .col(timestamp_with_time_zone(Chambers::CreatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(Chambers::UpdatedAt).default(Expr::current_timestamp()))
                .foreign_key(
                    ForeignKey::create()
                        .from(Chambers::Table, Chambers::GrowerId)
                        .to(Growers::Table, Growers::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_chambers_grower_name")
                .table(Chambers::Table)
                .col(Chambers::GrowerId)
                .col(Chambers::Name)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Devices::Table)
                .col(uuid(Devices::Id).primary_key())
                .col(uuid(Devices::GrowerId))
                .col(uuid_null(Devices::ChamberId))
                .col(string_len(Devices::Name, 200))
                .col(string_len_null(Devices::Kind, 64))
                .col(json_binary_null(Devices::Metadata))
                .col(string_len(Devices::TokenId, 32))
                .col(string_len(Devices::TokenHash, 64))
                .col(timestamp_with_time_zone(Devices::TokenRotatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone_null(Devices::LastSeenAt))
                .col(json_binary(Devices::Desired))
                .col(big_integer(Devices::DesiredVersion).default(0))
                .col(timestamp_with_time_zone_null(Devices::DesiredUpdatedAt))
                .col(json_binary_null(Devices::ReportedState))
                .col(big_integer_null(Devices::ReportedVersion))
                .col(timestamp_with_time_zone_null(Devices::ReportedAt))
                .col(timestamp_with_time_zone_null(Devices::DeletedAt))
                .col(timestamp_with_time_zone(Devices::CreatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(Devices::UpdatedAt).default(Expr::current_timestamp()))
                .foreign_key(
                    ForeignKey::create()
                        .from(Devices::Table, Devices::GrowerId)
                        .to(Growers::Table, Growers::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(Devices::Table, Devices::ChamberId)
                        .to(Chambers::Table, Chambers::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("uq_devices_token_id").table(Devices::Table).col(Devices::TokenId).unique().to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_devices_grower")
                .table(Devices::Table)
                .col(Devices::GrowerId)
                .col(Devices::CreatedAt)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("idx_devices_chamber").table(Devices::Table).col(Devices::ChamberId).to_owned(),
        )
        .await?;

        let db = m.get_connection();
        let (readings, state) = match db.get_database_backend() {
            DatabaseBackend::Postgres => (PG_READINGS, PG_STATE),
            _ => (SQLITE_READINGS, SQLITE_STATE),
        };
        db.execute_unprepared(readings).await?;
        db.execute_unprepared(state).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Dropping the partitioned parent drops its partitions too.
        m.get_connection().execute_unprepared("DROP TABLE sensor_readings").await?;
        m.get_connection().execute_unprepared("DROP TABLE device_state").await?;
        for table in [
            Devices::Table.into_iden(),
            Chambers::Table.into_iden(),
            GrowerMembers::Table.into_iden(),
            Growers::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
