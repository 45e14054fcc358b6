//! Users: the account's own view (`/users/me`, profile, password) and admin management.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

pub mod entity;
mod handlers;

pub use handlers::router;

use crate::auth::Role;

/// A user as the API shows it. Built field by field from the row, so no hash, secret or token
/// can ever appear in it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserOut {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub email_verified: bool,
    pub mfa_enabled: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&entity::user::Model> for UserOut {
    fn from(u: &entity::user::Model) -> Self {
        let view = ViewRow {
            id: u.id,
            email: u.email.clone(),
            name: u.name.clone(),
            role: u.role.clone(),
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            disabled_at: u.disabled_at,
            created_at: u.created_at,
            updated_at: u.updated_at,
        };
        view.into()
    }
}

/// The columns [`UserOut`] shows, as stored, and the one place that turns them into a
/// `UserOut`. Read paths that only show a user select these, never the password hash or the
/// MFA secret.
#[derive(Debug, sea_orm::FromQueryResult)]
struct ViewRow {
    id: Uuid,
    email: String,
    name: String,
    role: String,
    email_verified: bool,
    mfa_enabled: bool,
    disabled_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ViewRow> for UserOut {
    fn from(u: ViewRow) -> Self {
        Self {
            id: u.id,
            email: u.email,
            name: u.name,
            role: Role::parse(&u.role).unwrap_or(Role::Customer),
            email_verified: u.email_verified,
            mfa_enabled: u.mfa_enabled,
            disabled: u.disabled_at.is_some(),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Live (not deleted) users as the API shows them, read by id in batches (see
/// [`crate::db::batch`]): `GET /users/me` runs on every app start and screen, the hottest read
/// of the API. Concurrent reads share a query, each still answered by one sent after it
/// arrived; at low load a read goes alone.
pub type Views = crate::db::batch::Batched<Uuid, UserOut>;

/// The batched view reads over `db`: at most a quarter of its pool (at least one connection)
/// serves them at once, 64 users a query at most.
pub fn views(db: &sea_orm::DatabaseConnection, pool_size: u32, metrics: &crate::metrics::Metrics) -> Views {
    use futures_util::FutureExt;
    let db = db.clone();
    let in_flight = (pool_size as usize / 4).max(1);
    let labels = crate::metrics::ReadLabels { read: "user_views" };
    let counts = crate::db::batch::Counts {
        reads: metrics.db_batched_reads.get_or_create(&labels).clone(),
        queries: metrics.db_batch_queries.get_or_create(&labels).clone(),
    };
    let load = std::sync::Arc::new(move |ids| {
        let db = db.clone();
        async move { find_views(&db, ids).await }.boxed()
    });
    Views::new(in_flight, 64, load, counts)
}

/// The live users among `ids`, as the API shows them, reading only the columns shown.
///
/// On PostgreSQL one statement serves every batch size (`id = ANY($1)`, the ids bound as one
/// array): its SQL is rendered once by the query builder, and the rows are read through the pool
/// directly, by column position, without sea-orm's per-column lookups by name. SQLite, which has
/// no arrays, gets `id IN (…)` from the builder.
async fn find_views(
    db: &sea_orm::DatabaseConnection,
    ids: Vec<Uuid>,
) -> Result<std::collections::HashMap<Uuid, UserOut>, sea_orm::DbErr> {
    use sea_orm::{ColumnTrait, DbBackend, QueryFilter, QueryTrait, sqlx};
    let backend = db.get_database_backend();
    let rows: Vec<ViewRow> =
        if backend == DbBackend::Postgres {
            type Columns =
                (Uuid, String, String, String, bool, bool, Option<DateTime<Utc>>, DateTime<Utc>, DateTime<Utc>);
            // Rendered from constants by our own query builder; only the ids are bound.
            sqlx::query_as::<_, Columns>(sqlx::AssertSqlSafe(view_sql_pg()))
                .bind(ids)
                .fetch_all(db.get_postgres_connection_pool())
                .await
                .map_err(crate::db::error::from_sqlx)?
                .into_iter()
                .map(|(id, email, name, role, email_verified, mfa_enabled, disabled_at, created_at, updated_at)| {
                    ViewRow { id, email, name, role, email_verified, mfa_enabled, disabled_at, created_at, updated_at }
                })
                .collect()
        } else {
            use sea_orm::FromQueryResult;
            let statement = view_query().filter(entity::user::Column::Id.is_in(ids)).build(backend);
            ViewRow::find_by_statement(statement).all(db).await?
        };
    Ok(rows.into_iter().map(|row| (row.id, UserOut::from(row))).collect())
}

/// [`find_views`]'s statement on PostgreSQL, rendered once: `id = ANY($1)`.
fn view_sql_pg() -> &'static str {
    use sea_orm::{
        QueryFilter, QueryTrait,
        sea_query::{Expr, ExprTrait, extension::postgres::PgFunc},
    };
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let any = Expr::col((entity::user::Entity, entity::user::Column::Id)).eq(PgFunc::any(Expr::cust("$1")));
        view_query().filter(any).build(sea_orm::DbBackend::Postgres).sql
    })
}

/// Live users, the columns of [`ViewRow`]; [`find_views`] adds which ids.
fn view_query() -> sea_orm::Select<entity::user::Entity> {
    use entity::user::Column;
    use sea_orm::QuerySelect;
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

/// Validation rule for names, which are stored trimmed: whitespace alone is no name.
pub fn not_blank(value: &str, _: &()) -> garde::Result {
    if value.trim().is_empty() { Err(garde::Error::new("must not be blank")) } else { Ok(()) }
}

/// Emails are compared and stored lower-cased and trimmed.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Live (not deleted) users: the one place that says what "live" means, for [`find_live`] and
/// [`view_query`].
fn live() -> sea_orm::Select<entity::user::Entity> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    entity::user::Entity::find().filter(entity::user::Column::DeletedAt.is_null())
}

/// Loads a live (not deleted) user by id.
pub async fn find_live<C: sea_orm::ConnectionTrait>(
    db: &C,
    id: Uuid,
) -> Result<Option<entity::user::Model>, sea_orm::DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter};
    live().filter(entity::user::Column::Id.eq(id)).one(db).await
}

