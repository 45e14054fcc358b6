//! CONTRACT.md "Auth and users": `/users/me`, the profile, password change, admin user
//! management (roles, disable, soft delete, list filters and paging), the "no secret in any
//! user JSON" rule, and the audit rows of these changes.

mod admin;
mod changes;
mod me;

use mash::users::entity::user;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::Value;

use crate::helpers::{
    TestApp,
    accounts::{get_authed, json_of, refresh},
};

async fn refresh_status(app: &TestApp, token: &str) -> u16 {
    refresh(app, token).await.status().as_u16()
}

async fn list(app: &TestApp, token: &str, query: &str) -> Value {
    json_of(get_authed(app, &format!("/api/v1/users{query}"), token).await, 200).await
}

async fn live_count(app: &TestApp, role: Option<&str>) -> u64 {
    let mut q = user::Entity::find().filter(user::Column::DeletedAt.is_null());
    if let Some(r) = role {
        q = q.filter(user::Column::Role.eq(r));
    }
    q.count(&app.state.db).await.unwrap()
}
