//! The job queue and alerting.
//!
//! - `background_jobs`: the durable queue. A job is `queued` (due at `run_at`), `running` (leased
//!   until `locked_until`) or `dead` (out of attempts, `last_error` kept). A finished job is
//!   deleted. `job_schedules`: one row per periodic job, its next due time (claimed with a
//!   conditional update, so one instance enqueues each round).
//! - `alert_rules`, their per-(rule, device) evaluation state `alert_rule_states` (timers,
//!   last value, the anomaly baseline), `alerts` (one open alert per (rule, device): a partial
//!   unique index), `push_tokens`, `notification_deliveries` (every delivery attempt) and
//!   `grower_webhooks` (one alert webhook per grower, its signing secret sealed with AES-GCM).
//! - The identity mail outbox moves onto the queue: unsent mail becomes `send_email` jobs and
//!   `email_outbox` is dropped (`down` recreates it empty; queued mail jobs go with the queue).

use sea_orm::{ConnectionTrait, DatabaseBackend};
use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_identity::{Users, create_email_outbox};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000005_jobs_alerts"
    }
}

#[derive(DeriveIden)]
enum BackgroundJobs {
    Table,
    Id,
    JobType,
    Payload,
    Priority,
    Status,
    Attempts,
    MaxAttempts,
    RunAt,
    LockedUntil,
    LockedBy,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobSchedules {
    Table,
    Name,
    EverySecs,
    NextRunAt,
    LastRunAt,
}

#[derive(DeriveIden)]
enum AlertRules {
    Table,
    Id,
    GrowerId,
    DeviceId,
    Name,
    Metric,
    Kind,
    Op,
    Threshold,
    Low,
    High,
    ForSeconds,
    Severity,
    Enabled,
    AutoResolve,
    Alpha,
    WarmupSamples,
    CreatedBy,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AlertRuleStates {
    Table,
    RuleId,
    DeviceId,
    BreachSince,
    LastTs,
    LastValue,
    Mean,
    Variance,
    Samples,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    GrowerId,
    DeviceId,
    RuleId,
    Metric,
    Severity,
    Status,
    Message,
    Value,
    Count,
    CreatedAt,
    LastSeenAt,
    AcknowledgedAt,
    AcknowledgedBy,
    ResolvedAt,
    ResolvedBy,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PushTokens {
    Table,
    Id,
    UserId,
    Token,
    Platform,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum NotificationDeliveries {
    Table,
    Id,
    AlertId,
    Channel,
    Target,
    Status,
    Error,
    Attempt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum GrowerWebhooks {
    Table,
    GrowerId,
    Url,
    SecretSealed,
    Enabled,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Growers {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Devices {
    Table,
    Id,
}

const INDEXES: &[&str] = &[
    // Claims read the due queued jobs in priority order; the lease sweep reads expired leases.
    "CREATE INDEX idx_background_jobs_due ON background_jobs (priority DESC, run_at) WHERE status = 'queued'",
    "CREATE INDEX idx_background_jobs_lease ON background_jobs (locked_until) WHERE status = 'running'",
    "CREATE INDEX idx_background_jobs_type ON background_jobs (job_type, status)",
    "CREATE INDEX idx_alert_rules_grower ON alert_rules (grower_id, created_at) WHERE deleted_at IS NULL",
    "CREATE UNIQUE INDEX uq_alerts_open ON alerts (rule_id, device_id) WHERE status <> 'resolved'",
    "CREATE INDEX idx_alerts_grower ON alerts (grower_id, status, created_at)",
    "CREATE INDEX idx_alerts_device ON alerts (device_id)",
    "CREATE UNIQUE INDEX uq_push_tokens_token ON push_tokens (token)",
    "CREATE INDEX idx_push_tokens_user ON push_tokens (user_id)",
    "CREATE INDEX idx_notification_deliveries_alert ON notification_deliveries (alert_id, created_at)",
    "CREATE INDEX idx_notification_deliveries_created ON notification_deliveries (created_at)",
];

fn fk(from: (impl IntoIden, impl IntoIden), to: (impl IntoIden, impl IntoIden)) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(from.0, from.1).to(to.0, to.1).on_delete(ForeignKeyAction::Cascade).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(BackgroundJobs::Table)
                .col(uuid(BackgroundJobs::Id).primary_key())
                .col(string_len(BackgroundJobs::JobType, 64))
                .col(json_binary(BackgroundJobs::Payload))
                .col(small_integer(BackgroundJobs::Priority).default(0))
                .col(string_len(BackgroundJobs::Status, 16))
                .col(integer(BackgroundJobs::Attempts).default(0))
                .col(integer(BackgroundJobs::MaxAttempts))
                .col(timestamp_with_time_zone(BackgroundJobs::RunAt))
                .col(timestamp_with_time_zone_null(BackgroundJobs::LockedUntil))
                .col(string_len_null(BackgroundJobs::LockedBy, 64))
                .col(text_null(BackgroundJobs::LastError))
                .col(timestamp_with_time_zone(BackgroundJobs::CreatedAt))
                .col(timestamp_with_time_zone(BackgroundJobs::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(JobSchedules::Table)
                .col(string_len(JobSchedules::Name, 64).primary_key())
                .col(big_integer(JobSchedules::EverySecs))
                .col(timestamp_with_time_zone(JobSchedules::NextRunAt))
                .col(timestamp_with_time_zone_null(JobSchedules::LastRunAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AlertRules::Table)
                .col(uuid(AlertRules::Id).primary_key())
                .col(uuid(AlertRules::GrowerId))
                .col(uuid_null(AlertRules::DeviceId))
                .col(string_len_null(AlertRules::Name, 120))
                .col(string_len(AlertRules::Metric, 64))
                .col(string_len(AlertRules::Kind, 16))
                .col(string_len_null(AlertRules::Op, 16))
                .col(double_null(AlertRules::Threshold))
                .col(double_null(AlertRules::Low))
                .col(double_null(AlertRules::High))
                .col(integer(AlertRules::ForSeconds).default(0))
                .col(string_len(AlertRules::Severity, 16))
                .col(boolean(AlertRules::Enabled).default(true))
                .col(boolean(AlertRules::AutoResolve).default(true))
                .col(double_null(AlertRules::Alpha))
                .col(integer_null(AlertRules::WarmupSamples))
                .col(uuid_null(AlertRules::CreatedBy))
                .col(timestamp_with_time_zone_null(AlertRules::DeletedAt))
                .col(timestamp_with_time_zone(AlertRules::CreatedAt))
                .col(timestamp_with_time_zone(AlertRules::UpdatedAt))
                .foreign_key(&mut fk((AlertRules::Table, AlertRules::GrowerId), (Growers::Table, Growers::Id)))
                .foreign_key(&mut fk((AlertRules::Table, AlertRules::DeviceId), (Devices::Table, Devices::Id)))
                .foreign_key(
                    ForeignKey::create()
                        .from(AlertRules::Table, AlertRules::CreatedBy)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(AlertRuleStates::Table)
                .col(uuid(AlertRuleStates::RuleId))
                .col(uuid(AlertRuleStates::DeviceId))
                .col(timestamp_with_time_zone_null(AlertRuleStates::BreachSince))
                .col(timestamp_with_time_zone_null(AlertRuleStates::LastTs))
                .col(double_null(AlertRuleStates::LastValue))
                .col(double(AlertRuleStates::Mean).default(0.0))
                .col(double(AlertRuleStates::Variance).default(0.0))
                .col(big_integer(AlertRuleStates::Samples).default(0))
                .col(timestamp_with_time_zone(AlertRuleStates::UpdatedAt))
                .primary_key(Index::create().col(AlertRuleStates::RuleId).col(AlertRuleStates::DeviceId))
                .foreign_key(&mut fk(
                    (AlertRuleStates::Table, AlertRuleStates::RuleId),
                    (AlertRules::Table, AlertRules::Id),
                ))
                .foreign_key(&mut fk(
                    (AlertRuleStates::Table, AlertRuleStates::DeviceId),
                    (Devices::Table, Devices::Id),
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Alerts::Table)
                .col(uuid(Alerts::Id).primary_key())
                .col(uuid(Alerts::GrowerId))
                .col(uuid(Alerts::DeviceId))
                .col(uuid(Alerts::RuleId))
                .col(string_len(Alerts::Metric, 64))
                .col(string_len(Alerts::Severity, 16))
                .col(string_len(Alerts::Status, 16))
                .col(text(Alerts::Message))
                .col(double(Alerts::Value))
                .col(integer(Alerts::Count).default(1))
                .col(timestamp_with_time_zone(Alerts::CreatedAt))
                .col(timestamp_with_time_zone(Alerts::LastSeenAt))
                .col(timestamp_with_time_zone_null(Alerts::AcknowledgedAt))
                .col(uuid_null(Alerts::AcknowledgedBy))
                .col(timestamp_with_time_zone_null(Alerts::ResolvedAt))
                .col(uuid_null(Alerts::ResolvedBy))
                .col(timestamp_with_time_zone(Alerts::UpdatedAt))
                .foreign_key(&mut fk((Alerts::Table, Alerts::GrowerId), (Growers::Table, Growers::Id)))
                .foreign_key(&mut fk((Alerts::Table, Alerts::DeviceId), (Devices::Table, Devices::Id)))
                .foreign_key(&mut fk((Alerts::Table, Alerts::RuleId), (AlertRules::Table, AlertRules::Id)))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(PushTokens::Table)
                .col(uuid(PushTokens::Id).primary_key())
                .col(uuid(PushTokens::UserId))
                .col(string_len(PushTokens::Token, 4096))
                .col(string_len(PushTokens::Platform, 16))
                .col(timestamp_with_time_zone(PushTokens::CreatedAt))
                .col(timestamp_with_time_zone(PushTokens::UpdatedAt))
                .foreign_key(&mut fk((PushTokens::Table, PushTokens::UserId), (Users::Table, Users::Id)))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(NotificationDeliveries::Table)
                .col(uuid(NotificationDeliveries::Id).primary_key())
                .col(uuid_null(NotificationDeliveries::AlertId))
                .col(string_len(NotificationDeliveries::Channel, 16))
                .col(string_len(NotificationDeliveries::Target, 512))
                .col(string_len(NotificationDeliveries::Status, 16))
                .col(text_null(NotificationDeliveries::Error))
                .col(integer(NotificationDeliveries::Attempt))
                .col(timestamp_with_time_zone(NotificationDeliveries::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(NotificationDeliveries::Table, NotificationDeliveries::AlertId)
                        .to(Alerts::Table, Alerts::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(GrowerWebhooks::Table)
                .col(uuid(GrowerWebhooks::GrowerId).primary_key())
                .col(string_len(GrowerWebhooks::Url, 2048))
                .col(text(GrowerWebhooks::SecretSealed))
                .col(boolean(GrowerWebhooks::Enabled).default(true))
                .col(timestamp_with_time_zone(GrowerWebhooks::CreatedAt))
                .col(timestamp_with_time_zone(GrowerWebhooks::UpdatedAt))
                .foreign_key(&mut fk((GrowerWebhooks::Table, GrowerWebhooks::GrowerId), (Growers::Table, Growers::Id)))
                .to_owned(),
        )
        .await?;
        let db = m.get_connection();
        for sql in INDEXES {
            db.execute_unprepared(sql).await?;
        }
        // Unsent mail moves onto the queue as `send_email` jobs.
        let payload = match db.get_database_backend() {
            DatabaseBackend::Postgres => "jsonb_build_object('to', to_address, 'subject', subject, 'body', body_text)",
            _ => "json_object('to', to_address, 'subject', subject, 'body', body_text)",
        };
        db.execute_unprepared(&format!(
            "INSERT INTO background_jobs (id, job_type, payload, priority, status, attempts, max_attempts, run_at, \
             created_at, updated_at) SELECT id, 'send_email', {payload}, 0, 'queued', 0, 10, next_attempt_at, \
             created_at, created_at FROM email_outbox WHERE sent_at IS NULL AND attempts < 10"
        ))
        .await?;
        m.drop_table(Table::drop().table(Alias::new("email_outbox")).to_owned()).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        create_email_outbox(m).await?;
        for table in [
            GrowerWebhooks::Table.into_iden(),
            NotificationDeliveries::Table.into_iden(),
            PushTokens::Table.into_iden(),
            Alerts::Table.into_iden(),
            AlertRuleStates::Table.into_iden(),
            AlertRules::Table.into_iden(),
            JobSchedules::Table.into_iden(),
            BackgroundJobs::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