/// The signed-in caller's row; 401 when the account was deleted since the token was issued.
pub async fn load_signed_in<C: sea_orm::ConnectionTrait>(
    db: &C,
    me: &crate::auth::AuthUser,
) -> Result<entity::user::Model, crate::http::AppError> {
    find_live(db, me.user_id).await?.ok_or_else(account_gone)
}

/// 401 for a valid token whose account was deleted since it was issued.
pub fn account_gone() -> crate::http::AppError {
    crate::http::AppError::Unauthorized("account no longer exists".into())
}

/// Sets a new password hash for a live, enabled account, ends its sessions (all, or all but
/// `keep`), writes the audit row, commits `txn` and makes the revocations effective. The one
/// path for password changes and resets. 400 naming `token_field` when the account is gone.
#[expect(clippy::too_many_arguments, reason = "one call site per flow; a struct would only rename the arguments")]
pub async fn replace_password(
    state: &crate::state::AppState,
    txn: crate::db::WriteTxn,
    user_id: Uuid,
    hash: String,
    keep: Option<Uuid>,
    reason: crate::auth::sessions::RevokeReason,
    action: &str,
    client: &crate::auth::ClientMeta,
) -> Result<(), crate::http::AppError> {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};

    use crate::{
        audit::{self, Entry},
        auth::sessions,
    };
    let now = Utc::now();
    let updated = entity::user::Entity::update_many()
        .col_expr(entity::user::Column::PasswordHash, Expr::value(hash))
        .col_expr(entity::user::Column::PasswordChangedAt, Expr::value(now))
        .col_expr(entity::user::Column::UpdatedAt, Expr::value(now))
        .filter(entity::user::Column::Id.eq(user_id))
        .filter(entity::user::Column::DeletedAt.is_null())
        .filter(entity::user::Column::DisabledAt.is_null())
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(crate::http::AppError::Unauthorized("account no longer exists or is disabled".into()));
    }
    let revoked = sessions::revoke_user_sessions(&txn, user_id, keep, reason).await?;
    audit::record(
        &txn,
        Entry::new(action)
            .by(Some(user_id))
            .on("user", user_id)
            .details(serde_json::json!({ "sessionsRevoked": revoked.len() }))
            .client(client),
    )
    .await?;
    txn.commit().await?;
    sessions::announce(state, &revoked).await;
    Ok(())
}

/// A new account row (password or external identity).
pub struct NewUser<'a> {
    pub email: String,
    pub name: &'a str,
    pub role: Role,
    pub password_hash: Option<String>,
    pub email_verified: bool,
    pub external: Option<(&'a str, &'a str)>,
}

impl NewUser<'_> {
    pub fn into_active(self, id: Uuid) -> entity::user::ActiveModel {
        use sea_orm::ActiveValue::Set;
        let now = Utc::now();
        entity::user::ActiveModel {
            id: Set(id),
            email: Set(self.email),
            password_changed_at: Set(self.password_hash.as_ref().map(|_| now)),
            password_hash: Set(self.password_hash),
            name: Set(self.name.trim().chars().take(200).collect()),
            role: Set(self.role.as_str().to_string()),
            email_verified: Set(self.email_verified),
            external_issuer: Set(self.external.map(|(iss, _)| iss.to_string())),
            external_uid: Set(self.external.map(|(_, sub)| sub.to_string())),
            mfa_enabled: Set(false),
            totp_secret_enc: Set(None),
            totp_pending_enc: Set(None),
            totp_last_step: Set(None),
            disabled_at: Set(None),
            deleted_at: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
    }
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
