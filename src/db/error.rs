//! Turns database errors into `AppError`s, the same way for SQLite and PostgreSQL.

use sea_orm::{DbErr, RuntimeErr, SqlErr, sqlx};

use crate::http::AppError;

/// A failed statement run through an sqlx pool directly (a backend's fast path: the telemetry
/// store, the `/users/me` read), as sea-orm reports its own, so [`classify`] (and
/// `DbErr::sql_err`, which reads `Exec` and `Query` alike) treats it the same.
pub fn from_sqlx(e: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(e.into()))
}

/// See `impl From<DbErr> for AppError`.
pub fn classify(err: DbErr) -> AppError {
    classify_known(&err).unwrap_or_else(|| AppError::Internal(err.into()))
}

/// [`classify`] for an error several requests share (a failed batched read): the same status
/// for each; a 500 carries the error's message as its cause.
pub fn classify_shared(err: &std::sync::Arc<DbErr>) -> AppError {
    classify_known(err).unwrap_or_else(|| AppError::Internal(anyhow::anyhow!("{err}")))
}

/// The answer for the errors a client can act on or should retry; `None` for a 500.
fn classify_known(err: &DbErr) -> Option<AppError> {
    if let Some(sql) = err.sql_err() {
        return match sql {
            SqlErr::UniqueConstraintViolation(detail) => Some(AppError::Conflict(unique_message(&detail))),
            SqlErr::ForeignKeyConstraintViolation(_) => Some(AppError::Conflict(
                "the change refers to a record that does not exist or is still referenced".into(),
            )),
            _ => None,
        };
    }
    match err {
        DbErr::RecordNotFound(what) => Some(AppError::NotFound(format!("{what} not found"))),
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Some(AppError::Unavailable("database unavailable".into())),
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) if is_nul_text(e) => {
            Some(AppError::bad_request("text must not contain NUL characters"))
        }
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) if is_outage(e) => {
            Some(AppError::Unavailable("database unavailable".into()))
        }
        _ => None,
    }
}

/// PostgreSQL refusing U+0000 in text (22021) or `jsonb` (22P05), e.g. from a query parameter.
fn is_nul_text(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if matches!(db.code().as_deref(), Some("22021" | "22P05")))
}

fn is_outage(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => true,
        // PostgreSQL: statement timeout / cancelled, admin shutdown, cannot connect now.
        sqlx::Error::Database(db) => {
            matches!(db.code().as_deref(), Some("57014" | "57P01" | "57P02" | "57P03"))
                // SQLite: SQLITE_BUSY / SQLITE_LOCKED after busy_timeout.
                || matches!(db.code().as_deref(), Some("5" | "6" | "517" | "262"))
        }
        _ => false,
    }
}

/// Names the field of a unique violation when the database says which one it was,
/// e.g. "users.email already exists" (SQLite) or the constraint name (PostgreSQL).
fn unique_message(detail: &str) -> String {
    // SQLite: "UNIQUE constraint failed: users.email"
    if let Some(cols) = detail.split("UNIQUE constraint failed: ").nth(1) {
        let fields: Vec<&str> = cols.split(',').map(|c| c.trim().rsplit('.').next().unwrap_or(c)).collect();
        return format!("{} already exists", fields.join(", "));
    }
    // PostgreSQL: "duplicate key value violates unique constraint \"uq_users_email\""
    if let Some(name) = detail.split('"').nth(1) {
        let field = name.trim_start_matches("uq_").trim_start_matches("idx_");
        return format!("{field} already exists");
    }
    "a record with these values already exists".into()
}

#[cfg(test)]
mod tests {
    use super::unique_message;

    #[test]
    fn names_the_field() {
        assert_eq!(unique_message("UNIQUE constraint failed: users.email"), "email already exists");
        assert_eq!(
            unique_message("duplicate key value violates unique constraint \"uq_users_email\""),
            "users_email already exists"
        );
    }
}
