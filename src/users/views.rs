//! Users as the API shows them, read by id in batches: `GET /users/me` runs on every app start
//! and screen, the hottest read of the API.
//!
//! One statement for both databases: `id IN (…)` from the query builder, read through sea-orm.
//! (PostgreSQL had its own array-bound statement read by column position; it bought a few
//! percent of `/users/me` at one connection, far from the 1.5× a second path must buy:
//! `bench/RESULTS.md`, identity.)

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sea_orm::{ColumnTrait, DatabaseConnection, DbErr, FromQueryResult, QueryFilter, QuerySelect, QueryTrait, Select};
use uuid::Uuid;

use super::{UserOut, account::live, entity::user};
use crate::{auth::Role, metrics::Metrics};

/// The columns [`UserOut`] shows, as stored, and the one place that turns them into a
/// `UserOut`. Read paths that only show a user select these, never the password hash or the
/// MFA secret.
#[derive(Debug, FromQueryResult)]
pub(super) struct ViewRow {
    pub(super) id: Uuid,
    pub(super) email: String,
    pub(super) name: String,
    pub(super) role: Role,
    pub(super) email_verified: bool,
    pub(super) mfa_enabled: bool,
    pub(super) disabled_at: Option<DateTime<Utc>>,
    pub(super) created_at: DateTime<Utc>,
    pub(super) updated_at: DateTime<Utc>,
}

impl From<ViewRow> for UserOut {
    fn from(u: ViewRow) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            role: u.role,
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            disabled: u.disabled_at.is_some(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Live (not deleted) users as the API shows them, read by id in batches (see
/// [`crate::db::batch`]). Concurrent reads share a query, each still answered by one sent after
/// it arrived; at low load a read goes alone.
pub type Views = crate::db::batch::Batched<Uuid, UserOut>;

/// The batched view reads over `db`: at most a quarter of its pool (at least one connection)
/// serves them at once, 64 users a query at most.
pub fn views(db: &DatabaseConnection, pool_size: u32, metrics: &Metrics) -> Views {
    let db = db.clone();
    let in_flight = (pool_size as usize / 4).max(1);
    let labels = crate::metrics::ReadLabels { read: "user_views" };
    let counts = crate::db::batch::Counts {
        reads: metrics.db_batched_reads.get_or_create(&labels).clone(),
        queries: metrics.db_batch_queries.get_or_create(&labels).clone(),
    };
    let load = Arc::new(move |ids| {
        let db = db.clone();
        async move { find_views(&db, ids).await }.boxed()
    });
    Views::new(in_flight, 64, load, counts)
}

/// The live users among `ids`, as the API shows them, reading only the columns shown.
async fn find_views(db: &DatabaseConnection, ids: Vec<Uuid>) -> Result<HashMap<Uuid, UserOut>, DbErr> {
    let statement = view_query().filter(user::Column::Id.is_in(ids)).build(db.get_database_backend());
    let rows = ViewRow::find_by_statement(statement).all(db).await?;
    Ok(rows.into_iter().map(|row| (row.id, UserOut::from(row))).collect())
}

/// Live users, the columns of [`ViewRow`]; [`find_views`] adds which ids.
fn view_query() -> Select<user::Entity> {
    use user::Column;
    live().select_only().columns([
        Column::Id,
        Column::Email,
        Column::Name,
        Column::Role,
        Column::EmailVerified,
        Column::MfaEnabled,
        Column::DisabledAt,
        Column::CreatedAt,
        Column::UpdatedAt,
    ])
}
