//! Wire types of `/growers`: what is sent (`GrowerIn`, `MemberIn`, `MemberPatch`) and what
//! is answered (`GrowerOut`, `MemberOut`, `ChamberOut`).

use chrono::{DateTime, Utc};
use garde::Validate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    greenhouse::entity::{MemberRole, chamber, grower, member},
    users::{entity::user, not_blank},
};

/// A grower (the tenant: one greenhouse business).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GrowerOut {
    pub id: Uuid,
    pub name: String,
    /// The caller's role in this grower (absent for an admin who is not a member).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub my_role: Option<MemberRole>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl GrowerOut {
    pub fn new(g: &grower::Model, my_role: Option<MemberRole>) -> Self {
        Self { id: g.id, name: g.name.clone(), my_role, created_at: g.created_at, updated_at: g.updated_at }
    }
}

// A name: of a grower, and also of a chamber.
#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrowerIn {
    #[garde(length(chars, min = 1, max = 200), custom(not_blank))]
    pub name: String,
}

/// A member of a grower.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberOut {
    pub grower_id: Uuid,
    pub user_id: Uuid,
    pub role: MemberRole,
    pub name: String,
    pub email: String,
    pub created_at: DateTime<Utc>,
}

impl MemberOut {
    pub fn new(m: &member::Model, u: &user::Model) -> Self {
        Self {
            grower_id: m.grower_id,
            user_id: m.user_id,
            role: m.role,
            name: u.name.clone(),
            email: u.email.clone(),
            created_at: m.created_at,
        }
    }
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MemberIn {
    #[garde(skip)]
    pub user_id: Uuid,
    #[garde(skip)]
    pub role: MemberRole,
}

#[derive(Debug, Deserialize, Validate, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberPatch {
    #[garde(skip)]
    pub role: MemberRole,
}

/// A chamber (a compartment of the greenhouse that devices sit in).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChamberOut {
    pub id: Uuid,
    pub grower_id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&chamber::Model> for ChamberOut {
    fn from(c: &chamber::Model) -> Self {
        Self {
            id: c.id,
            grower_id: c.grower_id,
            name: c.name.clone(),
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}
