//! Users as the API shows them, read by id in batches: `GET /users/me` runs on every app start
//! and screen, the hottest read of the API.
//!
//! The read is the one place with a backend fork in this domain ([`find_views`]): on PostgreSQL
//! it goes through the pool directly with a positional row decode, on SQLite through sea-orm.
//! Whether the fork earns its keep is measured separately (bench/); until then it stays, behind
//! this one function.

use std::{collections::HashMap, sync::Arc};

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use sea_orm::{
    ActiveEnum, ColumnTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, QueryFilter, QuerySelect,
    QueryTrait, Select,
    sea_query::{Expr, ExprTrait, extension::postgres::PgFunc},
    sqlx,
};
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
    // Rendered once here, kept by the loader: the PostgreSQL statement is the same for every batch.
    let pg_sql: Arc<str> = view_sql_pg().into();
    let in_flight = (pool_size as usize / 4).max(1);
    let labels = crate::metrics::ReadLabels { read: "user_views" };
    let counts = crate::db::batch::Counts {
        reads: metrics.db_batched_reads.get_or_create(&labels).clone(),
        queries: metrics.db_batch_queries.get_or_create(&labels).clone(),
    };
    let load = Arc::new(move |ids| {
        let (db, pg_sql) = (db.clone(), pg_sql.clone());
        async move { find_views(&db, &pg_sql, ids).await }.boxed()
    });
    Views::new(in_flight, 64, load, counts)
}

/// The live users among `ids`, as the API shows them, reading only the columns shown.
///
/// On PostgreSQL one statement serves every batch size (`id = ANY($1)`, the ids bound as one
/// array): its SQL (`pg_sql`, from [`view_sql_pg`]) is rendered once by the query builder, and
/// the rows are read through the pool directly, by column position, without sea-orm's
/// per-column lookups by name. SQLite, which has no arrays, gets `id IN (…)` from the builder.
async fn find_views(
    db: &DatabaseConnection,
    pg_sql: &Arc<str>,
    ids: Vec<Uuid>,
) -> Result<HashMap<Uuid, UserOut>, DbErr> {
    let backend = db.get_database_backend();
    let rows: Vec<ViewRow> = if backend == DbBackend::Postgres {
        type Columns = (Uuid, String, String, String, bool, bool, Option<DateTime<Utc>>, DateTime<Utc>, DateTime<Utc>);
        // Rendered from constants by our own query builder; only the ids are bound.
        sqlx::query_as::<_, Columns>(sqlx::AssertSqlSafe(pg_sql.clone()))
            .bind(ids)
            .fetch_all(db.get_postgres_connection_pool())
            .await
            .map_err(crate::db::error::from_sqlx)?
            .into_iter()
            .map(|(id, email, name, role, email_verified, mfa_enabled, disabled_at, created_at, updated_at)| {
                let role = Role::try_from_value(&role)?;
                Ok(ViewRow { id, email, name, role, email_verified, mfa_enabled, disabled_at, created_at, updated_at })
            })
            .collect::<Result<_, DbErr>>()?
    } else {
        let statement = view_query().filter(user::Column::Id.is_in(ids)).build(backend);
        ViewRow::find_by_statement(statement).all(db).await?
    };
    Ok(rows.into_iter().map(|row| (row.id, UserOut::from(row))).collect())
}

/// [`find_views`]'s statement on PostgreSQL: `id = ANY($1)`.
fn view_sql_pg() -> String {
    let any = Expr::col((user::Entity, user::Column::Id)).eq(PgFunc::any(Expr::cust("$1")));
    view_query().filter(any).build(DbBackend::Postgres).sql
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

#[cfg(test)]
mod tests {
    #[test]
    fn one_postgres_statement_serves_every_batch() {
        assert_eq!(
            super::view_sql_pg(),
            r#"SELECT "users"."id", "users"."email", "users"."name", "users"."role", "users"."email_verified", "users"."mfa_enabled", "users"."disabled_at", "users"."created_at", "users"."updated_at" FROM "users" WHERE "users"."deleted_at" IS NULL AND "users"."id" = ANY($1)"#
        );
    }
}
