//! Realtime presence: `user_presence` keeps when each user was last online (`lastSeenAt` of
//! `/presence/{growerId}`), so it survives restarts. Online/offline itself lives in memory or
//! Redis, with the connections.

use sea_orm_migration::{prelude::*, schema::*};

use super::m20261122_000002_identity::Users;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000006_realtime"
    }
}

#[derive(DeriveIden)]
enum UserPresence {
    Table,
    UserId,
    LastSeenAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(UserPresence::Table)
                .col(uuid(UserPresence::UserId).primary_key())
                .col(timestamp_with_time_zone(UserPresence::LastSeenAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(UserPresence::Table, UserPresence::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(UserPresence::Table).to_owned()).await
    }
}
