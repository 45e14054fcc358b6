//! The wire types of `/categories`.

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{shop::entity::category, users::not_blank};

/// A product category.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CategoryOut {
    pub id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&category::Model> for CategoryOut {
    fn from(c: &category::Model) -> Self {
        Self {
            id: c.id,
            name: c.name.clone(),
            description: c.description.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Debug, Deserialize, Serialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CategoryIn {
    #[garde(length(chars, min = 1, max = 120), custom(not_blank))]
    pub name: String,
    #[garde(inner(length(chars, max = 2000)))]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CategoryPatch {
    #[garde(inner(length(chars, min = 1, max = 120), custom(not_blank)))]
    pub name: Option<String>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "crate::util::present")]
    #[schema(value_type = Option<String>)]
    #[garde(inner(inner(length(chars, max = 2000))))]
    pub description: Option<Option<String>>,
}
