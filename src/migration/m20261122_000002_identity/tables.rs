//! The identity migration's tables and columns, its foreign-key helper, and the mail outbox
//! (created here, moved onto the job queue by a later migration, recreated by its `down`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveIden)]
pub enum Users {
    Table,
    Id,
    Email,
    PasswordHash,
    Name,
    Role,
    EmailVerified,
    ExternalIssuer,
    ExternalUid,
    MfaEnabled,
    TotpSecretEnc,
    TotpPendingEnc,
    TotpLastStep,
    PasswordChangedAt,
    DisabledAt,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
pub(super) enum UserProfiles {
    Table,
    Id,
    UserId,
    AvatarUrl,
    Phone,
    Address,
    Bio,
    Preferences,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
pub(super) enum UserDevices {
    Table,
    Id,
    UserId,
    DeviceId,
    DeviceName,
    DeviceType,
    LastActiveAt,
    CreatedAt,
}

#[derive(DeriveIden)]
pub(super) enum Sessions {
    Table,
    Id,
    UserId,
    UserDeviceId,
    IpAddress,
    UserAgent,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    RevokedAt,
    RevokedReason,
}

#[derive(DeriveIden)]
pub(super) enum RefreshTokens {
    Table,
    Id,
    SessionId,
    UserId,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
pub(super) enum MfaBackupCodes {
    Table,
    Id,
    UserId,
    CodeHash,
    UsedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
pub(super) enum MfaChallenges {
    Table,
    Id,
    UserId,
    TokenHash,
    Context,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
pub(super) enum OneTimeTokens {
    Table,
    Id,
    UserId,
    Purpose,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
}

#[derive(DeriveIden)]
pub(super) enum EmailOutbox {
    Table,
    Id,
    ToAddress,
    Subject,
    BodyText,
    Attempts,
    LastError,
    NextAttemptAt,
    SentAt,
    CreatedAt,
}

pub(super) fn fk_user(table: impl IntoIden, col: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(table, col).to(Users::Table, Users::Id).on_delete(ForeignKeyAction::Cascade).to_owned()
}

/// The mail outbox of identity; its successor migration moves mail onto the job queue and drops
/// it, and recreates it on the way down.
pub(in crate::migration) async fn create_email_outbox(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(EmailOutbox::Table)
            .col(uuid(EmailOutbox::Id).primary_key())
            .col(string_len(EmailOutbox::ToAddress, 320))
            .col(string_len(EmailOutbox::Subject, 255))
            .col(text(EmailOutbox::BodyText))
            .col(integer(EmailOutbox::Attempts).default(0))
            .col(text_null(EmailOutbox::LastError))
            .col(timestamp_with_time_zone(EmailOutbox::NextAttemptAt).default(Expr::current_timestamp()))
            .col(timestamp_with_time_zone_null(EmailOutbox::SentAt))
            .col(timestamp_with_time_zone(EmailOutbox::CreatedAt).default(Expr::current_timestamp()))
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .name("idx_email_outbox_pending")
            .table(EmailOutbox::Table)
            .col(EmailOutbox::SentAt)
            .col(EmailOutbox::NextAttemptAt)
            .to_owned(),
    )
    .await?;
    Ok(())
}
