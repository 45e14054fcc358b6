//! A run's outcome: success deletes the job, failure retries it after a backoff or
//! dead-letters it, and an expired lease puts the job back.

use chrono::{DateTime, Utc};
use rand::Rng;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait, Query},
};
use uuid::Uuid;

use crate::jobs::entity::{self, Column, JobStatus};

/// A run succeeded: the job is gone. `attempt` fences out a worker whose lease was taken over.
pub async fn complete<C: ConnectionTrait>(db: &C, id: Uuid, attempt: i32) -> Result<(), DbErr> {
    complete_many(db, &[(id, attempt)]).await
}

/// Several runs succeeded: one statement removes them all.
pub async fn complete_many<C: ConnectionTrait>(db: &C, done: &[(Uuid, i32)]) -> Result<(), DbErr> {
    for chunk in done.chunks(200) {
        let which = chunk.iter().fold(sea_orm::Condition::any(), |c, (id, attempt)| {
            c.add(sea_orm::Condition::all().add(Column::Id.eq(*id)).add(Column::Attempts.eq(*attempt)))
        });
        entity::Entity::delete_many().filter(Column::Status.eq(JobStatus::Running)).filter(which).exec(db).await?;
    }
    Ok(())
}

/// The delay before attempt `attempts + 1`: 2^attempts seconds with ±50% jitter, at most an hour.
pub fn backoff(attempts: i32) -> chrono::Duration {
    let base = 2f64.powi(attempts.clamp(0, 12)).min(3600.0);
    let jittered = base * rand::rng().random_range(0.5..1.5);
    chrono::Duration::milliseconds((jittered * 1000.0) as i64)
}

/// What became of a failed run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    Retry,
    Dead,
}

/// A run failed: retried after a backoff, or dead-lettered when out of attempts (or when the
/// error is permanent). The error is kept either way.
pub async fn fail<C: ConnectionTrait>(
    db: &C,
    job: &entity::Model,
    error: &str,
    permanent: bool,
    now: DateTime<Utc>,
) -> Result<Failed, DbErr> {
    let outcome = if permanent || job.attempts >= job.max_attempts { Failed::Dead } else { Failed::Retry };
    let (status, run_at) = match outcome {
        Failed::Dead => (JobStatus::Dead, now),
        Failed::Retry => (JobStatus::Queued, now + backoff(job.attempts)),
    };
    let error: String = error.chars().take(4000).collect();
    entity::Entity::update_many()
        .col_expr(Column::Status, Expr::value(status))
        .col_expr(Column::RunAt, Expr::value(run_at))
        .col_expr(Column::LockedUntil, Expr::value(Option::<DateTime<Utc>>::None))
        .col_expr(Column::LockedBy, Expr::value(Option::<String>::None))
        .col_expr(Column::LastError, Expr::value(error))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(job.id))
        .filter(Column::Attempts.eq(job.attempts))
        .filter(Column::Status.eq(JobStatus::Running))
        .exec(db)
        .await?;
    Ok(outcome)
}

/// Jobs whose lease ran out (their worker died or hung) go back to the queue, or to the dead
/// letters when that was their last attempt. Returns how many were recovered.
pub async fn recover_expired<C: ConnectionTrait>(db: &C, now: DateTime<Utc>) -> Result<u64, DbErr> {
    let stmt = Query::update()
        .table(entity::Entity)
        .value(
            Column::Status,
            Expr::case(Expr::col(Column::Attempts).gte(Expr::col(Column::MaxAttempts)), JobStatus::Dead)
                .finally(JobStatus::Queued),
        )
        .value(Column::RunAt, now)
        .value(Column::LockedUntil, Option::<DateTime<Utc>>::None)
        .value(Column::LockedBy, Option::<String>::None)
        .value(Column::LastError, "the worker running it stopped or timed out (lease expired)")
        .value(Column::UpdatedAt, now)
        .and_where(Column::Status.eq(JobStatus::Running))
        .and_where(Column::LockedUntil.lt(now))
        .to_owned();
    Ok(db.execute(&stmt).await?.rows_affected())
}
