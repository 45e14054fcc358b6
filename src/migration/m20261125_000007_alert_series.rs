//! Rule evaluation state split by what it belongs to:
//! - `alert_series_states`: one row per (device, metric), the last reading evaluated. Every rule
//!   watching the metric shares it: it is the previous value of `rate` rules, the point up to
//!   which readings were evaluated (older ones are skipped), and the last reading `stale`
//!   checks see. An evaluation locks these rows, which serialises evaluations per (device, metric).
//! - `alert_rule_states` keeps only what is a rule's own (a `forSeconds` streak, an anomaly
//!   baseline), so rules without either keep no row at all; its `last_ts` and `last_value` go.
//!
//! Nothing is carried over either way: evaluation positions restart empty, which costs at most
//! one reading's rate comparison (the next batch's readings are evaluated as usual, and stale
//! checks also read the readings themselves).

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261125_000007_alert_series"
    }
}

#[derive(DeriveIden)]
enum AlertSeriesStates {
    Table,
    DeviceId,
    Metric,
    LastTs,
    LastValue,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AlertRuleStates {
    Table,
    LastTs,
    LastValue,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AlertSeriesStates::Table)
                .col(uuid(AlertSeriesStates::DeviceId))
                .col(string(AlertSeriesStates::Metric))
                .col(timestamp_with_time_zone_null(AlertSeriesStates::LastTs))
                .col(double_null(AlertSeriesStates::LastValue))
                .col(timestamp_with_time_zone(AlertSeriesStates::UpdatedAt))
                .primary_key(Index::create().col(AlertSeriesStates::DeviceId).col(AlertSeriesStates::Metric))
                .foreign_key(
                    ForeignKey::create()
                        .from(AlertSeriesStates::Table, AlertSeriesStates::DeviceId)
                        .to(Devices::Table, Devices::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        for col in [AlertRuleStates::LastTs, AlertRuleStates::LastValue] {
            m.alter_table(Table::alter().table(AlertRuleStates::Table).drop_column(col).to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(AlertRuleStates::Table)
                .add_column(timestamp_with_time_zone_null(AlertRuleStates::LastTs))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter().table(AlertRuleStates::Table).add_column(double_null(AlertRuleStates::LastValue)).to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(AlertSeriesStates::Table).to_owned()).await
    }
}
