//! `push_tokens`: a user's FCM registration tokens, one row per token, with its [`Platform`].

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

// The app platform a token belongs to. (No doc comment: it would become the schema's
// description in the OpenAPI document, which has none.)
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize, utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    #[sea_orm(string_value = "ios")]
    Ios,
    #[sea_orm(string_value = "android")]
    Android,
    #[sea_orm(string_value = "web")]
    Web,
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "push_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub token: String,
    pub platform: Platform,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
