//! Identity: users and their profiles, login devices, sessions, refresh tokens, MFA,
//! single-use email tokens and the mail outbox (seed 004, adapted: the user's own login
//! devices are `user_devices`; `devices` is kept for greenhouse hardware).

use sea_orm_migration::{prelude::*, schema::*};

mod tables;

pub use tables::Users;
pub(super) use tables::create_email_outbox;
use tables::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000002_identity"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Users::Table)
                .col(uuid(Users::Id).primary_key())
                .col(string_len(Users::Email, 320))
                .col(string_len_null(Users::PasswordHash, 255))
                .col(string_len(Users::Name, 200))
                .col(string_len(Users::Role, 16))
                .col(boolean(Users::EmailVerified).default(false))
                .col(string_len_null(Users::ExternalIssuer, 255))
                .col(string_len_null(Users::ExternalUid, 255))
                .col(boolean(Users::MfaEnabled).default(false))
                .col(text_null(Users::TotpSecretEnc))
                .col(text_null(Users::TotpPendingEnc))
                .col(big_integer_null(Users::TotpLastStep))
                .col(timestamp_with_time_zone_null(Users::PasswordChangedAt))
                .col(timestamp_with_time_zone_null(Users::DisabledAt))
                .col(timestamp_with_time_zone_null(Users::DeletedAt))
                .col(timestamp_with_time_zone(Users::CreatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(Users::UpdatedAt).default(Expr::current_timestamp()))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("uq_users_email").table(Users::Table).col(Users::Email).unique().to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("idx_users_role").table(Users::Table).col(Users::Role).to_owned()).await?;
        m.create_index(
            Index::create()
                .name("uq_users_external")
                .table(Users::Table)
                .col(Users::ExternalIssuer)
                .col(Users::ExternalUid)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(UserProfiles::Table)
                .col(uuid(UserProfiles::Id).primary_key())
                .col(uuid(UserProfiles::UserId))
                .col(string_len_null(UserProfiles::AvatarUrl, 2048))
                .col(string_len_null(UserProfiles::Phone, 32))
                .col(string_len_null(UserProfiles::Address, 500))
                .col(string_len_null(UserProfiles::Bio, 2000))
                .col(json_binary_null(UserProfiles::Preferences))
                .col(timestamp_with_time_zone(UserProfiles::CreatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(UserProfiles::UpdatedAt).default(Expr::current_timestamp()))
                .foreign_key(&mut fk_user(UserProfiles::Table, UserProfiles::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_user_profiles_user_id")
                .table(UserProfiles::Table)
                .col(UserProfiles::UserId)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(UserDevices::Table)
                .col(uuid(UserDevices::Id).primary_key())
                .col(uuid(UserDevices::UserId))
                .col(string_len(UserDevices::DeviceId, 128))
                .col(string_len_null(UserDevices::DeviceName, 128))
                .col(string_len_null(UserDevices::DeviceType, 32))
                .col(timestamp_with_time_zone(UserDevices::LastActiveAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(UserDevices::CreatedAt).default(Expr::current_timestamp()))
                .foreign_key(&mut fk_user(UserDevices::Table, UserDevices::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_user_devices_user_device")
                .table(UserDevices::Table)
                .col(UserDevices::UserId)
                .col(UserDevices::DeviceId)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Sessions::Table)
                .col(uuid(Sessions::Id).primary_key())
                .col(uuid(Sessions::UserId))
                .col(uuid_null(Sessions::UserDeviceId))
                .col(string_len_null(Sessions::IpAddress, 64))
                .col(string_len_null(Sessions::UserAgent, 512))
                .col(timestamp_with_time_zone(Sessions::CreatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(Sessions::LastUsedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(Sessions::ExpiresAt))
                .col(timestamp_with_time_zone_null(Sessions::RevokedAt))
                .col(string_len_null(Sessions::RevokedReason, 32))
                .foreign_key(&mut fk_user(Sessions::Table, Sessions::UserId))
                .foreign_key(
                    ForeignKey::create()
                        .from(Sessions::Table, Sessions::UserDeviceId)
                        .to(UserDevices::Table, UserDevices::Id)
                        .on_delete(ForeignKeyAction::SetNull),
                )
                .to_owned(),
        )
        .await?;
        for (name, col) in [
            ("idx_sessions_user_id", Sessions::UserId),
            ("idx_sessions_expires_at", Sessions::ExpiresAt),
            ("idx_sessions_revoked_at", Sessions::RevokedAt),
        ] {
            m.create_index(Index::create().name(name).table(Sessions::Table).col(col).to_owned()).await?;
        }

        m.create_table(
            Table::create()
                .table(RefreshTokens::Table)
                .col(uuid(RefreshTokens::Id).primary_key())
                .col(uuid(RefreshTokens::SessionId))
                .col(uuid(RefreshTokens::UserId))
                .col(string_len(RefreshTokens::TokenHash, 64))
                .col(timestamp_with_time_zone(RefreshTokens::CreatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(RefreshTokens::ExpiresAt))
                .col(timestamp_with_time_zone_null(RefreshTokens::UsedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(RefreshTokens::Table, RefreshTokens::SessionId)
                        .to(Sessions::Table, Sessions::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(&mut fk_user(RefreshTokens::Table, RefreshTokens::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_refresh_tokens_token_hash")
                .table(RefreshTokens::Table)
                .col(RefreshTokens::TokenHash)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_refresh_tokens_session_id")
                .table(RefreshTokens::Table)
                .col(RefreshTokens::SessionId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(MfaBackupCodes::Table)
                .col(uuid(MfaBackupCodes::Id).primary_key())
                .col(uuid(MfaBackupCodes::UserId))
                .col(string_len(MfaBackupCodes::CodeHash, 64))
                .col(timestamp_with_time_zone_null(MfaBackupCodes::UsedAt))
                .col(timestamp_with_time_zone(MfaBackupCodes::CreatedAt).default(Expr::current_timestamp()))
                .foreign_key(&mut fk_user(MfaBackupCodes::Table, MfaBackupCodes::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_mfa_backup_codes_user_code")
                .table(MfaBackupCodes::Table)
                .col(MfaBackupCodes::UserId)
                .col(MfaBackupCodes::CodeHash)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(MfaChallenges::Table)
                .col(uuid(MfaChallenges::Id).primary_key())
                .col(uuid(MfaChallenges::UserId))
                .col(string_len(MfaChallenges::TokenHash, 64))
                .col(json_binary_null(MfaChallenges::Context))
                .col(timestamp_with_time_zone(MfaChallenges::CreatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(MfaChallenges::ExpiresAt))
                .foreign_key(&mut fk_user(MfaChallenges::Table, MfaChallenges::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_mfa_challenges_token_hash")
                .table(MfaChallenges::Table)
                .col(MfaChallenges::TokenHash)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(OneTimeTokens::Table)
                .col(uuid(OneTimeTokens::Id).primary_key())
                .col(uuid(OneTimeTokens::UserId))
                .col(string_len(OneTimeTokens::Purpose, 32))
                .col(string_len(OneTimeTokens::TokenHash, 64))
                .col(timestamp_with_time_zone(OneTimeTokens::CreatedAt).default(Expr::current_timestamp()))
                .col(timestamp_with_time_zone(OneTimeTokens::ExpiresAt))
                .col(timestamp_with_time_zone_null(OneTimeTokens::UsedAt))
                .foreign_key(&mut fk_user(OneTimeTokens::Table, OneTimeTokens::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_one_time_tokens_token_hash")
                .table(OneTimeTokens::Table)
                .col(OneTimeTokens::TokenHash)
                .unique()
                .to_owned(),
        )
        .await?;

        create_email_outbox(m).await?;
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            EmailOutbox::Table.into_iden(),
            OneTimeTokens::Table.into_iden(),
            MfaChallenges::Table.into_iden(),
            MfaBackupCodes::Table.into_iden(),
            RefreshTokens::Table.into_iden(),
            Sessions::Table.into_iden(),
            UserDevices::Table.into_iden(),
            UserProfiles::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
