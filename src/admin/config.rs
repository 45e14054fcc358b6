//! `system_config` (seed 004 `SystemConfig`): JSON values by key.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict};
use uuid::Uuid;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel, serde::Serialize)]
    #[sea_orm(table_name = "system_config")]
    #[serde(rename_all = "camelCase")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub key: String,
        pub value: Json,
        pub description: Option<String>,
        pub updated_at: DateTimeUtc,
        pub updated_by: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as ConfigEntry;

/// Reads one key.
pub async fn get<C: ConnectionTrait>(db: &C, key: &str) -> Result<Option<ConfigEntry>, sea_orm::DbErr> {
    entity::Entity::find_by_id(key.to_owned()).one(db).await
}

/// Creates or replaces one key, in a single statement (no read-then-write race).
pub async fn put<C: ConnectionTrait>(
    db: &C,
    key: &str,
    value: serde_json::Value,
    updated_by: Option<Uuid>,
) -> Result<(), sea_orm::DbErr> {
    use entity::Column;
    let row = entity::ActiveModel {
        key: Set(key.to_owned()),
        value: Set(value),
        description: Set(None),
        updated_at: Set(chrono::Utc::now()),
        updated_by: Set(updated_by),
    };
    entity::Entity::insert(row)
        .on_conflict(
            OnConflict::column(Column::Key)
                .update_columns([Column::Value, Column::UpdatedAt, Column::UpdatedBy])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}
